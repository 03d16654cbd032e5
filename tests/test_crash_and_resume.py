import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import dead_pid, expect_log, simulate_death

from cs336_basics.experiment_analysis import ExperimentAnalyzer
from cs336_basics.experiment_log import (
    ExperimentConfig,
    ExperimentTracker,
    load_experiment_log,
)

HERE = Path(__file__).resolve().parent


def _spawn(mode: str, log_dir: Path) -> tuple[subprocess.Popen, list[tuple[float, str]]]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "crash_child.py"), mode, str(log_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[tuple[float, str]] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic(), line.strip()))

    threading.Thread(target=reader, daemon=True).start()
    return proc, lines


def _wait_for(lines, prefix, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, line in lines:
            if line.startswith(prefix):
                return line
        time.sleep(0.01)
    raise AssertionError(f"child never printed {prefix!r}")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_during_training_loses_at_most_one_second(tmp_path, seed):
    proc, lines = _spawn("train", tmp_path)
    path = Path(_wait_for(lines, "PATH ").split(" ", 1)[1])
    _wait_for(lines, "ITER ")
    time.sleep(random.Random(seed).uniform(1.5, 3.0))
    proc.kill()
    killed_at = time.monotonic()
    proc.wait()
    # Every iteration the child had reported at least 1 s before the kill must be on disk.
    safe = [
        int(line.split()[1])
        for t, line in lines
        if line.startswith("ITER") and t <= killed_at - 1.0
    ]
    assert safe, "child reported too little before the kill"
    log = load_experiment_log(path)
    assert log.status == "unfinished"
    iterations = [row.iteration for row in log.metrics_history]
    assert iterations == list(range(len(iterations)))  # contiguous, no duplicates
    assert iterations[-1] >= max(safe)
    assert log.config.experiment_name == "crashy"
    # The analyzer lists it too, marked unfinished.
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all()
    assert analyzer.logs["crashy"].status == "unfinished"


@pytest.mark.slow
def test_sigkill_during_save_never_leaves_a_torn_file(tmp_path):
    proc, lines = _spawn("save", tmp_path)
    path = Path(_wait_for(lines, "PATH ").split(" ", 1)[1])
    _wait_for(lines, "SAVING")
    time.sleep(random.uniform(0.2, 1.0))
    proc.kill()
    proc.wait()
    log = load_experiment_log(path)
    assert len(log.metrics_history) in (20_000, 20_001)
    assert [r.iteration for r in log.metrics_history[:20_000]] == list(range(20_000))
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    assert analyzer.problems == []  # a leftover temp file of the killed save is not a run
    assert len(analyzer.logs) == 1


def test_torn_last_journal_line_is_skipped(tmp_path, caplog):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="torn"), log_dir=tmp_path)
    for i in range(5):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.flush()
    simulate_death(tracker)
    journal = tracker.path.with_suffix(".jsonl")
    # The writer died mid-line: its header names a process that is gone (a live writer's
    # last line may still be growing, and is not reported).
    header, rest = journal.read_bytes().split(b"\n", 1)
    record = json.loads(header)
    record["pid"] = dead_pid()
    journal.write_bytes(json.dumps(record).encode() + b"\n" + rest)
    with open(journal, "ab") as handle:
        handle.write(b'{"k":"m","r":{"iteration":5,"gradi')
    with expect_log(caplog, "torn"):
        log = load_experiment_log(journal)
    assert [r.iteration for r in log.metrics_history] == [0, 1, 2, 3, 4]


def test_resume_continues_steps_wallclock_and_history(tmp_path):
    config = ExperimentConfig(experiment_name="resumable")
    first = ExperimentTracker(config, log_dir=tmp_path)
    for i in range(10):
        first.log_metrics(iteration=i, train_loss=10.0 - i)
        first.increment_gradient_step()
    first.save()
    path = first.path
    last_wall = first.log.metrics_history[-1].wallclock_time
    first.close()
    time.sleep(0.5)  # downtime must not show up on the wall-clock axis

    second = ExperimentTracker(config, log_dir=tmp_path, resume=path)
    second.start()
    second.log_metrics(iteration=10, train_loss=0.5)
    second.increment_gradient_step()
    log = second.finish()
    assert second.path == path
    rows = log.metrics_history
    assert [r.iteration for r in rows] == list(range(11))
    assert rows[-1].gradient_step == 11
    assert last_wall <= rows[-1].wallclock_time < last_wall + 0.3
    assert load_experiment_log(path).metrics_history == rows
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_resume_a_crashed_run_from_its_journal(tmp_path):
    config = ExperimentConfig(experiment_name="crashed")
    first = ExperimentTracker(config, log_dir=tmp_path)
    for i in range(7):
        first.log_metrics(iteration=i, train_loss=1.0)
        first.increment_gradient_step()
    first.flush()
    journal = first.path.with_suffix(".jsonl")
    simulate_death(first)
    assert not first.path.exists()

    crashed = load_experiment_log(journal)
    assert len(crashed.metrics_history) == 7
    second = ExperimentTracker(config, log_dir=tmp_path, resume=crashed)
    for i in range(7, 9):
        second.log_metrics(iteration=i, train_loss=0.5)
        second.increment_gradient_step()
    log = second.finish()
    assert [r.gradient_step for r in log.metrics_history] == list(range(1, 10))
    assert log.status == "finished"
    assert not journal.exists()


def test_resume_from_older_checkpoint_supersedes_rows(tmp_path):
    config = ExperimentConfig(experiment_name="rollback")
    first = ExperimentTracker(config, log_dir=tmp_path)
    for i in range(10):
        first.log_metrics(iteration=i, train_loss=float(i))
        first.increment_gradient_step()
    first.save()
    first.close()

    second = ExperimentTracker(config, log_dir=tmp_path, resume=first.path)
    for i in range(6, 12):  # the checkpoint was at iteration 6
        second.log_metrics(iteration=i, train_loss=100.0 + i)
        second.increment_gradient_step()
    log = second.finish()
    assert [r.iteration for r in log.metrics_history] == list(range(12))
    assert [r.train_loss for r in log.metrics_history[6:]] == [100.0 + i for i in range(6, 12)]
    assert [r.gradient_step for r in log.metrics_history] == list(range(1, 13))
    assert [r.iteration for r in log.superseded_history] == [6, 7, 8, 9]
    reloaded = load_experiment_log(first.path)
    assert reloaded.superseded_history == log.superseded_history
    assert reloaded.metrics_history == log.metrics_history


def test_guide_resume_snippet_keeps_working(tmp_path):
    first = ExperimentTracker(ExperimentConfig(experiment_name="prev"), log_dir=tmp_path)
    first.log_metrics(iteration=0, train_loss=1.0)
    first.finish()
    old_log = load_experiment_log(first.path)
    tracker = ExperimentTracker(old_log.config, log_dir=tmp_path)
    tracker.start()
    tracker.log_metrics(iteration=0, train_loss=0.9)
    tracker.finish()
    assert tracker.path != first.path and tracker.log.config == old_log.config


def test_journal_written_without_flush_within_a_second(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="bg"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    journal = tracker.path.with_suffix(".jsonl")
    deadline = time.monotonic() + 1.0
    while b'"k":"m"' not in journal.read_bytes():
        assert time.monotonic() < deadline, "journal not written within 1 s"
        time.sleep(0.02)
    tracker.close()
