"""``cs336-exp report --html FILE``: one self-contained HTML file to send.

Everything is in the file: the data (JSON in a ``<script type="application/json">``), the
page's own script, and the chart library (``plotly.min.js`` from the plotly wheel, given by
the caller), so it opens from a mail attachment or a USB stick with no network and no
server. It holds:

- the runs table (``ExperimentLog.results()``: status, steps, tokens, best and last
  losses, duration; group and tags; what differs from the baseline);
- interactive curves (zoom, pan, hover, a legend that hides a run; log y; the runs of a
  group as their mean with a min/max or std band, or each line: ``analysis.groups``), one
  chart per metric (train and val loss share one);
- the config of every run against the baseline (only the keys that differ somewhere);
- the provenance of each run (code, command, versions, host, GPUs, data fingerprints).

Size: each curve is thinned like the page's (``plots.thin_min_max``: at most
``max_points`` points, each bin keeping its minimum and maximum, so spikes stay) and its
numbers written with 6 significant digits; a group's band has ``max_points / 2`` bins.
:class:`Written` says how many points the file draws.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import orjson

from ..core.log import ExperimentLog
from ..core.row import LOSS_FIELDS, axis
from ..core.text import describe_git, fmt, format_duration
from .groups import band, groups_of
from .plots import curve, thin_min_max

PALETTE = (
    "#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd #8c564b #e377c2 #17becf #bcbd22 #7f7f7f "
    "#393b79 #ad494a #637939 #e6550d #6b6ecf #843c39 #7b4173 #3182bd #31a354 #756bb1"
).split()
TITLES = {"loss": "train / val loss", "learning_rate": "learning rate"}


@dataclass
class Written:
    """What a report holds: its text, how many runs, curves and points it draws."""

    text: str
    runs: int
    curves: int
    points: int


def _asset(name: str) -> str:
    """The page's own script or style, shipped beside this module (``static/``)."""
    return resources.files(__package__).joinpath(f"static/{name}").read_text(encoding="utf-8")


def _number(value: float) -> float | int:
    """A value as the file writes it: 6 significant digits, integers without ``.0``."""
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return float(f"{value:.6g}")


def _numbers(values: Sequence[float]) -> list[float | int]:
    return [_number(float(v)) for v in values]


