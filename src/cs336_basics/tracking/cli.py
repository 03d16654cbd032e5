"""cs336-exp: list, compare, plot, export, report, pull and push experiment runs.

Every command takes ``--log-dir`` (default ``experiment_logs``). A user mistake prints one
line on stderr and exits with 2; listing commands take ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .analysis import ExperimentAnalyzer
from .errors import TrackingError
from .records import ROW_FIELDS, SUMMARY_FIELDS, ExperimentLog
from .storage import JOURNAL_SUFFIX, load_run
from .text import fmt, format_summary, table

EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in what the user asked for: one line, no traceback."""


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, allow_nan=False))


def _analyzer(args: argparse.Namespace) -> ExperimentAnalyzer:
    analyzer = ExperimentAnalyzer(args.log_dir)
    if not Path(args.log_dir).is_dir():
        raise UserError(f"no log directory {args.log_dir} (use --log-dir)")
    analyzer.load_all(quiet=args.json if hasattr(args, "json") else False)
    return analyzer


def _resolve(
    analyzer: ExperimentAnalyzer | None, args: argparse.Namespace, run: str
) -> ExperimentLog:
    path = Path(run)
    if path.suffix in (".json", JOURNAL_SUFFIX) and (
        path.exists() or path.with_suffix(JOURNAL_SUFFIX).exists()
    ):
        return load_run(path)[0]
    analyzer = analyzer or _analyzer(args)
    try:
        return analyzer.get(run)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None


def _status(log: ExperimentLog) -> str:
    return "diverged" if log.diverged_at is not None else log.status


def cmd_list(args: argparse.Namespace) -> None:
    analyzer = _analyzer(args)
    records = []
    for key, log in analyzer.logs.items():
        history = log.metrics_history
        records.append(
            {
                "run": key,
                "run_id": log.run_id,
                "status": _status(log),
                "start_time": log.start_time,
                "iterations": history[-1].iteration + 1 if history else 0,
                "best_val_loss": _json_value(log.best_val_loss),
                "file": log.source,
            }
        )
    if args.json:
        _dump(records)
        return
    if not records:
        print(f"no runs in {args.log_dir}")
        return
    print(
        table(
            ["run", "status", "started", "iters", "best_val"],
            [
                [
                    r["run"],
                    r["status"],
                    (r["start_time"] or "-")[:19],
                    r["iterations"],
                    analyzer.logs[r["run"]].best_val_loss,
                ]
                for r in records
            ],
        )
    )


def cmd_show(args: argparse.Namespace) -> None:
    log = _resolve(None, args, args.run)
    rows = log.metrics_history[-args.rows :] if args.rows else []
    if args.json:
        _dump(
            {
                "run_id": log.run_id,
                "status": _status(log),
                "config": log.config.to_dict(),
                "summary": {
                    k: _json_value(getattr(log, k))
                    for k in ("start_time", "end_time", *SUMMARY_FIELDS)
                },
                "last_rows": [{k: _json_value(v) for k, v in r.to_dict().items()} for r in rows],
                "mirrors": log.mirrors,
            }
        )
        return
    print(format_summary(log))
    if rows:
        print(f"\nlast {len(rows)} rows:")
        print(table(ROW_FIELDS, [[getattr(r, f) for f in ROW_FIELDS] for r in rows]))


def cmd_compare(args: argparse.Namespace) -> None:
    analyzer = _analyzer(args)
    try:
        headers, rows = analyzer.comparison_rows(args.runs or None, args.sort)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None
    if args.desc:
        rows.reverse()
    if args.json:
        _dump([{h: _json_value(v) for h, v in zip(headers, row, strict=True)} for row in rows])
        return
    print(table(headers, rows) if rows else "no runs")


def cmd_best(args: argparse.Namespace) -> None:
    analyzer = _analyzer(args)
    name, value = analyzer.get_best_experiment(args.metric)
    if args.json:
        _dump(
            {
                "run": name,
                "run_id": analyzer.logs[name].run_id,
                "metric": args.metric,
                "value": value,
                "file": analyzer.logs[name].source,
            }
        )
        return
    print(f"{name}\t{args.metric}={fmt(value, 6)}\t{analyzer.logs[name].source}")


def cmd_export(args: argparse.Namespace) -> None:
    from .analysis import write_csv

    log = _resolve(None, args, args.run)
    out = write_csv(log, Path(args.output))
    print(f"wrote {out} ({len(log.metrics_history)} rows)")


def _select(args: argparse.Namespace, patterns: list[str]) -> dict[str, ExperimentLog]:
    analyzer = _analyzer(args)
    try:
        return analyzer.select(patterns)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None


def cmd_plot(args: argparse.Namespace) -> None:
    from .plots import close, plot_runs

    runs = _select(args, args.runs)
    metrics = [m.strip() for m in args.metric.split(",") if m.strip()]
    fig = plot_runs(
        runs, x=args.x, metrics=metrics, logy=args.logy, out=args.output, max_points=args.max_points
    )
    close(fig)
    print(f"wrote {args.output} ({len(runs)} run(s): {', '.join(runs)})")


