"""A local stand-in for the Hugging Face Hub, for tests: real HTTP on 127.0.0.1, in memory, no network.

It serves the requests that the clients in the tests make (`huggingface_hub` with `HF_HUB_DISABLE_XET=1`,
`transformers`, `diffusers`, `datasets`) and nothing else: the routes in `ROUTES` are the ones a request
log of the whole test suite showed, each with the client calls that need it. Any other request gets a
404 naming it, so a test that starts using a new endpoint fails at once instead of hanging.

A repo (model, dataset or Space) has branches pointing at commits; a commit holds {path: bytes}. Commits are
atomic: the whole NDJSON body is read before the branch moves, so a connection that drops mid-body
changes nothing. `fail("commit" | "lfs-upload", ...)` injects such drops: the server reads part of the
body and hangs up without answering. `requests` and `dropped` record (method, path) of what came in.

File downloads honour `Range: bytes=...` as the Hub's CDN does (206 and the slice, 416 past the end):
streaming `datasets.load_dataset(..., streaming=True)` reads parquet through HfFileSystem with a HEAD for
the size, then ranged GETs of the footer and of the row groups it needs. `ranged` records (path, range)
of each ranged answer.

Usage (tests/conftest.py does this before anything imports `huggingface_hub`):

    server = HubServer().start()         # binds 127.0.0.1 on a free port, serves from a daemon thread
    os.environ["HF_ENDPOINT"] = server.url
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

USER = "hf-vae-tester"  # the namespace of every test repo (tests build repo ids from it)
# What the Hub stores in LFS by default: it is the content of a new repo's .gitattributes, and
# preupload answers "lfs" for these suffixes (weights, parquet shards, card images).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".parquet", ".arrow", ".png", ".jpg",
                ".jpeg", ".npy", ".npz", ".pkl", ".pickle", ".zip", ".gz", ".tar", ".onnx", ".msgpack")
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()
FAULT_KINDS = ("commit", "lfs-upload")

API = r"/api/(?P<kind>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"  # kind: "models" | "datasets" | "spaces"
REV = r"(?P<rev>[^/]+)"  # a branch or commit id; clients URL-quote it, so it is one path segment
# (method(s), path pattern, HubServer method, fault kind that can drop it)
ROUTES = [
    # HfApi.create_repo: push_run, push_embedded_dataset, upload tests, transformers/diffusers push_to_hub.
    ("POST", r"/api/repos/create", "create_repo", None),
    # HfApi.create_commit checks README.md's metadata before uploading anything.
    ("POST", r"/api/validate-yaml", "validate_yaml", None),
    # repo_info / model_info / dataset_info (the commit a revision is at, and the file list): every
    # transformers from_pretrained and pipeline() by repo id, diffusers DiffusionPipeline.from_pretrained,
    # datasets.load_dataset.
    ("GET", API + r"(?:/revision/" + REV + ")?", "info", None),
    # list_repo_tree: hf_vae's push_run and load_model (list_repo_files), diffusers' download, and the
    # HfFileSystem glob of datasets.load_dataset (?recursive=false at the root, then recursive).
    ("GET", API + r"/tree/" + REV + r"(?:/(?P<path>.+))?", "tree", None),
    # list_repo_commits (the CLI test reads the commit title).
    ("GET", API + r"/commits/" + REV, "history", None),
    # create_branch(exist_ok=True): push_run(revision="dev").
    ("POST", API + r"/branch/" + REV, "create_branch", None),
    # create_commit, step 1: which files go through LFS.
    ("POST", API + r"/preupload/" + REV, "preupload", None),
    # create_commit, step 2: the LFS batch API hands out an upload URL per object ...
    ("POST", r"/(?:datasets/|spaces/)?[^/]+/[^/]+\.git/info/lfs/objects/batch", "lfs_batch", None),
    # ... step 3: the object itself (retried by huggingface_hub when the connection drops) ...
    ("PUT", r"/lfs-objects/(?P<sha>[0-9a-f]{64})", "lfs_upload", "lfs-upload"),
    # ... step 4: the NDJSON commit (header, then regular "file" and "lfsFile" lines).
    ("POST", API + r"/commit/" + REV, "commit", "commit"),
    # hf_hub_download (HEAD for metadata, then GET): every from_pretrained, ModelCard.load, load_dataset;
    # HfFileSystem's ranged reads (streaming load_dataset) get 206 slices (see _Handler._ranged).
    ("GET HEAD", r"/(?P<kind>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)/resolve/" + REV + r"/(?P<path>.+)", "download", None),
]
ROUTES = [(methods.split(), re.compile(pattern), name, fault) for methods, pattern, name, fault in ROUTES]


class HubError(Exception):
    """An error answer; `code` goes to X-Error-Code, from which huggingface_hub picks its exception type."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


