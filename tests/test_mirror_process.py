"""The W&B mirror runs in its own process, fed from the journal: exactly once, no orphans.

Real parts throughout: training subprocesses killed with SIGKILL, the real mirror process,
the real wandb client (offline), its records read back with wandb's own reader.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
import wandb_records as wr
from helpers import requires, run_files_in

from cs336_basics import ExperimentConfig, ExperimentTracker, load_experiment_log, push_run
from cs336_basics.store.layout import RunFiles

pytestmark = [pytest.mark.slow, requires("wandb")]

TRAINER = textwrap.dedent(
    """
    import sys, time
    from cs336_basics import ExperimentConfig, ExperimentTracker
    log_dir = sys.argv[1]
    start, stop, save_every = (int(a) for a in sys.argv[2:5])
    resume = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
    if len(sys.argv) > 6:  # the script uses wandb itself too: its own service runs here
        import wandb
        wandb.init(project="own", mode="offline").finish()
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="mirrored"), log_dir=log_dir,
                                sinks=["wandb"], resume=resume)
    tracker.start()
    print("PATH", tracker.path, flush=True)
    for i in range(start, stop):
        tracker.log_metrics(i, 5.0 / (i + 1), 1e-3, grad_norm=0.5)
        tracker.increment_gradient_step()
        if (i + 1) % 50 == 0:
            tracker.log_eval(iteration=i, val_loss=6.0 / (i + 1))
        if save_every and (i + 1) % save_every == 0:
            tracker.save()
        if i % 20 == 0:
            print("ITER", i, flush=True)
        time.sleep(0.002)
    print("WANDB_IMPORTED", "wandb" in sys.modules, flush=True)
    print("LOOPED", flush=True)
    time.sleep(600)  # until killed
    """
)


def _spawn(
    log_dir: Path, start: int, stop: int, save_every: int = 0, resume: str = "", own_wandb=False
):
    args = [sys.executable, "-c", TRAINER, str(log_dir), str(start), str(stop), str(save_every)]
    args += [resume, "own-wandb"] if own_wandb else [resume] if resume else []
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def _read_until(proc, prefix: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"child ended before printing {prefix!r}")


def _crash_training(
    log_dir: Path, stop: int, save_every: int, killed_at: int, own_wandb: bool = False
) -> Path:
    """Run a trainer with the mirror, SIGKILL it after iteration ``killed_at``; its run."""
    proc = _spawn(log_dir, 0, stop, save_every=save_every, own_wandb=own_wandb)
    path = Path(_read_until(proc, "PATH ").split(" ", 1)[1])
    _read_until(proc, f"ITER {killed_at}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return path


def _wait_state(path: Path, statuses: set[str], timeout: float = 60.0, not_pid=None) -> dict:
    state = load_experiment_log(path).mirrors.get("wandb", {})
    deadline = time.monotonic() + timeout
    while state.get("status") not in statuses or state.get("pid") == not_pid:
        assert time.monotonic() < deadline, f"mirror state stayed {state}"
        time.sleep(0.1)
        state = load_experiment_log(path).mirrors.get("wandb", {})
    return state


def _pid_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _wandb_train_rows(*sync_dirs: str) -> list[dict]:
    rows = []
    for sync_dir in sync_dirs:
        rows += [r for r in wr.history(sync_dir) if "train/loss" in r]
    return rows


def _exit_code(sync_dir: str) -> int:
    exits = [r for r in wr.records(sync_dir) if r.get("type") == "exit"]
    assert exits, "the W&B run was never ended"
    return int(exits[-1]["exit"].get("exit_code", 0))


@pytest.mark.parametrize("own_wandb", [False, True], ids=["plain", "trainer-uses-wandb-too"])
def test_training_killed_every_journal_row_reaches_wandb_once_and_the_run_is_crashed(
    tmp_path, own_wandb
):
    # With own_wandb the trainer has a wandb service of its own, which dies with it: the
    # mirror must not have joined it.
    path = _crash_training(tmp_path, 400, save_every=120, killed_at=300, own_wandb=own_wandb)
    state = _wait_state(path, {"crashed", "failed", "incomplete"})
    assert state["status"] == "crashed"
    assert _pid_gone(state["pid"]), "the mirror outlived the run"  # no orphan
    local = load_experiment_log(path)
    iterations = [r.iteration for r in local.metrics_history]
    got = [r["iteration"] for r in _wandb_train_rows(state["sync_dir"])]
    assert got == iterations  # every row the journal holds, once, in order
    evals = [r["iteration"] for r in wr.history(state["sync_dir"]) if "val/loss" in r]
    assert evals == [r.iteration for r in local.metrics_history if r.val_loss is not None]
    assert _exit_code(state["sync_dir"]) != 0  # shown as crashed on W&B
    assert state["through_iteration"] == iterations[-1]
    # Segments were handed over and removed once read.
    assert not list(tmp_path.glob(".*.seg-*.jsonl"))


def test_resume_after_a_crash_continues_the_same_wandb_run_without_duplicates(tmp_path):
    path = _crash_training(tmp_path, 300, save_every=100, killed_at=200)
    first = _wait_state(path, {"crashed", "failed", "incomplete"})
    crashed_at = load_experiment_log(path).last_iteration
    # Restart from a checkpoint older than the crash: rows from 150 on are superseded.
    second = _spawn(tmp_path, 150, 260, resume=str(path))
    _read_until(second, "LOOPED")
    second.send_signal(signal.SIGTERM)  # stops the trainer without close(): crash again
    second.wait()
    final = _wait_state(path, {"crashed"}, not_pid=first["pid"])
    assert final["run_id"] == first["run_id"]
    assert final["sync_dir"] != first["sync_dir"]  # wandb writes one offline dir per resume
    got = [r["iteration"] for r in _wandb_train_rows(first["sync_dir"], final["sync_dir"])]
    # Exactly once: the first mirror sent 0..crashed_at; the second only what came after.
    assert got[: crashed_at + 1] == list(range(crashed_at + 1))
    journaled = [r.iteration for r in load_experiment_log(path).metrics_history]
    assert journaled[:150] == list(range(150)) and journaled[150] == 150
    assert got[crashed_at + 1 :] == journaled[150:]  # what the second run's journal held
    assert max(Counter(got[crashed_at + 1 :]).values()) == 1


def test_the_training_process_never_imports_wandb(tmp_path):
    proc = _spawn(tmp_path, 0, 60)
    path = Path(_read_until(proc, "PATH ").split(" ", 1)[1])
    imported = _read_until(proc, "WANDB_IMPORTED")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert imported == "WANDB_IMPORTED False"
    state = _wait_state(path, {"crashed"})
    assert state["rows"] == len(load_experiment_log(path).metrics_history) > 0


def _mirror_after_rows(tracker: ExperimentTracker, rows: int):
    """The tracker's mirror process once it has recorded ``rows`` rows as sent."""
    state_file = RunFiles.of(tracker.path).mirror_state("wandb")
    deadline = time.monotonic() + 60
    while json.loads(state_file.read_text() if state_file.exists() else "{}").get("rows", 0) < rows:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (mirror,) = tracker._mirrors.processes
    return mirror


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_mirror_that_dies_or_is_stopped_leaves_training_alone_and_push_completes_it(
    tmp_path, signum
):
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="mirror_ends"), log_dir=tmp_path, sinks=["wandb"]
    )
    for i in range(50):
        tracker.log_metrics(i, 1.0 / (i + 1))
    mirror = _mirror_after_rows(tracker, 50)
    mirror.process.send_signal(signum)
    mirror.process.wait(60)
    for i in range(50, 120):  # training goes on
        tracker.log_metrics(i, 1.0 / (i + 1))
    tracker.save()  # no mirror to hand segments to: nothing is kept for it
    assert not list(tmp_path.glob(".*.seg-*.jsonl"))
    tracker.finish()
    local = load_experiment_log(tracker.path)
    assert local.last_iteration == 119
    state = local.mirrors["wandb"]
    time.sleep(1.1)  # offline wandb names a run's folder by id and second: keep them apart
    pushed = push_run(tracker.path)
    if signum == signal.SIGKILL:
        # Killed: what wandb kept of the rows handed to it is unknown, so all go to a new run.
        assert state["status"] == "failed" and "exited with code" in state["error"]
        assert pushed["replaced"] == state["run_id"] and pushed["pushed_rows"] == 120
        got = [r["iteration"] for r in _wandb_train_rows(pushed["sync_dir"])]
    else:
        # Stopped: the mirror ended the W&B run cleanly; push continues it with what it lacks.
        assert state["status"] == "incomplete" and state["durable"] is True
        assert pushed["run_id"] == state["run_id"] and "replaced" not in pushed
        assert pushed["pushed_rows"] == 119 - state["through_iteration"] > 0
        got = [r["iteration"] for r in _wandb_train_rows(state["sync_dir"], pushed["sync_dir"])]
    assert got == list(range(120))
    assert _exit_code(pushed["sync_dir"]) == 0
    assert push_run(tracker.path)["pushed"] is False


