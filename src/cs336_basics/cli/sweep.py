"""Reading a sweep: ``sweep`` (a study's trials in one table, best first).

A sweep's runs share a group: an Optuna study's name (``cs336_basics.sweep``,
``examples/sweep.py``) or, for runs a W&B sweep agent started, the sweep's id. The figure of
the objective against a hyperparameter is ``plot --vs PARAM --group STUDY``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..core.text import fmt, table
from .common import add_command, analyzer, dump


def cmd_sweep(args: argparse.Namespace) -> None:
    headers, rows = analyzer(args).sweep_rows(args.sweep, args.metric)
    if args.json:
        dump([dict(zip(headers, row, strict=True)) for row in rows])
        return
    print(table(headers, rows))
    statuses = [row[-2] for row in rows]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    objective = headers[-3]
    best = rows[0] if rows and rows[0][-3] is not None else None
    line = f"{len(rows)} trials ({counts})"
    if best is not None:
        line += f"; best: trial {best[0]} ({objective} {fmt(best[-3], 6)}, run {best[1]})"
    print(line)


def register(sub: Any) -> None:
    from ..analysis.analyzer import BEST_METRICS

    p = add_command(
        sub,
        "sweep",
        cmd_sweep,
        "a sweep's trials in one table: parameters, objective, status (pruned too), best first",
        json_flag=True,
    )
    p.add_argument(
        "sweep",  # (not "group": that is the --group filter of the commands that list runs)
        metavar="STUDY|GROUP",
        help="the sweep: an Optuna study's name (its runs' group) or a W&B sweep's id",
    )
    p.add_argument(
        "--metric",
        default="best_val_loss",
        metavar="METRIC",
        help=f"the objective to sort by, lowest first: one of {', '.join(BEST_METRICS)}",
    )
