"""One row of a run's history, the names of its fields, and the x-axes a curve can use.

:class:`MetricsSnapshot` is the guide's row. The field groups below are the one place that
says which fields a row and a summary have, in the guide's (and the CSV's) order; every
other module takes them from here. :data:`AXES` is the one table of x-axes: the CLI's
``--x``, the plots, the analyzer, the page and the W&B mirror's ``define_metric`` all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UsageError

#: The guide's per-row fields, in the guide's (and the CSV's) column order.
ROW_FIELDS = (
    "iteration",
    "gradient_step",
    "wallclock_time",
    "train_loss",
    "val_loss",
    "learning_rate",
    "tokens_per_sec",
    "iter_time_ms",
)
LOSS_FIELDS = ("train_loss", "val_loss")
#: The row fields ``log_metrics`` fills besides the axes (``log_eval`` fills val_loss).
TRAIN_FIELDS = ("train_loss", "learning_rate", "tokens_per_sec", "iter_time_ms")
#: The fields a value can be logged for (every row field but the axes).
VALUE_FIELDS = ("train_loss", "val_loss", "learning_rate", "tokens_per_sec", "iter_time_ms")
#: The run's summary numbers, in the guide's document order.
SUMMARY_FIELDS = (
    "duration_seconds",
    "best_train_loss",
    "best_val_loss",
    "final_train_loss",
    "final_val_loss",
)


@dataclass
class MetricsSnapshot:
    """One row of history: the guide's eight fields plus optional extra metrics.

    ``gradient_step`` is the 1-based optimizer step the iteration belongs to;
    ``wallclock_time`` is seconds since the run started (downtime between a crash and a
    resume is not counted). Losses are ``None`` when not measured at this iteration.
    """

    iteration: int
    gradient_step: int
    wallclock_time: float
    train_loss: float | None = None
    val_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_sec: float | None = None
    iter_time_ms: float | None = None
    extra: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as a flat dict in column order; extra metrics follow the guide's fields."""
        out = {name: getattr(self, name) for name in ROW_FIELDS}
        if self.extra:
            for key, value in self.extra.items():
                out.setdefault(key, value)
        return out

    @property
    def has_train_metrics(self) -> bool:
        """True once ``log_metrics`` (not only ``log_eval``) filled this row."""
        return not (
            self.train_loss is None
            and self.learning_rate is None
            and self.tokens_per_sec is None
            and self.iter_time_ms is None
        )


@dataclass(frozen=True)
class Axis:
    """An x-axis: its name, the row field it reads (``None``: derived from the run), the
    label and unit a figure shows, and other spellings users type."""

    name: str
    field: str | None
    label: str
    aliases: tuple[str, ...] = ()


#: Every x-axis, by the name users type (``--x``, ``plot_runs(x=)``, the page). ``tokens`` is
#: gradient steps x tokens per step (see ``ExperimentLog.tokens_per_step``); ``flops`` is
#: tokens x the model's training FLOPs per token (``ExperimentLog.flops_per_token``, see
#: ``core.flops``): both derived when read, absent for a run that does not know them.
AXES: dict[str, Axis] = {
    "gradient_step": Axis("gradient_step", "gradient_step", "gradient step (optimizer steps)"),
    "iteration": Axis("iteration", "iteration", "iteration"),
    "tokens": Axis("tokens", None, "tokens seen"),
    "wallclock": Axis("wallclock", "wallclock_time", "wall-clock time", ("wallclock_time",)),
    "flops": Axis("flops", None, "training FLOPs (model)"),
}
#: The row fields that are x-axes (stored with every row, never a metric to plot).
AXIS_FIELDS = ("iteration", "gradient_step", "wallclock_time")


def axis(name: str) -> Axis:
    """The axis called ``name`` (or one of its aliases); ``UsageError`` listing the names."""
    found = AXES.get(name)
    if found is not None:
        return found
    for candidate in AXES.values():
        if name in candidate.aliases:
            return candidate
    raise UsageError(f"x: unknown axis {name!r}; expected one of {', '.join(AXES)}")
