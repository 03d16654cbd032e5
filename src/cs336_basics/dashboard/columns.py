"""A run held as columns of floats (what the page draws), not as row objects.

An ``ExperimentLog`` of a million rows costs about half a gigabyte as ``MetricsSnapshot``
objects; as ``array('d')`` columns it costs 8 bytes a value. :class:`RunData` keeps the
three x-axes (one value per row) and every metric (train/val loss, learning rate, ..., the
extra metrics), dense when every row has it, else as (row index, value) pairs.

Rows change only through two operations, enough for the records' rules applied at the end
of the history (see :mod:`.follow`): :meth:`RunData.truncate` and :meth:`RunData.append`.
"""

from __future__ import annotations

import bisect
import itertools
import math
from array import array
from dataclasses import dataclass, field
from typing import Any

from ..tracking.records import ROW_FIELDS, ExperimentLog, MetricsSnapshot

#: The x-axes stored per row, in the document's names.
AXES = ("iteration", "gradient_step", "wallclock_time")
#: The guide's metrics of a row (the row fields that are not axes).
ROW_METRICS = tuple(f for f in ROW_FIELDS if f not in AXES)
_INT_AXES = ("iteration", "gradient_step")
_versions = itertools.count(1)


def new_version() -> int:
    """A number never used before in this process (caches key curves by it)."""
    return next(_versions)


@dataclass
class Column:
    """One metric: ``values[k]`` belongs to row ``index[k]`` (``index`` None: to row ``k``)."""

    values: array = field(default_factory=lambda: array("d"))
    index: array | None = None

    def cut(self, k: int) -> None:
        """Drop the values of rows ``k`` and later."""
        if self.index is None:
            del self.values[k:]
            return
        at = bisect.bisect_left(self.index, k)
        del self.values[at:]
        del self.index[at:]

    def value_at(self, row: int) -> float | None:
        if self.index is None:
            return self.values[row] if row < len(self.values) else None
        at = bisect.bisect_left(self.index, row)
        if at < len(self.index) and self.index[at] == row:
            return self.values[at]
        return None

    def add(self, row: int, value: float) -> None:
        """Append the value of row ``row`` (the last row so far)."""
        if self.index is None and row != len(self.values):
            self.index = array("l", range(len(self.values)))
        if self.index is not None:
            self.index.append(row)
        self.values.append(value)


