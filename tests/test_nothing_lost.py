"""Nothing lost, round two (issue 19): one scenario test per item.

Real parts wherever a crash is involved: training subprocesses killed with SIGKILL or
stopped with SIGTERM, real mirror processes, the real wandb client (offline), its records
read back with wandb's own reader (``wandb_records``). Race windows are opened on purpose
(a mirror held at a gate, a signal sent from inside a save), never waited for by chance.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import wandb_records as wr
from helpers import MIRROR_GATE, MIRROR_HOLD_FROM, expect_log, unblock_fifos

from cs336_basics import (
    ExperimentAnalyzer,
    ExperimentConfig,
    ExperimentTracker,
    PushError,
    RunInUseError,
    load_experiment_log,
)
from cs336_basics.store.journal import read_header
from cs336_basics.store.layout import RunFiles

HERE = Path(__file__).resolve().parent
needs_wandb = pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None,
    reason="wandb is not installed (pip install 'cs336-basics[wandb]')",
)


# ------------------------------------------------------------------------------ helpers
def _read_until(proc: subprocess.Popen, prefix: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"child ended before printing {prefix!r} (exit {proc.wait()})")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _mirror_state(path: Path) -> dict:
    return load_experiment_log(path).mirrors.get("wandb", {})


def _wait_state(path: Path, statuses: set[str], timeout: float = 90.0, not_pid=None) -> dict:
    deadline = time.monotonic() + timeout
    state = _mirror_state(path)
    while state.get("status") not in statuses or state.get("pid") == not_pid:
        assert time.monotonic() < deadline, f"mirror state stayed {state}"
        time.sleep(0.1)
        state = _mirror_state(path)
    return state


def _pid_gone(pid: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _train_iterations(*sync_dirs: str) -> list[int]:
    return [r["iteration"] for d in sync_dirs for r in wr.history(d) if "train/loss" in r]


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.seg-*.jsonl"))


# ------------------------------------------------------------------------------ 1
TRAINER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from cs336_basics import ExperimentConfig, ExperimentTracker, WandbSink
    log_dir, start, stop, save_every, resume = sys.argv[1:6]
    sink = WandbSink(project="nothing-lost")
    if os.environ.get({gate!r}):
        sink.process_module = "helpers"  # the W&B mirror, held at a gate
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="drained"), log_dir=log_dir,
                                sinks=[sink], resume=resume or None)
    tracker.start()
    print("PATH", tracker.path, flush=True)
    for i in range(int(start), int(stop)):
        tracker.log_metrics(i, 5.0 / (i + 1), 1e-3)
        if int(save_every) and (i + 1) % int(save_every) == 0:
            tracker.save()
    tracker.flush()
    print("LOOPED", flush=True)
    time.sleep(600)  # until killed
    """
).format(tests=str(HERE), gate=MIRROR_GATE)


def _trainer(log_dir: Path, start: int, stop: int, save_every: int, resume: str = "", env=None):
    args = [sys.executable, "-c", TRAINER, str(log_dir), str(start), str(stop), str(save_every)]
    return subprocess.Popen(
        [*args, resume], stdout=subprocess.PIPE, text=True, env=env or dict(os.environ)
    )


@needs_wandb
@pytest.mark.slow
def test_an_old_mirror_still_draining_never_reads_the_resumed_runs_segments(tmp_path):
    # The first trainer's mirror is held before it sends iteration 100; the trainer is
    # killed; a resumed trainer logs and saves (leaving segments for its own mirror, which
    # waits for the old one to end); only then may the old mirror go on.
    gate = tmp_path / "gate"
    env = dict(os.environ, **{MIRROR_GATE: str(gate), MIRROR_HOLD_FROM: "100"})
    first = _trainer(tmp_path, 0, 200, save_every=50, env=env)
    path = Path(_read_until(first, "PATH ").split(" ", 1)[1])
    _read_until(first, "LOOPED")
    old = _wait_state(path, {"starting", "running"})  # the old mirror: its pid, its W&B run
    _kill(first)
    second = _trainer(tmp_path, 200, 300, save_every=25, resume=str(path))
    _read_until(second, "LOOPED")
    left = [read_header(p) for p in _segments(tmp_path)]
    assert any(h and h["pid"] == second.pid for h in left), "no segment of the resumed run"
    assert _mirror_state(path)["pid"] == old["pid"]  # the old mirror still drains
    gate.touch()  # the old mirror goes on: it must not touch the resumed run's segments
    assert _pid_gone(old["pid"])
    _kill(second)
    final = _wait_state(path, {"crashed"}, not_pid=old["pid"])
    # The old W&B run got the first trainer's rows and nothing of the resumed run's.
    (old_sync_dir,) = Path(os.environ["WANDB_DIR"]).glob(f"wandb/offline-run-*-{old['run_id']}")
    assert _train_iterations(str(old_sync_dir)) == list(range(200))
    # What W&B held was unknown when the resumed run began (its mirror still ran): a new
    # W&B run gets every local row, once.
    assert final["replaced"] == old["run_id"] and final["run_id"] != old["run_id"]
    local = [r.iteration for r in load_experiment_log(path).metrics_history]
    assert local == list(range(300))
    assert _train_iterations(final["sync_dir"]) == local
    assert _segments(tmp_path) == []


