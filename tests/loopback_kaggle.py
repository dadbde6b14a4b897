"""A tiny Kaggle API on 127.0.0.1 serving one dataset archive, for kagglehub (through kagglesdk).

kagglehub has no endpoint variable of its own: kagglesdk maps ``KAGGLE_API_ENVIRONMENT`` to a
fixed URL (``_env_to_endpoint``), so the test points the production entry of that table here.
The server answers the calls ``kagglehub.dataset_download`` makes, found in kagglehub's
``http_resolver.py`` and kagglesdk's ``kaggle_http_client.py``:

- ``POST /v1/datasets.DatasetApiService/GetDataset`` -> JSON with ``currentVersionNumber``;
- ``POST /v1/datasets.DatasetApiService/DownloadDataset`` -> 302 to the archive (Kaggle
  redirects to cloud storage; the client resumes from that URL);
- ``GET /storage/<archive>`` -> the zip, honouring Range, with the ``x-goog-hash: md5=`` header
  kagglehub checks; the first GET can be cut off half-way, and the resumed part can be corrupted.

Requests without the expected Basic credentials get 401, as Kaggle answers a wrong key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import LoopbackServer, cut_off

SERVICE = "/v1/datasets.DatasetApiService"
VERSION = 3


class LoopbackKaggle(LoopbackServer):
    def __init__(self, owner: str, dataset: str, data: bytes, username: str = "tester", key: str = "k3y",
                 cut_first_get: bool = False, corrupt_resume: bool = False, md5: bool = True) -> None:
        self.owner, self.dataset, self.data = owner, dataset, data
        self.cut_first_get, self.corrupt_resume, self.md5 = cut_first_get, corrupt_resume, md5
        self.auth = "Basic " + base64.b64encode(f"{username}:{key}".encode()).decode()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.archive_path = f"/storage/{owner}/{dataset}/{VERSION}/archive.zip"
        kaggle = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                kaggle.requests.append(("POST", self.path, None))
                if self.headers.get("Authorization") != kaggle.auth:
                    return self._json(401, {"code": 401, "message": "Unauthenticated"})
                if (body.get("ownerSlug"), body.get("datasetSlug")) != (kaggle.owner, kaggle.dataset):
                    return self._json(404, {"code": 404, "message": "Not found"})
                if self.path == f"{SERVICE}/GetDataset":
                    return self._json(200, {"ref": f"{kaggle.owner}/{kaggle.dataset}",
                                            "currentVersionNumber": VERSION})
                if self.path == f"{SERVICE}/DownloadDataset" and body.get("datasetVersionNumber") == VERSION:
                    self.send_response(302)
                    self.send_header("Location", kaggle.archive_path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self._json(404, {"code": 404, "message": "Not found"})

            def do_GET(self) -> None:  # noqa: N802
                range_header = self.headers.get("Range")
                kaggle.requests.append(("GET", self.path, range_header))
                if self.path != kaggle.archive_path:
                    return self._json(404, {"code": 404, "message": "Not found"})
                start = int(range_header.split("=")[1].split("-")[0]) if range_header else 0
                body = kaggle.data[start:]
                if range_header and kaggle.corrupt_resume:
                    body = bytes(b ^ 0xFF for b in body[:16]) + body[16:]
                self.send_response(206 if range_header else 200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if kaggle.md5:
                    digest = base64.b64encode(hashlib.md5(kaggle.data).digest()).decode()
                    self.send_header("x-goog-hash", f"crc32c=AAAAAA==,md5={digest}")
                if range_header:
                    self.send_header("Content-Range", f"bytes {start}-{len(kaggle.data) - 1}/{len(kaggle.data)}")
                self.end_headers()
                try:
                    if kaggle.cut_first_get and not range_header:
                        kaggle.cut_first_get = False
                        return cut_off(self, body)
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (it resumes)
                    self.close_connection = True
                return None

            def _json(self, status: int, payload: dict) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._listen(Handler)
