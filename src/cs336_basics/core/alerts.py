"""Divergence, loss spikes and gradient-norm explosions, detected as rows arrive (pure).

:class:`AlertDetector` is fed every logged row (and every eval) in order; it keeps a small
state per watched metric and returns the :class:`Alert` s a row confirms. The tracker runs
it on its journal thread, as rows are written (after accelerator values were read), never
on the training thread. The rules and their defaults (:class:`AlertRules`):

- **NaN / inf** (kind ``"nan"``): a loss (``train_loss``, ``val_loss``: ``nan_metrics``)
  that is NaN or infinite is reported at once, on the row where it happens; once per
  streak (the next finite value ends it).
- **Spike** (kind ``"spike"``, ``spike_metrics``: ``train_loss``) and **explosion** (kind
  ``"explosion"``, ``explosion_metrics``: the extra metric ``grad_norm`` by convention):
  each metric has a robust running baseline, an exponentially weighted mean ``m`` and an
  exponentially weighted mean absolute deviation ``d`` (weight ``alpha = 0.05`` on the new
  value, about the last 20 rows). A row is *high* when ``value > m + k * s`` with
  ``s = max(d, rel_floor * |m|)`` (``k = 8``, ``rel_floor = 0.02``: a metric whose noise
  is tiny still needs a jump of 16% to be high). An event is reported when ``persist = 3``
  consecutive rows are high, with the iteration, value and baseline of the first of them
  (``detected_at``: the row that confirmed it). High rows do not move the baseline, so a
  spike cannot hide itself. For ``explosion_metrics`` a NaN or infinite value counts as
  high (a GradScaler's skipped step is one row: not reported). Nothing is judged during
  the first ``warmup = 20`` values of a metric (its baseline forms). One report per event:
  the next is possible once a row is no longer high. A metric that stays high for
  ``rebase_after = 50`` rows has a new level: its baseline forms again from there.

Only rises are judged (a loss falling faster than usual is good news). With these defaults
the tests see no false alarm on real training curves of the example (three learning rates,
batch 16, logged every step) nor on simulated noisy ones, and every injected NaN, spike and
explosion is reported within ``persist`` rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

#: The kinds of alert, in the order listings show them.
ALERT_KINDS = ("nan", "spike", "explosion")
_LEVELS = {"nan": "ERROR", "spike": "WARN", "explosion": "WARN"}


@dataclass(frozen=True)
class Alert:
    """One event: where it began (``iteration``, ``gradient_step``, ``wallclock_time``),
    what (``kind``: nan, spike or explosion; ``metric``; ``value`` there), against what
    (``baseline``: the running mean; ``deviation``: the scale ``s`` of the rule) and the
    iteration of the row that confirmed it (``detected_at``)."""

    iteration: int
    gradient_step: int
    wallclock_time: float
    kind: str
    metric: str
    value: float
    baseline: float | None = None
    deviation: float | None = None
    detected_at: int | None = None

    @property
    def level(self) -> str:
        """W&B's alert level: ``ERROR`` for NaN/inf, else ``WARN``."""
        return _LEVELS.get(self.kind, "WARN")

    @property
    def title(self) -> str:
        """A short title (W&B wants under 64 characters)."""
        what = {"nan": "non-finite", "spike": "spike", "explosion": "explosion"}.get(
            self.kind, self.kind
        )
        return f"{self.metric} {what}"[:63]

    @property
    def text(self) -> str:
        """One line saying what happened where."""
        where = f"iteration {self.iteration} (gradient step {self.gradient_step})"
        if self.kind == "nan":
            return f"{self.metric} is {_number(self.value)} at {where}"
        against = ""
        if self.baseline is not None:
            against = f" against a baseline of {_number(self.baseline)}"
            if self.deviation:
                jump = (self.value - self.baseline) / self.deviation
                against += f" (+{jump:.1f} deviations of {_number(self.deviation)})"
        confirmed = ""
        if self.detected_at is not None and self.detected_at != self.iteration:
            confirmed = f"; still high at iteration {self.detected_at}"
        return f"{self.metric} rose to {_number(self.value)} at {where}{against}{confirmed}"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "alert") -> Alert:
        """An alert from its document/journal form; ``ValueError`` naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if f.name in ("iteration", "gradient_step"):
                if type(value) is not int:
                    raise ValueError(f"{where}.{f.name}: expected an integer, got {value!r:.40}")
            elif f.name == "detected_at":
                if value is not None and type(value) is not int:
                    raise ValueError(f"{where}.{f.name}: expected an integer, got {value!r:.40}")
            elif f.name in ("kind", "metric"):
                if type(value) is not str:
                    raise ValueError(f"{where}.{f.name}: expected a string, got {value!r:.40}")
            elif value is not None or f.name in ("wallclock_time", "value"):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{where}.{f.name}: expected a number, got {value!r:.40}")
                value = float(value)
            values[f.name] = value
        return cls(**values)


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


@dataclass(frozen=True)
class AlertRules:
    """What :class:`AlertDetector` watches and its thresholds (see the module docstring)."""

    nan_metrics: tuple[str, ...] = ("train_loss", "val_loss")
    spike_metrics: tuple[str, ...] = ("train_loss",)
    explosion_metrics: tuple[str, ...] = ("grad_norm",)
    k: float = 8.0
    persist: int = 3
    alpha: float = 0.05
    warmup: int = 20
    rel_floor: float = 0.02
    rebase_after: int = 50

    def __post_init__(self) -> None:
        for name in ("nan_metrics", "spike_metrics", "explosion_metrics"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"{name}: expected a tuple of metric names, got {value!r:.60}")
            object.__setattr__(self, name, tuple(value))
        if not (self.k > 0 and 0 < self.alpha <= 1 and self.rel_floor >= 0):
            raise ValueError("AlertRules: expected k > 0, 0 < alpha <= 1, rel_floor >= 0")
        for name in ("persist", "warmup", "rebase_after"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"AlertRules.{name}: expected a positive integer, got {value!r}")

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric some rule watches (each once, in the rules' order)."""
        return tuple(
            dict.fromkeys((*self.nan_metrics, *self.spike_metrics, *self.explosion_metrics))
        )


