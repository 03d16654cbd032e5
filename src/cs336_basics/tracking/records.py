"""The records of a run and the pure rules that change them.

``ExperimentConfig`` holds hyperparameters (the guide's fields plus any others a user passes),
``MetricsSnapshot`` one row of history, ``ExperimentLog`` a whole run. The functions at the
end apply one logged record to a log; the tracker and the journal replay both use them, so a
run recovered from its journal is the run the tracker held in memory.

History rules (also in the README):

- rows are kept in increasing ``iteration`` order, one row per iteration;
- an eval at an iteration that has a row fills that row, otherwise it adds one;
- a metrics row for an iteration at or before the last row (a restart from an older
  checkpoint) *supersedes* the rows from that iteration on: they move, unchanged, to
  ``ExperimentLog.superseded_history`` (saved in the JSON) and the new row takes their place.
"""

from __future__ import annotations

import math
from copy import copy
from dataclasses import dataclass, field, fields
from typing import Any

from .values import wrap_float

FORMAT_VERSION = 1

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
#: The run's summary numbers, in the guide's document order.
SUMMARY_FIELDS = (
    "duration_seconds",
    "best_train_loss",
    "best_val_loss",
    "final_train_loss",
    "final_val_loss",
)


_RESERVED_EXTRA = (
    "'extra' cannot be a hyperparameter's name (ExperimentConfig.extra is the dict of "
    "extra hyperparameters); rename it"
)


def _extra_hyperparameters(extra: Any) -> dict[str, Any]:
    """Check ``ExperimentConfig(extra=...)``: a dict of new names; returns a copy."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise TypeError(
            f"extra: expected a dict of extra hyperparameters, got {type(extra).__name__}"
        )
    not_str = [key for key in extra if not isinstance(key, str)]
    if not_str:
        raise TypeError(
            f"extra: hyperparameter names must be strings, got {', '.join(map(repr, not_str))}"
        )
    if "extra" in extra:
        raise ValueError(f"extra hyperparameter 'extra': {_RESERVED_EXTRA}")
    for key, value in extra.items():
        if key in _CONFIG_FIELDS:
            raise ValueError(
                f"extra hyperparameter {key!r} is a named field of ExperimentConfig; pass it "
                f"as the argument {key}={value!r:.40} instead of in extra="
            )
    return dict(extra)


@dataclass
class ExperimentConfig:
    """Hyperparameters of one run.

    Every field has a default. Keyword arguments the class does not name (``norm="post"``,
    ``ffn_type="silu"``) are kept in ``extra``, readable as attributes, saved into the JSON
    ``config`` object beside the named fields and loaded back. ``extra=`` takes such
    hyperparameters as a dict too; what could not be saved and loaded back is refused: a
    non-string name (``TypeError``), a named field (``extra={"d_model": 1024}``: pass
    ``d_model=1024``), a hyperparameter called ``extra``, or one given twice (``ValueError``).
    """

    experiment_name: str = "default_experiment"
    vocab_size: int = 10000
    context_length: int = 256
    d_model: int = 512
    num_heads: int = 16
    d_ff: int = 1344
    num_layers: int = 4
    rope_theta: float = 10000.0
    batch_size: int = 64
    max_iters: int = 5000
    max_learning_rate: float = 6e-4
    min_learning_rate: float = 6e-5
    warmup_iters: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    seed: int = 42
    device: str = "cpu"
    optimizer_name: str = "AdamW"
    extra: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **kwargs: Any) -> None:
        extra = _extra_hyperparameters(kwargs.pop("extra", None))
        for f in fields(self):
            if f.name == "extra":
                continue
            if f.name in kwargs:
                value = kwargs.pop(f.name)
            else:
                value = f.default
            object.__setattr__(self, f.name, value)
        twice = sorted(extra.keys() & kwargs.keys())
        if twice:
            raise ValueError(
                f"extra hyperparameter {twice[0]!r} is given twice, as a keyword argument "
                "and in extra=; pass it once"
            )
        extra.update(kwargs)
        object.__setattr__(self, "extra", extra)
        name = self.experiment_name
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"experiment_name: expected a non-empty string, got {name!r}")

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: expose extra hyperparameters as attributes.
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """A flat dict: the named fields in order, then the extra hyperparameters."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Inverse of :meth:`to_dict`; unknown keys become extra hyperparameters.

        A nested ``"extra"`` object (not written by :meth:`to_dict`) is read as more extra
        hyperparameters; any other value under ``"extra"`` is refused, as the name is
        reserved.
        """
        if not isinstance(data, dict):
            raise TypeError(f"config: expected a JSON object, got {type(data).__name__}")
        kwargs = {str(k): v for k, v in data.items()}
        if "extra" in kwargs and not isinstance(kwargs["extra"], dict | None):
            raise ValueError(f"config key 'extra' = {kwargs['extra']!r:.40}: {_RESERVED_EXTRA}")
        return cls(**kwargs)

    def differences(self, other: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
        """Keys whose values differ, as ``{key: (self's, other's)}`` (experiment_name ignored)."""
        mine, theirs = self.to_dict(), other.to_dict()
        keys = [k for k in mine if k != "experiment_name"]
        keys += [k for k in theirs if k not in mine]
        return {k: (mine.get(k), theirs.get(k)) for k in keys if mine.get(k) != theirs.get(k)}


_CONFIG_FIELDS = frozenset(f.name for f in fields(ExperimentConfig))


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


def import_pandas(what: str) -> Any:
    """pandas, or an ImportError that says how to install it."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            f"{what} needs pandas: pip install 'cs336-basics[pandas]' (or pip install pandas)"
        ) from exc
    return pandas


