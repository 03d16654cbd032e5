"""The one table that maps local fields to W&B keys, used to push and (inverted) to pull.

| local field | W&B key | note |
|---|---|---|
| iteration | ``iteration`` | x-axis (``define_metric``) |
| gradient_step | ``gradient_step`` | x-axis, the default ``step_metric`` of every metric |
| wallclock_time | ``wallclock_time`` | x-axis, seconds since the run started |
| train_loss | ``train/loss`` | |
| val_loss | ``val/loss`` | logged in its own row by ``log_eval`` |
| learning_rate | ``train/lr`` | |
| tokens_per_sec | ``perf/tokens_per_sec`` | |
| iter_time_ms | ``perf/iter_time_ms`` | |
| extra metric ``X`` | ``extra/X`` | e.g. ``extra/grad_norm`` |

Summary keys: ``best_train_loss``, ``best_val_loss``, ``final_train_loss``,
``final_val_loss``, ``duration_seconds`` (the local JSON's values), and ``local_status`` for a
run pushed before it finished. W&B's own ``step=`` is
never passed: a lower step is silently dropped by W&B, which breaks restarts.
"""

from __future__ import annotations

import copy
from typing import Any

from ..tracking.records import SUMMARY_FIELDS, TRAIN_FIELDS, ExperimentLog, MetricsSnapshot

X_AXES = ("iteration", "gradient_step", "wallclock_time")
FIELD_TO_KEY = {
    "iteration": "iteration",
    "gradient_step": "gradient_step",
    "wallclock_time": "wallclock_time",
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "learning_rate": "train/lr",
    "tokens_per_sec": "perf/tokens_per_sec",
    "iter_time_ms": "perf/iter_time_ms",
}
EXTRA_PREFIX = "extra/"
METRIC_GLOBS = ("train/*", "val/*", "perf/*", "extra/*")


def _axes(row: MetricsSnapshot) -> dict[str, Any]:
    return {
        "iteration": row.iteration,
        "gradient_step": row.gradient_step,
        "wallclock_time": float(row.wallclock_time),
    }


def train_payload(row: MetricsSnapshot) -> dict[str, Any]:
    """The W&B row for a ``log_metrics`` row (no val_loss: evals get their own row)."""
    out = _axes(row)
    for name in TRAIN_FIELDS:
        value = getattr(row, name)
        if value is not None:
            out[FIELD_TO_KEY[name]] = float(value)
    if row.extra:
        for key, value in row.extra.items():
            out[EXTRA_PREFIX + key] = float(value)
    return out


def eval_payload(row: MetricsSnapshot) -> dict[str, Any]:
    """The W&B row for an eval: the row's axes and its val_loss."""
    out = _axes(row)
    if row.val_loss is not None:
        out[FIELD_TO_KEY["val_loss"]] = float(row.val_loss)
    eval_train = (row.extra or {}).get("eval_train_loss")
    if eval_train is not None:
        out[EXTRA_PREFIX + "eval_train_loss"] = float(eval_train)
    return out


def summary_payload(log: ExperimentLog) -> dict[str, Any]:
    """The W&B summary of a run; one that never finished locally says so (``local_status``)."""
    if not log.finished:  # no summary was computed: take it from the history so far
        log = copy.copy(log)
        log.compute_summary()
    out: dict[str, Any] = {
        name: float(value) for name in SUMMARY_FIELDS if (value := getattr(log, name)) is not None
    }
    if not log.finished:
        out["local_status"] = log.status
    return out
