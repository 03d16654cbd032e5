"""What the page asks for, as JSON-ready dicts: the runs table, the curves (training rows
and system metrics, with alert markers), group bands and the budget cursor.

Every request names runs by run id (the file stem) and metrics by name; anything unknown or
malformed raises :class:`BadRequest` naming the parameter, the value and what was expected
(the server answers 400 or 404 with that message).
"""

from __future__ import annotations

import math
from typing import Any

from ..analysis.budget import values_at
from ..core.row import AXIS_FIELDS
from ..core.text import describe_mirror
from ..core.values import json_number
from .series import (
    MAX_POINTS,
    MAX_SMOOTHING,
    TRAIN,
    UNSMOOTHED,
    X_AXES,
    check_source,
    curve,
    group_band,
)
from .store import RunStore, RunView

MAX_RUNS_PER_REQUEST = 500


class BadRequest(ValueError):
    """A request the server refuses: ``status`` 400 (malformed) or 404 (unknown run)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


_summaries: dict[str, tuple[int, dict[str, Any]]] = {}  # by run id: (version, row)


def run_summary(run_id: str, data: RunView | None, error: str | None) -> dict[str, Any]:
    """One row of the runs table (kept per run version: the page and its live events ask
    for every run at once)."""
    if data is None:
        _summaries.pop(run_id, None)
        return {
            "id": run_id,
            "name": run_id,
            "status": "unreadable" if error else "loading",
            "error": error,
        }
    found = _summaries.get(run_id)
    if found is not None and found[0] == data.version:
        return found[1]
    row = _run_summary(run_id, data)
    _summaries[run_id] = (data.version, row)
    return row


def _run_summary(run_id: str, data: RunView) -> dict[str, Any]:
    log = data.log
    results = data.results  # the numbers every listing shows, computed once
    history = log.metrics_history
    last = history[-1].to_dict() if history else {}
    mirror = log.mirrors.get("wandb")
    return {
        "id": run_id,
        "name": log.experiment_name,
        "status": results.status,
        "live": log.status == "running",
        "source": "wandb" if run_id.startswith("wandb_") else "local",
        "start_time": log.start_time,
        "rows": len(history),
        "diverged_at": results.diverged_at,
        "tokens": results.tokens,
        "best_train_loss": json_number(results.best_train_loss),
        "last_train_loss": json_number(results.final_train_loss),
        "best_val_loss": json_number(results.best_val_loss),
        "last_val_loss": json_number(results.final_val_loss),
        "last": {k: json_number(v) for k, v in last.items() if k != "extra"},
        "metrics": sorted(history.metric_names()),
        "config": {k: json_number(v) for k, v in log.config.to_dict().items() if _plain(v)},
        "tags": list(log.tags),
        "group": log.group,
        "alerts": results.alerts,
        "mfu": json_number(results.mfu),
        "system_metrics": log.system_history.metric_names(),
        "system_ranks": sorted(log.system_by_rank),
        "mirror": describe_mirror(mirror) if mirror is not None else None,
        "version": data.version,
    }


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def runs(store: RunStore, only: set[str] | None = None) -> dict[str, Any]:
    """The runs table (``only``: just these runs, for live updates)."""
    out = []
    if only is None:  # forget runs gone from the directory
        for gone in set(_summaries).difference(store.entries):
            _summaries.pop(gone, None)
    for run_id, entry in sorted(store.entries.items()):
        if only is None or run_id in only:
            out.append(run_summary(run_id, store.snapshot(run_id), entry.error))
    return {
        "log_dir": str(store.log_dir),
        "version": store.version,
        "loading": store.loading,
        "ids": sorted(store.entries),
        "runs": out,
        "axes": list(X_AXES),
        "stored_axes": list(AXIS_FIELDS),
        "unsmoothed": sorted(UNSMOOTHED),  # the page never smooths these (series.UNSMOOTHED)
    }


def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str:
    values = query.get(name)
    if not values:
        if default is None:
            raise BadRequest(f"{name}: missing (expected {name}=...)")
        return default
    if len(values) > 1:
        raise BadRequest(f"{name}: given {len(values)} times, expected once")
    return values[0]


def _number(query: dict[str, list[str]], name: str, default: str, low: float, high: float) -> float:
    text = _one(query, name, default)
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name}={text[:40]!r}: expected a number") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise BadRequest(f"{name}={text[:40]!r}: expected a number from {low:g} to {high:g}")
    return value


def _axis(query: dict[str, list[str]]) -> str:
    """``x``: an x-axis (``core.row.AXES``; default ``gradient_step``)."""
    x = _one(query, "x", "gradient_step")
    if x not in X_AXES:
        raise BadRequest(f"x={x[:40]!r}: expected one of {', '.join(X_AXES)}")
    return x


def _curve_query(
    query: dict[str, list[str]],
) -> tuple[str, str, float, int, tuple[float, float] | None]:
    """``metric``, ``x``, ``smoothing``, ``points`` and the optional ``x0``/``x1`` range."""
    metric = _one(query, "metric")
    x = _axis(query)
    smoothing = _number(query, "smoothing", "0", 0.0, MAX_SMOOTHING)
    points = int(_number(query, "points", "1200", 2, MAX_POINTS))
    x_range = None
    if "x0" in query or "x1" in query:
        x0 = _number(query, "x0", "-1e308", -1e308, 1e308)
        x1 = _number(query, "x1", "1e308", -1e308, 1e308)
        if x0 > x1:
            raise BadRequest(f"x0={x0:g} > x1={x1:g}: expected x0 <= x1")
        x_range = (x0, x1)
    return metric, x, smoothing, points, x_range


def _run_ids(store: RunStore, query: dict[str, list[str]]) -> list[str]:
    wanted = _one(query, "runs")
    ids = sorted(store.entries) if wanted == "*" else [r for r in wanted.split(",") if r]
    if not ids or len(ids) > MAX_RUNS_PER_REQUEST:
        raise BadRequest(f"runs: expected 1 to {MAX_RUNS_PER_REQUEST} run ids, got {len(ids)}")
    for run_id in ids:
        if run_id not in store.entries:
            raise BadRequest(f"run {run_id[:80]!r}: no such run in {store.log_dir}", 404)
    return ids


def bands(store: RunStore, query: dict[str, list[str]]) -> dict[str, Any]:
    """The runs of each group among ``runs`` as their mean and band (``series.group_band``);
    the same parameters as :func:`series`. Runs without a group are left out."""
    metric, x, smoothing, points, x_range = _curve_query(query)
    groups: dict[str, list[Any]] = {}
    for run_id in _run_ids(store, query):
        data = store.snapshot(run_id)
        if data is not None and data.log.group:
            groups.setdefault(data.log.group, []).append(data)
    out = []
    for group, views in sorted(groups.items()):
        found = group_band(views, metric, x, smoothing, points, x_range)
        if found is not None:
            found["group"] = group
            found["versions"] = [v.version for v in views]
            out.append(found)
    return {"metric": metric, "x": x, "smoothing": smoothing, "bands": out}


def series(store: RunStore, query: dict[str, list[str]]) -> dict[str, Any]:
    """``metric``, ``runs`` (comma-separated ids, or ``*``: every loaded run), ``x``,
    ``smoothing``, ``points``, an optional ``x0``/``x1`` range and ``source`` (``train``,
    the default: the training rows; ``system`` or ``system:K``: the system-metrics samples
    of rank 0 or K): the thinned curves of those runs (``runs`` in the answer: the loaded
    runs asked for)."""
    metric, x, smoothing, points, x_range = _curve_query(query)
    try:
        source = check_source(_one(query, "source", TRAIN))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    out = []
    asked = []
    for run_id in _run_ids(store, query):
        data = store.snapshot(run_id)
        if data is None:
            continue
        asked.append(run_id)
        points_of_run = curve(data, metric, x, smoothing, points, x_range, source)
        if points_of_run is not None:
            points_of_run["version"] = data.version
            out.append(points_of_run)
    return {
        "metric": metric,
        "x": x,
        "smoothing": smoothing,
        "source": source,
        "runs": asked,
        "series": out,
    }


def at(store: RunStore, query: dict[str, list[str]]) -> dict[str, Any]:
    """The budget cursor: ``runs`` and ``x`` as for :func:`series`, ``at`` (a number on
    that axis), ``metric`` (comma-separated; default ``train_loss,val_loss``) and
    ``interpolate`` (``0``, the default, or ``1``): each run's values there by the rule of
    ``compare --at`` (``analysis.budget.value_at``: the last value logged at or before it,
    and how far before)."""
    x = _axis(query)
    budget = _number(query, "at", "0", -1e308, 1e308)
    metrics = [m for m in _one(query, "metric", "train_loss,val_loss").split(",") if m]
    if not metrics or len(metrics) > 8:
        raise BadRequest(f"metric: expected 1 to 8 comma-separated names, got {len(metrics)}")
    flag = _one(query, "interpolate", "0")
    if flag not in ("0", "1"):
        raise BadRequest(f"interpolate={flag[:20]!r}: expected 0 or 1")
    out = []
    for run_id in _run_ids(store, query):
        data = store.snapshot(run_id)
        if data is None:
            continue
        found = values_at(data.log, x, budget, metrics, interpolate=flag == "1")
        out.append(
            {
                "run": run_id,
                "values": {
                    m: {k: json_number(v) for k, v in value.to_dict().items()}
                    for m, value in found.items()
                },
            }
        )
    return {"x": x, "at": budget, "metrics": metrics, "runs": out}
