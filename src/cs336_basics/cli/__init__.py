"""cs336-exp: list, compare, plot, export, report, pull, import and push experiment runs.

Every command takes ``--log-dir`` (default ``experiment_logs``). A user mistake (any
``TrackingError``: unknown run or metric, bad output path, unreadable log, ...) prints one
line on stderr and exits with 2; a problem of the environment (``OSError``: permission
denied, disk full) prints one line and exits with 1; anything else is a bug and shows its
traceback. Listing commands take ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..analysis.analyzer import ExperimentAnalyzer
from ..core.errors import TrackingError, UsageError
from ..core.log import ExperimentLog
from ..core.row import ROW_FIELDS, SUMMARY_FIELDS
from ..core.text import fmt, format_summary, table
from ..core.values import marker_for
from ..store.layout import DOCUMENT, JOURNAL, inside
from ..store.load import load_run

EXIT_USAGE = 2
EXIT_ENVIRONMENT = 1


def _json_value(value: Any) -> Any:
    """``value`` with NaN/inf (at any depth) spelled as in the document: "NaN", "Infinity"."""
    if isinstance(value, float):
        return value if math.isfinite(value) else marker_for(value)
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def _dump(data: Any) -> None:
    """Strict JSON on stdout (NaN and inf as the document's markers)."""
    print(json.dumps(_json_value(data), indent=2, default=str, allow_nan=False))


def _analyzer(args: argparse.Namespace) -> ExperimentAnalyzer:
    analyzer = ExperimentAnalyzer(args.log_dir)
    if not Path(args.log_dir).is_dir():
        raise UsageError(f"no log directory {args.log_dir} (use --log-dir)")
    analyzer.load_all(quiet=args.json if hasattr(args, "json") else False)
    return analyzer


def _resolve(
    analyzer: ExperimentAnalyzer | None, args: argparse.Namespace, run: str
) -> ExperimentLog:
    path = Path(run)
    if path.suffix in (DOCUMENT, JOURNAL) and (path.exists() or path.with_suffix(JOURNAL).exists()):
        return load_run(path).log
    return (analyzer or _analyzer(args)).get(run)


def _output_file(option: str, value: str) -> Path:
    """An output file the user named: its folder must exist and it must not be a folder."""
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"{option} {value}: is a directory; give a file name")
    folder = path.parent
    if not folder.is_dir():
        state = "is not a directory" if folder.exists() else "does not exist"
        raise UsageError(f"{option} {value}: folder {folder} {state} (create it first)")
    return path


def _output_folder(option: str, value: str) -> Path:
    """A folder the command fills (created if missing): it must not be a file."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {value}: is a file, not a directory")
    return path


def _read_text(option: str, path: Path) -> str:
    """A text file, exactly (no newline translation), as UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{option} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc


def _iterations(log: ExperimentLog) -> int:
    last = log.last_iteration
    return 0 if last is None else last + 1


