"""A fake Galileo API on loopback, for wire-level tests of MAMS's tracing.

It answers the calls the real `galileo` SDK makes when `GALILEO_API_URL` points at it: the health
check, API-key login (a JWT), the current user, projects and log streams (found or created),
sessions (searched by external id, created), trace ingestion, and reading a trace back with
scores. Every request is recorded, so a test can assert exactly what a batch sent: one session per
batch, one trace per negotiation, one LLM span per call. `scores` lets a test decide what Galileo
"computed" for a trace when MAMS reads it back.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

USER_ID = str(uuid.uuid4())
SIGNING_KEY = "fake-galileo-signing-key-of-32-bytes!"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class FakeGalileo:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.projects: dict[str, dict[str, Any]] = {}
        self.log_streams: dict[str, list[dict[str, Any]]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.traces: dict[str, dict[str, Any]] = {}
        self.scores: dict[str, float] = {"correctness": 0.9, "completeness": 0.8}
        self.fail_ingest = False
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    return json.loads(raw) if raw else None
                except ValueError:
                    return raw.decode(errors="replace")

            def _send(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._route("GET", None)

            def do_POST(self) -> None:
                self._route("POST", self._body())

            def do_PATCH(self) -> None:
                self._route("PATCH", self._body())

            def _route(self, method: str, body: Any) -> None:
                path = self.path.split("?")[0]
                with fake._lock:
                    fake.requests.append({"method": method, "path": path, "query": self.path.partition("?")[2],
                                          "body": body, "at": time.time(),
                                          "auth": self.headers.get("Authorization", "")})
                status, payload = fake.answer(method, path, self.path.partition("?")[2], body)
                self._send(status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeGalileo:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the API -----------------------------------------------------------------------------

    def _project(self, name: str) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "name": name, "type": "gen_ai", "created_by": USER_ID,
                "created_by_user": {"id": USER_ID, "email": "ci@example.com"}, "runs": [],
                "created_at": _now(), "updated_at": _now(), "permissions": []}

    def answer(self, method: str, path: str, query: str, body: Any) -> tuple[int, Any]:
        if path in ("/healthcheck", "/v2/healthcheck"):
            return 200, {"api_version": "fake", "message": "ok", "version": "fake"}
        if path == "/login/api_key":
            token = jwt.encode({"exp": int(time.time()) + 3600, "sub": USER_ID}, SIGNING_KEY, algorithm="HS256")
            return 200, {"access_token": token, "token_type": "bearer"}
        if path == "/current_user":
            return 200, {"id": USER_ID, "email": "ci@example.com", "role": "user"}
        if path == "/projects" and method == "GET":
            name = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("project_name", "")
            project = self.projects.get(name)
            return 200, [project] if project else []
        if path == "/projects" and method == "POST":
            project = self._project(body["name"])
            self.projects[body["name"]] = project
            self.log_streams[project["id"]] = []
            return 200, project
        m = re.fullmatch(r"/projects/([^/]+)/log_streams(/paginated)?", path)
        if m and method == "GET":
            streams = self.log_streams.get(m.group(1), [])
            return 200, {"log_streams": streams, "starting_token": 0, "limit": 100, "paginated": False,
                         "next_starting_token": None}
        if m and method == "POST":
            stream = {"id": str(uuid.uuid4()), "name": body["name"], "project_id": m.group(1),
                      "created_at": _now(), "updated_at": _now(), "created_by": USER_ID}
            self.log_streams.setdefault(m.group(1), []).append(stream)
            return 200, stream
        m = re.fullmatch(r"/v2/projects/([^/]+)/sessions/search", path)
        if m:
            filters = (body or {}).get("filters", [])
            wanted = next((f.get("value") for f in filters
                           if "external_id" in (f.get("name"), f.get("column_id"))), None)
            found = [s for s in self.sessions.values() if wanted and s.get("external_id") == wanted]
            return 200, {"records": found, "limit": 100, "starting_token": 0, "next_starting_token": None}
        m = re.fullmatch(r"/v2/projects/([^/]+)/sessions", path)
        if m and method == "POST":
            session = {"id": str(uuid.uuid4()), "project_id": m.group(1), **(body or {})}
            self.sessions[session["id"]] = session
            return 200, session
        m = re.fullmatch(r"/v2/projects/([^/]+)/traces", path)
        if m and method == "POST":
            if self.fail_ingest:
                return 500, {"detail": "ingestion is down"}
            for trace in (body or {}).get("traces", []):
                self.traces[trace["id"]] = {**trace, "session_id": body.get("session_id")}
            return 200, {"project_id": m.group(1), "records_count": len(body.get("traces", [])),
                         "session_id": body.get("session_id")}
        m = re.fullmatch(r"/v2/projects/([^/]+)/traces/([^/]+)", path)
        if m and method == "GET":
            trace = self.traces.get(m.group(2))
            if trace is None:
                return 404, {"detail": "trace not found"}
            spans = [{**s, "metrics": {**(s.get("metrics") or {}), **self.scores}} for s in trace.get("spans", [])]
            return 200, {**trace, "metrics": {**(trace.get("metrics") or {}), **self.scores}, "spans": spans}
        if path == "/ingest/healthz":
            return 404, {"detail": "no ingest service here"}
        return 404, {"detail": f"the fake Galileo does not know {method} {path}"}

    # --- what tests read ---------------------------------------------------------------------

    def ingested(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["method"] == "POST" and r["path"].endswith("/traces")]
