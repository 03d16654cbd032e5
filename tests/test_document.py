"""``store/document``: saves that append in O(new rows) write exactly what writing the whole
document writes, and a save cut short in the middle of appending loses nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from dashboard_helpers import wait_until

from cs336_basics import ExperimentConfig, ExperimentTracker, load_experiment_log
from cs336_basics.store.cache import read_cache
from cs336_basics.store.codec import encode_log
from cs336_basics.store.layout import RunFiles

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_every_save_is_byte_for_byte_a_whole_rewrite(tmp_path: Path) -> None:
    """Rows, evals of old iterations, restarts from older checkpoints, extras that come and
    go, saves at random moments: after each save the file is exactly the whole document,
    and its cache reads back the same run."""
    rng = random.Random(7)
    # (no system samples: one taken between a save and the check would be in the log only)
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="exact"), log_dir=tmp_path, system_interval=0
    )
    it = 0
    appended = 0
    for _ in range(40):
        for _ in range(rng.randrange(500, 6000)):
            extra = {"grad_norm": rng.random()} if rng.random() < 0.3 else {}
            tracker.log_metrics(it, train_loss=3.0 - it * 1e-5, learning_rate=1e-3, **extra)
            tracker.increment_gradient_step()
            it += 1
        roll = rng.random()
        if roll < 0.1 and it > 100:  # a restart from an older checkpoint
            it = rng.randrange(it // 2, it)
        elif roll < 0.2:
            tracker.log_eval(rng.randrange(max(it - 9000, 0), it), val_loss=rng.random())
        inode = os.stat(tracker.path).st_ino if tracker.path.exists() else None
        tracker.save(wait=True)
        appended += os.stat(tracker.path).st_ino == inode
        save_id = tracker._saves.save_id
        assert tracker.path.read_bytes() == encode_log(tracker.log, save_id)
        cached = read_cache(tracker.path)
        assert cached is not None and cached.metrics_facts.rows == len(tracker.log.metrics_history)
    assert appended >= 20  # most saves appended in place (the file kept its inode)
    tracker.finish()
    assert tracker.path.read_bytes() == encode_log(tracker.log, tracker._saves.save_id)
    assert load_experiment_log(tracker.path) == tracker.log


CHILD = textwrap.dedent(
    """
    import sys, time
    import cs336_basics.store.document as document
    from cs336_basics import ExperimentConfig, ExperimentTracker
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="cut"), log_dir=sys.argv[1])
    for i in range(20000):
        tracker.log_metrics(i, train_loss=1.0 + i)
    tracker.save(wait=True)  # the whole document, with 4 frozen blocks
    for i in range(20000, 30000):
        tracker.log_metrics(i, train_loss=1.0 + i)
    real = document.tail_bytes
    def stuck(*args, **kwargs):  # the next rows are in the file, the rest never comes
        print("appending", flush=True)
        time.sleep(60)
        return real(*args, **kwargs)
    document.tail_bytes = stuck
    tracker.save()
    for i in range(30000, 30500):  # training goes on, into the journal
        tracker.log_metrics(i, train_loss=1.0 + i)
    tracker.flush()
    print("flushed", flush=True)
    time.sleep(60)
    """
)


def test_a_save_killed_while_appending_loses_nothing(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = [child.stdout.readline().strip(), child.stdout.readline().strip()]
        assert sorted(lines) == ["appending", "flushed"], lines
        (document,) = tmp_path.glob("*.json")
        files = RunFiles.of(document)
        assert files.undo.exists()  # cut in the middle: the document ends with bare rows
        # A reader now (the page, the CLI) reads the old document and the journals.
        log = load_experiment_log(document)
        assert log.metrics_history.column("iteration") == list(range(30500))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    log = load_experiment_log(document)
    assert log.metrics_history.column("iteration") == list(range(30500))
    assert log.status == "unfinished"
    resumed = ExperimentTracker(ExperimentConfig(experiment_name="cut"), resume=document)
    resumed.start()
    assert not files.undo.exists()  # the writer restored the document first
    resumed.log_metrics(30500, train_loss=0.5)
    resumed.finish()
    log = load_experiment_log(document)
    assert log.metrics_history.column("iteration") == list(range(30501))
    assert document.read_bytes() == encode_log(log, resumed._saves.save_id)


def test_a_reader_during_an_append_gets_the_old_document_then_the_new(tmp_path: Path) -> None:
    import cs336_basics.store.document as document_module

    tracker = ExperimentTracker(ExperimentConfig(experiment_name="race"), log_dir=tmp_path)
    for i in range(10000):
        tracker.log_metrics(i, train_loss=1.0)
    tracker.save(wait=True)
    for i in range(10000, 20000):
        tracker.log_metrics(i, train_loss=2.0)
    real = document_module.tail_bytes
    paused = []

    def slow(*args, **kwargs):
        paused.append(time.monotonic())
        time.sleep(0.5)
        return real(*args, **kwargs)

    document_module.tail_bytes = slow
    try:
        tracker.save()
        wait_until(lambda: paused, 5)
        log = load_experiment_log(tracker.path)  # mid-append: every row, from the old + journals
        assert log.metrics_history.column("iteration") == list(range(20000))
        tracker._saves.wait_saved()
    finally:
        document_module.tail_bytes = real
    log = load_experiment_log(tracker.path)
    assert log.metrics_history.column("iteration") == list(range(20000))
    tracker.finish()
