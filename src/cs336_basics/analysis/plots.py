"""Curve figures (matplotlib, Agg backend; the ``plot`` extra).

``plot_runs`` overlays several runs against any x-axis of ``core.row.AXES`` (``gradient_step``,
``iteration``, ``tokens``, ``wallclock``: seconds, minutes or hours by span). Long curves are
thinned for drawing into bins that keep each bin's minimum and maximum, so loss spikes stay
visible. The first non-finite loss of a diverged run is marked with an x and the word
"diverged". Titles and axis labels say what is drawn: the metrics, and "loss" (in nats per
token, or per byte for a byte-level run) only when every metric drawn is a loss.

``plot_vs`` draws one point per run: an objective (best val loss, ...) against a
hyperparameter of the config (a sweep's learning rates: log x), pruned trials hollow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import UsageError, missing_extra
from ..core.log import PRUNED, ExperimentLog
from ..core.row import AXIS_FIELDS, LOSS_FIELDS, ROW_FIELDS, axis
from .groups import BANDS, groups_of
from .groups import band as band_of

DEFAULT_MAX_POINTS = 2000


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise missing_extra("matplotlib", "plot") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def thin_min_max(
    xs: Sequence[float], ys: Sequence[float], max_points: int
) -> tuple[list[float], list[float]]:
    """At most about ``max_points`` points; each bin keeps its min and max (in x order)."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    bins = max(1, max_points // 2)
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(bins):
        lo, hi = b * n // bins, (b + 1) * n // bins
        if lo >= hi:
            continue
        # min/max of a slice, then its first position: what min/max over the positions
        # keyed by value pick (a NaN wins only where it comes first), at C speed.
        segment = ys[lo:hi]
        low, high = min(segment), max(segment)
        i_min = lo if low != low else lo + segment.index(low)
        i_max = lo if high != high else lo + segment.index(high)
        for i in (i_min,) if i_min == i_max else sorted((i_min, i_max)):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


def curve(log: ExperimentLog, x: str, metric: str) -> tuple[list[float], list[float], float | None]:
    """Finite (x, y) points of ``metric`` and the x of the first non-finite value, if any
    (no points when the run has no values on that axis: tokens of a run whose tokens per
    step are unknown)."""
    xs_all = log.axis_values(x)
    if xs_all is None:
        return [], [], None
    rows, values = log.metrics_history.floats(metric)
    xs, ys = [], []
    diverged_x = None
    for k, value in enumerate(values):
        xv = xs_all[rows[k] if rows is not None else k]
        if value - value != 0.0:
            if diverged_x is None:
                diverged_x = xv
            continue
        xs.append(xv)
        ys.append(value)
    return xs, ys, diverged_x


def available_metrics(logs: Iterable[ExperimentLog]) -> list[str]:
    """What can be plotted: the guide's row fields that are metrics, then the runs' extra
    metrics (sorted). The x-axes are not metrics."""
    extras: set[str] = set()
    for log in logs:
        extras.update(log.metrics_history.extra_names())
    fields = [f for f in ROW_FIELDS if f not in AXIS_FIELDS]
    return [*fields, *sorted(extras.difference(ROW_FIELDS))]


def check_metrics(metrics: Sequence[str], logs: Iterable[ExperimentLog]) -> None:
    """:class:`UsageError` for a metric no run has, listing the ones available."""
    available = available_metrics(logs)
    unknown = [m for m in metrics if m not in available]
    if unknown or not metrics:
        what = f"unknown {', '.join(map(repr, unknown))}" if unknown else "none given"
        raise UsageError(f"metric: {what}; available: {', '.join(available)}")


def loss_unit(logs: Iterable[ExperimentLog]) -> str:
    """What a loss is measured in: nats per byte for byte-level runs (vocab 256), else per
    token."""
    vocabs = {log.config.vocab_size for log in logs}
    return "nats/byte" if vocabs == {256} else "nats/token"


def y_label(metrics: Sequence[str], logs: Iterable[ExperimentLog]) -> str:
    """The y-axis label: "loss (nats/...)" when every metric is a loss, else their names."""
    if all(m in LOSS_FIELDS for m in metrics):
        return f"loss ({loss_unit(logs)})"
    return ", ".join(m.replace("_", " ") for m in metrics)


def _time_unit(span_s: float) -> tuple[str, float]:
    if span_s >= 3 * 3600:
        return "hours", 3600.0
    if span_s >= 180:
        return "minutes", 60.0
    return "seconds", 1.0