def _charts(metrics: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(chart key, its metrics): train and val loss share the ``loss`` chart."""
    out: list[tuple[str, list[str]]] = []
    losses = [m for m in LOSS_FIELDS if m in metrics]
    for metric in metrics:
        if metric in LOSS_FIELDS:
            if losses and not any(key == "loss" for key, _ in out):
                out.append(("loss", losses))
        else:
            out.append((metric, [metric]))
    return out


def _json_script(data: Any) -> str:
    """JSON that is safe inside ``<script>`` (no ``</``, no ``<!--``)."""
    text = orjson.dumps(data).decode("utf-8")
    return (
        text.replace("</", "<\\/")
        .replace("<!--", "<\\!--")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return html.escape(fmt(value))


def _differences(log: ExperimentLog, baseline: ExperimentLog) -> str:
    if log is baseline:
        return "baseline"
    diffs = log.config.differences(baseline.config)
    return ", ".join(f"{k}={fmt(v[0])}" for k, v in diffs.items()) or "same config"


def _runs_table(runs: dict[str, ExperimentLog], colours: dict[str, str], baseline: str) -> str:
    head = (
        "<tr><th></th><th>run</th><th>run id</th><th>group</th><th>tags</th><th>status</th>"
        "<th>started</th><th>steps</th><th>tokens</th><th>best val</th><th>last val</th>"
        "<th>best train</th><th>duration</th><th>differs from baseline</th></tr>"
    )
    rows = []
    for key, log in runs.items():
        r = log.results()
        status = r.status + (f" at {r.diverged_at}" if r.diverged_at is not None else "")
        cells = [
            f'<span class="swatch" style="background:{colours[key]}"></span>',
            html.escape(key),
            f"<code>{html.escape(log.run_id)}</code>",
            html.escape(log.group or ""),
            html.escape(", ".join(log.tags)),
            html.escape(status),
            html.escape((log.start_time or "")[:19].replace("T", " ")),
            _cell(r.gradient_steps),
            _cell(r.tokens),
            _cell(r.best_val_loss),
            _cell(r.final_val_loss),
            _cell(r.best_train_loss),
            html.escape(format_duration(r.duration_seconds)),
            html.escape(_differences(log, runs[baseline])),
        ]
        tds = "".join(f"<td>{c}</td>" for c in cells)
        rows.append(f'<tr data-run="{html.escape(log.run_id)}">{tds}</tr>')
    return f'<table id="runs"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _config_table(runs: dict[str, ExperimentLog], baseline: str) -> str:
    configs = {key: log.config.to_dict() for key, log in runs.items()}
    keys: list[str] = []
    for config in configs.values():
        keys += [k for k in config if k not in keys and k != "experiment_name"]
    base = configs[baseline]
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs.values()}) > 1]
    if not differing:
        return "<p>Every run has the same config.</p>"
    head = "<tr><th>run</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in differing)
    rows = []
    for key, config in configs.items():
        cells = []
        for k in differing:
            changed = key != baseline and repr(config.get(k)) != repr(base.get(k))
            mark = ' class="changed"' if changed else ""
            cells.append(f"<td{mark}>{_cell(config.get(k))}</td>")
        label = html.escape(key) + (" (baseline)" if key == baseline else "")
        rows.append(f"<tr><td>{label}</td>{''.join(cells)}</tr>")
    return (
        '<table id="config"><thead>'
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _provenance(key: str, log: ExperimentLog) -> str:
    record = log.provenance
    title = f"{html.escape(key)} <code>{html.escape(log.run_id)}</code>"
    if not record:
        return f"<details><summary>{title}: not recorded</summary></details>"
    git = record.get("git") or {}
    packages = record.get("packages") or {}
    rows: list[tuple[str, str]] = [
        ("code", describe_git(git)),
        ("repository", str(git.get("repository") or "-")),
        ("command", " ".join(map(str, record.get("command") or []))),
        ("folder", str(record.get("cwd") or "-")),
        ("recorded", str(record.get("recorded_at") or "-")),
        ("python", f"{record.get('python') or '-'} ({record.get('platform') or '-'})"),
        (
            "packages",
            ", ".join(f"{k} {v}" for k, v in packages.items() if v and k != "torch_from"),
        ),
        ("host", str(record.get("host") or "-")),
        ("gpus", ", ".join(map(str, record.get("gpus") or [])) or "none seen"),
    ]
    for name, data in (record.get("data") or {}).items():
        if isinstance(data, dict):
            what = data.get("error") or (
                f"{data.get('size')} bytes, {data.get('fingerprint')} ({data.get('method')})"
            )
            rows.append((f"data {name}", f"{data.get('path')}: {what}"))
    for entry in record.get("resumes") or []:
        rows.append(("resumed", f"{entry.get('recorded_at')}: {describe_git(entry.get('git'))}"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    summary = f"{title}: {html.escape(describe_git(git))}"
    return (
        f'<details class="provenance"><summary>{summary}</summary><table>{body}</table></details>'
    )


def render(
    runs: dict[str, ExperimentLog],
    baseline: str,
    script: str,
    *,
    x: str = "gradient_step",
    metrics: Sequence[str] = ("train_loss", "val_loss", "learning_rate"),
    max_points: int = 2000,
    title: str = "Experiment report",
    source: str = "",
) -> Written:
    """The report of ``runs`` (by key; ``baseline`` one of them); ``script``: the chart
    library's JavaScript (``plotly.min.js``), inlined."""
    chosen = axis(x)
    colours = {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(runs)}
    keys = list(runs)
    series: list[dict[str, Any]] = []
    curves: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for index, (key, log) in enumerate(runs.items()):
        for metric in metrics:
            xs, ys, diverged = curve(log, chosen.name, metric)
            curves[(key, metric)] = (xs, ys)
            if not xs and diverged is None:
                continue
            px, py = thin_min_max(xs, ys, max_points)
            item: dict[str, Any] = {
                "run": index,
                "metric": metric,
                "x": _numbers(px),
                "y": _numbers(py),
                "rows": len(xs),
            }
            if diverged is not None:
                item["diverged"] = {"x": _number(diverged), "y": _number(py[-1]) if py else 0}
            series.append(item)
    bands: list[dict[str, Any]] = []
    for g_index, (group, members) in enumerate(groups_of(runs).items()):
        for metric in metrics:
            found = band((curves[(k, metric)] for k in members), max(2, max_points // 2))
            if found is None:
                continue
            bands.append(
                {
                    "group": group,
                    "colour": PALETTE[(len(runs) + g_index) % len(PALETTE)],
                    "metric": metric,
                    "runs": [keys.index(k) for k in members],
                    "x": _numbers(found.x),
                    "mean": _numbers(found.mean),
                    "low": _numbers(found.low),
                    "high": _numbers(found.high),
                    "std": _numbers(found.std),
                    "n": found.n,
                }
            )
    points = sum(len(s["x"]) for s in series)
    band_points = sum(len(b["x"]) for b in bands)
    data = {
        "x_title": chosen.label,
        "runs": [
            {
                "key": key,
                "id": log.run_id,
                "name": log.experiment_name,
                "group": log.group,
                "colour": colours[key],
            }
            for key, log in runs.items()
        ],
        "charts": [
            {"key": k, "title": TITLES.get(k, k.replace("_", " ")), "metrics": m}
            for k, m in _charts(metrics)
        ],
        "series": series,
        "bands": bands,
        "points": points,
    }
    generated = datetime.now().isoformat(sep=" ", timespec="seconds")
    groups_note = f"; {len(groups_of(runs))} group(s), {band_points:,} band points" if bands else ""
    about = (
        f"{len(runs)} run(s) from {html.escape(source) or 'this log directory'}, generated "
        f"{generated} by <code>cs336-exp report --html</code>. Curves: {len(series)} "
        f"curves, {points:,} points (each curve thinned to at most {max_points:,} points, "
        f"keeping each bin's minimum and maximum){groups_note}. Baseline: "
        f"<code>{html.escape(baseline)}</code>."
    )
    group_controls = (
        '<label>groups <select id="mode"><option value="band">mean + band</option>'
        '<option value="each">each run</option></select></label>'
        '<label>band <select id="band"><option value="minmax">min / max</option>'
        '<option value="std">mean ± std</option></select></label>'
        if bands
        else ""
    )
    provenance = "".join(_provenance(key, log) for key, log in runs.items())
    page = _TEMPLATE.format(
        title=html.escape(title),
        about=about,
        runs=_runs_table(runs, colours, baseline),
        group_controls=group_controls,
        config=_config_table(runs, baseline),
        provenance=provenance,
        data=_json_script(data),
        library=script.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT"),
        code=_asset("report.js"),
        style=_asset("report.css"),
    )
    return Written(page, len(runs), len(series), points + band_points)


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
<p class="about">{about}</p>
<h2>Runs</h2>
{runs}
<h2>Curves</h2>
<div id="controls"><label><input id="logy" type="checkbox"> log y</label>{group_controls}</div>
<div id="charts"></div>
<h2>Config against the baseline</h2>
{config}
<h2>Provenance</h2>
{provenance}
<script type="application/json" id="report-data">{data}</script>
<script>{library}</script>
<script>{code}</script>
</body>
</html>
"""