def test_rotation_while_mirroring_loses_and_repeats_nothing(tmp_path):
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="rotating"), log_dir=tmp_path, sinks=["wandb"]
    )
    for i in range(600):
        tracker.log_metrics(i, 1.0 / (i + 1))
        tracker.increment_gradient_step()
        if (i + 1) % 100 == 0:
            tracker.log_eval(iteration=i, val_loss=2.0)
        if (i + 1) % 37 == 0:
            tracker.save()  # rotates the journal under the mirror's feet
    tracker.finish()
    state = load_experiment_log(tracker.path).mirrors["wandb"]
    assert state["status"] == "finished" and state["rows"] == 600 and state["evals"] == 6
    assert [r["iteration"] for r in _wandb_train_rows(state["sync_dir"])] == list(range(600))
    assert _exit_code(state["sync_dir"]) == 0
    leftovers = run_files_in(tmp_path)
    assert leftovers == [tracker.path.name]  # journal, segments, state and lock files gone


def test_a_mirror_finish_stopped_waiting_for_finishes_and_records_itself(tmp_path):
    # finish(sink_timeout=0) returns before the mirror has even started; the trainer goes on
    # living (a notebook, a sweep). The mirror must still end the W&B run as finished, with
    # its summary, write its final state into the document and remove its own files.
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="detached"), log_dir=tmp_path, sinks=["wandb"]
    )
    for i in range(50):
        tracker.log_metrics(i, 1.0 / (i + 1))
        if i % 20 == 19:
            tracker.save()
    tracker.finish(sink_timeout=0)
    raw = json.loads(tracker.path.read_text())
    assert raw["mirrors"]["wandb"]["status"] == "incomplete"
    assert "goes on in the background" in raw["mirrors"]["wandb"]["error"]
    deadline = time.monotonic() + 60
    while json.loads(tracker.path.read_text())["mirrors"]["wandb"]["status"] != "finished":
        assert time.monotonic() < deadline, json.loads(tracker.path.read_text())["mirrors"]
        time.sleep(0.1)
    state = json.loads(tracker.path.read_text())["mirrors"]["wandb"]
    assert state["rows"] == 50 and state["durable"] is True
    _pid_gone(state["pid"])
    assert [r["iteration"] for r in _wandb_train_rows(state["sync_dir"])] == list(range(50))
    assert _exit_code(state["sync_dir"]) == 0
    assert wr.summary(state["sync_dir"])["final_train_loss"] == pytest.approx(1 / 50)
    assert run_files_in(tmp_path) == [tracker.path.name]


