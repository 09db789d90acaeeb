"""A tiny in-process stand-in for the Hugging Face Hub API, for testing pushes offline.

It answers the endpoints ``huggingface_hub`` 2.4 calls to check a token and publish a folder:

    GET  /api/whoami-v2                                   token check
    POST /api/repos/create                                create_repo
    GET  /api/models/{repo_id}[/revision/{rev}]           repo_info (create_repo(exist_ok) after a 401/403)
    POST /api/models/{repo_id}/branch/{branch}            create_branch
    POST /api/validate-yaml                               README.md metadata check inside create_commit
    POST /api/models/{repo_id}/preupload/{rev}            upload mode per file
    POST /api/models/{repo_id}/commit/{rev}               the commit (NDJSON)
    POST /{repo_id}.git/info/lfs/objects/batch            LFS batch (only when ``lfs_threshold`` is set)
    PUT  /_lfs/{oid}                                      LFS "basic" upload target

By default every file is declared "regular", so its bytes travel inline as base64 in the commit and neither LFS
nor Xet is involved. With ``lfs_threshold=N`` files of N bytes or more are declared "lfs"; the client then uses
the LFS protocol only when ``HF_HUB_DISABLE_XET`` is set (this server does not speak Xet).

Faults are injected per endpoint with :meth:`FakeHub.fail`: an HTTP status, or a stall longer than the client's
timeout. Only requests carrying ``Authorization: Bearer <a known token>`` are accepted (401 otherwise).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import yaml


@dataclass
class Commit:
    repo_id: str
    branch: str
    message: str
    files: dict[str, bytes]
    oid: str


@dataclass
class Fault:
    endpoint: str  # one of the route names below
    status: int | None = None
    stall_s: float = 0.0
    times: int = 1
    message: str | None = None


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})


_ROUTES = [
    ("GET", re.compile(r"^/api/whoami-v2$"), "whoami"),
    ("POST", re.compile(r"^/api/repos/create$"), "create"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("POST", re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>.+)$"), "preupload"),
    ("POST", re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>.+)$"), "commit"),
    ("POST", re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/branch/(?P<rev>.+)$"), "branch"),
    ("GET", re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>.+))?$"), "repo_info"),
    ("POST", re.compile(r"^/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$"), "lfs_batch"),
    ("PUT", re.compile(r"^/_lfs/(?P<oid>[0-9a-f]{64})$"), "lfs_put"),
]


class FakeHub:
    """Run with ``with FakeHub(tokens={"hf_xxx": "write"}) as hub:``; ``hub.url`` is the endpoint to use."""

    def __init__(self, tokens: dict[str, str] | None = None, user: str = "tester", lfs_threshold: int | None = None):
        self.tokens = dict(tokens or {})
        self.user = user
        self.lfs_threshold = lfs_threshold
        self.repos: dict[str, Repo] = {}
        self.commits: list[Commit] = []
        self.lfs_objects: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []  # (route name, path) of every request, in order
        self.bodies: list[bytes] = []  # raw request bodies, to check what went over the wire
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _serve(self, method: str) -> None:
                hub._handle(self, method)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_PUT(self):
                self._serve("PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()  # unblock stalled handlers
        self._server.shutdown()
        self._server.server_close()

    # -- test controls ---------------------------------------------------------------------------------------
    def fail(self, endpoint: str, *, status: int | None = None, stall_s: float = 0.0, times: int = 1,
             message: str | None = None) -> None:
        """Make the next ``times`` calls of ``endpoint`` answer ``status`` (with ``message``) or stall ``stall_s`` s."""
        with self._lock:
            self._faults.append(Fault(endpoint, status, stall_s, times, message))

    def release(self) -> None:
        """End every stall now and make later stalls return at once (tests that hold a request, then let it go)."""
        self._release.set()

    def clear_faults(self) -> None:
        """Answer normally from now on (e.g. to push again after a failure the test injected)."""
        with self._lock:
            self._faults.clear()

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].branches[branch])

    def count(self, endpoint: str) -> int:
        return sum(1 for name, _ in self.calls if name == endpoint)

    # -- request handling ------------------------------------------------------------------------------------
    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint == endpoint and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _read_chunked(req.rfile)
        path = urlparse(req.path).path
        for route_method, pattern, name in _ROUTES:
            match = pattern.match(path) if route_method == method else None
            if match:
                break
        else:
            return _send(req, 404, {"error": f"fake hub has no route {method} {path}"})
        with self._lock:
            self.calls.append((name, path))
            self.bodies.append(body)
        fault = self._take_fault(name)
        if fault and fault.stall_s:
            self._release.wait(fault.stall_s)
        if fault and fault.status:
            return _send(req, fault.status, {"error": fault.message or f"injected {fault.status} on {name}"})
        if name != "lfs_put":  # LFS uploads go to a pre-signed URL without the Hub token
            auth = req.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip()
            if token not in self.tokens:
                return _send(req, 401, {"error": "Invalid credentials in Authorization header"})
        groups = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        status, payload = getattr(self, f"_on_{name}")(req, body, groups)
        _send(req, status, payload)

    def _on_whoami(self, req, body, groups):
        token = req.headers["Authorization"].removeprefix("Bearer ").strip()
        return 200, {"type": "user", "name": self.user, "auth": {"type": "access_token",
                                                                  "accessToken": {"role": self.tokens[token]}}}

    def _on_create(self, req, body, groups):
        data = json.loads(body)
        repo_id = f"{data.get('organization') or self.user}/{data['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        self.repos[repo_id] = Repo(private=data.get("visibility") == "private" or bool(data.get("private")))
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}

    def _on_repo_info(self, req, body, groups):
        repo = self.repos.get(groups["repo"])
        if repo is None:
            return 404, {"error": "Repository not found"}
        return 200, {"id": groups["repo"], "modelId": groups["repo"], "sha": "0" * 40, "private": repo.private}

    def _on_branch(self, req, body, groups):
        repo = self.repos.get(groups["repo"])
        if repo is None:
            return 404, {"error": "Repository not found"}
        if groups["rev"] in repo.branches:
            return 409, {"error": "Branch already exists"}
        repo.branches[groups["rev"]] = dict(repo.branches["main"])
        return 200, {}

    def _on_validate_yaml(self, req, body, groups):
        content = json.loads(body)["content"]
        if content.startswith("---"):
            try:
                yaml.safe_load(content.split("---")[1])
            except yaml.YAMLError as err:
                return 400, {"errors": [{"message": str(err)}]}
        return 200, {"errors": [], "warnings": []}

    def _on_preupload(self, req, body, groups):
        if groups["repo"] not in self.repos:
            return 404, {"error": "Repository not found"}
        files = json.loads(body)["files"]
        modes = []
        for item in files:
            lfs = self.lfs_threshold is not None and item["size"] >= self.lfs_threshold
            modes.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": None})
        return 200, {"files": modes, "commitOid": "0" * 40}

    def _on_lfs_batch(self, req, body, groups):
        data = json.loads(body)
        objects = []
        for obj in data["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.url}/_lfs/{obj['oid']}", "header": {}}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def _on_lfs_put(self, req, body, groups):
        if hashlib.sha256(body).hexdigest() != groups["oid"]:
            return 400, {"error": "sha256 mismatch"}
        self.lfs_objects[groups["oid"]] = body
        return 200, {}

    def _on_commit(self, req, body, groups):
        repo = self.repos.get(groups["repo"])
        if repo is None:
            return 404, {"error": "Repository not found"}
        branch = groups["rev"]
        if branch not in repo.branches:
            return 404, {"error": f"Revision {branch} not found"}
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = lines[0]["value"]
        files: dict[str, bytes] = {}
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    return 422, {"error": f"LFS object {value['oid']} was never uploaded"}
                files[value["path"]] = self.lfs_objects[value["oid"]]
            elif line["key"] == "deletedFile":
                repo.branches[branch].pop(value["path"], None)
            else:
                return 400, {"error": f"fake hub does not support {line['key']}"}
        oid = hashlib.sha1(body + str(time.time()).encode()).hexdigest()
        repo.branches[branch].update(files)
        self.commits.append(Commit(groups["repo"], branch, header["summary"], files, oid))
        return 200, {"commitUrl": f"{self.url}/{groups['repo']}/commit/{oid}", "commitOid": oid,
                     "pullRequestUrl": None}


def _send(req: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode()
    try:
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        if status >= 400 and "error" in payload:
            req.send_header("X-Error-Message", payload["error"])
        req.end_headers()
        req.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
        pass


def _read_chunked(stream) -> bytes:
    data = b""
    while True:
        size = int(stream.readline().strip(), 16)
        if size == 0:
            stream.readline()
            return data
        data += stream.read(size)
        stream.readline()