# ------------------------------------------------------------------------------ 2
DROP_IN = textwrap.dedent(
    """
    import sys, time
    import cs336_basics.wandb_compat as wandb
    log_dir, start, stop, finish = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    run = wandb.init(project="nothing-lost", id="dropin1", name="dropin", mode="offline",
                     resume="allow", log_dir=log_dir)
    for i in range(start, stop):
        wandb.log({"iter": i, "train/loss": 4.0 / (i + 1), "lr": 1e-3})
        if i == start:
            print("PATH", run.local_path, flush=True)
        if i == start + 99:
            run.tracker.flush()
            print("HALF", flush=True)
            input()  # the test kills the mirror meanwhile
    run.tracker.flush()
    if finish == "finish":
        run.finish()
        print("FINISHED", flush=True)
    else:
        print("LOOPED", flush=True)
        time.sleep(600)  # until killed
    """
)


@needs_wandb
@pytest.mark.slow
def test_a_drop_in_run_resumed_by_id_after_a_node_failure_sends_every_row(tmp_path):
    # Trainer and mirror both SIGKILLed: what W&B kept is unknown. The drop-in resumes the
    # run by its W&B id; its mirror must send every local row to that W&B run.
    first = subprocess.Popen(
        [sys.executable, "-c", DROP_IN, str(tmp_path), "0", "200", "crash"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    path = Path(_read_until(first, "PATH ").split(" ", 1)[1])
    _read_until(first, "HALF")
    old = _wait_state(path, {"running"})
    os.kill(old["pid"], signal.SIGKILL)  # the node fails: the mirror ...
    assert _pid_gone(old["pid"])
    assert first.stdin is not None
    first.stdin.write("\n")
    first.stdin.flush()
    _read_until(first, "LOOPED")  # rows 100..199 reach the journal, never W&B
    _kill(first)  # ... and the trainer
    second = subprocess.run(
        [sys.executable, "-c", DROP_IN, str(tmp_path), "200", "250", "finish"],
        input="\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "FINISHED" in second.stdout, second.stderr[-2000:]
    log = load_experiment_log(path)
    state = log.mirrors["wandb"]
    assert state["status"] == "finished" and state["run_id"] == "dropin1"  # the id kept
    local = [r.iteration for r in log.metrics_history]
    assert local == list(range(250))
    assert _train_iterations(state["sync_dir"]) == local


# ------------------------------------------------------------------------------ 3
SIGTERM_CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading
    from cs336_basics import ExperimentConfig, ExperimentTracker
    from cs336_basics.runtime import saver
    from cs336_basics.runtime.journal_writer import JournalWriter
    where, log_dir = sys.argv[1], sys.argv[2]
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="preempted"), log_dir=log_dir)
    tracker.start()

    def preempted(signum, frame):  # a job scheduler's SIGTERM: save, then exit
        print("HANDLER", flush=True)
        tracker.save()
        sys.exit(143)

    signal.signal(signal.SIGTERM, preempted)
    # The first write of the journal on the training thread, with the journal's lock held:
    # inside save() the rotation's, inside finish() its flush. Or finish()'s final save.
    owner, name = {{
        "save": (JournalWriter, "_write_locked"),
        "finish": (JournalWriter, "_write_locked"),
        "final": (saver.RunSaves, "final_save"),
    }}[where]
    real = getattr(owner, name)
    sent = []

    def signalled(*args, **kwargs):
        if not sent and threading.current_thread() is threading.main_thread():
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs on this thread, here
        return real(*args, **kwargs)

    setattr(owner, name, signalled)
    for i in range({rows}):
        tracker.log_metrics(iteration=i, train_loss=1.0 / (i + 1))
        if i % 50 == 49:
            tracker.log_eval(iteration=i, val_loss=0.5)
    tracker.finish() if where != "save" else tracker.save()
    print("NOT REACHED", flush=True)
    """
)


@pytest.mark.parametrize("where", ["save", "finish", "final"])
def test_a_sigterm_handler_that_saves_inside_save_or_finish_exits_with_everything(tmp_path, where):
    rows = 500
    out = subprocess.run(
        [sys.executable, "-c", SIGTERM_CHILD.format(rows=rows), where, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,  # a deadlock fails here
    )
    assert out.stdout.split() == ["HANDLER"], (out.stdout, out.stderr[-2000:])
    assert out.returncode == 143, out.stderr[-2000:]
    (document,) = tmp_path.glob("experiment_preempted_*.json")
    log = load_experiment_log(document)
    assert log.metrics_history.column("iteration") == list(range(rows))
    assert log.metrics_history.column("val_loss")[49::50] == [0.5] * (rows // 50)
    if where == "final":  # the finish record was written before the signal
        assert log.status == "finished"
    assert not list(tmp_path.glob(".*.tmp-*")), "a write was left half done"


# ------------------------------------------------------------------------------ 4
@needs_wandb
@pytest.mark.slow
def test_push_and_resume_exclude_each_other(tmp_path, monkeypatch):
    from cs336_basics import push_run
    from cs336_basics.wandb_adapter.sink import WandbSink

    config = ExperimentConfig(experiment_name="pushed")
    tracker = ExperimentTracker(config, log_dir=tmp_path)
    for i in range(30):
        tracker.log_metrics(i, 1.0 / (i + 1))
    tracker.finish()
    in_push, release = threading.Event(), threading.Event()
    real_replay = WandbSink.replay

    def held_replay(self, rows):  # the push, half-way
        in_push.set()
        assert release.wait(60)
        real_replay(self, rows)

    monkeypatch.setattr(WandbSink, "replay", held_replay)
    result: dict = {}
    pusher = threading.Thread(target=lambda: result.update(push_run(tracker.path)))
    pusher.start()
    try:
        assert in_push.wait(60)
        with pytest.raises(RunInUseError, match="cs336-exp push"):
            ExperimentTracker(config, log_dir=tmp_path, resume=tracker.path).start()
    finally:
        release.set()
        pusher.join(60)
    assert result["pushed"] is True and result["pushed_rows"] == 30
    resumed = ExperimentTracker(config, log_dir=tmp_path, resume=tracker.path).start()
    try:
        with pytest.raises(PushError, match="being written by another live process") as err:
            push_run(tracker.path)
        assert isinstance(err.value.__cause__, RunInUseError)
    finally:
        resumed.close()


# ------------------------------------------------------------------------------ 5
BAD = "loss\udce9"  # a lone surrogate: what os.fsdecode gives for a name that is not UTF-8


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda t: t.log_metrics(iteration=1, train_loss=1.0, **{BAD: 1.0}), "metric name"),
        (lambda t: t.log_eval(iteration=0, val_loss=1.0, **{BAD: 2.0}), "metric name"),
        (lambda t: t.update_row(0, **{BAD: 2.0}), "metric name"),
        (lambda t: t.set_notes(f"notes {BAD}"), "notes"),
        (lambda t: t.finish(notes=BAD), "notes"),
    ],
    ids=["log_metrics", "log_eval", "update_row", "set_notes", "finish"],
)
def test_text_that_is_not_utf8_is_refused_at_the_call_and_saves_go_on(tmp_path, call, what):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="utf8"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=2.0)
    with pytest.raises(ValueError, match=f"{what} .*not valid UTF-8"):
        call(tracker)
    tracker.log_metrics(iteration=1, train_loss=1.0, ok=3.0)
    tracker.save(wait=True)  # before the fix: UnicodeEncodeError at every save
    tracker.finish(notes="fine")
    log = load_experiment_log(tracker.path)
    assert [r.iteration for r in log.metrics_history] == [0, 1] and log.notes == "fine"


@pytest.mark.parametrize(
    "config",
    [
        {BAD: 1},
        {"note": BAD},
        {"layers": ["a", BAD]},
        {"nested": {"k": {BAD: 1}}},
        {"experiment_name": BAD},
    ],
    ids=["key", "value", "list-item", "nested-key", "experiment-name"],
)
def test_a_config_with_text_that_is_not_utf8_is_refused_naming_the_key(tmp_path, config):
    with pytest.raises(ValueError, match=r"config(\.\w+| key).*not valid UTF-8"):
        ExperimentTracker(ExperimentConfig(**config), log_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before any file was made


# ------------------------------------------------------------------------------ 6
@needs_wandb
@pytest.mark.slow
def test_without_hard_links_saves_stay_off_the_training_thread(tmp_path, monkeypatch, caplog):
    # FAT, exFAT, many FUSE mounts: os.link fails. A segment for the mirror is then a copy,
    # and the document is still written by the background thread.
    from cs336_basics.runtime import journal_writer, saver

    def no_links(source, target, *args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    copies: list[Path] = []
    real_copy = journal_writer.shutil.copyfile

    def counted_copy(source, target):
        copies.append(Path(target))
        return real_copy(source, target)

    monkeypatch.setattr(journal_writer.shutil, "copyfile", counted_copy)
    writers: list[str] = []
    real_write = saver.DocumentWriter.write

    def recorded_write(self, *args, **kwargs):
        writers.append(threading.current_thread().name)
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(saver.DocumentWriter, "write", recorded_write)
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="nolinks"), log_dir=tmp_path, sinks=["wandb"]
    )
    for i in range(300):
        tracker.log_metrics(i, 1.0 / (i + 1))
        if i % 100 == 99:
            tracker.save(wait=True)
    assert len(writers) == 3
    assert threading.main_thread().name not in writers, writers  # never on the loop's thread
    tracker.finish()  # (the final save is the caller's, as ever)
    assert not [r for r in caplog.records if "foreground" in r.getMessage()]
    assert len([c for c in copies if ".seg-" in c.name]) == 3  # a segment per save, copied
    state = load_experiment_log(tracker.path).mirrors["wandb"]
    assert state["status"] == "finished"
    assert _train_iterations(state["sync_dir"]) == list(range(300))


# ------------------------------------------------------------------------------ 7
@needs_wandb
@pytest.mark.slow
@pytest.mark.parametrize("then", ["resume", "push"])
def test_segments_a_mirror_left_when_it_gave_up_are_removed(tmp_path, then):
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="orphans"), log_dir=tmp_path, sinks=["wandb"]
    )
    for i in range(20):
        tracker.log_metrics(i, 1.0)
    _wait_state(tracker.path, {"running"})
    (mirror,) = tracker._mirrors.processes
    mirror.process.send_signal(signal.SIGSTOP)  # hung: it reads nothing more
    for i in range(20, 60):
        tracker.log_metrics(i, 1.0)
        if i % 20 == 19:
            tracker.save()  # a segment for the hung mirror each time
    mirror.process.send_signal(signal.SIGKILL)  # ... and then it gives up
    mirror.process.wait(30)
    tracker.close()
    assert len(_segments(tmp_path)) == 2
    if then == "resume":
        resumed = ExperimentTracker(tracker.config, log_dir=tmp_path, resume=tracker.path)
        resumed.start()
        assert _segments(tmp_path) == []
        resumed.finish()
    else:
        from cs336_basics import push_run

        assert push_run(tracker.path)["pushed_rows"] == 60
        assert _segments(tmp_path) == []
    assert len(load_experiment_log(tracker.path).metrics_history) == 60


# ------------------------------------------------------------------------------ 8
WANDB_WRITER = textwrap.dedent(
    """
    import time
    import wandb
    run = wandb.init(project="imp", id="big1", name="big")
    for i in range(3000):
        run.log({"iter": i, "train/loss": 2.0 - i * 1e-4, "lr": 1e-3})
    run.finish()
    for session in range(2):  # resumed offline: one id, two files
        time.sleep(1.1)  # offline folders are named by id and second
        run = wandb.init(project="imp", id="again", resume="allow", name="again")
        for i in range(5):
            run.log({"loss": 1.0 - session - i / 10})
        run.finish()
    wandb.teardown()
    """
)


@pytest.fixture(scope="module")
def wandb_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed (pip install 'cs336-basics[wandb]')")
    base = tmp_path_factory.mktemp("offline")
    env = dict(os.environ, **wr.offline_env(base))
    env.pop("WANDB_SERVICE", None)
    subprocess.run([sys.executable, "-c", WANDB_WRITER], env=env, check=True, timeout=120)
    return base / "runs" / "wandb"


def _damaged_copy(source: Path, folder: Path) -> Path:
    """A copy of ``source`` with two 64-byte blocks overwritten in the middle (bit rot)."""
    target = folder / source.parent.name / source.name
    target.parent.mkdir(parents=True)
    data = bytearray(source.read_bytes())
    for at in (len(data) // 3, len(data) // 2):
        data[at : at + 64] = b"\xff" * 64
    target.write_bytes(bytes(data))
    return target


@pytest.mark.slow
def test_a_damaged_wandb_file_imports_as_partial_and_says_so(wandb_files, tmp_path, caplog):
    from cs336_basics import import_wandb_runs

    good = next(wandb_files.glob("offline-run-*-big1/run-big1.wandb"))
    damaged = _damaged_copy(good, tmp_path / "damaged")
    with expect_log(caplog, r"import .*run-big1\.wandb: partial: .*corrupt"):
        (log,) = import_wandb_runs(damaged, save_dir=tmp_path / "logs")
    assert 0 < len(log.metrics_history) < 3000
    assert log.status == "unfinished"
    state = log.mirrors["wandb"]
    assert state["status"] == "partial" and "corrupt" in state["error"]
    assert load_experiment_log(log.source).mirrors["wandb"]["status"] == "partial"
    (whole,) = import_wandb_runs(good)  # the file it came from: complete, finished
    assert len(whole.metrics_history) == 3000 and whole.status == "finished"
    assert whole.mirrors["wandb"]["status"] == "imported"
    # The command line says so too, in one line.
    out = subprocess.run(
        [sys.executable, "-m", "cs336_basics", "import", str(damaged.parent)]
        + ["--log-dir", str(tmp_path / "cli")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stderr.splitlines() if "partial" in line]
    assert len(said) == 1 and "run-big1.wandb" in said[0], out.stderr


@pytest.mark.parametrize("content", [b"", b":W&B\xe1\xbe\x00"], ids=["0-bytes", "header-only"])
def test_an_empty_wandb_file_is_refused_naming_it(tmp_path, content, capsys):
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed (pip install 'cs336-basics[wandb]')")
    from cs336_basics import LogFormatError, import_wandb_runs
    from cs336_basics.cli import main

    empty = tmp_path / "offline-run-20260101_000000-e1" / "run-e1.wandb"
    empty.parent.mkdir()
    empty.write_bytes(content)
    with pytest.raises(LogFormatError, match=r"run-e1\.wandb: .*nothing to import"):
        import_wandb_runs(empty, save_dir=tmp_path / "logs")
    assert main(["import", str(tmp_path), "--log-dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run-e1.wandb" in err and "nothing to import" in err
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("*.json"))


@pytest.mark.slow
def test_each_wandb_file_is_read_once(wandb_files, monkeypatch):
    from cs336_basics import import_wandb_runs
    from cs336_basics.wandb_adapter import wandb_file

    spawned: list[list[str]] = []
    real_popen = subprocess.Popen

    def counted(command, *args, **kwargs):
        spawned.append(command)
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(wandb_file.subprocess, "Popen", counted)
    files = sorted(wandb_files.rglob("run-*.wandb"))
    assert len(files) == 3
    started = time.perf_counter()
    logs = {log.experiment_name: log for log in import_wandb_runs(wandb_files)}
    took = time.perf_counter() - started
    assert len(spawned) == len(files), spawned  # one reader per file, one pass each
    assert [r.train_loss for r in logs["again"].metrics_history][4:6] == [pytest.approx(0.6), 0.0]
    assert len(logs["big"].metrics_history) == 3000
    print(f"imported {len(files)} files in {took:.2f} s")


def test_an_old_wandbs_datastore_that_fails_mid_file_gives_a_partial_read(tmp_path, monkeypatch):
    # wandb <= 0.29 reads with its DataStore, which asserts on a bad checksum: the records
    # before it are kept and the read says it stopped.
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2", reason="wandb is not installed")
    import types

    from cs336_basics.wandb_adapter import wandb_file

    def record(i: int) -> bytes:
        rec = pb.Record()
        rec.history.item.add(key="train/loss", value_json=str(1.0 / (i + 1)))
        return rec.SerializeToString()

    class DataStore:
        def open_for_scan(self, path):
            self.left = [record(0), record(1)]

        def scan_data(self):
            if not self.left:
                raise AssertionError("record checksum is invalid, data may be corrupt")
            return self.left.pop(0)

        def close(self):
            pass

    internal = types.ModuleType("wandb.sdk.internal")
    internal.datastore = types.SimpleNamespace(DataStore=DataStore)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb.sdk.internal", internal)
    monkeypatch.setitem(sys.modules, "wandb.sdk.internal.datastore", internal.datastore)
    monkeypatch.setattr(wandb_file, "reader_name", lambda: "datastore")
    path = tmp_path / "run-old.wandb"
    path.write_bytes(b"x")
    problems: list[str] = []
    got = list(wandb_file.read_records(path, problems))
    assert [r["history"]["item"]["train/loss"] for r in got] == [1.0, 0.5]
    assert len(problems) == 1 and "checksum is invalid" in problems[0]
    assert "after 2 records" in problems[0]


# ------------------------------------------------------------------------------ 10
def test_a_full_disk_shows_every_waiting_record_in_the_backlog(tmp_path, monkeypatch):
    from cs336_basics.runtime import journal_writer

    full = threading.Event()
    real_write = journal_writer._write

    def disk(fd, data):
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(journal_writer, "_write", disk)
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="full"), log_dir=tmp_path, flush_interval=0.05
    )
    tracker.log_metrics(0, 1.0)
    tracker.flush()
    full.set()
    for i in range(1, 2001):
        tracker.log_metrics(i, 1.0)
    with pytest.raises(OSError, match="No space"):
        tracker.flush()  # the records were encoded and failed: they wait as bytes now
    health = tracker.health()
    assert health["journal"] == "behind" and "No space" in health["journal_error"]
    assert health["journal_backlog"] == 2000
    full.clear()
    tracker.flush()
    assert tracker.health()["journal_backlog"] == 0
    journal = load_experiment_log(tracker.path.with_suffix(".jsonl"))
    assert [r.iteration for r in journal.metrics_history] == list(range(2001))
    tracker.finish()


# ------------------------------------------------------------------------------ 11
def test_fifos_and_device_links_in_a_log_dir_block_nothing(tmp_path):
    run = ExperimentTracker(ExperimentConfig(experiment_name="real"), log_dir=tmp_path)
    run.log_metrics(0, 1.0)
    run.finish()
    fifos = [tmp_path / "fifo_a.json", tmp_path / "fifo_b.jsonl", tmp_path / "fifo_c.json"]
    for fifo in fifos:
        os.mkfifo(fifo)
    (tmp_path / "zeros.json").symlink_to("/dev/zero")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "cs336_basics", "list", "--log-dir", str(tmp_path)] + ["--json"],
            capture_output=True,
            text=True,
            timeout=30,  # a FIFO opened for reading blocks forever: fails here
        )
        assert out.returncode == 0, out.stderr
        assert [r["run_id"] for r in json.loads(out.stdout)] == [run.run_id]
        assert out.stderr == ""  # not runs: nothing to report either

        analyzer = ExperimentAnalyzer(tmp_path)
        loader = threading.Thread(target=analyzer.load_all, kwargs={"quiet": True}, daemon=True)
        loader.start()
        loader.join(30)
        assert not loader.is_alive(), "the analyzer blocked on a FIFO"
        assert [log.run_id for log in analyzer.logs.values()] == [run.run_id]
        assert analyzer.problems == []

        from cs336_basics.dashboard.store import RunStore

        store = RunStore(tmp_path, interval=0.1)
        starter = threading.Thread(target=store.start, daemon=True)
        starter.start()
        starter.join(30)
        try:
            assert not starter.is_alive(), "the page's store blocked on a FIFO"
            deadline = time.monotonic() + 60
            while store.describe() != {"runs": 1, "loaded": 1, "errors": 0}:
                assert time.monotonic() < deadline, store.describe()
                time.sleep(0.05)
        finally:
            store.stop()
    finally:
        unblock_fifos(*fifos)


# ------------------------------------------------------------------------------ 12
def test_an_in_place_rewrite_keeping_size_and_mtime_is_not_hidden_by_the_cache(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="cached"), log_dir=tmp_path)
    for i in range(5):
        tracker.log_metrics(i, 1.5 if i == 2 else 1.0 + i / 10)
    tracker.finish()
    document = tracker.path
    assert load_experiment_log(document).metrics_history[2].train_loss == 1.5
    assert RunFiles.of(document).cache.exists()  # later loads read the cache
    before = os.stat(document)
    data = document.read_bytes()
    assert len(re.findall(rb'"train_loss": ?1\.5\b', data)) == 1
    edited = tmp_path / "edited" / document.name
    edited.parent.mkdir()
    edited.write_bytes(re.sub(rb'("train_loss": ?)1\.5\b', rb"\g<1>4.5", data))
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    time.sleep(0.05)  # past the file system's clock tick: the change time moves on
    shutil.copy2(edited, document)  # cp -p: rewritten in place, size and times kept
    after = os.stat(document)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert after.st_ctime_ns != before.st_ctime_ns
    assert load_experiment_log(document).metrics_history[2].train_loss == 4.5


# ------------------------------------------------------------------------------ page server
def _get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    from urllib.error import HTTPError
    from urllib.request import urlopen

    try:
        with urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except HTTPError as exc:
        return exc.code, exc.read()


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` seconds (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass  # (an answer to a request sent in part would come first)
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def _serve(log_dir: Path, monkeypatch, **limits):
    """A page server on a free port, with its limits (module constants) set low."""
    from cs336_basics.dashboard import server as server_module

    for name, value in limits.items():
        monkeypatch.setattr(server_module, name, value, raising=False)
    server = server_module.make_server(log_dir, "127.0.0.1", 0, interval=0.2)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    return server, thread


def _stop(server, thread) -> None:
    from cs336_basics.dashboard.server import close

    close(server)
    thread.join(10)


def test_idle_and_half_open_connections_are_closed_and_the_server_still_answers(
    tmp_path, monkeypatch
):
    server, thread = _serve(tmp_path, monkeypatch, IDLE_TIMEOUT_S=0.5)
    host, port = server.server_address[:2]
    sockets: list[socket.socket] = []
    try:
        for i in range(60):
            sock = socket.create_connection((host, port), timeout=5)
            if i % 3 == 1:
                sock.sendall(b"GET /api/runs HTTP/1.1\r\n")  # a request cut short
            elif i % 3 == 2:
                sock.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # keep-alive
            sockets.append(sock)
        status, body = _get(f"http://{host}:{port}/api/runs")  # answered meanwhile
        assert status == 200 and json.loads(body) is not None
        started = time.monotonic()
        assert all(_closed_by_server(sock, 10) for sock in sockets)
        assert time.monotonic() - started < 10  # all within the idle timeout, give or take
        assert _get(f"http://{host}:{port}/api/runs")[0] == 200
    finally:
        for sock in sockets:
            sock.close()
        _stop(server, thread)


def test_event_streams_are_capped_and_a_closed_one_frees_its_place(tmp_path, monkeypatch):
    server, thread = _serve(tmp_path, monkeypatch, MAX_EVENT_STREAMS=2)
    host, port = server.server_address[:2]
    streams: list[socket.socket] = []

    def open_stream() -> tuple[socket.socket, bytes]:
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
        return sock, head

    try:
        for _ in range(2):
            sock, head = open_stream()
            assert head.startswith(b"HTTP/1.1 200"), head
            streams.append(sock)
        status, body = _get(f"http://{host}:{port}/api/events")
        assert status == 503
        message = json.loads(body)["error"]
        assert "too many open live views (2)" in message and "\n" not in message
        assert _get(f"http://{host}:{port}/api/runs")[0] == 200  # the rest still answers
        streams.pop().close()  # a tab closed: its place is free within about a second
        deadline = time.monotonic() + 10
        while True:  # (a page's EventSource would reconnect meanwhile)
            sock, head = open_stream()
            if head.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
                break
            sock.close()
            time.sleep(0.1)
        streams.append(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
    finally:
        for sock in streams:
            sock.close()
        _stop(server, thread)