def cmd_list(args: argparse.Namespace) -> None:
    analyzer = _analyzer(args)
    records: list[dict[str, Any]] = []
    for key, log in analyzer.logs.items():
        records.append(
            {
                "run": key,
                "run_id": log.run_id,
                "status": log.display_status,
                "start_time": log.start_time,
                "iterations": _iterations(log),
                "best_val_loss": log.best_val_loss,
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
    if args.rows < 0:
        raise UsageError(f"--rows {args.rows}: expected a number of rows, 0 or more")
    log = _resolve(None, args, args.run)
    rows = log.metrics_history[-args.rows :] if args.rows else []
    if args.json:
        _dump(
            {
                "run_id": log.run_id,
                "status": log.display_status,
                "config": log.config.to_dict(),
                "summary": {
                    k: getattr(log, k) for k in ("start_time", "end_time", *SUMMARY_FIELDS)
                },
                "last_rows": [r.to_dict() for r in rows],
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
    headers, rows = analyzer.comparison_rows(args.runs or None, args.sort)
    if args.desc:
        rows.reverse()
    if args.json:
        _dump([dict(zip(headers, row, strict=True)) for row in rows])
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
    from ..analysis.analyzer import write_csv

    target = _output_file("-o", args.output)
    log = _resolve(None, args, args.run)
    out = write_csv(log, target)
    print(f"wrote {out} ({len(log.metrics_history)} rows)")


def cmd_plot(args: argparse.Namespace) -> None:
    from ..analysis.plots import close, plot_runs

    out = _output_file("-o", args.output)
    runs = _analyzer(args).select(args.runs)
    metrics = [m.strip() for m in args.metric.split(",") if m.strip()]
    fig = plot_runs(
        runs, x=args.x, metrics=metrics, logy=args.logy, out=out, max_points=args.max_points
    )
    close(fig)
    print(f"wrote {args.output} ({len(runs)} run(s): {', '.join(runs)})")


def _report_images(
    runs: dict[str, ExperimentLog], images: Path, document: Path
) -> tuple[dict[str, str], str]:
    """Draw each run's curves and the overview; returns their links relative to the document."""
    from ..analysis.plots import close, plot_runs
    from ..analysis.report import image_names, relative_link

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


def cmd_report(args: argparse.Namespace) -> None:
    from ..analysis.report import new_document, render_table, splice

    document = _output_file("--file", args.file)
    images = None
    if not args.no_images:
        default = Path(args.log_dir) / "curves"
        images = _output_folder("--images-dir", args.images_dir or str(default))
    text = _read_text("--file", document) if document.exists() else None
    if text is not None and text.strip():  # refuse bad markers before drawing anything
        splice(text, "", append=args.append, name=str(document))
    runs = _analyzer(args).select(args.runs)
    if not runs:
        raise UsageError(f"no runs in {args.log_dir} to report")
    baseline = args.baseline or next(iter(runs))
    if baseline not in runs:
        raise UsageError(
            f"--baseline {baseline!r} is not among the reported runs: {', '.join(runs)}"
        )
    links: dict[str, str] = {}
    generated = ""
    if images is not None:
        links, overview = _report_images(runs, images, document)
        generated = f"\n\n![validation loss of all runs]({overview})"
    generated = render_table(runs, baseline, links) + generated
    if text is None or not text.strip():  # no hand-written text to keep
        new_text = new_document(generated)
    else:
        new_text = splice(text, generated, append=args.append, name=str(document))
    if new_text != text:
        document.write_bytes(new_text.encode("utf-8"))  # bytes: line endings kept as they are
    state = "created" if text is None else "updated" if new_text != text else "unchanged"
    print(f"{state}: {document} ({len(runs)} runs)")


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
    _print_fetched(args, logs, "pulled")


def _print_fetched(args: argparse.Namespace, logs: list[ExperimentLog], verb: str) -> None:
    """What ``pull`` or ``import`` brought into the log dir (``--json``: one object a run)."""
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
    print(f"{verb} {len(logs)} run(s) from {args.path} into {args.log_dir}")


def cmd_push(args: argparse.Namespace) -> None:
    from ..wandb_adapter.push import push_run

    log = _resolve(None, args, args.run)
    if not log.source:
        raise UsageError(f"{args.run}: this run has no local file to push")
    state = push_run(
        log.source, project=args.project, entity=args.entity, mode=args.mode, force=args.force
    )
    where = state.get("url") or state.get("sync_dir") or state.get("run_id")
    if state["pushed"]:
        rows = state["pushed_rows"]
        note = " (it had the others)" if rows < len(log.metrics_history) else ""
        print(f"pushed {rows} rows to W&B run {state['run_id']}{note} ({where})")
    else:
        print(f"already on W&B as run {state['run_id']} ({where}); --force to push again")


def cmd_import(args: argparse.Namespace) -> None:
    from ..wandb_adapter.importer import import_runs

    folder = _output_folder("--log-dir", args.log_dir)
    logs = import_runs(args.path, save_dir=folder)
    _print_fetched(args, logs, "imported")


def cmd_serve(args: argparse.Namespace) -> None:
    from ..dashboard import serve

    serve(args.log_dir, host=args.host, port=args.port, allow_remote=args.allow_remote)


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
    p.add_argument(
        "--append",
        action="store_true",
        help="if the file has no report markers, add a new marked section at its end",
    )
    p = add("pull", cmd_pull, "pull W&B runs into the log directory as local JSON", True)
    p.add_argument("path", metavar="ENTITY/PROJECT", type=_project_path)
    p.add_argument("--run-id", action="append", help="only this W&B run id (repeatable)")
    p.add_argument("--name", action="append", help="only runs with this name (repeatable)")
    p.add_argument("--state", help="only runs in this state (finished, crashed, ...)")
    p.add_argument("--timeout", type=int, default=None, help="seconds per W&B request")
    p = add("import", cmd_import, "offline W&B runs (.wandb files) -> local JSON, no server", True)
    p.add_argument("path", metavar="PATH", help="a run-*.wandb file, or a folder of them")
    p = add("push", cmd_push, "upload a local run (finished or crashed) to W&B")
    p.add_argument("run")
    p.add_argument("--project")
    p.add_argument("--entity")
    p.add_argument("--mode", choices=["online", "offline"])
    p.add_argument("--force", action="store_true", help="push even if already mirrored")
    p = add("serve", cmd_serve, "a local page of live curves of the runs (read-only)")
    p.add_argument("--host", default="127.0.0.1", help="where to listen (default: %(default)s)")
    p.add_argument("--port", type=int, default=8336, help="0: any free port (default: %(default)s)")
    p.add_argument(
        "--allow-remote", action="store_true", help="allow a --host that is not loopback"
    )
    return parser


def _project_path(value: str) -> str:
    """argparse type of ``pull``'s ENTITY/PROJECT (the rule ``pull_runs`` applies)."""
    if not value.strip() or value.count("/") > 1:
        raise argparse.ArgumentTypeError(f"expected 'entity/project' or 'project', got {value!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except TrackingError as exc:  # the user's mistake (UsageError) or a bad file: one line
        print(f"cs336-exp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head`: not an error
        return 0
    except OSError as exc:  # the environment (permissions, full disk): one line
        print(f"cs336-exp: error: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
