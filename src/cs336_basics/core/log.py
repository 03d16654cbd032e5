"""A whole run, ``ExperimentLog``, what is known about it, and the rules that change it.

``ExperimentLog`` is the guide's document in memory: config, summary, history. The facts a
listing, a report or the page shows (status, where it diverged, tokens seen, best and last
losses) are computed here, once, by :meth:`ExperimentLog.results`, and carried as data.

The functions at the end apply one logged record to a log; the tracker, the journal replay,
the W&B mirror and the readers of W&B runs all use them, so a run recovered from its
journal is the run the tracker held in memory.

History rules (also in the README):

- rows are kept in increasing ``iteration`` order, one row per iteration;
- an eval at an iteration that has a row fills that row, otherwise it adds one;
- an update (``apply_update``) adds values to the row of its iteration, the last one;
- a metrics row for an iteration at or before the last row (a restart from an older
  checkpoint) *supersedes* the rows from that iteration on: they move, unchanged, to
  ``ExperimentLog.superseded_history`` (saved in the JSON) and the new row takes their place.
"""

from __future__ import annotations

import math
import statistics
from array import array
from copy import copy
from dataclasses import dataclass, field
from typing import Any

from .alerts import Alert
from .config import ExperimentConfig
from .flops import mfu as flops_utilisation
from .history import History, as_history
from .row import LOSS_FIELDS, ROW_FIELDS, MetricsSnapshot, axis
from .values import wrap_float

#: What a run's status is: ``running`` (a live process writes it), ``finished``, or
#: ``unfinished`` (it stopped before ``finish()``: crashed, killed, closed or preempted).
STATUSES = ("running", "finished", "unfinished")
#: The summary's MFU is the median of the per-row MFU over this many last rows.
MFU_ROWS = 100
#: The summary key (and tag) of a run a hyperparameter search stopped early on purpose (a
#: pruned Optuna trial, ``cs336_basics.sweep``): ``summary["pruned"] is True``. The document's
#: ``status`` stays one of :data:`STATUSES` (``finished``); what listings show,
#: ``RunResults.status``, says ``pruned``.
PRUNED = "pruned"