def cmd_report(args: argparse.Namespace) -> None:
    from .plots import close, plot_runs
    from .report import relative_link, render_table, splice

    runs = _select(args, args.runs)
    if not runs:
        raise UserError(f"no runs in {args.log_dir} to report")
    document = Path(args.file)
    text = document.read_text(encoding="utf-8") if document.exists() else "# Experiment Log\n"
    baseline = args.baseline or next(iter(runs))
    if baseline not in runs:
        raise UserError(
            f"--baseline {baseline!r} is not among the reported runs: {', '.join(runs)}"
        )
    images = Path(args.images_dir) if args.images_dir else Path(args.log_dir) / "curves"
    links = {}
    if not args.no_images:
        for key, log in runs.items():
            target = images / f"{key}.png"
            close(plot_runs({key: log}, x="gradient_step", out=target))
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
    generated = render_table(runs, baseline, links)
    if not args.no_images:
        generated += f"\n\n![validation loss of all runs]({relative_link(overview, document)})"
    new_text = splice(text, generated)
    if new_text != text:
        document.write_text(new_text, encoding="utf-8")
    print(f"{'updated' if new_text != text else 'unchanged'}: {document} ({len(runs)} runs)")


def cmd_pull(args: argparse.Namespace) -> None:
    from ..wandb_adapter.pull import pull_runs

    logs = pull_runs(
        args.path,
        run_ids=args.run_id or None,
        names=args.name or None,
        state=args.state,
        save_dir=args.log_dir,
        timeout=args.timeout,
    )
    if args.json:
        _dump(
            [
                {
                    "run": log.experiment_name,
                    "file": log.source,
                    "wandb_run_id": log.mirrors["wandb"]["run_id"],
                    "rows": len(log.metrics_history),
                }
                for log in logs
            ]
        )
        return
    for log in logs:
        print(f"{log.experiment_name}: {len(log.metrics_history)} rows -> {log.source}")
    print(f"pulled {len(logs)} run(s) from {args.path} into {args.log_dir}")


def cmd_push(args: argparse.Namespace) -> None:
    from ..wandb_adapter.push import push_run

    log = _resolve(None, args, args.run)
    if not log.source:
        raise UserError(f"{args.run}: this run has no local file to push")
    state = push_run(
        log.source, project=args.project, entity=args.entity, mode=args.mode, force=args.force
    )
    where = state.get("url") or state.get("sync_dir") or state.get("run_id")
    if state["pushed"]:
        print(f"pushed {len(log.metrics_history)} rows to W&B run {state['run_id']} ({where})")
    else:
        print(f"already on W&B as run {state['run_id']} ({where}); --force to push again")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-dir", default="experiment_logs", help="where runs are (default: %(default)s)"
    )
    parser = argparse.ArgumentParser(prog="cs336-exp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: Any, help_text: str, json_flag: bool = False
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    add("list", cmd_list, "runs with status, start time, iterations, best val loss", True)
    p = add("show", cmd_show, "one run: config, summary, last rows", True)
    p.add_argument("run", help="name, run id, or path of a .json/.jsonl")
    p.add_argument("--rows", type=int, default=10, help="how many last rows (default 10)")
    p = add(
        "compare", cmd_compare, "compare runs in one table (config columns where they differ)", True
    )
    p.add_argument("runs", nargs="*", metavar="RUN|GLOB")
    p.add_argument("--sort", help="column to sort by, e.g. best_val")
    p.add_argument("--desc", action="store_true", help="sort descending")
    p = add("best", cmd_best, "the best run by a metric (diverged runs never win)", True)
    p.add_argument("--metric", default="val_loss")
    p = add("export", cmd_export, "write a run's history as CSV (the guide's columns)")
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True, help="CSV file to write")
    p = add("plot", cmd_plot, "overlay loss curves of runs into a PNG")
    p.add_argument("runs", nargs="+", metavar="RUN|GLOB")
    p.add_argument(
        "--x", default="gradient_step", choices=["iteration", "gradient_step", "wallclock"]
    )
    p.add_argument("--metric", default="train_loss,val_loss", help="comma-separated")
    p.add_argument("--logy", action="store_true", help="log-scale loss axis")
    p.add_argument("--max-points", type=int, default=2000, help="thin long curves (min/max kept)")
    p.add_argument("-o", "--output", default="curves.png")
    p = add("report", cmd_report, "regenerate the runs table in EXPERIMENT_LOG.md")
    p.add_argument("runs", nargs="*", metavar="RUN|GLOB")
    p.add_argument("--file", default="EXPERIMENT_LOG.md")
    p.add_argument("--baseline", help="run the others are compared with (default: the first)")
    p.add_argument("--images-dir", help="where curve images go (default: LOG_DIR/curves)")
    p.add_argument("--no-images", action="store_true")
    p = add("pull", cmd_pull, "pull W&B runs into the log directory as local JSON", True)
    p.add_argument("path", metavar="ENTITY/PROJECT")
    p.add_argument("--run-id", action="append", help="only this W&B run id (repeatable)")
    p.add_argument("--name", action="append", help="only runs with this name (repeatable)")
    p.add_argument("--state", help="only runs in this state (finished, crashed, ...)")
    p.add_argument("--timeout", type=int, default=None, help="seconds per W&B request")
    p = add("push", cmd_push, "upload a local run (finished or crashed) to W&B")
    p.add_argument("run")
    p.add_argument("--project")
    p.add_argument("--entity")
    p.add_argument("--mode", choices=["online", "offline"])
    p.add_argument("--force", action="store_true", help="push even if already mirrored")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UserError, TrackingError, KeyError, ValueError, FileNotFoundError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"cs336-exp: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
