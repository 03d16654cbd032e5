"""cs336-exp: read, compare, plot and report experiment runs; move them to and from W&B.

One module per command group: :mod:`.runs` (list, show, compare, best, export),
:mod:`.figures` (plot, report), :mod:`.sweep` (sweep), :mod:`.remote` (pull, import, push),
:mod:`.live` (serve), :mod:`.manage` (tag, note, rename, delete, restore), :mod:`.diff` (diff);
:mod:`.common` holds what they share. matplotlib and wandb are imported only by the
commands that use them.

Every command takes ``--log-dir`` (default ``experiment_logs``). A user mistake (any
``TrackingError``: unknown run or metric, bad output path, unreadable log, ...) prints one
line on stderr and exits with 2; a problem of the environment (``OSError``: permission
denied, disk full) prints one line and exits with 1; anything else is a bug and shows its
traceback. Listing commands take ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import sys

from ..core.errors import TrackingError
from . import diff, figures, live, manage, remote, runs, sweep
from .common import HelpFormatter

EXIT_USAGE = 2
EXIT_ENVIRONMENT = 1
#: The command groups, in the order ``--help`` lists their commands.
GROUPS = (runs, figures, sweep, remote, live, manage, diff)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cs336-exp",
        formatter_class=HelpFormatter,
        epilog="`cs336-exp COMMAND --help` shows a command's options and their defaults. "
        "Exit status: 0 done, 2 a mistake in the command (one line on stderr), 1 a problem "
        "of the machine (permissions, disk).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    parser.description = (
        "Read, compare, plot and report experiment runs; move them to and from W&B. "
        f"Commands: {', '.join(sub.choices)}."
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(manage.prepare_argv(sys.argv[1:] if argv is None else argv))
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


__all__ = ["EXIT_ENVIRONMENT", "EXIT_USAGE", "build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
