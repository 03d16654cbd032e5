"""The points of one curve as the page draws them: x-axis, x-range, smoothing, thinning.

- x-axes: those of ``core.row.AXES`` (``gradient_step``, ``iteration``, ``tokens``:
  gradient steps x the run's tokens per step, ``wallclock``: seconds since the run
  started), read from the run's columns (``History.floats``).
- Smoothing: TensorBoard's and W&B's debiased exponential moving average, computed over
  every finite value of the run (not over the thinned points, so zooming does not change
  it); the raw curve is sent too, to be drawn faint behind.
- Thinning: ``analysis.plots.thin_min_max``, the function the PNG plots use: about
  ``points`` points, each bin keeping its minimum and its maximum, so a spike is never lost.
  A whole curve of a long run is thinned from a finer thinning (8k points, itself min/max;
  made by the loading worker for the first chart, else cached), a zoomed range from the
  raw values in it.
- Rows: a run's training rows, or its system-metrics samples (``source``: ``system``,
  ``system:K`` for rank K; :func:`history_of`), the same way.
- Non-finite values are left out of the curve; the x of the first one is returned as the
  place the run diverged, as the PNG plots mark it.
- Groups: :func:`group_band`, the runs of one group as their mean and band
  (``analysis.groups.band``, which the PNG plots and the HTML report use too), over each
  run's smoothed values.
"""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

from ..analysis.groups import band
from ..analysis.plots import thin_min_max
from ..core.history import History
from ..core.log import ExperimentLog
from ..core.row import AXES
from ..core.values import json_number

X_AXES = tuple(AXES)
#: Where a curve's rows come from (:func:`history_of`): the run's training rows, or the
#: system-metrics samples (``system``: rank 0's; ``system:K``: rank K's).
TRAIN, SYSTEM = "train", "system"
FINE_POINTS = 8192
MAX_POINTS = 20000
MAX_SMOOTHING = 0.999
#: The page's default smoothing (TensorBoard's); its fine thinning is made when loading.
DEFAULT_SMOOTHING = 0.6
#: Metrics never smoothed, whatever the page asks: schedules the script sets, not
#: measurements (smoothing the learning rate moves its warmup peak).
UNSMOOTHED = frozenset({"learning_rate"})


