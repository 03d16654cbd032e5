"""Reading runs: ``list``, ``show``, ``compare``, ``best``, ``export``.

Every number shown comes from ``ExperimentLog.results()``: a run that did not finish
(crashed, killed, preempted) shows the best and last losses of its history so far, marked
as such (``from_history`` in JSON, "(so far)" in text), the same numbers in every command.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import UsageError
from ..core.row import ROW_FIELDS, SUMMARY_FIELDS
from ..core.text import describe_mirror, fmt, format_provenance, format_summary, table
from .common import add_command, add_filters, analyzer, dump, output_file, resolve_one

RUN_HELP = (
    "a run: its name (the latest run of that name), run id, a glob matching one run, or the "
    "path of its .json/.jsonl"
)


def cmd_list(args: argparse.Namespace) -> None:
    runs = analyzer(args)
    records: list[dict[str, Any]] = []
    for key, log in runs.logs.items():
        results = log.results()
        mirror = log.mirrors.get("wandb")
        records.append(
            {
                "run": key,
                "run_id": log.run_id,
                "start_time": log.start_time,
                **results.to_dict(),
                "mirror": describe_mirror(mirror) if mirror is not None else None,
                "file": log.source,
                "group": log.group,
                "tags": list(log.tags),
            }
        )
    if args.json:
        dump(records)
        return
    if not records:
        print(f"no runs in {args.log_dir}")
        return
    labels = any(r["group"] or r["tags"] for r in records)  # columns only when some have
    print(
        table(
            ["run", "status", "started", "iters", "best_val", "last_val", "best_train"]
            + (["group", "tags"] if labels else []),
            [
                [
                    r["run"],
                    r["status"],
                    (r["start_time"] or "-")[:19],
                    r["iterations"],
                    r["best_val_loss"],
                    r["final_val_loss"],
                    r["best_train_loss"],
                ]
                + ([r["group"], ",".join(r["tags"]) or None] if labels else [])
                for r in records
            ],
        )
    )
    if any(r["from_history"] for r in records):
        print("(losses of runs that did not finish: their history so far)")


def cmd_show(args: argparse.Namespace) -> None:
    from ..core.errors import UsageError

    if args.rows < 0:
        raise UsageError(f"--rows {args.rows}: expected a number of rows, 0 or more")
    log = resolve_one(args, args.run)
    rows = log.metrics_history[-args.rows :] if args.rows else []
    if args.json:
        results = log.results()
        summary: dict[str, Any] = {"start_time": log.start_time, "end_time": log.end_time}
        summary.update({name: getattr(results, name) for name in SUMMARY_FIELDS})
        summary["from_history"] = results.from_history
        dump(
            {
                "run": log.experiment_name,
                "run_id": log.run_id,
                "status": results.status,
                "config": log.config.to_dict(),
                "summary": summary,
                "results": results.to_dict(),
                "last_rows": [r.to_dict() for r in rows],
                "mirrors": log.mirrors,
                "file": log.source,
                "group": log.group,
                "tags": list(log.tags),
                "notes": log.notes,
                "provenance": log.provenance,
            }
        )
        return
    print(format_summary(log))
    print(format_provenance(log))
    if rows:
        print(f"\nlast {len(rows)} rows:")
        print(table(ROW_FIELDS, [[getattr(r, f) for f in ROW_FIELDS] for r in rows]))


def cmd_compare(args: argparse.Namespace) -> None:
    if args.at is not None:
        _compare_at(args)
        return
    if args.interpolate:
        raise UsageError("--interpolate: goes with --at AXIS=N")
    headers, rows = analyzer(args).comparison_rows(args.runs or None, args.sort)
    if args.desc:
        rows.reverse()
    if args.json:
        dump([dict(zip(headers, row, strict=True)) for row in rows])
        return
    print(table(headers, rows) if rows else "no runs")


def _compare_at(args: argparse.Namespace) -> None:
    """``compare --at AXIS=N``: each run's losses at exactly that budget."""
    from ..analysis.budget import parse_budget

    axis, budget = parse_budget(args.at)
    runs = analyzer(args)
    if args.json:
        found = runs.values_at(axis, budget, names=args.runs or None, interpolate=args.interpolate)
        dump({key: {m: v.to_dict() for m, v in by.items()} for key, by in found.items()})
        return
    headers, rows = runs.budget_rows(
        axis, budget, names=args.runs or None, interpolate=args.interpolate
    )
    if args.sort:
        if args.sort not in headers:
            raise UsageError(f"--sort {args.sort!r}: expected one of {', '.join(headers)}")
        column = headers.index(args.sort)
        rows.sort(key=lambda row: (row[column] is None, row[column] if row[column] is not None
                                   else 0), reverse=args.desc)  # fmt: skip
    how = "interpolated" if args.interpolate else "the last value logged at or before it"
    print(f"at {axis} = {budget:g} ({how}; *_before: how far before, in {axis})")
    print(table(headers, rows) if rows else "no runs")


def cmd_best(args: argparse.Namespace) -> None:
    runs = analyzer(args)
    name, value = runs.get_best_experiment(args.metric)
    log = runs.logs[name]
    if args.json:
        dump(
            {
                "run": name,
                "run_id": log.run_id,
                "metric": args.metric,
                "value": value,
                "from_history": log.results().from_history,
                "file": log.source,
            }
        )
        return
    print(f"{name}\t{args.metric}={fmt(value, 6)}\t{log.source}")


def cmd_export(args: argparse.Namespace) -> None:
    from ..analysis.analyzer import write_csv

    target = output_file("-o", args.output)
    log = resolve_one(args, args.run)
    out = write_csv(log, target)
    print(f"wrote {out} ({len(log.metrics_history)} rows)")


def register(sub: Any) -> None:
    from ..analysis.analyzer import BEST_METRICS

    p = add_command(
        sub,
        "list",
        cmd_list,
        "every run: status, start time, iterations, best and last losses",
        json_flag=True,
    )
    add_filters(p)
    p = add_command(
        sub, "show", cmd_show, "one run: config, summary, losses, last rows", json_flag=True
    )
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--rows", type=int, default=10, metavar="N", help="how many last rows to show")
    p = add_command(
        sub,
        "compare",
        cmd_compare,
        "runs side by side in one table (config columns only where they differ)",
        json_flag=True,
    )
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN|GLOB",
        help="runs by name, run id or glob (default: every run)",
    )
    p.add_argument(
        "--sort",
        metavar="COLUMN",
        help="a column to sort by, e.g. best_val (default: the order runs started)",
    )
    p.add_argument("--desc", action="store_true", help="sort in descending order")
    p.add_argument(
        "--at",
        metavar="AXIS=N",
        help="each run's train and val loss at exactly this budget: the last value logged at "
        "or before it, and how far before (e.g. tokens=2e8, gradient_step=5k, wallclock=2h, "
        "flops=1e18; default: the whole runs)",
    )
    p.add_argument(
        "--interpolate",
        action="store_true",
        help="with --at: interpolate linearly between the rows around the budget (labelled; "
        "default: no)",
    )
    add_filters(p)
    p = add_command(
        sub,
        "best",
        cmd_best,
        "the run with the lowest value of a metric (a diverged run is never best)",
        json_flag=True,
    )
    p.add_argument(
        "--metric",
        default="val_loss",
        metavar="METRIC",
        help=f"what to minimise: one of {', '.join(BEST_METRICS)} (val_loss: best_val_loss)",
    )
    p = add_command(sub, "export", cmd_export, "write a run's history as CSV (the guide's columns)")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the CSV file to write (required)"
    )