def _named(
    logs: Iterable[ExperimentLog] | dict[str, ExperimentLog], who: str
) -> list[tuple[str, ExperimentLog]]:
    """``(label, log)`` of runs given as a dict (keys are labels) or as logs (their names);
    ``UsageError`` when there are none."""
    items = (
        list(logs.items())
        if isinstance(logs, dict)
        else [(log.experiment_name, log) for log in logs]
    )
    if not items:
        raise UsageError(f"{who}: no runs to plot")
    return items


def plot_runs(
    logs: Iterable[ExperimentLog] | dict[str, ExperimentLog],
    x: str = "gradient_step",
    metrics: Sequence[str] = ("train_loss", "val_loss"),
    *,
    logy: bool = False,
    out: str | Path | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    title: str | None = None,
    alerts: bool = True,
    by_group: bool = False,
    band: str = "minmax",
) -> Any:
    """Draw the runs' curves in one figure; saves a PNG when ``out`` is given.

    ``alerts`` (default on): mark each run's alerts (spikes, explosions, NaN/inf;
    ``log.alerts``) with a dotted vertical line in its colour where the event began,
    labelled with its kind.

    Returns the matplotlib ``Figure`` (its lines carry the plotted data, for notebooks and
    tests). A metric that no run has (a typo) raises :class:`UsageError` listing those
    available. ``by_group``: the runs of each group (``ExperimentLog.group``) are drawn as
    one line, their mean, in a shaded band (``band``: ``"minmax"``, their minimum and
    maximum, or ``"std"``, the mean -/+ their standard deviation; see ``analysis.groups``);
    runs without a group are drawn each on its own.
    """
    if band not in BANDS:
        raise UsageError(f"band: expected one of {', '.join(BANDS)}, got {band!r}")
    chosen = axis(x)
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
        raise UsageError(
            f"max_points: expected a whole number of points, 2 or more, got {max_points!r}"
        )
    items = _named(logs, "plot_runs")
    if isinstance(metrics, str):
        metrics = (metrics,)
    check_metrics(metrics, (log for _, log in items))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    unit, scale = "seconds", 1.0
    if chosen.name == "wallclock":
        span = max(
            (log.metrics_history[-1].wallclock_time for _, log in items if log.metrics_history),
            default=0.0,
        )
        unit, scale = _time_unit(span)
    styles = {"train_loss": "-", "val_loss": "--"}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    grouped = groups_of(dict(items)) if by_group else {}
    in_group = {key for keys in grouped.values() for key in keys}
    for index, (name, keys) in enumerate(grouped.items()):
        color = colors[index % len(colors)]
        members = [log for key, log in items if key in keys]
        for metric in metrics:
            found = band_of((curve(log, x, metric)[:2] for log in members), max(2, max_points // 2))
            if found is None:
                continue
            low, high = found.edges(band)
            px = [v / scale for v in found.x]
            ax.fill_between(px, low, high, color=color, alpha=0.2, linewidth=0)
            ax.plot(
                px,
                found.mean,
                styles.get(metric, ":"),
                color=color,
                linewidth=1.6,
                label=f"{name} {metric} (mean of {len(members)}, "
                f"{'min-max' if band == 'minmax' else '±std'})",
            )
    items_shown = [(label, log) for label, log in items if label not in in_group]
    for index, (label, log) in enumerate(items_shown, start=len(grouped)):
        color = colors[index % len(colors)]
        first_bad: tuple[float, float] | None = None
        for metric in metrics:
            xs, ys, diverged_x = curve(log, x, metric)
            if metric == "val_loss" or len(xs) <= max_points:
                px, py = xs, ys
            else:
                px, py = thin_min_max(xs, ys, max_points)
            px = [v / scale for v in px]
            if px:
                marker = "o" if metric == "val_loss" and len(px) < 60 else None
                ax.plot(
                    px,
                    py,
                    styles.get(metric, ":"),
                    color=color,
                    marker=marker,
                    markersize=3,
                    label=f"{label} {metric}",
                    linewidth=1.2,
                )
            if diverged_x is not None and (first_bad is None or diverged_x / scale < first_bad[0]):
                first_bad = (diverged_x / scale, py[-1] if py else 0.0)
        if alerts:
            for position, alert in log.alert_positions(x):
                ax.axvline(position / scale, color=color, linestyle=":", linewidth=1, alpha=0.8)
                ax.annotate(
                    f"{alert.kind}: {alert.metric}",
                    (position / scale, 1.0),
                    xycoords=("data", "axes fraction"),
                    textcoords="offset points",
                    xytext=(2, -10),
                    rotation=90,
                    va="top",
                    color=color,
                    fontsize=7,
                )
        if first_bad is not None:  # one mark per run, where its loss first went NaN/inf
            ax.plot(
                [first_bad[0]],
                [first_bad[1]],
                "x",
                color=color,
                markersize=10,
                markeredgewidth=2,
                label=f"{label} diverged",
            )
            ax.annotate(
                "diverged",
                first_bad,
                textcoords="offset points",
                xytext=(4, 6),
                color=color,
                fontsize=8,
            )
    xlabel = chosen.label + (f" ({unit})" if chosen.name == "wallclock" else "")
    ax.set_xlabel(xlabel)
    logs = [log for _, log in items]
    ylabel = y_label(metrics, logs)
    ax.set_ylabel(ylabel + (", log scale" if logy else ""))
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing drawn (no values yet): no legend
        ax.legend(fontsize=8, loc="upper right")
    what = "Loss" if all(m in LOSS_FIELDS for m in metrics) else ylabel.capitalize()
    ax.set_title(title or f"{what} vs {xlabel}")
    fig.tight_layout()
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig


def close(fig: Any) -> None:
    _pyplot().close(fig)


#: Hyperparameters drawn on a log x-axis whatever their spread (besides any whose values
#: span 20x or more).
_LOG_X_NAMES = ("learning_rate", "lr", "min_lr", "weight_decay", "eps")


def _finished_first(item: tuple[str, Any]) -> tuple[int, str]:
    return ({"finished": 0, PRUNED: 1}.get(item[0], 2), item[0])


def _config_number(log: ExperimentLog, name: str) -> float | None:
    value = log.config.to_dict().get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return float(value)
    return None


def plot_vs(
    logs: Iterable[ExperimentLog] | dict[str, ExperimentLog],
    param: str,
    metric: str = "best_val_loss",
    *,
    logx: bool | None = None,
    out: str | Path | None = None,
    title: str | None = None,
) -> Any:
    """One point per run: ``metric`` (a run result: ``best_val_loss``, ``final_val_loss``,
    ``best_train_loss``, ``final_train_loss``; ``val_loss`` means ``best_val_loss``) against
    the config value ``param`` (``max_learning_rate``, ``warmup_iters``, ...). ``logx``:
    None picks a log x-axis for learning rates and for values spanning 20x or more. Pruned
    trials are drawn hollow, runs neither finished nor pruned in colours of their own (one
    legend entry per status); runs without a finite value (diverged, no eval yet) are
    counted in the legend, not drawn; the best run is labelled. Saves a PNG when ``out``
    is given; returns the matplotlib ``Figure``."""
    from .analyzer import BEST_METRICS

    field = BEST_METRICS.get(metric)
    if field is None:
        raise UsageError(f"metric: unknown {metric!r}; expected one of {', '.join(BEST_METRICS)}")
    items = _named(logs, "plot_vs")
    points: dict[str, list[tuple[float, float, str]]] = {}
    missing = 0
    for label, log in items:
        x = _config_number(log, param)
        if x is None:
            continue
        results = log.results()
        y = getattr(results, field)
        if y is None or not math.isfinite(y):
            missing += 1
            continue
        points.setdefault(results.status, []).append((x, float(y), label))
    if not points and not missing:
        numeric = sorted(
            {
                key
                for _, log in items
                for key in log.config.to_dict()
                if _config_number(log, key) is not None
            }
        )
        raise UsageError(
            f"--vs {param}: no run has a number under that config key; numeric keys: "
            f"{', '.join(numeric) or 'none'}"
        )
    xs = [p[0] for group in points.values() for p in group]
    if logx is None:
        spread = bool(xs) and min(xs) > 0 and max(xs) >= 20 * min(xs)
        logx = bool(xs) and min(xs) > 0 and (spread or param.endswith(_LOG_X_NAMES))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (status, group) in enumerate(sorted(points.items(), key=_finished_first)):
        color = colors[0] if status in ("finished", PRUNED) else colors[1 + index % 9]
        ax.scatter(
            [p[0] for p in group],
            [p[1] for p in group],
            s=36,
            facecolors="none" if status == PRUNED else color,
            edgecolors=color,
            label=f"{status} ({len(group)})",
            zorder=3,
        )
    if missing:
        ax.plot([], [], " ", label=f"{missing} without a finite {field} (not drawn)")
    best = min((p for group in points.values() for p in group), key=lambda p: p[1], default=None)
    if best is not None:
        ax.annotate(
            f"best: {best[2]}",
            (best[0], best[1]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=8,
        )
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(param.replace("_", " ") + (" (log scale)" if logx else ""))
    logs_drawn = [log for _, log in items]
    unit = f" ({loss_unit(logs_drawn)})" if field.endswith("_loss") else ""
    ax.set_ylabel(field.replace("_", " ") + unit)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title or f"{field.replace('_', ' ')} vs {param.replace('_', ' ')}")
    fig.tight_layout()
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig
