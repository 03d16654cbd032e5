"""``run.log(data, step=, commit=)`` with W&B's semantics, turned into tracker calls.

W&B's side: ``log(d)`` commits a row at the current step and advances it; ``commit=False``
accumulates into the next row; ``log(d, step=s)`` accumulates at step ``s`` and commits what
was pending at an earlier step once ``s`` moves (or with ``commit=True``). A step lower than
the current one, which W&B drops, is taken as a restart from an older checkpoint.

The tracker's side: each committed row is mapped with the key table both ways share
(:class:`~cs336_basics.wandb_adapter.keys.RowMapper`, so a script's local run equals the
same run pulled from W&B): ``loss``/``train/loss`` -> train_loss, ``lr``,
``train/learning_rate``, Lightning's ``lr-<Optimizer>`` -> learning_rate,
``val/loss``/``eval/loss`` -> val_loss, every other number an extra metric under the
script's key (``train/epoch``, ``eval/runtime``, ``mfu``). Its iteration is, first match wins,
a key the table reads as the iteration (``iteration``, ``iter``), the value of the step
metric ``define_metric`` declared for the row's keys (the Hugging Face
``train/global_step``, Lightning's ``trainer/global_step``), the latest such iteration (a
row without one joins it), or W&B's step (which a resumed run continues).

One local row per iteration: the first row of an iteration is ``log_metrics`` (or
``log_eval`` when it holds only a validation loss); later rows of the same iteration add
their values to it (``tracker.update_row``: not a restart, and the W&B mirror gets each
value once, under the script's key). A lower iteration supersedes the rows after it
(README, "Resuming"). Numbers are read by ``core.values.as_number``; anything else (media,
strings, tables) is said once on the logger and left out.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from ..core.row import ROW_FIELDS, TRAIN_FIELDS
from ..core.values import as_index, as_number
from ..runtime.tracker import ExperimentTracker
from ..wandb_adapter.keys import RowMapper
from ._objects import Summary, Unsupported, note_once


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


def _valid_key(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(key)


class StepLog:
    """Turns W&B ``log`` calls of one run into ``log_metrics``/``log_eval``/``update_row``."""

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
        self.resumed_after = resumed_after
        self.rows = 0
        self.explicit = False  # whether rows carry their own iteration (a key or step metric)
        if resumed_after is not None:  # a resumed run: W&B's step goes on after its last row
            self.step = resumed_after + 1

    # ------------------------------------------------------------------ W&B side
    def define_step_metric(self, pattern: str, step_metric: str) -> None:
        self.step_metrics.append((pattern, step_metric))

    def log(self, data: Mapping[str, Any], step: Any = None, commit: Any = None) -> None:
        if not isinstance(data, Mapping):
            raise TypeError(
                f"log(data): expected a dict of key -> value, got {type(data).__name__}"
            )
        if step is not None:
            index = as_index(step)
            if index is None or isinstance(step, bool):
                raise ValueError(f"log(step=): expected a non-negative integer, got {step!r}")
            if index != self.step:
                self.commit()
                self.step = index
        self.pending.update(self._numbers(data))
        if commit or (commit is None and step is None):
            self.commit()

    def _numbers(self, data: Mapping[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in flatten(data).items():
            key = str(key)
            number = None if isinstance(value, Unsupported) else as_number(value)
            if number is not None and _valid_key(key):
                out[key] = number
                continue
            if not _valid_key(key):
                why = "is not valid UTF-8 text"
            else:
                kind = value.kind if isinstance(value, Unsupported) else type(value).__name__
                why = f"holds a {kind}; the local log keeps numbers only"
            note_once("log()", key, f"{key!r} {why}, so it is left out (here and on W&B)")
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

    def _iteration(self, fields: Mapping[str, Any], item: Mapping[str, Any], step: int) -> int:
        iteration = as_index(fields.get("iteration"))
        if iteration is None:
            iteration = as_index(self._step_metric_value(item))
        if iteration is not None:
            self.explicit = True
            return iteration
        if self.explicit and self.last_iteration is not None:
            # The script names its iterations (nanoGPT's "iter"); a row without one adds
            # to the latest, rather than going back to W&B's own (lower) step.
            return self.last_iteration
        return step

    def _write(self, item: dict[str, float], wandb_step: int) -> None:
        fields, extra = self.mapper.map(item)
        used = {self.mapper.chosen_key(name, item) for name in fields}
        for key, value in item.items():  # claimed by the table but not the key used: keep it
            if key in self.mapper.claimed and key not in used:
                extra[key] = value
        self.summary.observe(item)
        self.last_values.update(item)
        iteration = self._iteration(fields, item, wandb_step)
        step = as_index(fields.get("gradient_step"))
        if step is None:
            step = as_index(self._step_metric_value(item))
        if step is None:
            step = iteration + 1
        if "wallclock_time" in fields:  # the tracker keeps its own clock
            extra["extra/wallclock_time"] = fields["wallclock_time"]
            note_once(
                "log()",
                "wallclock_time",
                "'wallclock_time' is the tracker's own clock (seconds since the run started); "
                "the value logged is kept as the extra metric 'extra/wallclock_time'",
            )
        for name in [n for n in extra if n in ROW_FIELDS]:  # this tracker's own names
            extra["extra/" + name] = extra.pop(name)
        values = {name: as_number(fields[name]) for name in (*TRAIN_FIELDS, "val_loss")
                  if name in fields}  # fmt: skip
        values.update(extra)
        tracker = self.tracker
        same = iteration == self.last_iteration or (
            self.last_iteration is None and iteration == self.resumed_after
        )
        if same and values:
            tracker.update_row(iteration, gradient_step=step, **values)
        elif any(name in values for name in TRAIN_FIELDS) or extra:
            val_loss = values.pop("val_loss", None)
            tracker.log_metrics(iteration, gradient_step=step, **values)
            if val_loss is not None:
                tracker.log_eval(iteration, val_loss=val_loss)
        elif values.get("val_loss") is not None:
            tracker.log_eval(iteration, val_loss=values["val_loss"])
        self.last_iteration = iteration
        self.rows += 1