def test_resume_after_mirror_and_trainer_were_killed_starts_a_new_complete_wandb_run(tmp_path):
    # What wandb kept of what a killed mirror handed it is unknown: continuing its run could
    # duplicate rows, so the resumed run's mirror sends the whole history to a new W&B run.
    proc = _spawn(tmp_path, 0, 2000)
    path = Path(_read_until(proc, "PATH ").split(" ", 1)[1])
    _read_until(proc, "ITER 200")
    state = _wait_state(path, {"running"})
    os.kill(state["pid"], signal.SIGKILL)  # the mirror first, then the whole job
    _read_until(proc, "ITER 300")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    second = _spawn(tmp_path, 0, 0, resume=str(path))  # resume, log nothing more
    _read_until(second, "LOOPED")
    second.send_signal(signal.SIGKILL)
    second.wait()
    final = _wait_state(path, {"crashed"}, not_pid=state["pid"])
    assert final["replaced"] == state["run_id"] and final["run_id"] != state["run_id"]
    got = [r["iteration"] for r in _wandb_train_rows(final["sync_dir"])]
    assert got == [r.iteration for r in load_experiment_log(path).metrics_history]


def test_push_after_a_restart_from_an_older_checkpoint_sends_the_replacing_rows(tmp_path):
    config = ExperimentConfig(experiment_name="rollback_push")
    first = ExperimentTracker(config, log_dir=tmp_path, sinks=["wandb"])
    for i in range(100):
        first.log_metrics(i, 1.0)
    first.close()  # the mirror ends the W&B run cleanly: it holds 0..99 at loss 1.0
    second = ExperimentTracker(config, log_dir=tmp_path, resume=first.path)  # no sink
    for i in range(50, 120):  # restarted from the checkpoint at 50
        second.log_metrics(i, 0.5)
    second.finish()
    before = load_experiment_log(first.path).mirrors["wandb"]
    time.sleep(1.1)  # offline wandb names a run's folder by id and second: keep them apart
    pushed = push_run(first.path)
    assert pushed["run_id"] == before["run_id"] and pushed["pushed_rows"] == 70
    latest: dict[int, float] = {}
    for row in _wandb_train_rows(before["sync_dir"], pushed["sync_dir"]):
        latest[row["iteration"]] = wr.as_float(row["train/loss"])
    assert [latest[i] for i in (0, 49, 50, 99, 119)] == [1.0, 1.0, 0.5, 0.5, 0.5]