@dataclass
class RunData:
    """What the dashboard knows of one run: its columns and the facts the runs table shows."""

    run_id: str
    name: str
    source: str
    status: str
    config: dict[str, Any]
    start_time: str | None = None
    save_id: int = 0
    summary: dict[str, float | None] = field(default_factory=dict)
    tokens_per_step: int = 0
    axes: dict[str, array] = field(default_factory=lambda: {a: array("d") for a in AXES})
    metrics: dict[str, Column] = field(default_factory=dict)
    #: Finer thinnings of whole curves by (metric, smoothing): (positions, values); valid
    #: for this version only (dropped on any change).
    fine: dict[tuple[str, float], tuple[array, array]] = field(default_factory=dict)
    #: A new number on every change (caches of thinned series are keyed by it); a run
    #: loaded in a worker gets one of this process's numbers when it lands (:meth:`landed`).
    version: int = 0

    @property
    def n(self) -> int:
        return len(self.axes["iteration"])

    @property
    def last_iteration(self) -> int | None:
        return int(self.axes["iteration"][-1]) if self.n else None

    # --- changing -------------------------------------------------------------------
    def truncate(self, k: int) -> None:
        for column in self.axes.values():
            del column[k:]
        for metric in self.metrics.values():
            metric.cut(k)
        self.fine.clear()
        self.version = new_version()

    def append(self, row: MetricsSnapshot) -> None:
        at = self.n
        for name in AXES:
            self.axes[name].append(float(getattr(row, name)))
        for name in ROW_METRICS:
            value = getattr(row, name)
            if value is not None:
                self._column(name, at).add(at, float(value))
        for name, value in (row.extra or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._column(name, at).add(at, float(value))
        self.fine.clear()
        self.version = new_version()

    def _column(self, name: str, at: int) -> Column:
        column = self.metrics.get(name)
        if column is None:
            column = self.metrics[name] = Column(index=array("l") if at else None)
        return column

    def row(self, k: int) -> MetricsSnapshot:
        """Row ``k`` as a snapshot again (the follower applies records to the last one)."""
        values = {
            name: self.metrics[name].value_at(k) for name in ROW_METRICS if name in self.metrics
        }
        extra = {
            name: v
            for name, column in self.metrics.items()
            if name not in ROW_METRICS and (v := column.value_at(k)) is not None
        }
        return MetricsSnapshot(
            iteration=int(self.axes["iteration"][k]),
            gradient_step=int(self.axes["gradient_step"][k]),
            wallclock_time=self.axes["wallclock_time"][k],
            extra=extra or None,
            **values,
        )

    # --- reading --------------------------------------------------------------------
    def last_values(self) -> dict[str, float | int | None]:
        """The last row, axes and metrics (``None`` where the last row lacks one)."""
        if not self.n:
            return {}
        last = self.n - 1
        out: dict[str, float | int | None] = {
            a: (int(self.axes[a][last]) if a in _INT_AXES else self.axes[a][last]) for a in AXES
        }
        for name, column in self.metrics.items():
            out[name] = column.value_at(last)
        return out

    def best_last(self, metric: str) -> tuple[float | None, float | None]:
        """The smallest finite value of a metric and its last value (None when absent)."""
        column = self.metrics.get(metric)
        if column is None or not column.values:
            return None, None
        values = column.values
        if math.isfinite(sum(values)):  # every value finite (a sum that overflows: below)
            return min(values), values[-1]
        finite = [v for v in values if math.isfinite(v)]
        return (min(finite) if finite else None), values[-1]

    def diverged_at(self) -> int | None:
        """The first iteration whose train or val loss is NaN or infinite (as the log says)."""
        first: int | None = None
        for name in ("train_loss", "val_loss"):
            column = self.metrics.get(name)
            if column is None or math.isfinite(sum(column.values)):  # none non-finite
                continue
            for k, v in enumerate(column.values):
                if not math.isfinite(v):
                    row = column.index[k] if column.index is not None else k
                    first = row if first is None else min(first, row)
                    break
        return None if first is None else int(self.axes["iteration"][first])


def from_log(log: ExperimentLog, save_id: int) -> RunData:
    """The columns of a loaded run."""
    config = log.config
    data = RunData(
        run_id=log.run_id,
        name=log.experiment_name,
        source=log.source or "",
        status=log.status,
        config=config.to_dict(),
        start_time=log.start_time,
        save_id=save_id,
        summary={
            "best_train_loss": log.best_train_loss,
            "best_val_loss": log.best_val_loss,
            "final_train_loss": log.final_train_loss,
            "final_val_loss": log.final_val_loss,
        },
        tokens_per_step=_tokens_per_step(config.to_dict()),
    )
    history = log.metrics_history  # columnar: read column by column, no row objects
    for name in AXES:
        data.axes[name] = array("d", history.column(name))
    names = [*ROW_METRICS, *(n for n in history.extra_names() if n not in ROW_METRICS)]
    for name in names:
        values = history.column(name)
        present = [k for k, v in enumerate(values) if isinstance(v, (int, float))]
        present = [k for k in present if not isinstance(values[k], bool)]
        if present:
            data.metrics[name] = _column([float(values[k]) for k in present], present, len(values))
    return data


def _column(values: list[float], rows: list[int], n: int) -> Column:
    if len(rows) == n:
        return Column(array("d", values))
    return Column(array("d", values), array("l", rows))


def _tokens_per_step(config: dict[str, Any]) -> int:
    """Tokens per gradient step: batch size x context length (x grad_accum when set)."""
    try:
        tokens = int(config.get("batch_size") or 0) * int(config.get("context_length") or 0)
        return tokens * max(1, int(config.get("grad_accum") or 1))
    except (TypeError, ValueError):
        return 0
