"""Figures and the report: ``plot`` (a PNG of curves) and ``report`` (a Markdown table of
runs with their curve images). matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..analysis.groups import BANDS
from ..analysis.plots import DEFAULT_MAX_POINTS
from ..core.errors import UsageError
from ..core.log import ExperimentLog
from ..core.row import AXES, axis
from .common import (
    add_command,
    add_filters,
    analyzer,
    output_file,
    output_folder,
    read_text,
    require_log_dir,
)

#: Where ``report`` writes when no ``--file`` is given: inside the log directory, so a first
#: report never rewrites a file of the project the command is run in.
REPORT_NAME = "EXPERIMENT_LOG.md"
IMAGES_NAME = "curves"
METRIC_DEFAULT = "train_loss,val_loss"
#: What ``plot --vs`` draws when ``--metric`` is not given.
VS_METRIC_DEFAULT = "best_val_loss"


def _axis_name(value: str) -> str:
    """argparse type of ``--x``: an axis of ``core.row.AXES`` or one of its aliases."""
    try:
        return axis(value).name
    except UsageError:
        return value  # argparse's choices check names the valid ones


def cmd_plot(args: argparse.Namespace) -> None:
    from ..analysis.plots import close, plot_runs

    if args.max_points < 2:
        raise UsageError(
            f"--max-points {args.max_points}: expected a number of points per curve, 2 or more"
        )
    out = output_file("-o", args.output)
    found = analyzer(args)
    runs = found.select(args.runs)
    metrics = [m.strip() for m in args.metric.split(",") if m.strip()]
    if args.vs is not None:
        fig = _plot_vs(runs, args, metrics, out)
    else:
        fig = plot_runs(
            runs,
            x=args.x,
            metrics=metrics,
            logy=args.logy,
            out=out,
            max_points=args.max_points,
            by_group=args.by_group,
            band=args.band,
        )
    close(fig)
    print(f"wrote {args.output} ({len(runs)} run(s): {', '.join(runs)})")


def _plot_vs(
    runs: dict[str, ExperimentLog], args: argparse.Namespace, metrics: list[str], out: Path
) -> Any:
    """``plot --vs PARAM``: one point per run, a result against a config value."""
    from ..analysis.plots import plot_vs

    if args.metric == METRIC_DEFAULT:
        metrics = [VS_METRIC_DEFAULT]
    if len(metrics) != 1:
        raise UsageError(
            f"--metric {args.metric}: with --vs, expected one run result, e.g. best_val_loss"
        )
    logx = {"auto": None, "on": True, "off": False}[args.logx]
    return plot_vs(runs, args.vs, metrics[0], logx=logx, out=out)


def _report_images(
    runs: dict[str, ExperimentLog], images: Path, document: Path
) -> tuple[dict[str, str], str]:
    """Draw each run's curves and the overview; returns their links relative to the document."""
    from ..analysis.plots import close, plot_runs
    from ..analysis.report import image_names, relative_link
    from ..store.layout import inside

    images.mkdir(parents=True, exist_ok=True)
    links = {}
    for key, name in image_names(runs).items():
        target = inside(images, name)
        close(plot_runs({key: runs[key]}, x="gradient_step", out=target))
        links[key] = relative_link(target, document)
    overview = images / "all_runs.png"
    close(
        plot_runs(
            runs,
            x="gradient_step",
            metrics=("val_loss",),
            out=overview,
            title="Validation loss, all runs",
        )
    )
    return links, relative_link(overview, document)


def _html_report(args: argparse.Namespace) -> None:
    """``report --html FILE``: one self-contained page (``analysis.html_report``)."""
    from ..analysis.html_report import render
    from ..analysis.plots import check_metrics
    from ..core.errors import missing_extra
    from ..dashboard.server import plotly_js

    log_dir = require_log_dir(args)
    target = output_file("--html", args.html)
    if args.max_points < 2:
        raise UsageError(
            f"--max-points {args.max_points}: expected a number of points per curve, 2 or more"
        )
    library = plotly_js()
    if library is None:
        raise missing_extra("plotly", "dashboard")
    runs, baseline = _report_runs(args)
    metrics = [m.strip() for m in args.metric.split(",") if m.strip()]
    check_metrics(metrics, runs.values())
    written = render(
        runs,
        baseline,
        library.read_text(encoding="utf-8"),
        x=args.x,
        metrics=metrics,
        max_points=args.max_points,
        title=f"Experiment report: {log_dir}",
        source=str(log_dir),
    )
    data = written.text.encode("utf-8")
    target.write_bytes(data)
    print(
        f"wrote {target} ({written.runs} runs, {written.curves} curves, "
        f"{written.points:,} points, {len(data) / 1e6:.1f} MB, no network needed)"
    )


def _report_runs(args: argparse.Namespace) -> tuple[dict[str, ExperimentLog], str]:
    """The runs a report shows and the key of its baseline (``--baseline``, else the first);
    ``UsageError`` when there are none or the baseline is not among them."""
    runs = analyzer(args).select(args.runs)
    if not runs:
        raise UsageError(f"no runs in {args.log_dir} to report")
    baseline = args.baseline or next(iter(runs))
    if baseline not in runs:
        raise UsageError(
            f"--baseline {baseline!r} is not among the reported runs: {', '.join(runs)}"
        )
    return runs, baseline


