"""``core/values``: a metric value with a dimension is refused the same way for numpy and
torch; 0-d values are numbers."""

from __future__ import annotations

import pytest
from helpers import need, requires

from cs336_basics.core.values import to_float
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker


def dimensioned() -> list[object]:
    import numpy as np

    values: list[object] = [np.array([[2.0]]), np.array([2.0]), np.ones((1, 1, 1), np.float32)]
    torch = need("torch")
    values += [torch.tensor([[3.0]]), torch.tensor([3.0])]
    return values


@requires("numpy")
def test_values_with_a_dimension_are_refused_alike_for_numpy_and_torch(tmp_path):
    for value in dimensioned():
        with pytest.raises(TypeError) as info:
            to_float("train_loss", value)
        message = str(info.value)
        assert message.startswith("train_loss: expected a single number (0-d)"), message
        assert f"of shape {tuple(value.shape)}" in message and "squeeze()" in message
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="dims"), log_dir=tmp_path)
    for value in dimensioned():
        with pytest.raises(TypeError, match="grad_norm: expected a single number"):
            tracker.log_metrics(iteration=0, train_loss=1.0, grad_norm=value)
        with pytest.raises(TypeError, match="val_loss: expected a single number"):
            tracker.log_eval(iteration=0, val_loss=value)
    tracker.close()


@requires("numpy", "torch")
def test_zero_dimensional_values_are_accepted():
    import numpy as np
    import torch

    for value, expected in (
        (np.array(2.5), 2.5),
        (np.float32(0.5), 0.5),
        (torch.tensor(3.5), 3.5),
        (torch.tensor([[3.5]]).squeeze(), 3.5),
        (torch.tensor([7.0]).reshape(()), 7.0),
    ):
        assert to_float("x", value) == expected
