"""A fake W&B GraphQL server on 127.0.0.1 for the real ``wandb.Api`` client.

It answers the operations the public API of wandb 0.19-0.31 sends (Viewer, also as the
unnamed ``{ viewer { id } }`` of 0.22-0.27; the ``__type`` schema probes of 0.19-0.26; Runs,
Run, RunHistoryKeys, RunParquetHistory, HistoryPage) from in-memory runs, with pagination of runs
(cursor = index) and of history (minStep/maxStep), filters on run id, display name and
state, a key check (HTTP 401 for a wrong API key) and per-run injected failures.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "k" * 40
_TYPE_PROBE = re.compile(r'(\w+)\s*:\s*__type\(name:\s*"(\w+)"\)')
#: Field names schema probes are told about (what the fake's answers hold).
_SCHEMA = {
    "Run": (
        "id",
        "name",
        "displayName",
        "state",
        "projectId",
        "tags",
        "sweepName",
        "group",
        "jobType",
        "commit",
        "readOnly",
        "createdAt",
        "heartbeatAt",
        "description",
        "notes",
        "historyLineCount",
        "user",
        "config",
        "summaryMetrics",
        "systemMetrics",
        "historyKeys",
        "history",
    ),
    "Project": ("id", "name", "entityName", "internalId", "runCount", "readOnly", "runs", "run"),
}


@dataclass
class FakeRun:
    id: str
    name: str
    state: str = "finished"
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = "2026-11-20T10:00:00"
    heartbeat_at: str = "2026-11-20T10:05:00"
    notes: str = ""
    fail_history: bool = False
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None


def _matches(run: FakeRun, flt: dict[str, Any]) -> bool:
    for key, cond in flt.items():
        if key == "$and":
            if not all(_matches(run, sub) for sub in cond):
                return False
            continue
        value = {"name": run.id, "display_name": run.name, "state": run.state}.get(key)
        if isinstance(cond, dict) and "$in" in cond:
            if value not in cond["$in"]:
                return False
        elif value != cond:
            return False
    return True


class FakeWandb:
    def __init__(self, entity: str = "ent") -> None:
        self.entity = entity
        self.projects: dict[str, list[FakeRun]] = {}
        self.requests: list[str] = []
        self.history_pages = 0
        self.http_posts = 0
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, project: str, run: FakeRun) -> FakeRun:
        self.projects.setdefault(project, []).append(run)
        return run

    # ----------------------------------------------------------------------------
    def _node(self, run: FakeRun) -> dict[str, Any]:
        return {
            "id": base64.b64encode(f"Run:{run.id}".encode()).decode(),
            "name": run.id,
            "displayName": run.name,
            "state": run.state,
            "projectId": 1,
            "tags": list(run.tags),
            "sweepName": None,
            "group": run.group,
            "jobType": run.job_type,
            "commit": None,
            "readOnly": False,
            "createdAt": run.created_at,
            "heartbeatAt": run.heartbeat_at,
            "description": run.notes,
            "notes": run.notes,
            "historyLineCount": len(run.history),
            "user": {"name": "u", "username": "u"},
            "config": json.dumps(
                {k: {"value": v, "desc": None} for k, v in run.config.items()}
                | {"_wandb": {"value": {"cli_version": "0.31.0"}}}
            ),
            "summaryMetrics": json.dumps(run.summary),
            "systemMetrics": "{}",
            "historyKeys": self._keys(run),
        }

    @staticmethod
    def _keys(run: FakeRun) -> dict[str, Any]:
        if not run.history:
            return {"keys": {}}
        return {"keys": {}, "lastStep": len(run.history) - 1}

    def _find(self, project: str, run_id: str) -> FakeRun | None:
        return next((r for r in self.projects.get(project, []) if r.id == run_id), None)

    def probe(self, query: str) -> dict[str, Any]:
        """Schema probes of clients before 0.27: ``Alias: __type(name: "Run") { fields ... }``."""
        data: dict[str, Any] = {}
        for alias, type_name in _TYPE_PROBE.findall(query):
            names = _SCHEMA.get(type_name, ())
            data[alias] = {
                "fields": [{"name": n} for n in names],
                "inputFields": [{"name": n} for n in names],
            }
        return {"data": data}

    def answer(self, op: str, v: dict[str, Any]) -> dict[str, Any]:
        if op == "Viewer":
            return {
                "data": {
                    "viewer": {
                        "id": "v",
                        "entity": self.entity,
                        "username": "u",
                        "email": "u@example.com",
                        "flags": "{}",
                        "teams": {"edges": []},
                    }
                }
            }
        project = v.get("project")
        if project not in self.projects:
            return {"data": {"project": None}}
        if op == "Runs":
            flt = json.loads(v.get("filters") or "{}")
            runs = [r for r in self.projects[project] if _matches(r, flt)]
            start = int(v.get("cursor") or 0)
            page = runs[start : start + int(v["perPage"])]
            edges = [
                {"node": self._node(r), "cursor": str(start + i + 1)} for i, r in enumerate(page)
            ]
            return {
                "data": {
                    "project": {
                        "internalId": "p1",
                        "runCount": len(runs),
                        "readOnly": False,
                        "runs": {
                            "edges": edges,
                            "pageInfo": {
                                "endCursor": edges[-1]["cursor"] if edges else None,
                                "hasNextPage": start + len(page) < len(runs),
                            },
                        },
                    }
                }
            }
        run = self._find(project, v.get("name") or v.get("runName") or v.get("run"))
        if run is None:
            return {"data": {"project": {"run": None}}}
        if op == "Run":
            return {"data": {"project": {"run": self._node(run)}}}
        if op == "RunHistoryKeys":
            return {"data": {"project": {"run": {"historyKeys": self._keys(run)}}}}
        if op == "RunParquetHistory":
            return {
                "data": {
                    "project": {"run": {"parquetHistory": {"parquetUrls": [], "liveData": []}}}
                }
            }
        if op == "HistoryPage":
            if run.fail_history:
                return {"errors": [{"message": "history backend exploded"}], "data": None}
            self.history_pages += 1
            rows = run.history[int(v["minStep"]) : int(v["maxStep"])]
            return {"data": {"project": {"run": {"history": [json.dumps(r) for r in rows]}}}}
        return {"errors": [{"message": f"fake server: unknown operation {op}"}]}

    def handle(self, authorization: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """One GraphQL POST: the HTTP status and the JSON answer (for both transports)."""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = {}
        query = body.get("query", "")
        op = body.get("operationName") or ""
        if not op:
            found = re.search(r"(?:query|mutation)\s+(\w+)", query)
            op = found.group(1) if found else ""
        if not op and re.search(r"\bviewer\b", query):
            op = "Viewer"  # 0.22-0.27 check the API key with an unnamed query
        self.requests.append(op)
        expected = "Basic " + base64.b64encode(f"api:{API_KEY}".encode()).decode()
        if authorization != expected:
            return 401, {"errors": [{"message": "invalid api key"}]}
        if "__type(" in query:
            return 200, self.probe(query)
        return 200, self.answer(op, body.get("variables") or {})

    def intercept_requests(self) -> Any:
        """A ``responses`` mock that answers the GraphQL POSTs of clients speaking
        ``requests`` (wandb < 0.27) without HTTP; the caller enters it as a context."""
        import responses

        mock = responses.RequestsMock(assert_all_requests_are_fired=False)

        def callback(request: Any) -> tuple[int, dict[str, str], str]:
            body = request.body or b""
            raw = body.encode() if isinstance(body, str) else body
            code, payload = self.handle(request.headers.get("Authorization", ""), raw)
            return code, {"Content-Type": "application/json"}, json.dumps(payload)

        mock.add_callback(responses.POST, re.compile(re.escape(self.url) + ".*"), callback)
        return mock

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake.http_posts += 1
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                self._send(*fake.handle(self.headers.get("Authorization", ""), raw))

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                out = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        return Handler