def cmd_report(args: argparse.Namespace) -> None:
    from ..analysis.budget import parse_budget
    from ..analysis.report import new_document, render_table, splice

    if args.html is not None:
        if args.at:
            raise UsageError("--at: goes with the Markdown report, not --html")
        _html_report(args)
        return
    log_dir = require_log_dir(args)
    document = output_file("--file", args.file or log_dir / REPORT_NAME)
    images = None
    if not args.no_images:
        images = output_folder("--images-dir", args.images_dir or log_dir / IMAGES_NAME)
    text = read_text("--file", document) if document.exists() else None
    if text is not None and text.strip():  # refuse bad markers before drawing anything
        splice(text, "", append=args.append, name=str(document))
    runs, baseline = _report_runs(args)
    links: dict[str, str] = {}
    generated = ""
    if images is not None:
        links, overview = _report_images(runs, images, document)
        generated = f"\n\n![validation loss of all runs]({overview})"
    budgets = [parse_budget(text) for text in args.at]
    generated = render_table(runs, baseline, links, budgets) + generated
    if text is None or not text.strip():  # no hand-written text to keep
        new_text = new_document(generated)
    else:
        new_text = splice(text, generated, append=args.append, name=str(document))
    if new_text != text:
        document.write_bytes(new_text.encode("utf-8"))  # bytes: line endings kept as they are
    state = "created" if text is None else "updated" if new_text != text else "unchanged"
    print(f"{state}: {document} ({len(runs)} runs)")


def register(sub: Any) -> None:
    p = add_command(sub, "plot", cmd_plot, "draw curves of runs, overlaid, into a PNG")
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN|GLOB",
        help="runs by name, run id or glob (default: every run, or every run of --group/--tag)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE.png",
        help="the PNG to write (required: nothing is written to a default name; a file "
        "of that name is replaced)",
    )
    p.add_argument(
        "--x",
        default="gradient_step",
        type=_axis_name,
        choices=list(AXES),
        help="the x-axis (tokens: gradient steps x batch_size x context_length; "
        "wallclock: time since the run started)",
    )
    p.add_argument(
        "--metric",
        default=METRIC_DEFAULT,
        metavar="M1,M2",
        help="comma-separated metrics to draw: row fields or extra metrics (a wrong name "
        f"lists those available); with --vs, one run result ({VS_METRIC_DEFAULT} if not given)",
    )
    p.add_argument("--logy", action="store_true", help="log-scale y-axis")
    p.add_argument(
        "--vs",
        metavar="PARAM",
        help="instead of curves, one point per run: the --metric result (best_val_loss, "
        "final_val_loss, ...) against this config value, e.g. max_learning_rate; pruned "
        "trials hollow (default: curves against --x)",
    )
    p.add_argument(
        "--logx",
        choices=["auto", "on", "off"],
        default="auto",
        help="log-scale x-axis of --vs (auto: on for learning rates and for values spanning "
        "20x or more)",
    )
    p.add_argument(
        "--max-points",
        type=int,
        default=DEFAULT_MAX_POINTS,
        metavar="N",
        help="thin longer curves to about N points, keeping each bin's min and max (N >= 2)",
    )
    p.add_argument(
        "--by-group",
        action="store_true",
        help="draw the runs of each group as their mean in a band (runs without a group: "
        "each line; default: each run its own line)",
    )
    p.add_argument(
        "--band",
        default="minmax",
        choices=BANDS,
        help="with --by-group, the band around the mean: minmax (the runs' min and max) or "
        "std (mean -/+ standard deviation)",
    )
    add_filters(p)
    p = add_command(
        sub,
        "report",
        cmd_report,
        "write a Markdown table of runs (with curve images) between report markers",
        description="Write a Markdown table of runs, with curve images, between the "
        "<!-- cs336-exp report: begin/end --> markers of a file; text outside them is kept.",
    )
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN|GLOB",
        help="runs by name, run id or glob (default: every run)",
    )
    p.add_argument(
        "--file",
        metavar="FILE.md",
        help=f"the Markdown file to write (default: LOG_DIR/{REPORT_NAME}, created if "
        "missing; name your project's log, e.g. --file EXPERIMENT_LOG.md, to update it)",
    )
    p.add_argument(
        "--baseline",
        metavar="RUN",
        help="the run the others are compared with (default: the first run reported)",
    )
    p.add_argument(
        "--images-dir",
        metavar="DIR",
        help=f"where the curve images go (default: LOG_DIR/{IMAGES_NAME})",
    )
    p.add_argument("--no-images", action="store_true", help="write the table only, no images")
    p.add_argument(
        "--append",
        action="store_true",
        help="if the file has no report markers, add a new marked section at its end "
        "(default: refuse such a file)",
    )
    p.add_argument(
        "--at",
        action="append",
        default=[],
        metavar="AXIS=N",
        help="add a column of each run's val / train loss at exactly this budget (the last "
        "value logged at or before it, as compare --at); repeatable, e.g. --at tokens=2e8 "
        "(default: none)",
    )
    p.add_argument(
        "--html",
        metavar="FILE.html",
        help="instead of Markdown, write one self-contained HTML page (data, script and "
        "charts inlined: it opens with no network and no server): the runs table, "
        "interactive curves, the config against the baseline, each run's provenance "
        "(default: no HTML; needs plotly, the dashboard extra)",
    )
    p.add_argument(
        "--x",
        default="gradient_step",
        type=_axis_name,
        choices=list(AXES),
        help="with --html, the curves' x-axis",
    )
    p.add_argument(
        "--metric",
        default="train_loss,val_loss,learning_rate",
        metavar="M1,M2",
        help="with --html, the metrics drawn (train and val loss share a chart)",
    )
    p.add_argument(
        "--max-points",
        type=int,
        default=DEFAULT_MAX_POINTS,
        metavar="N",
        help="with --html, thin each curve to about N points, keeping each bin's min and max",
    )
    add_filters(p)
