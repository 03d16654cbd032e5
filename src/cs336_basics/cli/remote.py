"""Weights & Biases: ``pull`` (W&B runs -> local JSON), ``import`` (offline ``.wandb`` files ->
local JSON), ``push`` (a local run -> W&B). wandb is imported only when one of them runs."""

from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import UsageError
from ..core.log import ExperimentLog
from .common import add_command, dump, output_folder, resolve_one
from .runs import RUN_HELP


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
        dump(
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
        partial = (log.mirrors.get("wandb") or {}).get("status") == "partial"
        note = " (partial: wandb's reader could not read all of it)" if partial else ""
        print(f"{log.experiment_name}: {len(log.metrics_history)} rows -> {log.source}{note}")
    print(f"{verb} {len(logs)} run(s) from {args.path} into {args.log_dir}")


def cmd_push(args: argparse.Namespace) -> None:
    from ..wandb_adapter.push import push_run

    runs = [resolve_one(args, run) for run in args.runs]
    for log in runs:
        if not log.source:
            raise UsageError(f"{log.run_id}: this run has no local file to push")
    for log in runs:
        state = push_run(
            log.source,
            project=args.project,
            entity=args.entity,
            mode=args.mode,
            force=args.force,
            verbose=args.verbose,
        )
        where = state.get("url") or state.get("sync_dir") or state.get("run_id")
        if state["pushed"]:
            rows = state["pushed_rows"]
            note = " (it had the others)" if rows < len(log.metrics_history) else ""
            print(f"{log.run_id}: pushed {rows} rows to W&B run {state['run_id']}{note} ({where})")
        else:
            print(f"{log.run_id}: not pushed: {state['reason']}; --force to push again")


def cmd_import(args: argparse.Namespace) -> None:
    from ..wandb_adapter.importer import import_runs

    folder = output_folder("--log-dir", args.log_dir)
    logs = import_runs(args.path, save_dir=folder, force=args.force)
    _print_fetched(args, logs, "imported")


def _project_path(value: str) -> str:
    """argparse type of ``pull``'s ENTITY/PROJECT (the rule ``pull_runs`` applies)."""
    if not value.strip() or value.count("/") > 1:
        raise argparse.ArgumentTypeError(f"expected 'entity/project' or 'project', got {value!r}")
    return value


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "pull",
        cmd_pull,
        "download W&B runs into --log-dir as local JSON (one file per run)",
        json_flag=True,
    )
    p.add_argument(
        "path",
        metavar="ENTITY/PROJECT",
        type=_project_path,
        help="the W&B project, as entity/project or project (your default entity)",
    )
    p.add_argument(
        "--run-id",
        action="append",
        metavar="ID",
        help="only this W&B run id; repeatable (default: every run of the project)",
    )
    p.add_argument(
        "--name",
        action="append",
        metavar="NAME",
        help="only runs with this display name; repeatable (default: any name)",
    )
    p.add_argument(
        "--state",
        metavar="STATE",
        help="only runs in this W&B state: finished, crashed, failed, running, ... "
        "(default: any state)",
    )
    p.add_argument(
        "--timeout",
        type=int,
        metavar="SECONDS",
        help="seconds to wait for each W&B request (default: WANDB_HTTP_TIMEOUT, else 20)",
    )
    p = add_command(
        sub,
        "import",
        cmd_import,
        "read offline W&B runs (.wandb files) into --log-dir as local JSON; no server",
        json_flag=True,
    )
    p.add_argument(
        "path",
        metavar="PATH",
        help="a run-*.wandb file, a run folder, or a folder of them (e.g. wandb/)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="also import W&B runs that mirror a run of --log-dir (default: skip them, "
        "they are that run again)",
    )
    p = add_command(
        sub, "push", cmd_push, "upload a local run (finished or not) to W&B, or complete its mirror"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help=RUN_HELP + " (one or more)")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show wandb's own output (default: one line per run: where it went)",
    )
    p.add_argument(
        "--project",
        metavar="PROJECT",
        help="the W&B project (default: the project of the run's mirror, else "
        "WANDB_PROJECT, else cs336-basics)",
    )
    p.add_argument(
        "--entity",
        metavar="ENTITY",
        help="the W&B entity (default: the entity of the run's mirror, else WANDB_ENTITY, "
        "else your W&B default entity)",
    )
    p.add_argument(
        "--mode",
        choices=["online", "offline"],
        help="online uploads now; offline writes a wandb folder to sync later "
        "(default: WANDB_MODE, else online)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="push again even if the run is already on W&B (default: skip it)",
    )
