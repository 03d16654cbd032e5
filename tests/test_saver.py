"""``runtime/saver``: background saves. ``save()`` returns before the document is written,
saves queue behind a slow write, a save killed or failing loses nothing flushed and never
raises into the training loop, and a resumed run tidies what a killed save left."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from helpers import hold_document_writes, started_tracker

from cs336_basics import ExperimentConfig, ExperimentTracker
from cs336_basics.experiment_log import load_experiment_log

HERE = Path(__file__).resolve().parent


def test_save_returns_before_the_document_is_written_and_nothing_is_missing(tmp_path, monkeypatch):
    tracker = started_tracker(tmp_path)
    for i in range(5000):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.save(wait=True)
    gate = threading.Event()
    hold_document_writes(monkeypatch, gate)
    for i in range(5000, 9000):
        tracker.log_metrics(iteration=i, train_loss=0.5)
    started = time.perf_counter()
    tracker.save()
    took = time.perf_counter() - started
    assert tracker.health()["save"] == "writing"
    tracker.log_metrics(iteration=9000, train_loss=0.25)  # logging goes on meanwhile
    tracker.flush()
    # The document on disk is still the old one; loading reads it, the kept journal and
    # the live journal: every row, once.
    assert len(orjson.loads(tracker.path.read_bytes())["metrics_history"]) == 5000
    assert [p.name for p in tmp_path.glob(".*.kept-*")] != []
    loaded = load_experiment_log(tracker.path)
    assert loaded.metrics_history.column("iteration") == list(range(9001))
    gate.set()
    tracker.save(wait=True)
    assert len(orjson.loads(tracker.path.read_bytes())["metrics_history"]) == 9001
    assert list(tmp_path.glob(".*.kept-*")) == []  # the document holds them now
    assert took < 1.0  # the write was held for the whole wait: save() did not wait for it
    tracker.finish()


def test_saves_queue_behind_a_slow_write_and_the_newest_wins(tmp_path, monkeypatch):
    tracker = started_tracker(tmp_path)
    gate = threading.Event()
    hold_document_writes(monkeypatch, gate)
    for k in range(5):
        for i in range(k * 100, (k + 1) * 100):
            tracker.log_metrics(iteration=i, train_loss=1.0)
        tracker.save()
    assert load_experiment_log(tracker.path).last_iteration == 499  # kept chain complete
    gate.set()
    tracker.save(wait=True)
    doc = orjson.loads(tracker.path.read_bytes())
    assert doc["save_id"] == 5 and len(doc["metrics_history"]) == 500
    tracker.finish()
    assert load_experiment_log(tracker.path).last_iteration == 499


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4, 5])
def test_sigkill_during_a_background_save_loses_nothing_flushed(tmp_path, seed):
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "crash_child.py"), "bgsave", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + 60
    while sum(line.startswith("SAVE") for line in lines) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.0, 0.5))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    flushed = [int(line.split()[1]) for line in list(lines) if line.startswith("FLUSHED")]
    path = Path(next(line for line in lines if line.startswith("PATH")).split(" ", 1)[1])
    assert flushed
    # Killed inside a save: its kept journal is still there (a save is always under way).
    assert list(tmp_path.glob(".*.kept-*"))
    orjson.loads(path.read_bytes())  # the document is whole (old or new), never torn
    log = load_experiment_log(path)
    iterations = log.metrics_history.column("iteration")
    assert iterations == list(range(len(iterations)))  # every row once, in order
    assert iterations[-1] >= max(flushed)
    assert log.status == "unfinished"
    # A resumed run goes on from there and tidies the kept journals.
    resumed = ExperimentTracker(ExperimentConfig(experiment_name="crashy"), resume=path)
    resumed.start()
    assert list(tmp_path.glob(".*.kept-*")) == []
    resumed.log_metrics(iteration=len(iterations), train_loss=0.1)
    resumed.finish()
    assert load_experiment_log(path).last_iteration == len(iterations)


def test_a_failing_background_save_never_raises_into_the_loop(tmp_path, monkeypatch):
    import errno

    import cs336_basics.runtime.journal_writer as journal_module
    import cs336_basics.store.fileio as storage

    tracker = started_tracker(tmp_path, "full")
    for i in range(100):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.save(wait=True)

    def enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "_write", enospc)  # the disk fills up
    monkeypatch.setattr(storage.os, "replace", enospc)
    for i in range(100, 200):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    assert tracker.save() == tracker.path  # no exception in the training loop
    assert tracker.health()["save"] == "failed"
    with pytest.raises(OSError) as raised:
        tracker.save(wait=True)  # asked to wait: then it says so
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    tracker.finish()
    assert load_experiment_log(tracker.path).metrics_history.column("iteration") == list(range(200))


def test_an_eval_with_a_nan_extra_survives_a_crash_and_a_resume(tmp_path):
    tracker = started_tracker(tmp_path, "nan-extra")
    for i in range(10_000):  # the eval below lands in a frozen chunk
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.save(wait=True)
    tracker.log_eval(iteration=100, val_loss=0.7, accuracy=float("inf"))
    tracker.log_eval(iteration=9999, val_loss=0.5, accuracy=float("nan"))
    tracker.flush()
    tracker.close()  # the evals are in the journal only
    log = load_experiment_log(tracker.path)
    assert log.metrics_history[100].val_loss == 0.7
    assert log.metrics_history[100].extra == {"accuracy": math.inf}
    assert log.metrics_history[9999].val_loss == 0.5
    assert math.isnan(log.metrics_history[9999].extra["accuracy"])
    resumed = ExperimentTracker(ExperimentConfig(experiment_name="nan-extra"), resume=tracker.path)
    resumed.start()
    resumed.finish()
    assert load_experiment_log(tracker.path).metrics_history[100].val_loss == 0.7


def test_save_after_close_says_how_to_go_on(tmp_path):
    tracker = started_tracker(tmp_path, "closed")
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.close()
    with pytest.raises(RuntimeError, match=r"save\(\): this tracker was closed.*resume="):
        tracker.save()


def test_temporary_files_of_a_killed_save_are_removed_on_resume(tmp_path):
    tracker = started_tracker(tmp_path, "temps")
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.save(wait=True)
    tracker.close()
    dead = 2**22 + 12345  # above the default pid_max: never a live process
    stem = tracker.path.stem
    leftovers = [
        tmp_path / f".{stem}.json.tmp-{dead}-1",
        tmp_path / f".{stem}.columns.tmp-{dead}-1",
        tmp_path / f".{stem}.jsonl.tmp-{dead}",
    ]
    alive = tmp_path / f".{stem}.json.tmp-{os.getpid()}-7"
    for leftover in (*leftovers, alive):
        leftover.write_bytes(b"{")
    resumed = ExperimentTracker(ExperimentConfig(experiment_name="temps"), resume=tracker.path)
    resumed.start()
    assert [p for p in leftovers if p.exists()] == [] and alive.exists()
    resumed.finish()


SIGNAL_SAVE = r"""
import os, signal, sys
import cs336_basics.core.history as history
from cs336_basics import ExperimentConfig, ExperimentTracker
tracker = ExperimentTracker(ExperimentConfig(experiment_name="signal"), log_dir=sys.argv[1])
tracker.start()
signal.signal(signal.SIGUSR1, lambda *a: tracker.save())  # a preemption handler
real_copy = history.copy
def copy_then_signal(row):  # the signal lands while the history hands a row out
    os.kill(os.getpid(), signal.SIGUSR1)
    return real_copy(row)
history.copy = copy_then_signal
for i in range(200):
    tracker.log_metrics(iteration=i, train_loss=1.0)
    if i % 10 == 9:
        tracker.log_eval(iteration=i, val_loss=0.5)  # reads the row back: the window
tracker.finish()
print("done", len(tracker.log.metrics_history))
"""


def test_a_signal_handler_that_saves_never_deadlocks(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SIGNAL_SAVE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.split() == ["done", "200"], out.stderr[-2000:]
    log = load_experiment_log(next(tmp_path.glob("*.json")))
    assert log.metrics_history.column("iteration") == list(range(200))
    assert log.metrics_history.column("val_loss")[9::10] == [0.5] * 20
