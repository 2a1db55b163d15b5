"""A hub on 127.0.0.1 that serves one folder as one model repo at one commit: the requests huggingface_hub makes
to download files (``hf_hub_download``, ``snapshot_download``), answered from disk, each one logged.

    with serve_folder(folder, "owner/name") as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0"}
        ...  # a process loading "owner/name" downloads from ``folder``
        hub.fetched  # the repo's files whose content was sent, in order
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    endpoint: str
    requests: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fetched(self) -> list[str]:
        """The repo files whose content was sent (GET of a resolve URL), as paths in the repo."""
        marker = "/resolve/"
        return [
            path.split(marker, 1)[1].split("/", 1)[1]
            for verb, path in self.requests
            if verb == "GET" and marker in path
        ]


def _handler(folder: Path, repo_id: str, hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    files = {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _missing(self) -> None:
            self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})

        def _answer(self) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path))
            if path.startswith(f"/api/models/{repo_id}/revision/"):
                listing = {"id": repo_id, "sha": COMMIT, "siblings": [{"rfilename": name} for name in files]}
                return self._send(200, json.dumps(listing).encode(), {"Content-Type": "application/json"})
            if path.startswith(f"/api/models/{repo_id}/tree/"):
                entries = [
                    {"type": "file", "path": name, "size": p.stat().st_size, "oid": COMMIT} for name, p in files.items()
                ]
                return self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"})
            prefix = f"/{repo_id}/resolve/"
            if path.startswith(prefix):
                name = path[len(prefix) :].split("/", 1)[1]
                if name not in files:
                    return self._missing()
                data = files[name].read_bytes()
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                return self._send(200, data, {"ETag": etag, "X-Repo-Commit": COMMIT})
            return self._missing()

        do_GET = do_HEAD = _answer

        def log_message(self, *args: object) -> None:  # the test reads ``hub.requests``
            pass

    return Handler


@contextmanager
def serve_folder(folder: Path, repo_id: str) -> Iterator[FakeHub]:
    """Serve ``folder`` as hub repo ``repo_id`` until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    hub = FakeHub(f"http://127.0.0.1:{server.server_port}")
    server.RequestHandlerClass = _handler(folder, repo_id, hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
