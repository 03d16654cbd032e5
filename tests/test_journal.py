"""The journal writer: it drains on close, survives I/O errors, and never stops for good.

Race windows are widened deterministically (a delay injected exactly where the window is);
I/O faults are injected at the writer's one ``os.write`` seam.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import expect_log

import cs336_basics.runtime.journal_writer as journal_mod
from cs336_basics import ExperimentConfig, ExperimentTracker, load_experiment_log
from cs336_basics.runtime.journal_writer import JournalWriter

SRC = Path(__file__).resolve().parents[1] / "src"


def _rows_on_disk(tracker: ExperimentTracker) -> list[int]:
    return [r.iteration for r in load_experiment_log(tracker.path).metrics_history]


def _wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_close_drains_rows_queued_while_the_thread_sits_between_write_and_loop_check(
    tmp_path, monkeypatch
):
    # The window of the old bug: the thread has written and not yet looked at the stop flag
    # when close() runs; rows queued meanwhile must still be written.
    real = JournalWriter._write_pending
    in_window = threading.Event()
    armed = {"on": False}

    def write_then_linger(self, sync=False):
        real(self, sync)
        if armed["on"] and threading.current_thread() is self._thread:
            armed["on"] = False
            in_window.set()
            time.sleep(0.3)

    monkeypatch.setattr(JournalWriter, "_write_pending", write_then_linger)
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="window"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    armed["on"] = True
    tracker._saves.journal.wake()
    assert in_window.wait(5)
    for i in range(1, 5000):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.close()
    assert _rows_on_disk(tracker) == list(range(5000))


@pytest.mark.slow
def test_log_then_close_200_times_loses_nothing(tmp_path):
    lost = []
    for trial in range(200):
        tracker = ExperimentTracker(
            ExperimentConfig(experiment_name=f"stress{trial}"), log_dir=tmp_path
        )
        log = tracker.log_metrics
        for i in range(20_000):
            log(i, 1.0)
        tracker.close()
        on_disk = tracker.path.with_suffix(".jsonl").read_bytes().count(b'"k":"m"')
        if on_disk != 20_000:
            lost.append((trial, 20_000 - on_disk))
    assert lost == []


@pytest.mark.slow
def test_a_tracker_left_open_at_interpreter_exit_writes_every_row(tmp_path):
    child = textwrap.dedent(
        """
        import sys
        from cs336_basics import ExperimentConfig, ExperimentTracker
        tracker = ExperimentTracker(ExperimentConfig(experiment_name="exit"),
                                    log_dir=sys.argv[1])
        for i in range(20_000):
            tracker.log_metrics(i, 1.0)
        print(tracker.path)
        """
    )
    for trial in range(10):
        out = subprocess.run(
            [sys.executable, "-c", child, str(tmp_path / str(trial))],
            capture_output=True,
            text=True,
            check=True,
        )
        log = load_experiment_log(out.stdout.strip())
        assert [r.iteration for r in log.metrics_history] == list(range(20_000))
        assert log.status == "unfinished"


class FlakyDisk:
    """Stands in for ``os.write``: fails with ``errno`` until healed; ``partial`` first
    writes half of one call's bytes (a torn line the retry must complete)."""

    def __init__(self, err: int, partial: bool = False) -> None:
        self.err = err
        self.partial = partial
        self.broken = threading.Event()
        self.failures = 0

    def __call__(self, fd, data):
        if self.broken.is_set():
            if self.partial and self.failures == 0 and len(data) > 1:
                self.failures += 1
                return journal_mod.os.write(fd, data[: len(data) // 2])
            self.failures += 1
            raise OSError(self.err, journal_mod.os.strerror(self.err))
        return journal_mod.os.write(fd, data)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    ("err", "partial"), [(errno.ENOSPC, False), (errno.EIO, False), (errno.ENOSPC, True)]
)
def test_io_errors_are_retried_and_nothing_is_lost(tmp_path, monkeypatch, caplog, err, partial):
    disk = FlakyDisk(err, partial)
    monkeypatch.setattr(journal_mod, "_write", disk)
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="flaky"), log_dir=tmp_path, flush_interval=0.05
    )
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.flush()
    disk.broken.set()
    with expect_log(caplog, r"cannot write the journal.*behind", level=40):
        for i in range(1, 300):
            tracker.log_metrics(iteration=i, train_loss=1.0 / i)
            if i % 100 == 0:
                tracker.log_eval(iteration=i, val_loss=2.0)
        _wait(lambda: disk.failures >= 3)  # retried, not given up
    health = tracker.health()
    assert health["journal"] == "behind" and health["journal_backlog"] > 0
    assert journal_mod.os.strerror(err) in health["journal_error"]
    reports = [r for r in caplog.records if "cannot write the journal" in r.getMessage()]
    assert len(reports) == 1  # one message, however many retries
    with expect_log(caplog, "written again"):
        disk.broken.clear()
        _wait(lambda: tracker.health()["journal"] == "ok", timeout=10)
    tracker.log_metrics(iteration=300, train_loss=0.1)
    tracker.flush()
    # The journal alone (what a crash would leave) holds every row once, no torn line.
    lines = tracker.path.with_suffix(".jsonl").read_bytes().splitlines()
    recovered = load_experiment_log(tracker.path.with_suffix(".jsonl"))
    assert [r.iteration for r in recovered.metrics_history] == list(range(301))
    assert recovered.metrics_history[200].val_loss == 2.0
    assert len(lines) == 1 + 301 + 2  # header, rows, evals
    tracker.finish()
    assert len(load_experiment_log(tracker.path).metrics_history) == 301


