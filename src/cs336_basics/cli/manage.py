"""Keeping a research log: ``tag``, ``note``, ``rename``, ``delete`` and ``restore``.

Runs are named as everywhere (name: its latest run, run id, or a glob), but only among the
runs of ``--log-dir``: a path is never taken, so nothing outside the log directory is ever
changed. Every change is made by ``runtime.manage`` under the run's lock: a live run is
refused in one line. ``delete`` moves a run's files into ``.trash/`` of the log directory;
``restore`` moves them back; ``delete --purge`` removes runs from the trash for good, after
listing every file it will remove and asking (``--yes`` to skip; without a terminal,
``--yes`` is required).
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import UnknownRunError, UsageError
from ..core.log import ExperimentLog
from ..core.text import fmt, table
from .common import add_command, analyzer, dump, require_log_dir

RUNS_HELP = (
    "runs of --log-dir: a name (its latest run), a run id, or a glob such as 'lr_*' (never a path)"
)
_GLOB = "*?["


# --------------------------------------------------------------------------- naming runs


def runs_named(args: argparse.Namespace, patterns: list[str]) -> list[ExperimentLog]:
    """The runs of ``--log-dir`` the patterns name, each once, in the order named."""
    runs = analyzer(args)
    folder = require_log_dir(args).resolve()
    chosen: dict[str, ExperimentLog] = {}
    for pattern in patterns:
        try:
            found = {pattern: runs.get(pattern)}
        except UnknownRunError:
            if not any(c in pattern for c in _GLOB):
                raise
            found = runs.select([pattern])
        for log in found.values():
            source = Path(log.source or "")
            if source.parent.resolve() != folder:  # (cannot happen: runs of the folder)
                raise UsageError(f"{source}: not a run of --log-dir {args.log_dir}")
            chosen.setdefault(log.run_id, log)
    return list(chosen.values())


def _usage(exc: ValueError | TypeError) -> UsageError:
    return UsageError(str(exc))


# --------------------------------------------------------------------------- tag, note


def prepare_argv(argv: list[str]) -> list[str]:
    """``tag RUN... +a -b``: ``-b`` is a tag to remove, not an option. Before argparse reads
    the line, the ``tag`` command's own options are put first and everything else after a
    ``--`` (argparse would take ``-b`` for an unknown option). ``note RUN --append TEXT``:
    the flag is moved to the end (argparse would otherwise close the optional TEXT at the
    flag and refuse the text after it)."""
    if argv[:1] == ["note"] and "--append" in argv and "--" not in argv:
        return [token for token in argv if token != "--append"] + ["--append"]
    if not argv or argv[0] != "tag":
        return argv
    options: list[str] = []
    rest: list[str] = []
    tokens = iter(argv[1:])
    for token in tokens:
        if token == "--":
            rest.extend(tokens)
            break
        name = token.split("=", 1)[0]
        if name in ("--log-dir", "--group") and "=" not in token:
            options.append(token)
            value = next(tokens, None)
            if value is not None:
                options.append(value)
        elif name in ("-h", "--help", "--no-group", "--json", "--log-dir", "--group"):
            options.append(token)
        else:
            rest.append(token)
    return ["tag", *options, "--", *rest]


def cmd_tag(args: argparse.Namespace) -> None:
    from ..core.values import check_group, check_tag
    from ..runtime.manage import edit_run

    names = [t for t in args.items if t[:1] not in ("+", "-")]
    edits = [t for t in args.items if t[:1] in ("+", "-")]
    if not names:
        raise UsageError("tag: name at least one run, then +TAG to add or -TAG to remove")
    try:
        adding = [check_tag(t[1:]) for t in edits if t[0] == "+"]
        removing = [check_tag(t[1:]) for t in edits if t[0] == "-"]
        group = check_group(args.set_group) if args.set_group is not None else None
    except (TypeError, ValueError) as exc:
        raise _usage(exc) from None
    both = sorted(set(adding) & set(removing))
    if both:
        raise UsageError(f"tag {both[0]!r}: both added and removed; give it once")
    if group is not None and args.no_group:
        raise UsageError("--group and --no-group: give one of them")
    logs = runs_named(args, names)
    changing = bool(edits or group is not None or args.no_group)

    def change(log: ExperimentLog) -> None:
        log.tags = [t for t in log.tags if t not in removing]
        log.tags += [t for t in adding if t not in log.tags]
        if group is not None:
            log.group = group
        elif args.no_group:
            log.group = None

    done = [edit_run(log.source or "", change, "tag") if changing else log for log in logs]
    if args.json:
        dump([{"run_id": log.run_id, "tags": log.tags, "group": log.group} for log in done])
        return
    for log in done:
        tags = ", ".join(log.tags) or "no tags"
        print(f"{log.run_id}: {tags}; group {log.group or '-'}")


def cmd_note(args: argparse.Namespace) -> None:
    from ..core.values import check_text
    from ..runtime.manage import edit_run

    (log,) = _one(args, args.run)
    if args.text is None:
        print(log.notes or "(no notes)")
        return
    try:
        text = check_text("notes", args.text)
    except (TypeError, ValueError) as exc:
        raise _usage(exc) from None

    def change(run: ExperimentLog) -> None:
        run.notes = f"{run.notes}\n{text}" if args.append and run.notes else text

    done = edit_run(log.source or "", change, "note")
    print(f"{done.run_id}: notes {'added to' if args.append else 'set'} ({len(done.notes)} chars)")


def _one(args: argparse.Namespace, run: str) -> list[ExperimentLog]:
    logs = runs_named(args, [run])
    if len(logs) != 1:
        shown = ", ".join(log.run_id for log in logs[:10])
        raise UsageError(f"{run!r} matches {len(logs)} runs ({shown}); name one of them")
    return logs


def cmd_rename(args: argparse.Namespace) -> None:
    from ..core.values import check_text
    from ..runtime.manage import edit_run

    (log,) = _one(args, args.run)
    try:
        new = check_text("NEW", args.new)
    except (TypeError, ValueError) as exc:
        raise _usage(exc) from None
    if not new.strip():
        raise UsageError(f"NEW {args.new!r}: expected a name, not blanks")
    old = log.experiment_name

    def change(run: ExperimentLog) -> None:
        run.config.experiment_name = new

    done = edit_run(log.source or "", change, "rename")
    print(f"{done.run_id}: renamed {old!r} -> {new!r} (run id and files unchanged)")


# --------------------------------------------------------------------------- the trash


def _trashed(args: argparse.Namespace, patterns: list[str], purge: bool) -> list[Any]:
    """The trashed runs the patterns name (run id, name, trash folder, or a glob)."""
    from ..runtime.manage import trashed_runs

    folder = require_log_dir(args)
    entries = trashed_runs(folder)
    if not entries:
        raise UnknownRunError(f"the trash of {args.log_dir} is empty")
    chosen: dict[Path, Any] = {}
    for pattern in patterns:
        exact = [e for e in entries if pattern in (e.run_id, e.name, e.slot.name)]
        if len(exact) > 1 and not purge:
            shown = ", ".join(e.slot.name for e in exact)
            raise UsageError(
                f"{pattern!r} names {len(exact)} runs in the trash ({shown}); name one by its "
                "trash folder"
            )
        hits = exact or [
            e
            for e in entries
            if any(fnmatch.fnmatchcase(v, pattern) for v in (e.run_id, e.name, e.slot.name))
        ]
        if not hits:
            shown = ", ".join(e.slot.name for e in entries[:20])
            raise UnknownRunError(f"no run in the trash matches {pattern!r}; in the trash: {shown}")
        for entry in hits:
            chosen.setdefault(entry.slot, entry)
    return list(chosen.values())


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def cmd_delete(args: argparse.Namespace) -> None:
    if args.purge:
        _purge(args)
        return
    from ..runtime.manage import stopped_run, trash_run
    from ..store.layout import RunFiles

    logs = runs_named(args, args.runs)
    for log in logs:  # a live run among them: refused before anything moves
        with stopped_run(RunFiles.of(log.source or ""), "delete"):
            pass
    for log in logs:
        slot = trash_run(log.source or "")
        count = sum(1 for _ in slot.iterdir())
        print(f"{log.run_id} ({log.experiment_name}): {count} file(s) moved to {slot}")
    print(f"`cs336-exp restore RUN --log-dir {args.log_dir}` brings a run back")


def _purge(args: argparse.Namespace) -> None:
    from ..runtime.manage import purge_run

    entries = _trashed(args, args.runs, purge=True)
    total = sum(e.size for e in entries)
    print(f"to remove for good ({len(entries)} run(s), {_size(total)}):")
    for entry in entries:
        print(f"  {entry.slot.name} ({entry.name}):")
        for path in entry.files:
            print(f"    {path}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "delete --purge: stdin is not a terminal to ask on; pass --yes to remove "
                "these files for good"
            )
        answer = input("remove these files for good? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing removed")
            return
    freed = sum(purge_run(entry) for entry in entries)
    print(f"removed {len(entries)} run(s) for good ({_size(freed)})")


def cmd_restore(args: argparse.Namespace) -> None:
    from ..runtime.manage import restore_run, trashed_runs

    folder = require_log_dir(args)
    if args.list:
        entries = trashed_runs(folder)
        records: list[dict[str, Any]] = [
            {
                "folder": e.slot.name,
                "run_id": e.run_id,
                "run": e.name,
                "status": e.log.results().status if e.log is not None else "unreadable",
                "deleted": datetime.fromtimestamp(e.slot.stat().st_mtime).isoformat(
                    sep=" ", timespec="seconds"
                ),
                "files": len(e.files),
                "bytes": e.size,
                "error": e.error,
            }
            for e in entries
        ]
        if args.json:
            dump(records)
        elif not records:
            print(f"the trash of {args.log_dir} is empty")
        else:
            headers = ["folder", "run", "status", "deleted", "files", "size"]
            rows = [
                [r["folder"], r["run"], r["status"], r["deleted"], r["files"], _size(r["bytes"])]
                for r in records
            ]
            print(table(headers, rows))
        return
    if not args.runs:
        raise UsageError("restore: name the runs to bring back, or --list to see the trash")
    entries = _trashed(args, args.runs, purge=False)
    stems = [e.run_id for e in entries]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise UsageError(f"run {twice[0]} is in the trash twice; restore one by its folder")
    for entry in entries:
        files = restore_run(entry, folder)
        count = fmt(len(entry.files))
        print(f"{entry.run_id} ({entry.name}): restored to {files.folder} ({count} file(s))")


# --------------------------------------------------------------------------- registering


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "tag",
        cmd_tag,
        "add (+TAG) or remove (-TAG) tags of runs, set their group; no change: show them",
        json_flag=True,
        description="Add or remove tags of runs and set their group: `cs336-exp tag RUN... "
        "+ablation -draft --group seeds`. Tags: 1-64 characters, no blank or comma. With "
        "no change given, the runs' tags are shown. A live run is refused.",
    )
    p.add_argument(
        "items",
        nargs="*",
        metavar="RUN|+TAG|-TAG",
        help=f"{RUNS_HELP}; then +TAG to add, -TAG to remove",
    )
    p.add_argument(
        "--group",
        dest="set_group",
        metavar="GROUP",
        help="put the runs in this group (default: their group stays)",
    )
    p.add_argument("--no-group", action="store_true", help="take the runs out of their group")
    p = add_command(
        sub,
        "note",
        cmd_note,
        "set (or show) a run's notes",
        description='Set a run\'s notes (`cs336-exp note RUN "why this run"`), add a line '
        "with --append, or show them when no text is given. A live run is refused.",
    )
    p.add_argument("run", metavar="RUN", help=RUNS_HELP + "; one run")
    p.add_argument(
        "text", nargs="?", metavar="TEXT", help="the notes (default: show the run's notes)"
    )
    p.add_argument(
        "--append", action="store_true", help="add TEXT as a new line (default: replace)"
    )
    p = add_command(
        sub,
        "rename",
        cmd_rename,
        "change a run's experiment name (run id and files stay)",
    )
    p.add_argument("run", metavar="RUN", help=RUNS_HELP + "; one run")
    p.add_argument("new", metavar="NEW", help="the new experiment name (any text)")
    p = add_command(
        sub,
        "delete",
        cmd_delete,
        "move runs into the log dir's .trash/ (restore brings them back); --purge: for good",
        description="Move every file of runs into LOG_DIR/.trash/ (`cs336-exp restore` "
        "brings them back). With --purge, remove runs from the trash for good, after "
        "listing every file and asking. A live run is refused.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help=RUNS_HELP + "; one or more")
    p.add_argument(
        "--purge",
        action="store_true",
        help="remove these runs from the trash for good (runs of the trash, named as in "
        "restore; default: move runs of the log dir into the trash)",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="with --purge, do not ask (required when stdin is not a terminal)",
    )
    p = add_command(
        sub,
        "restore",
        cmd_restore,
        "move deleted runs back from the trash; --list shows the trash",
        json_flag=True,
    )
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="runs in the trash: run id, name, trash folder or glob (default: none; see --list)",
    )
    p.add_argument("--list", action="store_true", help="list the runs in the trash")
