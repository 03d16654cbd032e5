"""``diff``: what changed between two runs (``analysis.diff``): hyperparameters, code, data,
environment, and the headline results side by side; ``--md`` for the experiment log."""

from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import UsageError
from .common import add_command, dump, resolve_one
from .runs import RUN_HELP


def cmd_diff(args: argparse.Namespace) -> None:
    from ..analysis.diff import as_json, diff_runs, render_markdown, render_text

    if args.json and args.md:
        raise UsageError("--json and --md: give one of them")
    a = resolve_one(args, args.a)
    b = resolve_one(args, args.b)
    if a.run_id and a.run_id == b.run_id:
        raise UsageError(f"{args.a!r} and {args.b!r} are the same run ({a.run_id})")
    sections = diff_runs(a, b, everything=args.all)
    names = (a.experiment_name, b.experiment_name)
    if names[0] == names[1]:
        names = (a.run_id, b.run_id)
    if args.json:
        dump({"a": a.run_id, "b": b.run_id, "sections": as_json(sections)})
    elif args.md:
        print(render_markdown(sections, names))
    else:
        print(render_text(sections, names))


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "diff",
        cmd_diff,
        "what changed between two runs: config, code, data, versions, results",
        json_flag=True,
        description="What changed between run A and run B: hyperparameters, code (git "
        "commit, dirty tree, diff), data fingerprints, environment versions (from each "
        "run's provenance), and their headline results side by side.",
    )
    p.add_argument("a", metavar="A", help=RUN_HELP)
    p.add_argument("b", metavar="B", help=RUN_HELP)
    p.add_argument(
        "--md",
        action="store_true",
        help="print a Markdown table for the experiment log (default: aligned text)",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="show the fields that are the same too (default: only those that differ)",
    )