def test_a_failing_rotation_is_redone_by_the_thread(tmp_path, monkeypatch, caplog):
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="rotate"), log_dir=tmp_path, flush_interval=0.05
    )
    tracker.log_metrics(iteration=0, train_loss=1.0)
    real_open = JournalWriter._open_fresh
    calls = {"n": 0}

    def failing_open(self):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_open(self)

    monkeypatch.setattr(JournalWriter, "_open_fresh", failing_open)
    with expect_log(caplog, "cannot write the journal"):
        tracker.save()  # the document is written; the fresh journal is not, yet
    for i in range(1, 10):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    _wait(lambda: tracker.health()["journal"] == "ok" and calls["n"] >= 2)
    tracker.flush()
    assert _rows_on_disk(tracker) == list(range(10))  # document + fresh journal
    tracker.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iteration": 2**70}, "iteration: expected an integer from 0 to 2\\*\\*53 - 1"),
        ({"iteration": 0, "gradient_step": 2**64}, "gradient_step: expected an integer"),
        ({"iteration": -1}, "iteration: expected an integer from 0"),
        ({"iteration": 0, "train_loss": 10**400}, "train_loss: expected a number that fits"),
        ({"iteration": 0, "grad_norm": 10**400}, "grad_norm: expected a number that fits"),
    ],
)
def test_values_the_format_cannot_hold_are_refused_at_the_call(tmp_path, kwargs, message):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="huge"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    with pytest.raises(ValueError, match=message):
        tracker.log_metrics(**kwargs)
    tracker.log_metrics(iteration=1, train_loss=0.5)  # the journal goes on
    tracker.flush()
    assert (
        load_experiment_log(tracker.path.with_suffix(".jsonl")).metrics_history[-1].iteration == 1
    )
    tracker.finish()
    assert _rows_on_disk(tracker) == [0, 1]


def test_a_record_the_encoder_refuses_is_left_out_and_the_journal_goes_on(tmp_path, caplog):
    # A safety net for bugs: validation should make this unreachable from the public API.
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="net"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    with expect_log(caplog, "could not be encoded", level=40):
        tracker._saves.journal.append({"k": "n", "notes": object()})
        tracker.flush()
    tracker.log_metrics(iteration=1, train_loss=1.0)
    tracker.flush()
    assert load_experiment_log(tracker.path.with_suffix(".jsonl")).last_iteration == 1
    tracker.close()


def test_a_bad_journal_row_is_named_and_skipped_the_rest_replays(tmp_path, caplog):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="badrow"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.flush()
    journal = tracker.path.with_suffix(".jsonl")
    with open(journal, "ab") as handle:
        handle.write(b'{"k":"m","r":{"iteration":1,"gradient_step":1,"wallclock_time":0.1,')
        handle.write(b'"train_loss":"abc"}}\n')
    tracker.log_metrics(iteration=2, train_loss=0.5)
    tracker.flush()
    with expect_log(caplog, r"line 3: bad 'm' record skipped \(.*line 3\.train_loss: expected"):
        log = load_experiment_log(journal)
    assert [r.iteration for r in log.metrics_history] == [0, 2]
    tracker.close()


def test_a_journal_header_with_a_bad_field_is_a_format_error(tmp_path):
    from cs336_basics import LogFormatError

    journal = tmp_path / "experiment_x_20260101_000000.jsonl"
    journal.write_bytes(b'{"k":"h","config":{},"start_time":12,"base":null}\n')
    with pytest.raises(LogFormatError, match="header start_time: expected a string"):
        load_experiment_log(journal)