@dataclass
class _Baseline:
    """The running state of one metric under the spike/explosion rule."""

    count: int = 0
    mean: float = 0.0
    dev: float = 0.0
    high: list[tuple[int, int, float, float]] = field(default_factory=list)  # it, step, wall, v
    reported: bool = False
    started: tuple[float, float] | None = None  # baseline and scale when the high run began

    def update(self, value: float, alpha: float) -> None:
        # AlertDetector.observe inlines this for the common row (finite, not high, after
        # warm-up: about half the detector's time on the journal thread); change both.
        if self.count == 0:
            self.mean, self.dev = value, 0.0
        else:
            # Early on, plain means (weight 1/n) so the first values do not dominate.
            weight = max(alpha, 1.0 / (self.count + 1))
            self.dev += weight * (abs(value - self.mean) - self.dev)
            self.mean += weight * (value - self.mean)
        self.count += 1


class AlertDetector:
    """Applies :class:`AlertRules` to rows in order (see the module docstring).

    ``observe`` takes one row's values and returns the alerts it confirms. ``quiet``
    (priming a resumed run's detector with its last rows) updates the state and reports
    nothing. Not thread-safe: one thread feeds it.
    """

    def __init__(self, rules: AlertRules | None = None) -> None:
        self.rules = rules or AlertRules()
        self._baselines: dict[str, _Baseline] = {}
        self._in_nan: set[str] = set()
        rules = self.rules
        #: metric -> (its spike/explosion kind or None, under the NaN rule): one lookup a value
        self._plan: dict[str, tuple[str | None, bool]] = {
            metric: (
                "spike"
                if metric in rules.spike_metrics
                else "explosion"
                if metric in rules.explosion_metrics
                else None,
                metric in rules.nan_metrics,
            )
            for metric in rules.metrics
        }

    def observe(
        self,
        iteration: int,
        gradient_step: int,
        wallclock_time: float,
        values: dict[str, Any],
        quiet: bool = False,
    ) -> list[Alert]:
        rules = self.rules
        out: list[Alert] = []
        for metric, raw in values.items():
            plan = self._plan.get(metric)
            if plan is None:
                continue
            if type(raw) is float:
                value = raw
            elif raw is None or isinstance(raw, bool) or not isinstance(raw, (int, float)):
                continue
            else:
                value = float(raw)
            if plan[0] is not None and value - value == 0.0:  # finite: the common case first
                state = self._baselines.get(metric)
                if state is not None and state.count >= rules.warmup and not state.high:
                    mean, dev = state.mean, state.dev
                    floor = rules.rel_floor * (mean if mean >= 0 else -mean)
                    if value <= mean + rules.k * (dev if dev > floor else floor):
                        # not high (_judge's first branch), after warm-up: _Baseline.update
                        if plan[1] and self._in_nan:
                            self._in_nan.discard(metric)
                        weight = rules.alpha
                        count = state.count = state.count + 1
                        if weight < 1.0 / count:
                            weight = 1.0 / count
                        diff = value - mean
                        state.dev = dev + weight * ((diff if diff >= 0 else -diff) - dev)
                        state.mean = mean + weight * diff
                        continue
            finite = math.isfinite(value)
            if metric in rules.nan_metrics:
                if not finite:
                    if metric not in self._in_nan:
                        self._in_nan.add(metric)
                        out.append(
                            Alert(
                                iteration,
                                gradient_step,
                                wallclock_time,
                                "nan",
                                metric,
                                value,
                                detected_at=iteration,
                            )
                        )
                    continue
                self._in_nan.discard(metric)
            if metric in rules.spike_metrics:
                kind = "spike"
            elif metric in rules.explosion_metrics:
                kind = "explosion"
            else:
                continue
            if not finite and kind == "spike":
                continue  # (a NaN loss not under the NaN rule: no baseline to judge by)
            found = self._judge(metric, kind, iteration, gradient_step, wallclock_time, value)
            if found is not None:
                out.append(found)
        return [] if quiet else out

    def _judge(
        self, metric: str, kind: str, iteration: int, step: int, wall: float, value: float
    ) -> Alert | None:
        rules = self.rules
        state = self._baselines.get(metric)
        if state is None:
            state = self._baselines[metric] = _Baseline()
        if state.count < rules.warmup:
            if math.isfinite(value):
                state.update(value, rules.alpha)
            return None
        scale = max(state.dev, rules.rel_floor * abs(state.mean))
        high = not math.isfinite(value) or value > state.mean + rules.k * scale
        if not high:
            state.high.clear()
            state.reported = False
            state.started = None
            state.update(value, rules.alpha)
            return None
        if not state.high:
            state.started = (state.mean, scale)
        state.high.append((iteration, step, wall, value))
        if len(state.high) >= rules.rebase_after:  # a new level: learn it from here
            self._baselines[metric] = _Baseline()
            return None
        if state.reported or len(state.high) < rules.persist:
            return None
        state.reported = True
        first_it, first_step, first_wall, first_value = state.high[0]
        baseline, deviation = state.started or (state.mean, scale)
        return Alert(
            first_it,
            first_step,
            first_wall,
            kind,
            metric,
            first_value,
            baseline,
            deviation,
            iteration,
        )


def row_values(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of a row (a ``MetricsSnapshot``) that ``names`` watches: row fields and
    extra metrics."""
    out: dict[str, Any] = {}
    extra = getattr(row, "extra", None) or {}
    for name in names:
        value = extra.get(name) if name in extra else getattr(row, name, None)
        if value is not None:
            out[name] = value
    return out
