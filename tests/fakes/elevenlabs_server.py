"""A fake ElevenLabs API on loopback, for wire-level tests of the seller voices.

It answers `POST /v1/text-to-speech/{voice_id}` as the real service does for the official SDK: MP3 bytes
for a known key, 401 for another, and a 429 or 500 when a test queues one. Every request is recorded with
its path, query, headers and JSON body, so a test can assert exactly what MAMS sent.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# An MPEG-1 Layer III frame header (128 kbit/s, 44.1 kHz) and 413 zero bytes, repeated: what an MP3 looks like.
FRAME = bytes([0xFF, 0xFB, 0x90, 0x64]) + bytes(413)


class FakeElevenLabs:
    def __init__(self, *, api_key: str) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.faults: list[int] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                path, _, query = self.path.partition("?")
                with fake._lock:
                    fake.requests.append({"path": path, "query": query, "headers": dict(self.headers.items()),
                                          "body": json.loads(raw) if raw else None})
                    fault = fake.faults.pop(0) if fake.faults else None
                if fault:
                    self._send(fault, json.dumps({"detail": {"status": "fault", "message": f"fault {fault}"}}).encode(),
                               "application/json")
                    return
                if self.headers.get("xi-api-key") != fake.api_key:
                    self._send(401, json.dumps({"detail": {"status": "invalid_api_key",
                                                           "message": "Invalid API key"}}).encode(), "application/json")
                    return
                if not path.startswith("/v1/text-to-speech/"):
                    self._send(404, b'{"detail": "not found"}', "application/json")
                    return
                self._send(200, FRAME * 24, "audio/mpeg")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
