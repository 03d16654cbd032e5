"""No tracker problem reaches the training loop; misuse is refused loudly, at the call."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from helpers import by_numpy, expect_log, made, need

import cs336_basics.store.fileio as storage
from cs336_basics import (
    ExperimentConfig,
    ExperimentTracker,
    InMemorySink,
    RunClosedError,
    RunInUseError,
    Sink,
    load_experiment_log,
)


def _train(tracker: ExperimentTracker, start: int, stop: int) -> None:
    for i in range(start, stop):
        tracker.log_metrics(iteration=i, train_loss=1.0 / (i + 1), learning_rate=1e-3)
        tracker.increment_gradient_step()
        if (i + 1) % 10 == 0:
            tracker.log_eval(iteration=i, val_loss=2.0 / (i + 1))


# --------------------------------------------------------------------------- sinks


class BrokenSink(InMemorySink):
    """Raises from one chosen method."""

    name = "broken"

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method = method

    def _maybe_fail(self, method: str) -> None:
        if method == self.method:
            raise ConnectionResetError(f"{method} exploded")

    def start(self, log):
        self._maybe_fail("start")
        super().start(log)

    def emit(self, row):
        self._maybe_fail("emit")
        super().emit(row)

    def emit_eval(self, row):
        self._maybe_fail("emit_eval")
        super().emit_eval(row)

    def finish(self, log):
        self._maybe_fail("finish")
        super().finish(log)

    def flush(self):
        self._maybe_fail("flush")
        super().flush()

    def close(self):
        self._maybe_fail("close")
        super().close()


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("method", ["start", "emit", "emit_eval", "finish", "flush", "close"])
def test_a_failing_sink_never_reaches_the_loop_even_with_warnings_as_errors(
    tmp_path, caplog, method
):
    sink, healthy = BrokenSink(method), InMemorySink()
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="broken"), log_dir=tmp_path, sinks=[sink, healthy]
    )
    with expect_log(caplog, f"sink 'broken' failed to {method}|failed in {method}"):
        _train(tracker, 0, 30)
        tracker.flush()
        tracker.finish()
    local = load_experiment_log(tracker.path)
    assert local.last_iteration == 29 and local.status == "finished"
    assert len(healthy.rows) == 30 and len(healthy.evals) == 3 and healthy.finished
    if method != "close":  # a failing close() is reported, the mirror had finished
        assert local.mirrors["broken"]["status"] == "failed"
        assert f"{method} exploded" in local.mirrors["broken"]["error"]


class StuckSink(Sink):
    name = "stuck"

    def __init__(self) -> None:
        self.release = threading.Event()

    def emit(self, row):
        self.release.wait(30)


@pytest.mark.filterwarnings("error")
def test_a_sink_that_falls_behind_is_recorded_as_incomplete_not_running(tmp_path, caplog):
    sink = StuckSink()
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="stuck"),
        log_dir=tmp_path,
        sinks=[sink],
        sink_queue_size=20,
    )
    with expect_log(caplog, "events behind"):
        _train(tracker, 0, 100)
    with expect_log(caplog, "did not finish within 0.3 s"):
        tracker.finish(sink_timeout=0.3)
    sink.release.set()
    state = load_experiment_log(tracker.path).mirrors["stuck"]
    assert state["status"] == "incomplete"
    assert "did not finish within 0.3 s" in state["error"]


class LifecycleSink(InMemorySink):
    name = "lifecycle"

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def emit(self, row):
        self.gate.wait(30)
        super().emit(row)


def test_start_and_finish_reach_a_sink_however_full_its_queue(tmp_path):
    sink = LifecycleSink()
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="life"),
        log_dir=tmp_path,
        sinks=[sink],
        sink_queue_size=5,
    )
    _train(tracker, 0, 50)  # far more than the queue holds
    sink.gate.set()
    tracker.finish()
    assert len(sink.started) == 1 and len(sink.finished) == 1  # never dropped
    assert 0 < len(sink.rows) < 50
    assert load_experiment_log(tracker.path).mirrors["lifecycle"]["status"] == "incomplete"


# --------------------------------------------------------------------------- the run lock

HOLDER = textwrap.dedent(
    """
    import sys, time
    from cs336_basics import ExperimentConfig, ExperimentTracker
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="held"), log_dir=sys.argv[1],
                                resume=sys.argv[2] if len(sys.argv) > 2 else None)
    tracker.log_metrics(iteration=100, train_loss=1.0)
    tracker.flush()
    print("HOLDING", flush=True)
    time.sleep(60)
    """
)


def test_a_run_cannot_be_resumed_twice_at_once_in_one_process(tmp_path):
    config = ExperimentConfig(experiment_name="twice")
    first = ExperimentTracker(config, log_dir=tmp_path)
    _train(first, 0, 5)
    first.save()
    with pytest.raises(RunInUseError, match=rf"pid {os.getpid()}"):
        ExperimentTracker(config, log_dir=tmp_path, resume=first.path).start()
    first.close()
    second = ExperimentTracker(config, log_dir=tmp_path, resume=first.path).start()
    with pytest.raises(RunInUseError):
        ExperimentTracker(config, log_dir=tmp_path, resume=first.path).start()
    _train(second, 5, 10)
    second.finish()
    assert load_experiment_log(first.path).last_iteration == 9


@pytest.mark.slow
def test_a_live_run_in_another_process_is_refused_until_that_process_dies(tmp_path):
    config = ExperimentConfig(experiment_name="held")
    mine = ExperimentTracker(config, log_dir=tmp_path)
    _train(mine, 0, 5)
    mine.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), str(mine.path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HOLDING"
        with pytest.raises(RunInUseError, match=rf"pid {holder.pid}"):
            ExperimentTracker(config, log_dir=tmp_path, resume=mine.path).start()
        # Nothing of the live run was touched by the refused resume.
        assert load_experiment_log(mine.path).last_iteration == 100
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    again = ExperimentTracker(config, log_dir=tmp_path, resume=mine.path)  # the kernel let go
    again.log_metrics(iteration=101, train_loss=0.5)
    again.finish()
    assert load_experiment_log(mine.path).last_iteration == 101


# --------------------------------------------------------------------------- finishing


def test_finish_retried_after_a_failed_save_writes_the_run(tmp_path, monkeypatch):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="retry"), log_dir=tmp_path)
    _train(tracker, 0, 20)
    real_replace = storage.os.replace

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        tracker.finish()
    monkeypatch.setattr(storage.os, "replace", real_replace)
    # The journal still holds the run, finish record included.
    recovered = load_experiment_log(tracker.path.with_suffix(".jsonl"))
    assert recovered.last_iteration == 19 and recovered.status == "finished"
    log = tracker.finish()  # the retry writes
    on_disk = load_experiment_log(tracker.path)
    assert on_disk.status == "finished" and on_disk.last_iteration == 19
    assert on_disk.best_train_loss == log.best_train_loss
    assert not tracker.path.with_suffix(".jsonl").exists()
    with pytest.raises(RunClosedError, match="resume="):
        tracker.log_metrics(iteration=20, train_loss=1.0)


def test_finish_after_close_says_how_to_continue(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="closed"), log_dir=tmp_path)
    _train(tracker, 0, 3)
    tracker.close()
    with pytest.raises(RunClosedError, match="resume="):
        tracker.finish()


# --------------------------------------------------------------------------- resume


def test_resuming_with_another_config_keeps_the_old_one_and_says_so(tmp_path, caplog):
    old = ExperimentConfig(experiment_name="cfg", max_learning_rate=1e-3, batch_size=32)
    first = ExperimentTracker(old, log_dir=tmp_path)
    _train(first, 0, 10)
    first.close()
    new = ExperimentConfig(experiment_name="cfg", max_learning_rate=5e-4, batch_size=32)
    with expect_log(caplog, r"different config.*max_learning_rate: 0.001 -> 0.0005"):
        second = ExperimentTracker(new, log_dir=tmp_path, resume=first.path).start()
    _train(second, 10, 12)
    second.finish()
    log = load_experiment_log(first.path)
    assert log.config.max_learning_rate == 5e-4
    (change,) = log.config_changes
    assert change["previous"] == {"max_learning_rate": 1e-3}
    assert change["new"] == {"max_learning_rate": 5e-4}
    assert change["after_iteration"] == 9


def test_resuming_with_the_same_config_records_no_change(tmp_path):
    config = ExperimentConfig(experiment_name="same")
    first = ExperimentTracker(config, log_dir=tmp_path)
    _train(first, 0, 3)
    first.close()
    ExperimentTracker(config, log_dir=tmp_path, resume=first.path).finish()
    assert load_experiment_log(first.path).config_changes == []


# --------------------------------------------------------------------------- ranks


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({"LOCAL_RANK": "-1"}, True),
        ({"RANK": "-1"}, True),
        ({"RANK": "0", "LOCAL_RANK": "3"}, True),
        ({"LOCAL_RANK": "1"}, False),
        ({"RANK": "2"}, False),
        ({"RANK": " "}, True),
    ],
)
def test_rank_variables(tmp_path, monkeypatch, env, enabled):
    for name in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="rank"), log_dir=tmp_path)
    assert tracker.enabled is enabled
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.finish()
    assert bool(list(tmp_path.glob("*.json"))) is enabled


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("value", "message"),
    [
        by_numpy("np.bool_(True)", "expected a real number"),
        (1 + 2j, "expected a real number"),
        by_numpy("np.complex128(1.0)", "expected a real number"),
        by_numpy("np.array([True])", "expected a real number, got a bool"),
        (True, "expected a real number"),
    ],
)
def test_booleans_and_complex_numbers_are_not_metrics(tmp_path, value, message):
    value = made(value)
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="types"), log_dir=tmp_path)
    with pytest.raises(TypeError, match=f"train_loss: {message}"):
        tracker.log_metrics(iteration=0, train_loss=value)
    with pytest.raises(TypeError, match=f"grad_norm: {message}"):
        tracker.log_metrics(iteration=0, grad_norm=value)
    if importlib.util.find_spec("numpy") is None:  # a core install: real numbers are taken
        tracker.log_metrics(iteration=0, train_loss=1.5, grad_norm=2)
    else:  # numpy's too
        import numpy as np

        tracker.log_metrics(iteration=0, train_loss=np.float32(1.5), grad_norm=np.int64(2))
    tracker.close()


def test_torch_bool_and_complex_tensors_are_not_metrics(tmp_path):
    torch = need("torch")
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="ttypes"), log_dir=tmp_path)
    with pytest.raises(TypeError, match="bool"):
        tracker.log_metrics(iteration=0, train_loss=torch.tensor(True))
    with pytest.raises(TypeError, match="complex"):
        tracker.log_metrics(iteration=0, train_loss=torch.tensor(1 + 1j))
    tracker.close()


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("log_metrics", "wallclock_time"),
        ("log_eval", "wallclock_time"),
        ("log_eval", "learning_rate"),
        ("log_eval", "gradient_step"),
    ],
)
def test_extra_metrics_may_not_take_the_guides_field_names(tmp_path, method, name):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="clash"), log_dir=tmp_path)
    with pytest.raises(ValueError, match=f"{method}: '{name}' is one of the guide's row fields"):
        getattr(tracker, method)(iteration=0, val_loss=1.0, **{name: 3.0})
    tracker.log_metrics(iteration=0, train_loss=1.0, wallclock_ratio=3.0)
    tracker.finish()
    assert load_experiment_log(tracker.path).metrics_history[0].extra == {"wallclock_ratio": 3.0}


def test_a_config_the_document_cannot_hold_is_refused_at_creation(tmp_path):
    with pytest.raises(TypeError, match="config.optimizer_obj: cannot store a value of type obj"):
        ExperimentTracker(
            ExperimentConfig(experiment_name="bad", optimizer_obj=object()), log_dir=tmp_path
        )


@pytest.mark.parametrize("bad", [None, -1, "60", float("nan")])
def test_a_bad_sink_timeout_is_refused_before_the_run_is_touched(tmp_path, bad):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="timeout"), log_dir=tmp_path)
    _train(tracker, 0, 3)
    with pytest.raises(ValueError, match="sink_timeout: expected seconds >= 0"):
        tracker.finish(sink_timeout=bad)
    _train(tracker, 3, 5)  # still open
    assert tracker.finish().last_iteration == 4


def test_logging_after_a_finish_whose_save_failed_is_refused(tmp_path, monkeypatch):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="late"), log_dir=tmp_path)
    _train(tracker, 0, 3)

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", full_disk)
    with pytest.raises(OSError):
        tracker.finish()
    monkeypatch.undo()
    with pytest.raises(RunClosedError, match="already finished"):
        tracker.log_metrics(iteration=3, train_loss=1.0)
    assert tracker.finish().last_iteration == 2


def test_a_device_value_that_cannot_be_read_loses_only_itself(tmp_path, caplog):
    torch = need("torch")
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="meta"), log_dir=tmp_path)
    unreadable = torch.empty((), device="meta")  # stands in for a device that fails a read
    with expect_log(caplog, r"could not be read.*iteration 0: train_loss", level=40):
        tracker.log_metrics(iteration=0, train_loss=unreadable, learning_rate=1e-3)
        for i in range(1, 50):
            tracker.log_metrics(iteration=i, train_loss=1.0 / i)
        tracker.close()
    log = load_experiment_log(tracker.path)
    assert [r.iteration for r in log.metrics_history] == list(range(50))
    assert log.metrics_history[0].train_loss is None
    assert log.metrics_history[0].learning_rate == 1e-3
    assert "iteration 0: train_loss" in tracker.health()["device_error"]


def test_an_extra_metric_needs_a_name_and_save_needs_a_file(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="names"), log_dir=tmp_path)
    with pytest.raises(ValueError, match="an extra metric needs a name"):
        tracker.log_metrics(iteration=0, **{"": 1.0})
    with pytest.raises(ValueError, match="a folder; expected a file path"):
        tracker.save(path=tmp_path)
    tracker.close()
