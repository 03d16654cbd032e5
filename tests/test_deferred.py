"""Accelerator tensors are converted in batches, not one host sync per call.

There is no GPU in CI, so a CPU tensor stands in for a device tensor by patching the one
predicate that tells them apart; everything else is the real code path.
"""

import time

import pytest
from helpers import need

torch = need("torch")

import cs336_basics.core.values as values_mod  # noqa: E402
import cs336_basics.runtime.deferred as deferred_mod  # noqa: E402
from cs336_basics.experiment_log import (  # noqa: E402
    ExperimentConfig,
    ExperimentTracker,
    InMemorySink,
    load_experiment_log,
)


@pytest.fixture
def tensors_are_on_device(monkeypatch):
    def fake(value):
        return isinstance(value, torch.Tensor)

    monkeypatch.setattr(values_mod, "is_device_tensor", fake)
    monkeypatch.setattr(deferred_mod, "is_device_tensor", fake)


def test_device_tensors_are_deferred_then_resolved_together(tmp_path, tensors_are_on_device):
    sink = InMemorySink()
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="dev"), log_dir=tmp_path, sinks=[sink]
    )
    for i in range(5):
        tracker.log_metrics(
            iteration=i,
            train_loss=torch.tensor(2.0 - 0.1 * i),
            learning_rate=1e-3,
            grad_norm=torch.tensor(float(i)),
        )
        tracker.increment_gradient_step()
    raw = tracker._log.metrics_history[0].train_loss
    assert isinstance(raw, torch.Tensor)  # not read yet: no sync per call
    assert tracker.health()["waiting_device_rows"] == 5
    tracker.log_eval(iteration=4, val_loss=torch.tensor(1.5))  # eval resolves the batch
    assert tracker.health()["waiting_device_rows"] == 0
    history = tracker.log.metrics_history
    assert [type(r.train_loss) for r in history] == [float] * 5
    assert history[3].train_loss == pytest.approx(1.7)
    assert history[3].extra == {"grad_norm": 3.0}
    tracker.flush()
    assert [r["iteration"] for r in sink.rows] == [0, 1, 2, 3, 4]
    tracker.finish()
    assert load_experiment_log(tracker.path).metrics_history[4].val_loss == 1.5


def _journal_rows(tracker) -> int:
    return tracker.path.with_suffix(".jsonl").read_text().count('"k":"m"')


def test_deferred_values_reach_the_journal_within_a_second_without_more_calls(
    tmp_path, tensors_are_on_device
):
    # The loop logs one device value, then stops calling the tracker (a long eval, a
    # checkpoint, a hang): the row must still be on disk within the promised second.
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="age"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=torch.tensor(1.0), grad_norm=torch.tensor(2.0))
    tracker.log_metrics(iteration=1, train_loss=0.5)  # a float row queues behind it, in order
    assert tracker.last_read_row is None  # nothing read yet, and asking does not sync
    logged = time.monotonic()
    while _journal_rows(tracker) < 2 and time.monotonic() - logged < 3.0:
        time.sleep(0.02)
    waited = time.monotonic() - logged
    assert _journal_rows(tracker) == 2 and waited <= 1.0, waited
    lines = tracker.path.with_suffix(".jsonl").read_text().splitlines()
    assert '"iteration":0' in lines[1] and '"train_loss":1.0' in lines[1]
    assert '"grad_norm":2.0' in lines[1] and '"iteration":1' in lines[2]
    assert tracker.health()["waiting_device_rows"] == 0
    assert tracker.last_read_row.iteration == 1 and tracker.last_read_row.train_loss == 0.5
    tracker.close()


def test_multi_element_tensor_rejected(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="multi"), log_dir=tmp_path)
    with pytest.raises(TypeError, match="train_loss.*2 elements"):
        tracker.log_metrics(iteration=0, train_loss=torch.tensor([1.0, 2.0]))
    row = tracker.log_metrics(iteration=0, train_loss=torch.tensor(1.25))
    assert row.train_loss == 1.25 and type(row.train_loss) is float
    tracker.close()
