"""The HTTP server of ``cs336-exp serve``: the page, its assets, the JSON API, live events.

The standard library's ``ThreadingHTTPServer``: no dependency, ~50 ms to import, and a row
appended to a journal reached an open page in 0.16 s with server-sent events when measured.
Each open page holds one thread for its event stream; this is a local tool for a handful of
tabs, which that suits (starlette + uvicorn would add 6 MB and an event loop for no gain).

Routes (GET and HEAD only; anything else is 405):

=======================  ========================================================
``/``                    the page
``/static/<name>``       its script and style sheet (a fixed list; no path from the
                         URL ever reaches the file system)
``/vendor/plotly.min.js``  the chart library, from the installed ``plotly`` wheel
``/api/runs``            the runs table (``?only=id,id`` for some runs)
``/api/series``          thinned curves (see :func:`.api.series`)
``/api/bands``           groups of runs as mean and band (:func:`.api.bands`)
``/api/at``              each run's values at an x (the budget cursor, :func:`.api.at`)
``/api/events``          server-sent events: ``{"version", "runs": [...]}`` per change
=======================  ========================================================

Files are sent as they are: plotly kept an hour, the rest ``no-store``. On loopback gzip
saved no time, and with gzip or ETags chromium's second visit took 1 s or more, not 0.4 s,
when measured (see benchmarks/bench_dashboard.py).

A bad request gets 400 or 404 with a one-line JSON message; a bug gets 500 with no
traceback (the traceback goes to the ``cs336_basics`` logger).

Bounded: a connection that sends nothing for :data:`IDLE_TIMEOUT_S` seconds (an idle
keep-alive, a half-open or stalled client) is closed, which ends its thread; at most
:data:`MAX_EVENT_STREAMS` event streams are open at once (one per open tab), and one more
gets 503 with a one-line JSON message. An event stream whose client went away lets its
place go within about a second.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import select
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from . import api
from .store import RunStore

logger = logging.getLogger("cs336_basics")
#: Seconds between two keep-alive comments on an event stream with no news.
EVENT_WAIT_S = 15.0
#: How often an event stream with no news checks that its client is still there.
EVENT_CHECK_S = 1.0
#: Seconds a connection may stay silent (no request, or a request sent in part) before it
#: is closed; also the limit on a single blocked send.
IDLE_TIMEOUT_S = 30.0
#: Event streams open at once (each holds a thread); one more is answered 503.
MAX_EVENT_STREAMS = 32
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}


def plotly_js() -> Path | None:
    """plotly.min.js as shipped in the installed plotly wheel (None without plotly)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # a page opening several tabs at once is not turned away

    def __init__(
        self,
        address: tuple[str, int],
        store: RunStore,
        idle_timeout: float | None = None,
        max_event_streams: int | None = None,
    ) -> None:
        self.store = store
        self.idle_timeout = IDLE_TIMEOUT_S if idle_timeout is None else idle_timeout
        self.max_event_streams = (
            MAX_EVENT_STREAMS if max_event_streams is None else max_event_streams
        )
        self.event_streams = 0
        self._streams_lock = threading.Lock()
        self.assets = {
            route: (resources.files(__package__).joinpath(f"static/{name}").read_bytes(), kind)
            for route, (name, kind) in _STATIC.items()
        }
        plotly = plotly_js()
        self.plotly = plotly.read_bytes() if plotly is not None else None
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def open_stream(self) -> bool:
        """Take a place for one more event stream; False when all are taken."""
        with self._streams_lock:
            if self.event_streams >= self.max_event_streams:
                return False
            self.event_streams += 1
            return True

    def close_stream(self) -> None:
        with self._streams_lock:
            self.event_streams -= 1

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"
    server_version = "cs336-exp-serve"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # A socket timeout: http.server closes a connection whose next request does not
        # come (or not whole) in time, and a send blocked that long ends the connection.
        self.connection.settimeout(self.server.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        logger.debug("dashboard: " + format, *args)

    # --- answers --------------------------------------------------------------------
    def _send(self, status: int, body: bytes, kind: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(status, orjson.dumps(data), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self.do_GET()

    def _host_allowed(self) -> bool:
        """On a loopback address, only requests naming a loopback host: a page elsewhere
        cannot read the runs through DNS rebinding (its requests carry its own host name)."""
        if not is_loopback(str(self.server.server_address[0])):
            return True  # --allow-remote: the user chose to serve any name
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.strip("[]") in _LOOPBACK_NAMES

    def do_GET(self) -> None:  # noqa: N802
        if not self._host_allowed():
            self._error(403, "host not allowed: open the page at 127.0.0.1 or localhost")
            return
        try:
            self._route()
        except api.BadRequest as exc:
            self._error(exc.status, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            logger.exception("dashboard: error answering %s", self.path[:200])
            try:
                self._error(500, "internal error (see the server's log)")
            except OSError:
                pass

    def _refuse(self) -> None:
        self._error(405, f"method {self.command} not allowed: this server is read-only")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # any other method: 405, not http.server's 501
            return self._refuse
        raise AttributeError(name)

    def _route(self) -> None:
        parts = urlsplit(self.path)
        route = parts.path
        if not route.startswith("/"):
            raise api.BadRequest(f"path {route[:80]!r}: expected an absolute path")
        try:
            query = parse_qs(
                parts.query, keep_blank_values=True, strict_parsing=False, max_num_fields=50
            )
        except ValueError as exc:
            raise api.BadRequest(f"query: {exc}") from None
        if route in self.server.assets:
            body, kind = self.server.assets[route]
            self._send(200, body, kind)
        elif route == "/vendor/plotly.min.js":
            if self.server.plotly is None:
                self._error(404, "plotly is not installed: pip install 'cs336-basics[dashboard]'")
            else:
                self._send(200, self.server.plotly, "text/javascript; charset=utf-8", cache=True)
        elif route == "/api/runs":
            only = query.get("only")
            self._json(api.runs(self.server.store, set(only[0].split(",")) if only else None))
        elif route == "/api/series":
            self._json(api.series(self.server.store, query))
        elif route == "/api/bands":
            self._json(api.bands(self.server.store, query))
        elif route == "/api/at":
            self._json(api.at(self.server.store, query))
        elif route == "/api/events":
            self._events()
        elif route == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._error(404, f"no such page {route[:80]!r}")

    def _events(self) -> None:
        """Server-sent events: one message per change, naming the runs that changed."""
        server = self.server
        if self.command == "HEAD":
            self._send_stream_headers()
            return
        if not server.open_stream():
            self._error(
                503,
                f"too many open live views ({server.max_event_streams}): close some tabs "
                "of this page",
            )
            return
        try:
            self._send_stream_headers()
            self.close_connection = True
            self._stream()
        finally:
            server.close_stream()

    def _send_stream_headers(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.flush()

    def _stream(self) -> None:
        store = self.server.store
        seen = -1
        quiet = 0.0
        while True:
            version = store.wait(seen, EVENT_CHECK_S)
            if store.stopped:
                return
            if version == seen:
                if self._client_gone():
                    return
                quiet += EVENT_CHECK_S
                if quiet >= EVENT_WAIT_S:
                    quiet = 0.0
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                continue
            quiet = 0.0
            changed = {r for r, e in list(store.entries.items()) if e.changed > seen}
            payload = api.runs(store, None if seen < 0 else changed)
            seen = version
            self.wfile.write(b"data: " + orjson.dumps(payload) + b"\n\n")
            self.wfile.flush()

    def _client_gone(self) -> bool:
        """Whether the client closed its end (an event stream's client sends nothing more:
        a readable socket means it closed or reset)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


def make_server(
    log_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8336,
    interval: float = 0.2,
    *,
    idle_timeout: float | None = None,
    max_event_streams: int | None = None,
) -> DashboardServer:
    """A started store and a bound server (call ``serve_forever``; ``close`` stops both).
    ``idle_timeout``: seconds a silent connection is kept (default :data:`IDLE_TIMEOUT_S`);
    ``max_event_streams``: live views served at once (default :data:`MAX_EVENT_STREAMS`)."""
    store = RunStore(log_dir, interval=interval)
    server = DashboardServer((host, port), store, idle_timeout, max_event_streams)
    store.start()
    return server


def close(server: DashboardServer) -> None:
    server.shutdown()
    server.server_close()
    server.store.stop()
