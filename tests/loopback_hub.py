"""A tiny Hugging Face Hub on 127.0.0.1 serving one dataset file, for huggingface_hub through HF_ENDPOINT.

It answers the two calls ``hf_hub_download`` makes: HEAD and GET of
``/datasets/{repo}/resolve/{revision}/{file}`` (with the commit and ETag headers the client
reads), honours Range requests, and can cut its first GET off half-way to test resuming.
"""

from __future__ import annotations

import hashlib
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import LoopbackServer, cut_off

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LoopbackHub(LoopbackServer):
    def __init__(self, repo: str, filename: str, data: bytes, cut_first_get: bool = False) -> None:
        self.repo, self.filename, self.data = repo, filename, data
        self.cut_first_get = cut_first_get
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                hub.requests.append(("HEAD", self.path, self.headers.get("Range")))
                if not hub._known(self.path):
                    return self._send(404, b"", head=True)
                self._send(200, hub.data, head=True)

            def do_GET(self) -> None:  # noqa: N802
                range_header = self.headers.get("Range")
                hub.requests.append(("GET", self.path, range_header))
                if not hub._known(self.path):
                    return self._send(404, b"")
                start = int(range_header.split("=")[1].split("-")[0]) if range_header else 0
                body = hub.data[start:]
                if hub.cut_first_get and not range_header:
                    hub.cut_first_get = False
                    self._headers(200, len(hub.data))
                    return cut_off(self, hub.data)
                self._send(206 if range_header else 200, body, total=len(hub.data), start=start)

            def _headers(self, status: int, length: int, start: int = 0, total: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(hub.data).hexdigest()}"')
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{(total or 0) - 1}/{total}")
                self.end_headers()

            def _send(self, status: int, body: bytes, head: bool = False, total: int | None = None,
                      start: int = 0) -> None:
                self._headers(status, len(body), start, total)
                if not head:
                    self.wfile.write(body)

        self._listen(Handler)

    def _known(self, path: str) -> bool:
        return path.split("?")[0] in {f"/datasets/{self.repo}/resolve/{rev}/{self.filename}" for rev in ("main", COMMIT)}