def git_blob_oid(data: bytes) -> str:
    """The id git (and so the Hub) gives a file's content: its ETag and its oid in tree listings."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, bytes]
    title: str
    message: str
    date: str  # the Hub's format, which huggingface_hub's parse_datetime requires

    @classmethod
    def new(cls, parent: str | None, files: dict[str, bytes], title: str, message: str = "") -> Commit:
        date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return cls(os.urandom(20).hex(), parent, files, title, message, date)


@dataclass
class Repo:
    id: str
    url: str  # what create_repo answers, and the base of commit urls
    branches: dict[str, str]  # name -> commit id
    commits: dict[str, Commit]  # commit id -> commit

    def resolve(self, revision: str) -> Commit:
        oid = self.branches.get(revision, revision)
        if oid not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]


class HubServer:
    """In-memory Hub on 127.0.0.1; `url` is what HF_ENDPOINT must be set to."""

    def __init__(self):
        self._lock = threading.Lock()  # held while repos, branches or faults change
        self._repos: dict[tuple[str, str], Repo] = {}  # (kind "model"|"dataset"|"space", repo id) -> repo
        self._lfs: dict[str, bytes] = {}  # sha256 -> uploaded LFS object
        self._faults: dict[str, list[int]] = {}  # kind -> [after_bytes, times left]
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.dropped: list[tuple[str, str]] = []  # (method, path) of the requests a fault dropped
        self.ranged: list[tuple[str, str]] = []  # (path, "bytes=a-b") of every ranged (206/416) answer
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.hub = self
        self.url = "http://%s:%d" % self.httpd.server_address[:2]

    def start(self) -> HubServer:
        threading.Thread(target=self.httpd.serve_forever, name="test-hub-server", daemon=True).start()
        return self

    # -- what tests call ----------------------------------------------------------------------------

    def fail(self, kind: str, *, after_bytes: int = 64, times: int = 1) -> None:
        """The next `times` requests of `kind` lose their connection after `after_bytes` of their body."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"`kind` must be one of {FAULT_KINDS}, got {kind!r}")
        with self._lock:
            self._faults[kind] = [after_bytes, times]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def head(self, repo_id: str, branch: str = "main") -> str:
        """The commit id a branch of model repo `repo_id` points at."""
        return self._repo("model", repo_id).resolve(branch).oid

    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        """{path: content} of the repo's main branch."""
        return dict(self._repo(repo_type, repo_id).resolve("main").files)

    def commits(self, repo_id: str) -> list[str]:
        """The commit ids of model repo `repo_id`'s main branch, newest first."""
        return [c.oid for c in self._history(self._repo("model", repo_id), "main")]

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _history(self, repo: Repo, revision: str) -> list[Commit]:
        out = [repo.resolve(revision)]
        while out[-1].parent is not None:
            out.append(repo.commits[out[-1].parent])
        return out

    def _take_fault(self, kind: str | None) -> int | None:
        """`after_bytes` if a fault of `kind` is pending (and count it down), else None."""
        with self._lock:  # LFS uploads run in parallel threads
            fault = self._faults.get(kind)
            if fault is None or fault[1] <= 0:
                return None
            fault[1] -= 1
            return fault[0]

    # -- the routes: each returns (status, JSON payload or bytes, extra headers) --------------------

    def create_repo(self, body, query):
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}"  # every test names its namespace
        url = f"{self.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # create_repo(exist_ok=True) accepts the 409 and still reads the repo's url from it.
                return 409, {"error": "You already created this repo", "url": url}, {}
            initial = Commit.new(None, {".gitattributes": GITATTRIBUTES}, "initial commit")
            self._repos[(repo_type, repo_id)] = Repo(repo_id, url, {"main": initial.oid}, {initial.oid: initial})
        return 200, {"url": url}, {}

    def validate_yaml(self, body, query):
        content = json.loads(body)["content"]
        metadata = yaml.safe_load(content.split("---", 2)[1]) if content.startswith("---") else {}
        if not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "README.md metadata must be a YAML mapping"}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def info(self, body, query, repo, rev="main"):
        commit = repo.resolve(rev)
        return 200, {"id": repo.id, "sha": commit.oid, "siblings": [{"rfilename": p} for p in sorted(commit.files)]}, {}

    def tree(self, body, query, repo, rev, path=""):
        """Files (and folders) under `path`: all levels with ?recursive=true, else the direct children."""
        commit = repo.resolve(rev)
        recursive = query.get("recursive") == ["true"]
        prefix = path.strip("/") + "/" if path else ""
        folders, files = set(), []
        for name, data in sorted(commit.files.items()):
            if name.startswith(prefix):
                parts = name[len(prefix):].split("/")
                depth = len(parts) - 1 if recursive else min(len(parts) - 1, 1)
                folders.update(prefix + "/".join(parts[:d]) for d in range(1, depth + 1))
                if recursive or len(parts) == 1:
                    files.append({"type": "file", "path": name, "size": len(data), "oid": git_blob_oid(data)})
        # A folder's oid is a required field that no client here reads: the commit id will do.
        return 200, [{"type": "directory", "path": f, "oid": commit.oid, "size": 0} for f in sorted(folders)] + files, {}

    def history(self, body, query, repo, rev):
        commits = self._history(repo, rev)
        return 200, [{"id": c.oid, "title": c.title, "message": c.message, "date": c.date, "authors": [{"user": USER}]}
                     for c in commits], {}

    def create_branch(self, body, query, repo, rev):
        with self._lock:  # from main (push_run passes no starting point); an existing branch keeps its head
            repo.branches.setdefault(rev, repo.branches["main"])
        return 200, {}, {}

    def preupload(self, body, query, repo, rev):
        files = [{"path": f["path"], "uploadMode": "lfs" if f["path"].lower().endswith(LFS_SUFFIXES) else "regular",
                  "shouldIgnore": False} for f in json.loads(body)["files"]]
        return 200, {"files": files}, {}

    def lfs_batch(self, body, query):
        # Every object gets an upload action, even one uploaded before: a fault test must see its PUT.
        objects = [{"oid": o["oid"], "size": o["size"], "actions": {"upload": {"href": f"{self.url}/lfs-objects/{o['oid']}"}}}
                   for o in json.loads(body)["objects"]]
        return 200, {"objects": objects}, {}

    def lfs_upload(self, body, query, sha):
        self._lfs[sha] = body
        return 200, b"", {}

    def commit(self, body, query, repo, rev):
        """Apply a fully received NDJSON commit: all of it, or (on any error) nothing."""
        header, changes = {}, {}
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                changes[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                changes[value["path"]] = self._lfs[value["oid"]]  # KeyError (500) if it was never uploaded
            else:
                raise HubError(400, f"the test hub does not serve {key!r} commit operations")
        with self._lock:
            head = repo.resolve(rev)
            commit = Commit.new(head.oid, {**head.files, **changes}, header.get("summary", ""),
                                header.get("description") or "")
            repo.commits[commit.oid] = commit
            repo.branches[rev] = commit.oid  # the only change readers can see
        return 200, {"commitOid": commit.oid, "commitUrl": f"{repo.url}/commit/{commit.oid}"}, {}

    def download(self, body, query, repo, rev, path):
        commit = repo.resolve(rev)
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = commit.files[path]
        # huggingface_hub needs the commit (cache folder) and an ETag (blob name) of every file.
        return 200, data, {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_oid(data)}"'}


class _Handler(BaseHTTPRequestHandler):
    """HTTP plumbing: match a route, drop the connection if a fault says so, read the body, answer."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub: bodies are always read in full

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        hub: HubServer = self.server.hub
        hub.requests.append((self.command, self.path))
        url = urlsplit(self.path)
        route = next(((name, fault, match) for methods, pattern, name, fault in ROUTES
                      if self.command in methods and (match := pattern.fullmatch(url.path))), None)
        length = int(self.headers.get("Content-Length") or 0)
        after_bytes = hub._take_fault(route and route[1])
        if after_bytes is not None:  # read part of the body, then hang up without an answer
            self.rfile.read(min(after_bytes, length))
            hub.dropped.append((self.command, self.path))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = self.rfile.read(length)  # all of it, before any answer: the connection stays in sync
        try:
            if route is None:
                raise HubError(404, f"test hub: no route for {self.command} {url.path}")
            name, _, match = route
            fields = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            if "repo" in fields:  # "models"/"datasets"/"spaces" in API paths; "datasets/", "spaces/" or nothing in downloads
                kind = fields.pop("kind", "").rstrip("/").removesuffix("s") or "model"
                fields["repo"] = hub._repo(kind, fields["repo"])
            answer = getattr(hub, name)(body, parse_qs(url.query), **fields)
        except HubError as error:
            answer = error.status, {"error": str(error)}, {"X-Error-Code": error.code} if error.code else {}
        except Exception as error:  # a server bug or a request it cannot serve: fail the test clearly
            answer = 500, {"error": f"test hub: {type(error).__name__}: {error}"}, {}
        status, payload, headers = answer
        if status == 200 and isinstance(payload, bytes) and "Range" in self.headers:
            hub.ranged.append((url.path, self.headers["Range"]))
            status, payload, headers = self._ranged(payload, self.headers["Range"], headers)
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if isinstance(payload, bytes) else "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_POST = do_PUT = do_GET

    @staticmethod
    def _ranged(data: bytes, spec: str, headers: dict) -> tuple[int, bytes | dict, dict]:
        """The answer to `Range: bytes=a-b` (or `a-`, or the suffix form `-n`) for file `data`: 206 with the
        slice and its Content-Range (an end past the file is clipped, as RFC 9110 says), or 416 when it
        starts past the end. One range per request: that is all HfFileSystem asks for."""
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", spec.strip())
        if match is None or match.groups() == ("", ""):
            return 400, {"error": f"test hub: unsupported Range {spec!r}"}, {}
        first, last, size = *match.groups(), len(data)
        if first == "":  # the last `last` bytes
            start, end = max(size - int(last), 0), size - 1
        else:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        if start >= size or start > end:
            error = {"error": f"Range {spec!r} not satisfiable for {size} bytes"}
            return 416, error, {"Content-Range": f"bytes */{size}"}
        return 206, data[start:end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
