"""``serve``: the live page of the runs of a log directory (``cs336_basics.dashboard``)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_command


def cmd_serve(args: argparse.Namespace) -> None:
    from ..dashboard import serve

    serve(args.log_dir, host=args.host, port=args.port, allow_remote=args.allow_remote)


def register(sub: Any) -> None:
    p = add_command(
        sub, "serve", cmd_serve, "a local web page of live curves of the runs (read-only)"
    )
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    p.add_argument("--port", type=int, default=8336, help="the port (0: any free port)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host that is not loopback (no authentication: anyone who can reach "
        "it reads your runs; default: refuse)",
    )
