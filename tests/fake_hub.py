"""A hub on 127.0.0.1 that serves one folder as one model repo at one commit: the requests huggingface_hub makes
to download files (``hf_hub_download``, ``snapshot_download``), answered from disk, each one logged; and those it
makes to upload them (``create_repo``, ``create_branch``, ``upload_folder`` with every file sent inline), written
into the folder.

    with serve_folder(folder, "owner/name") as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0"}
        ...  # a process loading "owner/name" downloads from ``folder``
        hub.fetched  # the repo's files whose content was sent, in order
        hub.commits  # each upload's commits: revision, summary, the paths written (no pull requests)
"""

from __future__ import annotations

import base64
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
    commits: list[dict[str, object]] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)  # a repo file's path -> the HTTP status it is answered with
    error_codes: dict[str, str] = field(default_factory=dict)  # a refused path -> the hub's X-Error-Code (GatedRepo)
    cut: dict[str, int] = field(default_factory=dict)  # a repo file's path -> bytes sent before the connection drops

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
    def repo_files() -> dict[str, Path]:
        return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}

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
            files = repo_files()
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
                if name in hub.refuse:
                    headers = {"X-Error-Message": "refused"}
                    if name in hub.error_codes:
                        headers["X-Error-Code"] = hub.error_codes[name]
                    return self._send(hub.refuse[name], b"refused by the test", headers)
                if name not in files:
                    return self._missing()
                data = files[name].read_bytes()
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                if name in hub.cut and self.command == "GET":  # the whole length announced, part of it sent
                    self.send_response(200)
                    for key, value in {"ETag": etag, "X-Repo-Commit": COMMIT, "Content-Length": str(len(data))}.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data[: hub.cut[name]])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                return self._send(200, data, {"ETag": etag, "X-Repo-Commit": COMMIT})
            return self._missing()

        do_GET = do_HEAD = _answer

        def _json(self, value: object) -> None:
            self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def do_POST(self) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(("POST", path))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if path == "/api/validate-yaml":  # a README's metadata, checked before an upload
                return self._json({"errors": [], "warnings": []})
            if path == "/api/repos/create":  # the served repo exists once its folder holds a file
                if repo_files():
                    error = {"error": "You already created this model repo", "url": f"{hub.endpoint}/{repo_id}"}
                    body = json.dumps(error).encode()
                    return self._send(409, body, {"Content-Type": "application/json"})
                return self._json({"url": f"{hub.endpoint}/{repo_id}"})
            if path.startswith(f"/api/models/{repo_id}/branch/"):
                return self._json({})
            if path.startswith(f"/api/models/{repo_id}/preupload/"):
                asked = json.loads(body)["files"]
                return self._json(
                    {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in asked]}
                )
            if path.startswith(f"/api/models/{repo_id}/commit/"):
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                written = []
                for line in lines:
                    if line["key"] == "file":
                        target = folder / line["value"]["path"]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(base64.b64decode(line["value"]["content"]))
                        written.append(line["value"]["path"])
                header = next(line["value"] for line in lines if line["key"] == "header")
                hub.commits.append({"revision": path.rsplit("/", 1)[1], "summary": header["summary"], "paths": written})
                return self._json({"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{COMMIT}", "commitOid": COMMIT})
            return self._missing()

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