class _Cache:
    """A small LRU cache shared by the request threads."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_cache = _Cache(512)  # prepared curves (usually views, not copies) and fine thinnings
_ema_cache = _Cache(8)  # whole smoothed curves (8 bytes a row), for zoomed views


def ema(values: array, weight: float) -> array:
    """The debiased exponential moving average (TensorBoard's smoothing) of ``values``."""
    if weight <= 0:
        return values
    out = array("d", bytes(8 * len(values)))
    last, decay, keep = 0.0, 1.0, 1.0 - weight
    for k, v in enumerate(values):
        last = last * weight + keep * v
        decay *= weight
        out[k] = last / (1.0 - decay)
    return out


Prepared = tuple[array, array, tuple[float, float | None] | None]


def history_of(log: ExperimentLog, source: str) -> History | None:
    """The rows a curve is read from: ``train`` (the run's rows), ``system`` (rank 0's
    system-metrics samples) or ``system:K`` (rank K's); None for a rank the run lacks."""
    if source == TRAIN:
        return log.metrics_history
    if source == SYSTEM:
        return log.system_history
    return log.system_by_rank.get(int(source.split(":", 1)[1]))


def check_source(source: str) -> str:
    """``source`` if it names rows :func:`history_of` knows, else ``ValueError``."""
    if source in (TRAIN, SYSTEM):
        return source
    head, _, rank = source.partition(":")
    if head == SYSTEM and rank.isdigit() and 0 < int(rank) < 1_000_000:
        return source
    raise ValueError(f"source={source[:40]!r}: expected {TRAIN}, {SYSTEM} or {SYSTEM}:RANK")


def _prepared(log: ExperimentLog, metric: str, x: str, source: str = TRAIN) -> Prepared | None:
    """Finite (x, y) of a metric in row order, and the x of its first non-finite value with
    the last finite value before it; None when the run has no values on axis ``x``.
    ``source``: which rows (:func:`history_of`)."""
    history = history_of(log, source)
    if history is None:
        return None
    axis = log.axis_values(x, None if source == TRAIN else history)
    if axis is None:
        return None
    rows, ys = history.floats(metric)
    xs = axis if rows is None else array("d", (axis[i] for i in rows))
    if not ys:
        return None
    if math.isfinite(sum(ys)):
        return xs, ys, None
    keep = [k for k, v in enumerate(ys) if math.isfinite(v)]
    first_bad = next(k for k, v in enumerate(ys) if not math.isfinite(v))
    before = next((ys[k] for k in range(first_bad - 1, -1, -1) if math.isfinite(ys[k])), None)
    finite_xs, finite_ys = array("d", (xs[k] for k in keep)), array("d", (ys[k] for k in keep))
    return finite_xs, finite_ys, (xs[first_bad], before)


def _thin(xs: Any, ys: Any, points: int) -> tuple[list[float], list[float]]:
    return thin_min_max(xs, ys, points)


def fine_level(ys: array, smoothing: float) -> tuple[array, array]:
    """A finer min/max thinning of a whole curve, by position: (positions, values)."""
    values = ema(ys, smoothing)
    idx, vals = thin_min_max(range(len(values)), values, FINE_POINTS)
    return array("l", idx), array("d", vals)


def precompute(
    log: ExperimentLog, metrics: tuple[str, ...] = ("train_loss",)
) -> dict[tuple[str, float], tuple[array, array]]:
    """The fine thinnings of the first chart's curves (made in the loading worker)."""
    fine: dict[tuple[str, float], tuple[array, array]] = {}
    for metric in metrics:
        prepared = _prepared(log, metric, "iteration")
        if prepared is not None and len(prepared[1]) > FINE_POINTS:
            for smoothing in (0.0, DEFAULT_SMOOTHING):
                fine[(metric, smoothing)] = fine_level(prepared[1], smoothing)
    return fine


def _fine(view: Any, source: str, metric: str, ys: array, smoothing: float) -> tuple[array, array]:
    found = view.fine.get((metric, smoothing)) if source == TRAIN else None
    if found is not None:
        return found
    return _cache.get(
        (view.run_id, view.version, source, metric, "fine", smoothing),
        lambda: fine_level(ys, smoothing),
    )


def _prepared_of(view: Any, metric: str, x: str, source: str) -> Prepared | None:
    """:func:`_prepared` of a run (a ``store.RunView``), cached per run version."""
    return _cache.get(
        (view.run_id, view.version, source, metric, x),
        partial(_prepared, view.log, metric, x, source),
    )


def _smoothed(view: Any, source: str, metric: str, ys: array, weight: float) -> array:
    """``ys`` smoothed with ``weight`` (cached per run version); ``ys`` itself for 0."""
    if weight <= 0:
        return ys
    return _ema_cache.get(
        (view.run_id, view.version, source, metric, weight), partial(ema, ys, weight)
    )


def _window(xs: array, x_range: tuple[float, float] | None) -> tuple[int, int]:
    """The slice of ``xs`` (sorted) a range shows, one point beyond each edge so that
    lines reach it; all of it without a range."""
    if x_range is None:
        return 0, len(xs)
    lo = bisect.bisect_left(xs, x_range[0])
    hi = bisect.bisect_right(xs, x_range[1])
    return max(0, lo - 1), min(len(xs), hi + 1)


def curve(
    view: Any,
    metric: str,
    x: str,
    smoothing: float,
    points: int,
    x_range: tuple[float, float] | None = None,
    source: str = TRAIN,
) -> dict[str, Any] | None:
    """The thinned raw and smoothed points of ``metric`` of a run (a ``store.RunView``),
    read from ``source`` (:func:`history_of`); None when the run lacks it or has no values
    on axis ``x``. A curve of the training rows also carries the run's alerts on that
    metric (``alerts``: where each event began on ``x``, its kind and value)."""
    if metric in UNSMOOTHED:
        smoothing = 0.0  # a schedule, not a noisy measurement: smoothing would move its peak
    prepared = _prepared_of(view, metric, x, source)
    if prepared is None:
        return None
    xs, ys, diverged = prepared
    n = len(xs)
    lo, hi = _window(xs, x_range)
    whole = lo == 0 and hi == n
    out: dict[str, Any] = {
        "run": view.run_id,
        "metric": metric,
        "source": source,
        "points": n,
        "in_range": hi - lo,
    }
    for name, weight in (("y", 0.0), ("s", smoothing)):
        if name == "s" and smoothing <= 0:
            continue
        if whole and n > FINE_POINTS and points < FINE_POINTS:
            idx, vals = _fine(view, source, metric, ys, weight)
            px, py = thin_min_max([xs[i] for i in idx], vals, points)
        else:
            values = _smoothed(view, source, metric, ys, weight)
            px, py = _thin(xs[lo:hi], values[lo:hi], points)
        out[name] = py
        out["x" if name == "y" else "sx"] = px
    if diverged is not None:
        out["diverged"] = {"x": diverged[0], "y": diverged[1]}
    if source == TRAIN:
        marks = alert_marks(view.log, metric, x)
        if marks:
            out["alerts"] = marks
    return out


def alert_marks(log: ExperimentLog, metric: str, x: str) -> list[dict[str, Any]]:
    """The run's alerts on ``metric`` where their events began on axis ``x`` (the page's
    markers; the PNG plots draw the same places, ``ExperimentLog.alert_positions``)."""
    return [
        {
            "x": position,
            "kind": alert.kind,
            "iteration": alert.iteration,
            "value": json_number(alert.value),
            "baseline": json_number(alert.baseline),
        }
        for position, alert in log.alert_positions(x)
        if alert.metric == metric
    ]


def group_band(
    views: list[Any],
    metric: str,
    x: str,
    smoothing: float,
    points: int,
    x_range: tuple[float, float] | None = None,
) -> dict[str, Any] | None:
    """The mean and band of ``metric`` over runs (``store.RunView``s of one group), each
    run smoothed first (never a metric of :data:`UNSMOOTHED`); about ``points / 2`` bins.
    None when no run has values on axis ``x``."""
    if metric in UNSMOOTHED:
        smoothing = 0.0
    curves = []
    used = []
    for view in views:
        prepared = _prepared_of(view, metric, x, TRAIN)
        if prepared is None:
            continue
        xs, ys, _ = prepared
        ys = _smoothed(view, TRAIN, metric, ys, smoothing)
        lo, hi = _window(xs, x_range)
        curves.append((xs[lo:hi], ys[lo:hi]))
        used.append(view.run_id)
    found = band(curves, max(2, points // 2))
    if found is None:
        return None
    return {
        "runs": used,
        "metric": metric,
        "x": found.x,
        "mean": found.mean,
        "low": found.low,
        "high": found.high,
        "std": found.std,
        "n": found.n,
    }
