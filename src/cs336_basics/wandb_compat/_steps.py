"""``run.log(data, step=, commit=)`` with W&B's semantics, turned into tracker calls.

W&B's side: ``log(d)`` commits a row at the current step and advances it; ``commit=False``
accumulates into the next row; ``log(d, step=s)`` accumulates at step ``s`` and commits what
was pending at an earlier step once ``s`` moves (or with ``commit=True``). A step lower than
the current one, which W&B drops, is taken as a restart from an older checkpoint.

The tracker's side: each committed row is mapped with pull's table
(:class:`~cs336_basics.wandb_adapter.pull.RowMapper`, so a script's local run equals the same
run pulled from W&B): ``loss``/``train/loss`` -> train_loss, ``lr`` -> learning_rate,
``val/loss``/``eval/loss`` -> val_loss (through ``log_eval``), every other number an extra
metric. Its iteration is, first match wins, a key pull reads as the iteration (``iteration``,
``iter``), the value of the step metric ``define_metric`` declared for the row's keys (the
Hugging Face ``train/global_step``), or W&B's step. Rows at one iteration merge into one
local row; a lower iteration supersedes the rows after it (README, "Resuming").
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from typing import Any

from ..core.row import ROW_FIELDS, TRAIN_FIELDS
from ..core.values import MAX_INDEX
from ..runtime.tracker import ExperimentTracker
from ..wandb_adapter.keys import RowMapper
from ._objects import Summary, Unsupported, warn_once


def _is_number(value: Any) -> bool:
    if isinstance(value, (bool, str, bytes, complex)) or value is None:
        return False
    if type(value).__name__ in ("bool_", "bool"):  # numpy / torch booleans
        return False
    if not hasattr(value, "__float__"):
        return False
    shape = getattr(value, "shape", ())
    return len(tuple(shape)) == 0 and "complex" not in str(getattr(value, "dtype", ""))


def _as_float(value: Any) -> float:
    """A logged number as a float; an integer too large for one is +-inf, as W&B stores it."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if int(value) > 0 else -math.inf


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys, as W&B stores them (``{"a": {"b": 1}}`` -> ``a.b``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _index(value: Any) -> int | None:
    """An iteration from a logged value: a whole, finite, non-negative number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number < 0 or number > MAX_INDEX:
        return None
    return int(number)


class StepLog:
    """Turns W&B ``log`` calls of one run into ``log_metrics``/``log_eval`` calls."""

    def __init__(
        self, tracker: ExperimentTracker, summary: Summary, resumed_after: int | None = None
    ) -> None:
        self.tracker = tracker
        self.summary = summary
        self.mapper = RowMapper()
        self.step = 0
        self.pending: dict[str, Any] = {}
        self.step_metrics: list[tuple[str, str]] = []  # (metric pattern, its step metric)
        self.last_values: dict[str, float] = {}
        self.last_iteration: int | None = None
        self.current: dict[str, Any] = {}  # train fields and extras sent at last_iteration
        self.current_val: Any = None
        self.rows = 0
        self.explicit = False  # whether rows carry their own iteration (a key or step metric)
        if resumed_after is not None:  # a resumed run: W&B's step goes on after its last row
            self.step = resumed_after + 1
            self.last_iteration = resumed_after

    # ------------------------------------------------------------------ W&B side
    def define_step_metric(self, pattern: str, step_metric: str) -> None:
        self.step_metrics.append((pattern, step_metric))

    def log(self, data: Mapping[str, Any], step: Any = None, commit: Any = None) -> None:
        if not isinstance(data, Mapping):
            raise TypeError(
                f"log(data): expected a dict of key -> value, got {type(data).__name__}"
            )
        if step is not None:
            index = _index(step)
            if index is None or isinstance(step, bool):
                raise ValueError(f"log(step=): expected a non-negative integer, got {step!r}")
            if index != self.step:
                self.commit()
                self.step = index
        self.pending.update(self._numbers(data))
        if commit or (commit is None and step is None):
            self.commit()

    def _numbers(self, data: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in flatten(data).items():
            if _is_number(value):
                out[key] = value
            else:
                kind = value.kind if isinstance(value, Unsupported) else type(value).__name__
                warn_once(
                    "log()",
                    key,
                    f"{key!r} holds a {kind}; the local log keeps numbers only, so this key "
                    "is skipped (here and in the W&B mirror)",
                )
        return out

    def commit(self) -> None:
        """Write the pending row at the current step and advance the step."""
        if self.pending:
            item, self.pending = self.pending, {}
            self._write(item, self.step)
        self.step += 1

    # ------------------------------------------------------------------ tracker side
    def _step_metric_value(self, item: Mapping[str, Any]) -> Any:
        for key in item:
            for pattern, metric in reversed(self.step_metrics):
                if key != metric and (key == pattern or fnmatch.fnmatchcase(key, pattern)):
                    return item.get(metric, self.last_values.get(metric))
        return None

    def _write(self, item: dict[str, Any], wandb_step: int) -> None:
        item = {k: _as_float(v) for k, v in item.items()}
        fields, extra = self.mapper.map(item)
        chosen = {
            next(k for k in self.mapper.aliases[name] if item.get(k) is not None) for name in fields
        }
        for key, value in item.items():  # claimed by an alias but not the one used: keep it
            if key in self.mapper.claimed and key not in chosen and key not in ROW_FIELDS:
                extra[key] = float(value)
        floats = item
        self.summary.observe(floats)
        self.last_values.update(floats)
        by_metric = self._step_metric_value(item)
        iteration = _index(fields.get("iteration"))
        if iteration is None:
            iteration = _index(by_metric)
        if iteration is not None:
            self.explicit = True
        elif self.explicit and self.last_iteration is not None:
            # The script names its iterations (nanoGPT's "iter"); a row without one adds
            # to the latest, rather than going back to W&B's own (lower) step.
            iteration = self.last_iteration
        else:
            iteration = wandb_step
        step = _index(fields.get("gradient_step"))
        if step is None:
            step = _index(by_metric)
        if step is None:
            step = iteration + 1
        for name in [n for n in extra if n in ROW_FIELDS]:  # "extra/train_loss": keep its key
            extra["extra/" + name] = extra.pop(name)
        train = {name: fields[name] for name in TRAIN_FIELDS if name in fields}
        val_loss = fields.get("val_loss")
        tracker = self.tracker
        if iteration != self.last_iteration:
            self.current = {}
            self.current_val = None
        if train:
            # One local row per iteration: a second row with train fields at the same
            # iteration replaces the first (which the tracker keeps in superseded_history),
            # so it carries everything logged at this iteration.
            merged = {**self.current, **train, **extra}
            tracker.log_metrics(iteration, gradient_step=step, **merged)
            self.current = merged
            if val_loss is None and self.current_val is not None:
                val_loss = self.current_val
        elif extra and self.last_iteration != iteration:
            tracker.log_metrics(iteration, gradient_step=step, **extra)
            self.current.update(extra)
        elif extra:  # more values for this iteration's row: fill it (with any val_loss)
            tracker.log_eval(iteration, val_loss=val_loss, **extra)
            self.current.update(extra)
            self.current_val = val_loss if val_loss is not None else self.current_val
            val_loss = None
        if val_loss is not None:
            tracker.log_eval(iteration, val_loss=val_loss)
            self.current_val = val_loss
        self.last_iteration = iteration
        self.rows += 1
