"""What every command shares: the help formatter, ``--log-dir``/``--json``, loading runs,
naming one run, output paths and JSON output.

Mistakes raise :class:`UsageError` (one line on stderr, exit 2; see :func:`cs336_basics.cli.main`).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..core.errors import UnknownRunError, UsageError
from ..core.values import marker_for

DEFAULT_LOG_DIR = "experiment_logs"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with every default shown: ``(default: X)`` is appended to an option's help
    unless the help already says its default in words or the option is a flag."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def add_command(
    sub: Any,
    name: str,
    func: Any,
    help_text: str,
    *,
    json_flag: bool = False,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand that takes ``--log-dir`` (and ``--json`` where asked); ``func(args)``
    runs it."""
    parser = sub.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--log-dir",
        default=DEFAULT_LOG_DIR,
        metavar="DIR",
        help="the folder of runs (the trainer's log_dir)",
    )
    if json_flag:
        parser.add_argument(
            "--json",
            action="store_true",
            help='print JSON for scripts instead of text (NaN/inf as "NaN"/"Infinity"; '
            "default: text)",
        )
    parser.set_defaults(func=func)
    return parser


# --------------------------------------------------------------------------- output


def json_value(value: Any) -> Any:
    """``value`` with NaN/inf (at any depth) spelled as in the document: "NaN", "Infinity"."""
    if isinstance(value, float):
        return value if math.isfinite(value) else marker_for(value)
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value


def dump(data: Any) -> None:
    """Strict JSON on stdout (NaN and inf as the document's markers)."""
    print(json.dumps(json_value(data), indent=2, default=str, allow_nan=False))


# --------------------------------------------------------------------------- runs


def require_log_dir(args: argparse.Namespace) -> Path:
    folder = Path(args.log_dir)
    if not folder.is_dir():
        state = "a file" if folder.exists() else "does not exist"
        raise UsageError(
            f"--log-dir {args.log_dir}: no log directory ({state}); name the folder your "
            "runs are in"
        )
    return folder


def add_filters(parser: argparse.ArgumentParser) -> None:
    """``--tag`` and ``--group``: only the runs with those tags, in those groups."""
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="only runs with this tag; repeatable: runs with every tag given (default: any)",
    )
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="only runs of this group; repeatable: runs of any group given (default: any)",
    )


def analyzer(args: argparse.Namespace) -> Any:
    """An ``ExperimentAnalyzer`` with every run of ``--log-dir`` loaded (only those of the
    command's ``--tag``/``--group``, where it has them)."""
    from ..analysis.analyzer import ExperimentAnalyzer

    require_log_dir(args)
    found = ExperimentAnalyzer(args.log_dir)
    found.load_all(quiet=bool(getattr(args, "json", False)))
    tags, groups = getattr(args, "tag", None) or [], getattr(args, "group", None) or []
    if isinstance(tags, str) or isinstance(groups, str):  # a command's own "group" argument
        raise TypeError("analyzer(): --tag and --group must be lists (add_filters)")
    if tags or groups:
        found.logs = found.filter(tags, groups)
    return found


def resolve_one(args: argparse.Namespace, run: str) -> Any:
    """One run (an ``ExperimentLog``) named by a run file's path, a key, a run id, an
    experiment name (its latest run) or a glob that matches exactly one run."""
    from ..store.layout import DOCUMENT, JOURNAL
    from ..store.load import load_run

    path = Path(run)
    if path.suffix in (DOCUMENT, JOURNAL) and (path.exists() or path.with_suffix(JOURNAL).exists()):
        return load_run(path).log
    runs = analyzer(args)
    try:
        return runs.get(run)
    except UnknownRunError:
        if not any(c in run for c in "*?["):
            raise  # not a glob: the error lists the runs there are
    matches = runs.select([run])  # a glob (UnknownRunError when nothing matches)
    if len(matches) == 1:
        return next(iter(matches.values()))
    shown = ", ".join(list(matches)[:20]) + (", ..." if len(matches) > 20 else "")
    raise UsageError(f"{run!r} matches {len(matches)} runs ({shown}); name one of them")


# --------------------------------------------------------------------------- files


def output_file(option: str, value: str | Path) -> Path:
    """An output file the user named: its folder must exist and it must not be a folder."""
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"{option} {value}: is a directory; give a file name")
    folder = path.parent
    if not folder.is_dir():
        state = "is not a directory" if folder.exists() else "does not exist"
        raise UsageError(f"{option} {value}: folder {folder} {state} (create it first)")
    return path


def output_folder(option: str, value: str | Path) -> Path:
    """A folder the command fills (created if missing): it must not be a file."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {value}: is a file, not a directory")
    return path


def read_text(option: str, path: Path) -> str:
    """A text file, exactly (no newline translation), as UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{option} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
