"""``cs336-exp serve``: a local page of live curves for the runs of a log directory.

Modules, one job each:

- ``loader``: loading one run (the package's one loader) in a worker process, with its
  journal position;
- ``follow``: applying what a live journal gains to the run (the journal module's rules);
- ``store``: the runs of the directory, polled, loaded, reloaded and followed;
- ``series``: one curve for the page (training rows or system samples): x-axis, range,
  smoothing, min/max thinning, alert markers; a group's band;
- ``api``: the JSON answers (runs table, curves, bands, values at the budget cursor) and
  the checks on every request parameter;
- ``server``: the HTTP server (standard library), its routes and server-sent events;
- ``static/``: the page (HTML, JS, CSS; the charts are plotly's, from the plotly wheel).

Nothing here writes into the log directory.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from ..core.errors import UsageError


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(
    log_dir: str | Path = "experiment_logs",
    host: str = "127.0.0.1",
    port: int = 8336,
    allow_remote: bool = False,
) -> None:
    """Serve the page until interrupted (Ctrl-C); prints the URL first."""
    from .server import close, is_loopback, make_server

    directory = Path(log_dir)
    if not directory.is_dir():
        raise UsageError(f"--log-dir {log_dir}: no such directory")
    if not is_loopback(host) and not allow_remote:
        raise UsageError(
            f"--host {host}: not a loopback address; anyone who can reach it can read your "
            "runs. Pass --allow-remote to serve it anyway, or use an SSH port forward"
        )
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: expected 0 to 65535 (0: any free port)")
    try:
        server = make_server(directory, host, port)
    except OSError as exc:
        raise UsageError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror})"
        ) from exc
    if not is_loopback(host):
        print(
            f"warning: serving {directory} on {host}, readable by anyone who can reach it "
            "(no authentication)",
            file=sys.stderr,
        )
    print(f"serving the runs of {directory} at {server.url}  (Ctrl-C stops)", flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)  # `kill` stops it as Ctrl-C does: workers too
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        close(server)