def _finite(values: Any) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


@dataclass
class ExperimentLog:
    """A whole run: its config, history and summary (the guide's JSON document)."""

    config: ExperimentConfig
    start_time: str | None = None
    end_time: str | None = None
    duration_seconds: float | None = None
    best_train_loss: float | None = None
    best_val_loss: float | None = None
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    metrics_history: _history.History = field(default_factory=lambda: _history.History())
    notes: str = ""
    run_id: str = ""
    status: str = "running"  # running | finished | unfinished (the process died before finish)
    superseded_history: _history.History = field(default_factory=lambda: _history.History())
    mirrors: dict[str, Any] = field(default_factory=dict)  # e.g. {"wandb": {"run_id": ...}}
    #: Config changes made by resuming with another config: time, after_iteration,
    #: previous and new values of the keys that changed (oldest first).
    config_changes: list[dict[str, Any]] = field(default_factory=list)
    source: str | None = field(default=None, compare=False)  # file it was loaded from

    def __setattr__(self, name: str, value: Any) -> None:
        # Histories are columnar (see .history); a list given or assigned is copied in.
        if name in _HISTORY_NAMES:
            value = _history.as_history(value)
        object.__setattr__(self, name, value)

    @property
    def experiment_name(self) -> str:
        return self.config.experiment_name

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def last_iteration(self) -> int | None:
        """The last row's iteration (None without history)."""
        return self.metrics_history.last_iteration

    @property
    def last_gradient_step(self) -> int | None:
        """The last row's gradient step (None without history)."""
        history = self.metrics_history
        return history[-1].gradient_step if history else None

    def column(self, name: str) -> list[Any]:
        """One field (or extra metric) across the history, ``None`` where absent."""
        return self.metrics_history.column(name)

    @property
    def diverged_at(self) -> int | None:
        """The first iteration whose train or val loss is NaN or infinite, if any."""
        row = self.metrics_history.first_nonfinite(LOSS_FIELDS)
        if row is not None:
            return row.iteration
        for name in ("final_train_loss", "final_val_loss"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                return self.metrics_history.last_iteration or 0
        return None

    @property
    def display_status(self) -> str:
        """``"diverged"`` once a loss went NaN/inf, else :attr:`status` (what listings show)."""
        return "diverged" if self.diverged_at is not None else self.status

    @property
    def tokens_seen(self) -> int | None:
        """batch_size x context_length x gradient steps (None without history)."""
        if not self.metrics_history:
            return None
        steps = self.metrics_history[-1].gradient_step
        return int(self.config.batch_size) * int(self.config.context_length) * int(steps)

    def to_pandas(self) -> Any:
        """The history as a ``pandas.DataFrame``: one row per history row, the guide's
        eight columns (iteration and gradient_step as int64, the rest float64 with NaN
        where not measured), then one column per extra metric. Needs pandas (the
        ``pandas`` extra)."""
        pandas = import_pandas("ExperimentLog.to_pandas()")
        history = self.metrics_history
        names = [*ROW_FIELDS, *[n for n in history.extra_names() if n not in ROW_FIELDS]]
        return pandas.DataFrame({name: history.to_numpy(name) for name in names})

    def compute_summary(
        self, train_loss: float | None = None, val_loss: float | None = None
    ) -> None:
        """Fill best and final losses from the history (best ignores NaN).

        An explicit final loss (``finish(train_loss=...)``) wins over the history's last value
        and also counts towards the best.
        """
        for name, explicit in (("train_loss", train_loss), ("val_loss", val_loss)):
            values = self.column(name)
            present = [v for v in values if v is not None]
            final = explicit if explicit is not None else (present[-1] if present else None)
            candidates = _finite(present + ([explicit] if explicit is not None else []))
            setattr(self, f"final_{name}", final)
            setattr(self, f"best_{name}", min(candidates) if candidates else None)


# ---------------------------------------------------------------------------------------
# Applying records (shared by the live tracker and the journal replay).


def apply_metrics(log: ExperimentLog, row: MetricsSnapshot) -> int | None:
    """Add a ``log_metrics`` row. Returns the superseded rows' first gradient step, if any.

    Same iteration as the last row, which only an eval filled: the two merge. At or before
    the last row otherwise: a rollback, see the module docstring.
    """
    history = log.metrics_history
    last_iteration = history.last_iteration
    if last_iteration is None or row.iteration > last_iteration:
        history.append(row)
        return None
    last = history[-1]
    if row.iteration == last.iteration and not last.has_train_metrics:
        row.val_loss = last.val_loss if row.val_loss is None else row.val_loss
        if last.extra:
            row.extra = {**last.extra, **(row.extra or {})}
        history[-1] = row
        return None
    superseded = history.truncate(history.index_of(row.iteration))
    log.superseded_history.extend(superseded)
    history.append(row)
    return superseded[0].gradient_step if superseded else None


def apply_eval(
    log: ExperimentLog,
    iteration: int,
    gradient_step: int,
    wallclock_time: float,
    val_loss: float | None,
    train_loss: float | None,
    extra: dict[str, Any] | None,
) -> MetricsSnapshot:
    """Record an evaluation at ``iteration``: fill that row, or add one in order."""
    history = log.metrics_history
    last_iteration = history.last_iteration
    index = (
        len(history)
        if last_iteration is None or iteration > last_iteration
        else history.index_of(iteration)
    )
    if index < len(history) and history[index].iteration == iteration:
        row = copy(history[index])  # never changed in place: a save may be writing it
        if val_loss is not None:
            row.val_loss = val_loss
        if train_loss is not None:
            if row.train_loss is None:
                row.train_loss = train_loss
            else:
                row.extra = {**(row.extra or {}), "eval_train_loss": train_loss}
        if extra:
            row.extra = {**(row.extra or {}), **extra}
        history[index] = row
        return row
    row = MetricsSnapshot(
        iteration=iteration,
        gradient_step=gradient_step,
        wallclock_time=wallclock_time,
        train_loss=train_loss,
        val_loss=val_loss,
        extra=dict(extra) if extra else None,
    )
    if index == len(history):
        history.append(row)
    else:
        history.insert(index, row)
    return row


def apply_finish(
    log: ExperimentLog,
    end_time: str,
    duration_seconds: float,
    train_loss: float | None,
    val_loss: float | None,
    notes: str | None,
) -> None:
    """Close a run: end time, duration, summary, notes."""
    log.end_time = end_time
    log.duration_seconds = wrap_float(float(duration_seconds))
    log.compute_summary(train_loss=train_loss, val_loss=val_loss)
    if notes is not None:
        log.notes = notes
    log.status = "finished"


def superseded_step(log: ExperimentLog, iteration: int) -> int | None:
    """The gradient step of the first row a metrics row at ``iteration`` would supersede."""
    history = log.metrics_history
    last_iteration = history.last_iteration
    if last_iteration is None or iteration > last_iteration:
        return None
    last = history[-1]
    if iteration == last.iteration and not last.has_train_metrics:
        return None
    return history[history.index_of(iteration)].gradient_step


_HISTORY_NAMES = frozenset({"metrics_history", "superseded_history"})

from . import history as _history  # noqa: E402  (it builds MetricsSnapshot rows)
