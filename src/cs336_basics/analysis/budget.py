"""Runs compared at an equal budget: each run's metrics at exactly ``tokens=2e8``,
``gradient_step=5000``, ``wallclock=3600`` (seconds) or ``flops=1e18``.

The rule (:func:`value_at`): the **last value logged at or before** the budget on that
axis (the row with the largest axis value not past it; of rows with equal axis values, the
later), with how far before it was logged (``before``: budget minus that row's axis value,
in the axis's units). Nothing is interpolated unless asked: with ``interpolate=True`` a
budget between two logged values gets the straight line between them (both finite), and
the result says so (``how == "interpolated"``, ``before`` is then 0 and ``at`` the
budget). A NaN or infinite loss logged at or before the budget is the value (a diverged
run is reported as diverged, not as its last finite loss).

A run that **never reached** the budget (its last row's axis value is below it) has no
value (``how == "not_reached"``; ``at`` is how far it got); a run without the axis (the
tokens axis of a run whose tokens per step are unknown, flops without FLOPs per token)
says ``"no_axis"``; one that logged the metric only after the budget, ``"none_before"``;
one that never logged it, ``"no_values"``.

Budgets are numbers in the axis's units; :func:`parse_budget` reads what a command line
gives: ``tokens=2e8``, ``tokens=200M``, ``gradient_step=5k``, ``wallclock=2h`` (``s``,
``m``, ``h``, ``d``), ``flops=1.5e18``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..core.errors import UsageError
from ..core.log import ExperimentLog
from ..core.row import AXES, axis

#: What :attr:`BudgetValue.how` says.
HOWS = ("exact", "before", "interpolated", "not_reached", "no_axis", "none_before", "no_values")
_COUNT_SUFFIXES = {"k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9, "t": 1e12, "p": 1e15, "e": 1e18}
_TIME_SUFFIXES = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_BUDGET = re.compile(r"^\s*([A-Za-z_]+)\s*=\s*([-+0-9.eE]+)\s*([A-Za-z]*)\s*$")


@dataclass(frozen=True)
class BudgetValue:
    """One metric of one run at a budget (see the module docstring).

    ``value``: the metric there (None when there is none: see ``how``); ``at``: the axis
    value of the row it comes from (``not_reached``: the last axis value the run got to);
    ``before``: ``budget - at`` (>= 0) for a value taken at or before the budget;
    ``iteration``: that row's iteration; ``reached``: the run got to the budget;
    ``interpolated``: the value is on the line between two rows (``how ==
    "interpolated"``)."""

    metric: str
    axis: str
    budget: float
    value: float | None
    at: float | None
    before: float | None
    iteration: int | None
    reached: bool
    how: str

    @property
    def interpolated(self) -> bool:
        return self.how == "interpolated"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "axis": self.axis,
            "budget": self.budget,
            "value": self.value,
            "at": self.at,
            "before": self.before,
            "iteration": self.iteration,
            "reached": self.reached,
            "interpolated": self.interpolated,
            "how": self.how,
        }


def _check_budget(budget: Any) -> float:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise UsageError(f"budget: expected a number, got {budget!r:.40}")
    value = float(budget)
    if not math.isfinite(value):
        raise UsageError(f"budget: expected a finite number, got {budget!r}")
    return value


def value_at(
    log: ExperimentLog, axis_name: str, budget: float, metric: str, *, interpolate: bool = False
) -> BudgetValue:
    """``metric`` of ``log`` at ``budget`` on the axis ``axis_name`` (see the module
    docstring for the rule)."""
    chosen = axis(axis_name).name
    budget = _check_budget(budget)
    xs = log.axis_values(chosen)

    def result(**fields: Any) -> BudgetValue:
        base: dict[str, Any] = dict(value=None, at=None, before=None, iteration=None)
        base.update(fields)
        return BudgetValue(metric=metric, axis=chosen, budget=budget, **base)

    if xs is None:
        return result(reached=False, how="no_axis")
    if not xs:
        return result(reached=False, how="no_values")
    furthest = max(xs)
    reached = furthest >= budget
    if not reached:
        return result(at=furthest, reached=False, how="not_reached")
    history = log.metrics_history
    rows, values = history.floats(metric)
    if not values:
        return result(reached=True, how="no_values")
    positions = range(len(values)) if rows is None else rows
    best: int | None = None  # index into values of the last value at or before the budget
    after: int | None = None  # ... and of the first one past it (for interpolation)
    for k, row in enumerate(positions):
        x = xs[row]
        if x <= budget:
            if best is None or x >= xs[positions[best]]:
                best = k
        elif after is None or x < xs[positions[after]]:
            after = k
    if best is None:
        return result(reached=True, how="none_before")
    row = positions[best]
    x, value = xs[row], values[best]
    iteration = history.floats("iteration")[1][row]
    if x == budget:
        return result(
            value=value, at=x, before=0.0, iteration=int(iteration), reached=True, how="exact"
        )
    if interpolate and after is not None:
        x1, value1 = xs[positions[after]], values[after]
        if math.isfinite(value) and math.isfinite(value1) and x1 > x:
            line = value + (value1 - value) * (budget - x) / (x1 - x)
            return result(
                value=line, at=budget, before=0.0, iteration=None, reached=True, how="interpolated"
            )
    return result(
        value=value, at=x, before=budget - x, iteration=int(iteration), reached=True, how="before"
    )


def values_at(
    log: ExperimentLog,
    axis_name: str,
    budget: float,
    metrics: tuple[str, ...] | list[str] = ("train_loss", "val_loss"),
    *,
    interpolate: bool = False,
) -> dict[str, BudgetValue]:
    """:func:`value_at` for each of ``metrics``, by metric."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    return {m: value_at(log, axis_name, budget, m, interpolate=interpolate) for m in metrics}


def parse_budget(text: str) -> tuple[str, float]:
    """``"tokens=2e8"`` -> ``("tokens", 2e8)``; the axis by any of its names (``AXES``),
    counts with ``k``/``M``/``G``/``B``/``T`` suffixes, wall-clock with ``s``/``m``/``h``/
    ``d``; ``UsageError`` saying what is expected."""
    found = _BUDGET.match(text or "")
    expected = (
        f"expected AXIS=NUMBER with AXIS one of {', '.join(AXES)} (e.g. tokens=2e8, "
        "gradient_step=5k, wallclock=2h, flops=1e18)"
    )
    if found is None:
        raise UsageError(f"budget {text!r}: {expected}")
    name, number, suffix = found.groups()
    try:
        chosen = axis(name).name
        value = float(number)
    except (UsageError, ValueError) as exc:
        raise UsageError(f"budget {text!r}: {expected}") from exc
    if suffix:
        table = _TIME_SUFFIXES if chosen == "wallclock" else _COUNT_SUFFIXES
        scale = table.get(suffix.lower())
        if scale is None:
            units = ", ".join(table)
            raise UsageError(f"budget {text!r}: unknown unit {suffix!r} for {chosen} ({units})")
        value *= scale
    return chosen, _check_budget(value)