def import_pandas(what: str) -> Any:
    """pandas, or an ImportError that says how to install it."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            f"{what} needs pandas: pip install 'cs336-basics[pandas]' (or pip install pandas)"
        ) from exc
    return pandas


@dataclass(frozen=True)
class RunResults:
    """What every listing, the report and the page show for a run, computed once.

    For a finished run the losses are the document's summary (explicit final losses win);
    for any other run they come from its history so far (``from_history``), so a crashed
    or preempted run shows its best and last losses too.
    """

    status: str  # running | finished | unfinished | diverged | pruned (see PRUNED)
    diverged_at: int | None
    iterations: int
    gradient_steps: int
    tokens: int | None
    best_train_loss: float | None
    best_val_loss: float | None
    final_train_loss: float | None
    final_val_loss: float | None
    duration_seconds: float | None
    from_history: bool
    #: Alerts recorded (NaN/inf, spikes, explosions; see ``core.alerts``).
    alerts: int = 0
    #: Training FLOPs so far (tokens x FLOPs per token), when both are known.
    flops: float | None = None
    #: Median model FLOPs utilisation over the last :data:`MFU_ROWS` rows with a
    #: throughput (see :meth:`ExperimentLog.mfu_values`), when known.
    mfu: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


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
    metrics_history: History = field(default_factory=History)
    notes: str = ""
    run_id: str = ""
    status: str = "running"  # running | finished | unfinished (the process died before finish)
    superseded_history: History = field(default_factory=History)
    mirrors: dict[str, Any] = field(default_factory=dict)  # e.g. {"wandb": {"run_id": ...}}
    #: Config changes made by resuming with another config: time, after_iteration,
    #: previous and new values of the keys that changed (oldest first).
    config_changes: list[dict[str, Any]] = field(default_factory=list)
    #: Labels for finding and grouping runs (a sweep, the seeds of one setting).
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None
    #: Summary values besides the guide's five: set by the script (``run.summary`` of the
    #: W&B drop-in) or read back from W&B (numbers and strings).
    summary: dict[str, Any] = field(default_factory=dict)
    #: System metrics sampled off the training thread (``runtime.system_metrics``): one row
    #: per sample, ``iteration`` = the sample's number (from 0), ``gradient_step`` = the
    #: optimizer steps done when it was taken, ``wallclock_time`` = the run's clock, the
    #: values as extra metrics (``gpu.0.util``, ``proc.rss_gib``, ...).
    system_history: History = field(default_factory=History)
    #: Events detected while the run trained (``core.alerts``), in the order detected.
    alerts: list[Alert] = field(default_factory=list)
    #: What MFU and the FLOPs axis need, when the script gave it: ``flops_per_token``,
    #: ``peak_flops`` (of all the devices ``tokens_per_sec`` counts), and how the peak was
    #: found (``device_name``, ``dtype``, ``num_devices``).
    compute: dict[str, Any] = field(default_factory=dict)
    #: Other ranks' system metrics (rank -> samples), read from their own files beside
    #: the run (``RunFiles.rank_system``); not part of the document.
    system_by_rank: dict[int, History] = field(default_factory=dict, compare=False)
    #: Where the run came from, recorded at start (``runtime.provenance``): git commit,
    #: branch and dirty state, command line, versions, host, GPUs, data fingerprints.
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)  # file it was loaded from

    def __setattr__(self, name: str, value: Any) -> None:
        # Histories are columnar (see .history); a list given or assigned is copied in.
        if name in _HISTORY_NAMES:
            value = as_history(value)
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        """One short line (a dict of runs in a REPL stays readable): name, run id, status,
        rows and the best val loss of :meth:`results`."""
        results = self.results()
        best = results.best_val_loss
        shown = "no val loss" if best is None else f"best val {best:.4f}"
        if best is not None and results.from_history:
            shown += " so far"
        run_id = f" ({self.run_id})" if self.run_id else ""
        rows = len(self.metrics_history)
        return (
            f"<ExperimentLog {self.experiment_name}{run_id}, {results.status}, "
            f"{rows} row{'' if rows == 1 else 's'}, {shown}>"
        )

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
    def pruned(self) -> bool:
        """Whether a hyperparameter search stopped this run early on purpose (see
        :data:`PRUNED`)."""
        return self.summary.get(PRUNED) is True

    @property
    def display_status(self) -> str:
        """What listings show: ``"diverged"`` once a loss went NaN/inf, ``"pruned"`` for a
        run a search stopped early, else :attr:`status`."""
        if self.diverged_at is not None:
            return "diverged"
        return PRUNED if self.pruned else self.status

    @property
    def tokens_per_step(self) -> int | None:
        """Tokens per gradient step: ``batch_size x context_length`` (``batch_size`` counts
        the sequences of one optimizer step: accumulation and ranks included). None when
        either is not set or not a positive number: never guessed from a default."""
        batch, context = self.config.batch_size, self.config.context_length
        if not (_positive_number(batch) and _positive_number(context)):
            return None
        return int(batch) * int(context)

    @property
    def tokens_seen(self) -> int | None:
        """Tokens per step x gradient steps so far (None without history or when tokens
        per step are unknown)."""
        per_step = self.tokens_per_step
        steps = self.last_gradient_step
        if per_step is None or steps is None:
            return None
        return per_step * int(steps)

    @property
    def flops_per_token(self) -> float | None:
        """Training FLOPs per token (``compute``), None when not given."""
        return _positive_or_none(self.compute.get("flops_per_token"))

    @property
    def peak_flops(self) -> float | None:
        """Peak FLOP/s of the devices the throughput counts (``compute``), None: unknown."""
        return _positive_or_none(self.compute.get("peak_flops"))

    @property
    def flops_seen(self) -> float | None:
        """Tokens seen x FLOPs per token (None when either is unknown)."""
        tokens, per_token = self.tokens_seen, self.flops_per_token
        return None if tokens is None or per_token is None else tokens * per_token

    def axis_values(self, name: str, history: History | None = None) -> array | None:
        """Every row's value on the x-axis ``name`` (see ``row.AXES``) as float64, read from
        the columns; None for the tokens axis of a run whose tokens per step are unknown,
        and for the flops axis of a run whose FLOPs per token are unknown too.
        ``history``: another history of this run (``system_history``) instead of its rows."""
        chosen = axis(name)
        rows = self.metrics_history if history is None else history
        if chosen.field is not None:
            return rows.floats(chosen.field)[1]
        per_step: float | None = self.tokens_per_step
        if per_step is not None and chosen.name == "flops":
            per_token = self.flops_per_token
            per_step = None if per_token is None else per_step * per_token
        if per_step is None:
            return None
        steps = rows.floats("gradient_step")[1]
        return array("d", (s * per_step for s in steps))

    def alert_positions(self, name: str) -> list[tuple[float, Alert]]:
        """Each alert with its place on the x-axis ``name`` (where its event began: the
        marker a plot or the page draws); empty when the run has no such axis."""
        chosen = axis(name)
        out: list[tuple[float, Alert]] = []
        per_step: float | None = None
        if chosen.field is None:
            per_step = self.tokens_per_step
            if per_step is not None and chosen.name == "flops":
                per_token = self.flops_per_token
                per_step = None if per_token is None else per_step * per_token
            if per_step is None:
                return out
        for alert in self.alerts:
            if chosen.field == "iteration":
                x = float(alert.iteration)
            elif chosen.field == "gradient_step":
                x = float(alert.gradient_step)
            elif chosen.field == "wallclock_time":
                x = float(alert.wallclock_time)
            else:
                assert per_step is not None
                x = alert.gradient_step * per_step
            out.append((x, alert))
        return out

    def system_to_pandas(self) -> Any:
        """The system-metrics samples as a ``pandas.DataFrame``: ``sample`` (its number),
        ``gradient_step``, ``wallclock_time``, then one column per metric (NaN where a
        sample lacks it). Needs pandas."""
        pandas = import_pandas("ExperimentLog.system_to_pandas()")
        history = self.system_history
        frame = {
            "sample": history.to_numpy("iteration"),
            "gradient_step": history.to_numpy("gradient_step"),
            "wallclock_time": history.to_numpy("wallclock_time"),
        }
        frame.update({name: history.to_numpy(name) for name in history.extra_names()})
        return pandas.DataFrame(frame)

    def mfu_values(self) -> tuple[array | None, array] | None:
        """Model FLOPs utilisation of every row with a throughput, as ``History.floats``
        gives values (``(rows, values)``): ``tokens_per_sec x flops_per_token /
        peak_flops`` (``core.flops.mfu``, the one definition); None when the run does not
        know its FLOPs per token or its peak."""
        per_token, peak = self.flops_per_token, self.peak_flops
        if per_token is None or peak is None:
            return None
        rows, throughput = self.metrics_history.floats("tokens_per_sec")
        values = (flops_utilisation(t, per_token, peak) for t in throughput)
        return rows, array("d", (math.nan if v is None else v for v in values))

    def recent_mfu(self) -> float | None:
        """The summary's MFU: the median over the last :data:`MFU_ROWS` rows with a finite
        value; without FLOPs per token and peak, the same of an ``mfu`` extra metric the
        script logged itself (the W&B drop-in's nanoGPT-style runs); None otherwise."""
        derived = self.mfu_values()
        if derived is not None:
            values = derived[1]
        else:
            values = self.metrics_history.floats("mfu")[1]
        finite = [v for v in values[-MFU_ROWS:] if math.isfinite(v)]
        return statistics.median(finite) if finite else None

    def results(self) -> RunResults:
        """Status, divergence, progress and best/last losses: see :class:`RunResults`."""
        history = self.metrics_history
        last = history.last_iteration
        if self.finished:
            losses = [
                getattr(self, f"{kind}_{name}")
                for name in LOSS_FIELDS
                for kind in ("best", "final")
            ]
        else:
            losses = [v for name in LOSS_FIELDS for v in history.best_last(name)]
        best_train, final_train, best_val, final_val = losses
        diverged = self.diverged_at
        return RunResults(
            status="diverged" if diverged is not None else PRUNED if self.pruned else self.status,
            diverged_at=diverged,
            iterations=0 if last is None else last + 1,
            gradient_steps=self.last_gradient_step or 0,
            tokens=self.tokens_seen,
            best_train_loss=best_train,
            best_val_loss=best_val,
            final_train_loss=final_train,
            final_val_loss=final_val,
            duration_seconds=self.duration_seconds
            if self.finished or self.duration_seconds is not None
            else (history[-1].wallclock_time if history else None),
            from_history=not self.finished,
            alerts=len(self.alerts),
            flops=self.flops_seen,
            mfu=self.recent_mfu(),
        )

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
            best, last = self.metrics_history.best_last(name)
            final = explicit if explicit is not None else last
            if explicit is not None and not math.isnan(explicit):
                best = explicit if best is None else min(best, explicit)
            setattr(self, f"final_{name}", final)
            setattr(self, f"best_{name}", best)


def _positive_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value > 0


def _positive_or_none(value: Any) -> float | None:
    return float(value) if _positive_number(value) else None


_HISTORY_NAMES = frozenset({"metrics_history", "superseded_history", "system_history"})


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


def _place(
    log: ExperimentLog, iteration: int, gradient_step: int, wallclock_time: float
) -> tuple[int, MetricsSnapshot, bool]:
    """Where a record for ``iteration`` lands: (index, the row to change (a copy: a save may
    be writing the original) or a new empty one, whether that row exists already)."""
    history = log.metrics_history
    last_iteration = history.last_iteration
    index = (
        len(history)
        if last_iteration is None or iteration > last_iteration
        else history.index_of(iteration)
    )
    if index < len(history) and history[index].iteration == iteration:
        return index, copy(history[index]), True
    return index, MetricsSnapshot(iteration, gradient_step, wallclock_time), False


def _store(log: ExperimentLog, index: int, row: MetricsSnapshot, exists: bool) -> None:
    history = log.metrics_history
    if exists:
        history[index] = row
    elif index == len(history):
        history.append(row)
    else:
        history.insert(index, row)


def apply_eval(
    log: ExperimentLog,
    iteration: int,
    gradient_step: int,
    wallclock_time: float,
    val_loss: float | None,
    train_loss: float | None,
    extra: dict[str, Any] | None,
) -> MetricsSnapshot:
    """Record an evaluation at ``iteration``: fill that row, or add one in order. A train
    loss measured by the eval goes to ``train_loss`` when the row has none, else to the
    extra metric ``eval_train_loss``."""
    index, row, exists = _place(log, iteration, gradient_step, wallclock_time)
    if val_loss is not None:
        row.val_loss = val_loss
    if train_loss is not None:
        if row.train_loss is None:
            row.train_loss = train_loss
        else:
            row.extra = {**(row.extra or {}), "eval_train_loss": train_loss}
    if extra:
        row.extra = {**(row.extra or {}), **extra}
    _store(log, index, row, exists)
    return row


def apply_update(
    log: ExperimentLog,
    iteration: int,
    gradient_step: int,
    wallclock_time: float,
    values: dict[str, Any],
) -> MetricsSnapshot:
    """Add values to the row of ``iteration`` (or add that row in order): ``values`` maps
    row fields and extra metrics to numbers; a value replaces the row's. Used where a
    script logs one iteration in several calls (the W&B drop-in), which is not a restart."""
    index, row, exists = _place(log, iteration, gradient_step, wallclock_time)
    extra = dict(row.extra or {})
    for name, value in values.items():
        if name in _UPDATABLE:
            setattr(row, name, value)
        else:
            extra[name] = value
    row.extra = extra or None
    _store(log, index, row, exists)
    return row


_UPDATABLE = frozenset(ROW_FIELDS) - {"iteration", "gradient_step", "wallclock_time"}


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


def apply_system(log: ExperimentLog, row: MetricsSnapshot) -> bool:
    """Add a system-metrics sample (its ``iteration`` is the sample's number); one the
    history holds already (a sample both in a document and in a journal continuing it) is
    skipped. Returns whether it was added."""
    history = log.system_history
    last = history.last_iteration
    if last is not None and row.iteration <= last:
        return False
    history.append(row)
    return True


def apply_alert(log: ExperimentLog, number: int, alert: Alert) -> bool:
    """Add alert number ``number`` (counted from 0 in the run); one the log holds already
    is skipped. Returns whether it was added."""
    if number < len(log.alerts):
        return False
    log.alerts.append(alert)
    return True


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
