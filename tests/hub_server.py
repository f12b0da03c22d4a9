"""A local stand-in for the Hugging Face Hub, for tests: real HTTP on 127.0.0.1, in memory, no network.

It speaks the parts of the Hub protocol that `huggingface_hub` 2.x (with `HF_HUB_DISABLE_XET=1`),
`transformers` and `datasets` use to push and pull model and dataset repos:

    POST /api/repos/create                                  create a repo (initial commit with .gitattributes)
    GET  /api/whoami-v2                                     the (single, fake) user
    POST /api/validate-yaml                                 README.md metadata check before a commit
    GET  /api/{models|datasets}/{repo}[/revision/{rev}]     repo info (sha, siblings, cardData)
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}]            tree listing (?recursive=1, ?expand=1)
    POST /api/{type}s/{repo}/paths-info/{rev}               info of some paths (form or JSON body)
    GET  /api/{type}s/{repo}/refs | commits/{rev}           branches/tags, history (newest first)
    POST /api/{type}s/{repo}/branch/{branch}                create a branch (startingPoint)
    POST /api/{type}s/{repo}/preupload/{rev}                regular vs LFS upload mode per file
    POST /{prefix}{repo}.git/info/lfs/objects/batch         LFS batch API: upload + verify actions
    PUT  /lfs-objects/{sha256}  POST /lfs-verify            the LFS upload and verify hrefs handed out
    POST /api/{type}s/{repo}/commit/{rev}                   NDJSON commit: header / file / lfsFile /
                                                            deletedFile / deletedFolder lines
    GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}           download, with ETag, X-Repo-Commit,
                                                            Content-Length, X-Linked-Etag/-Size (LFS)

(`{prefix}` is empty for models and `datasets/` for datasets; `{rev}` is a branch, a tag or a full
commit id, URL-quoted.) Errors carry `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound)
like the Hub, so clients raise their usual exception types.

Commits are atomic: a commit body is read and checked completely (every LFS object must have been
uploaded, `parentCommit` must be the head) before the branch moves, under a lock; a connection that
drops mid-body changes nothing. `fail(...)` injects such drops: the server reads part of the request
body and closes the socket without answering.

Usage (see tests/conftest.py, which binds it before `huggingface_hub` is imported):

    server = HubServer()                 # binds 127.0.0.1 on a free port
    os.environ["HF_ENDPOINT"] = server.url
    server.start()                       # serves from a daemon thread
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

USER = "hf-vae-tester"
REPO_TYPES = {"models": "model", "datasets": "dataset"}
URL_PREFIXES = {"model": "", "dataset": "datasets/"}
# What the Hub stores in LFS by default (its initial .gitattributes), plus anything over 10 MB.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".parquet", ".arrow", ".png", ".jpg",
                ".jpeg", ".npy", ".npz", ".pkl", ".pickle", ".zip", ".gz", ".tar", ".onnx", ".msgpack")
LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()
MAX_BODY = 512 * 1024 * 1024  # refuse absurd uploads instead of reading forever
MAX_CHUNKS = 1_000_000


class _Dropped(Exception):
    """Raised inside a handler to drop the connection without a response (fault injection)."""


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit
        self.extra = extra or {}


def _now() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit: its content key and how the Hub would report it."""

    size: int
    git_oid: str  # oid of the git blob (the pointer file for LFS files)
    sha256: str | None  # LFS files only
    content_key: str  # key into HubServer._contents

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, FileEntry]
    title: str
    message: str
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        revision = unquote(revision)
        for prefix, refs in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if revision.startswith(prefix) and revision[len(prefix):] in refs:
                return self.commits[refs[revision[len(prefix):]]]
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if revision in self.tags:
            return self.commits[self.tags[revision]]
        if revision in self.commits:
            return self.commits[revision]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history(self, commit: Commit) -> list[Commit]:
        out = []
        while commit is not None and len(out) <= len(self.commits):  # bounded walk
            out.append(commit)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return out


@dataclass
class Fault:
    """Drop the connection of the next `times` requests of `kind` after reading `after_bytes` of the body."""

    kind: str  # "commit" | "lfs-upload" | "preupload" | "lfs-batch"
    after_bytes: int
    times: int


class HubServer:
    """In-memory Hub on 127.0.0.1. `url` is what HF_ENDPOINT must be set to."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._contents: dict[str, bytes] = {}  # content_key -> bytes (regular blobs and LFS objects)
        self._lfs: dict[str, bytes] = {}  # sha256 -> bytes of completed LFS uploads
        self._faults: list[Fault] = []
        self._counter = 0
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for debugging
        self.dropped: list[tuple[str, str]] = []  # requests whose connection was dropped by a fault
        self.httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> HubServer:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                                name="test-hub-server", daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()

    # -- test helpers -------------------------------------------------------------------------------

    def fail(self, kind: str, *, after_bytes: int = 64, times: int = 1) -> None:
        """Inject faults: the next `times` requests of `kind` lose their connection mid-body."""
        if kind not in ("commit", "lfs-upload", "preupload", "lfs-batch"):
            raise ValueError(f"`kind` must be one of commit, lfs-upload, preupload, lfs-batch, got {kind!r}")
        with self._lock:
            self._faults.append(Fault(kind, after_bytes, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """Commit id `revision` points at."""
        with self._lock:
            return self._repo(repo_type, repo_id).resolve(revision).oid

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """{path: content} of the repo at `revision`."""
        with self._lock:
            commit = self._repo(repo_type, repo_id).resolve(revision)
            return {path: self._contents[entry.content_key] for path, entry in commit.files.items()}

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[str]:
        """Commit ids reachable from `revision`, newest first."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            return [c.oid for c in repo.history(repo.resolve(revision))]

    # -- the store ----------------------------------------------------------------------------------

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def _new_oid(self, *parts: str) -> str:
        self._counter += 1
        return hashlib.sha1("\0".join((str(self._counter), str(time.time_ns()), *parts)).encode()).hexdigest()

    def _store(self, data: bytes, lfs: bool) -> FileEntry:
        if lfs:
            sha = hashlib.sha256(data).hexdigest()
            key = "lfs:" + sha
            self._contents[key] = data
            return FileEntry(len(data), git_blob_oid(lfs_pointer(sha, len(data))), sha, key)
        oid = git_blob_oid(data)
        self._contents["git:" + oid] = data
        return FileEntry(len(data), oid, None, "git:" + oid)

    def _create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # Like the Hub, the 409 names the existing repo (create_repo(exist_ok=True) reads its url).
                raise HubError(409, "You already created this repo",
                               extra={"url": f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}"})
            repo = Repo(repo_type, repo_id, private, _now())
            files = {".gitattributes": self._store(GITATTRIBUTES, lfs=False)}
            commit = Commit(self._new_oid(repo_id), None, files, "initial commit", "", _now())
            repo.commits[commit.oid] = commit
            repo.branches["main"] = commit.oid
            self._repos[(repo_type, repo_id)] = repo
            return repo

    def _apply_commit(self, repo: Repo, revision: str, header: dict, operations: list[tuple[str, dict]]) -> Commit:
        """Build the new tree from the fully received operations and move the branch: all or nothing."""
        with self._lock:
            branch = unquote(revision)
            if branch not in repo.branches:
                if branch in repo.commits or branch in repo.tags:
                    raise HubError(400, f"Can only commit to a branch, got {branch!r}")
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo.commits[repo.branches[branch]]
            parent = header.get("parentCommit")
            if parent and not head.oid.startswith(parent):
                raise HubError(412, f"A commit has happened since. Please refresh and try again. (head {head.oid})")
            files = dict(head.files)
            for key, value in operations:
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"unsupported encoding {value.get('encoding')!r} for {path}")
                    files[path] = self._store(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    sha = value.get("oid")
                    data = self._lfs.get(sha)
                    if data is None:
                        raise HubError(422, f"LFS object {sha} of {path} was never uploaded")
                    if "size" in value and value["size"] != len(data):
                        raise HubError(422, f"LFS object {sha} of {path} has size {len(data)}, not {value['size']}")
                    files[path] = self._store(data, lfs=True)
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise HubError(400, f"unsupported commit operation {key!r}")
            title = header.get("summary", "")
            commit = Commit(self._new_oid(repo.repo_id, title), head.oid, files, title, header.get("description", ""), _now())
            repo.commits[commit.oid] = commit
            repo.branches[branch] = commit.oid  # the only mutation visible to readers
            return commit

    # -- JSON views ---------------------------------------------------------------------------------

    def _entry_json(self, repo: Repo, commit: Commit, path: str, entry: FileEntry, expand: bool) -> dict:
        out = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
        if entry.is_lfs:
            out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(lfs_pointer(entry.sha256, entry.size))}
        if expand:
            last = commit
            for c in repo.history(commit):  # the newest commit that set this exact entry
                if c.files.get(path) == entry:
                    last = c
                else:
                    break
            out["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
        return out

    def _folder_json(self, commit: Commit, path: str) -> dict:
        oid = hashlib.sha1(("tree\0" + commit.oid + path).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def _tree(self, repo: Repo, commit: Commit, base: str, recursive: bool, expand: bool) -> list[dict]:
        base = base.strip("/")
        prefix = base + "/" if base else ""
        if base and base in commit.files:
            raise HubError(400, f"{base} is a file, not a folder")
        entries, folders = [], set()
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(self._entry_json(repo, commit, path, commit.files[path], expand))
        if base and not entries and not folders:
            raise HubError(404, f"Entry not found: {base}", "EntryNotFound", commit.oid)
        return [self._folder_json(commit, f) for f in sorted(folders)] + entries

    def _info(self, repo: Repo, commit: Commit) -> dict:
        card_data = None
        readme = commit.files.get("README.md")
        if readme is not None:
            text = self._contents[readme.content_key].decode("utf-8", "replace")
            if text.startswith("---"):
                try:
                    card_data = yaml.safe_load(text.split("---", 2)[1])
                except (yaml.YAMLError, IndexError):
                    card_data = None
        namespace, name = repo.repo_id.split("/")
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": namespace,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list((card_data or {}).get("tags") or []),
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }
        if card_data is not None:
            info["cardData"] = card_data
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            if isinstance(card_data, dict):
                for key in ("library_name", "pipeline_tag"):
                    if key in card_data:
                        info[key] = card_data[key]
        return info

    # -- HTTP ---------------------------------------------------------------------------------------

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 60  # a stalled client never pins a thread forever
            server_version = "hf-vae-test-hub/1.0"

            def log_message(self, format, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                self._dispatch("GET")

            def do_HEAD(self):
                self._dispatch("HEAD")

            def do_POST(self):
                self._dispatch("POST")

            def do_PUT(self):
                self._dispatch("PUT")

            # -- plumbing -------------------------------------------------------------------------

            def _take_fault(self, kind: str) -> Fault | None:
                with server._lock:
                    for fault in server._faults:
                        if fault.kind == kind and fault.times > 0:
                            fault.times -= 1
                            return fault
                return None

            def _drop(self, read_first: int) -> None:
                """Read `read_first` bytes of the body, then close the socket without answering."""
                length = self.headers.get("Content-Length")
                to_read = min(read_first, int(length)) if length is not None else read_first
                if to_read:
                    try:
                        self.rfile.read(to_read)
                    except OSError:
                        pass
                server.dropped.append((self.command, self.path))
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                raise _Dropped

            def _body(self, fault_kind: str | None = None) -> bytes:
                self._body_read = True
                if fault_kind is not None:
                    fault = self._take_fault(fault_kind)
                    if fault is not None:
                        self._drop(fault.after_bytes)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks, total = [], 0
                    for _ in range(MAX_CHUNKS):
                        size_line = self.rfile.readline(1024)
                        if not size_line:
                            raise _Dropped  # client went away mid-body
                        size = int(size_line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            break
                        total += size
                        if total > MAX_BODY:
                            raise HubError(413, "payload too large")
                        chunk = self.rfile.read(size)
                        if len(chunk) != size:
                            raise _Dropped
                        chunks.append(chunk)
                        self.rfile.readline(1024)
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise HubError(413, "payload too large")
                data = self.rfile.read(length) if length else b""
                if len(data) != length:
                    raise _Dropped  # connection lost before the whole body arrived
                return data

            def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
                      headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD" and body:
                    self.wfile.write(body)

            def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
                self._send(status, json.dumps(payload).encode(), headers=headers)

            def _finish_body(self) -> dict:
                """Before an early error answer: drain an unread body so the keep-alive connection stays in
                sync, or else tell the client to close it (a silent close races with its next request)."""
                if getattr(self, "_body_read", False):
                    return {}
                length = self.headers.get("Content-Length")
                if length is not None and self.headers.get("Transfer-Encoding") is None and int(length) <= MAX_BODY:
                    self._body_read = True
                    if len(self.rfile.read(int(length))) == int(length):
                        return {}
                return {"Connection": "close"}

            def _dispatch(self, method: str) -> None:
                server.requests.append((method, self.path))
                self._body_read = False
                try:
                    self._route(method)
                except _Dropped:
                    self.close_connection = True
                except HubError as error:
                    headers = {"X-Error-Message": error.message}
                    if error.code:
                        headers["X-Error-Code"] = error.code
                    if error.commit:
                        headers["X-Repo-Commit"] = error.commit
                    try:
                        headers |= self._finish_body()
                        self._json({"error": error.message, **error.extra}, error.status, headers)
                    except OSError:
                        self.close_connection = True
                except (ConnectionError, TimeoutError, socket.timeout):
                    self.close_connection = True
                except Exception as error:  # a server bug: answer 500 (clients retry, tests fail clearly)
                    try:
                        self._json({"error": f"test hub server error: {type(error).__name__}: {error}"}, 500,
                                   {"Connection": "close"})
                    except OSError:
                        self.close_connection = True

            # -- routes ---------------------------------------------------------------------------

            def _route(self, method: str) -> None:
                split = urlsplit(self.path)
                query = parse_qs(split.query)
                segments = split.path.strip("/").split("/")  # still quoted: a quoted revision stays one segment

                if segments[0] == "api":
                    return self._api(method, segments[1:], query)
                if segments[0] == "lfs-objects" and method == "PUT" and len(segments) == 2:
                    return self._lfs_put(segments[1])
                if segments[0] == "lfs-verify" and method == "POST":
                    return self._lfs_verify()
                repo_type = "model"
                if segments[0] in ("datasets", "models"):
                    repo_type, segments = REPO_TYPES[segments[0]], segments[1:]
                if len(segments) >= 3 and segments[1] == "resolve":  # a repo id without namespace
                    raise HubError(404, f"Repository not found: {unquote(segments[0])}", "RepoNotFound")
                if len(segments) >= 4 and segments[2] == "resolve" and method in ("GET", "HEAD"):
                    repo_id = unquote(segments[0]) + "/" + unquote(segments[1])
                    return self._resolve(repo_type, repo_id, segments[3], "/".join(unquote(s) for s in segments[4:]))
                if len(segments) == 6 and segments[1].endswith(".git") and segments[2:] == ["info", "lfs", "objects", "batch"]:
                    repo_id = unquote(segments[0]) + "/" + unquote(segments[1])[: -len(".git")]
                    return self._lfs_batch(repo_type, repo_id)
                raise HubError(404, f"test hub: no route for {method} {split.path}")

            def _api(self, method: str, segments: list[str], query: dict) -> None:
                if segments == ["repos", "create"] and method == "POST":
                    payload = json.loads(self._body() or b"{}")
                    name = payload.get("name")
                    namespace = payload.get("organization") or USER
                    repo_type = payload.get("type") or "model"
                    if repo_type not in URL_PREFIXES:
                        raise HubError(400, f"repo type {repo_type!r} is not served by the test hub")
                    repo_id = f"{namespace}/{name}"
                    private = payload.get("private") or payload.get("visibility") == "private"
                    server._create_repo(repo_type, repo_id, bool(private))
                    return self._json({"url": f"{server.url}/{URL_PREFIXES[repo_type]}{repo_id}", "name": repo_id})
                if segments[:1] == ["whoami-v2"]:
                    return self._json({"type": "user", "name": USER, "fullname": "hf_vae tests", "orgs": [],
                                       "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
                if segments == ["validate-yaml"] and method == "POST":
                    payload = json.loads(self._body() or b"{}")
                    content = payload.get("content", "")
                    errors = []
                    if content.startswith("---"):
                        try:
                            metadata = yaml.safe_load(content.split("---", 2)[1])
                            if metadata is not None and not isinstance(metadata, dict):
                                errors.append({"message": "metadata must be a mapping"})
                        except (yaml.YAMLError, IndexError) as error:
                            errors.append({"message": f"invalid YAML: {error}"})
                    return self._json({"errors": errors, "warnings": []}, 400 if errors else 200)
                if len(segments) == 2 and segments[0] in REPO_TYPES:  # a repo id without namespace
                    raise HubError(404, f"Repository not found: {unquote(segments[1])}", "RepoNotFound")
                if len(segments) < 3 or segments[0] not in REPO_TYPES:
                    raise HubError(404, f"test hub: no API route /api/{'/'.join(segments)}")
                repo_type = REPO_TYPES[segments[0]]
                repo_id = unquote(segments[1]) + "/" + unquote(segments[2])
                rest = segments[3:]
                with server._lock:
                    repo = server._repo(repo_type, repo_id)
                if not rest and method == "GET":
                    with server._lock:
                        return self._json(server._info(repo, repo.resolve("main")))
                action = rest[0]
                revision = rest[1] if len(rest) > 1 else "main"
                if action == "revision" and method == "GET":
                    with server._lock:
                        return self._json(server._info(repo, repo.resolve(revision)))
                if action == "tree" and method == "GET":
                    recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                    expand = query.get("expand", ["false"])[0].lower() in ("1", "true")
                    path = "/".join(unquote(s) for s in rest[2:])
                    with server._lock:
                        commit = repo.resolve(revision)
                        return self._json(server._tree(repo, commit, path, recursive, expand))
                if action == "paths-info" and method == "POST":
                    body = self._body()
                    if self.headers.get("Content-Type", "").startswith("application/json"):
                        payload = json.loads(body or b"{}")
                        paths, expand = payload.get("paths", []), bool(payload.get("expand"))
                    else:
                        form = parse_qs(body.decode())
                        paths = form.get("paths", [])
                        expand = form.get("expand", ["False"])[0].lower() in ("1", "true")
                    with server._lock:
                        commit = repo.resolve(revision)
                        out, folders = [], set()
                        for path in paths:
                            path = path.strip("/")
                            if path in commit.files:
                                out.append(server._entry_json(repo, commit, path, commit.files[path], expand))
                            elif any(p.startswith(path + "/") for p in commit.files) and path not in folders:
                                folders.add(path)
                                out.append(server._folder_json(commit, path))
                    return self._json(out, headers={"X-Repo-Commit": commit.oid})
                if action == "refs" and method == "GET":
                    with server._lock:
                        return self._json({
                            "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in repo.branches.items()],
                            "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, c in repo.tags.items()],
                            "converts": [],
                        })
                if action == "commits" and method == "GET":
                    with server._lock:
                        history = repo.history(repo.resolve(revision))
                        return self._json([
                            {"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                             "authors": [{"user": USER}]} for c in history
                        ])
                if action == "branch" and method == "POST" and len(rest) == 2:
                    payload = json.loads(self._body() or b"{}")
                    branch = unquote(rest[1])
                    with server._lock:
                        if branch in repo.branches:
                            raise HubError(409, f"Branch {branch} already exists")
                        if branch.startswith("refs/"):
                            raise HubError(400, f"Invalid reference for a branch: {branch}")
                        start = repo.resolve(payload.get("startingPoint") or "main")
                        repo.branches[branch] = start.oid
                    return self._json({})
                if action == "preupload" and method == "POST":
                    payload = json.loads(self._body("preupload") or b"{}")
                    with server._lock:
                        head = repo.resolve(revision) if unquote(revision) in repo.branches else None
                    files = []
                    for item in payload.get("files", []):
                        path, size = item["path"], int(item.get("size", 0))
                        lfs = size > LFS_THRESHOLD or path.lower().endswith(LFS_SUFFIXES)
                        entry = head.files.get(path) if head is not None else None
                        files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                                      "oid": (entry.sha256 or entry.git_oid) if entry else None})
                    return self._json({"files": files, "commitOid": head.oid if head else None})
                if action == "commit" and method == "POST":
                    return self._commit(repo, revision)
                raise HubError(404, f"test hub: no API route {method} /api/{'/'.join(segments)}")

            def _commit(self, repo: Repo, revision: str) -> None:
                if query_flag(self.path, "create_pr"):
                    raise HubError(400, "the test hub does not implement pull requests")
                body = self._body("commit")
                header, operations = None, []
                for number, line in enumerate(body.splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                        key, value = item["key"], item["value"]
                    except (ValueError, KeyError, TypeError) as error:
                        raise HubError(400, f"malformed NDJSON commit line {number}: {error}")
                    if key == "header":
                        header = value
                    else:
                        operations.append((key, value))
                if header is None:
                    raise HubError(400, "commit payload has no header line")
                commit = server._apply_commit(repo, revision, header, operations)
                prefix = URL_PREFIXES[repo.repo_type]
                self._json({"commitOid": commit.oid, "commitUrl": f"{server.url}/{prefix}{repo.repo_id}/commit/{commit.oid}",
                            "success": True, "pullRequestUrl": None})

            def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
                payload = json.loads(self._body("lfs-batch") or b"{}")
                with server._lock:
                    server._repo(repo_type, repo_id)
                if payload.get("operation") != "upload":
                    raise HubError(400, "the test hub only serves LFS uploads through the batch API")
                objects = []
                for obj in payload.get("objects", []):
                    oid, size = obj["oid"], int(obj["size"])
                    with server._lock:
                        present = oid in server._lfs
                    entry = {"oid": oid, "size": size, "authenticated": True}
                    if not present:
                        entry["actions"] = {
                            "upload": {"href": f"{server.url}/lfs-objects/{oid}", "header": {}},
                            "verify": {"href": f"{server.url}/lfs-verify", "header": {}},
                        }
                    objects.append(entry)
                self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                           content_type="application/vnd.git-lfs+json")

            def _lfs_put(self, oid: str) -> None:
                data = self._body("lfs-upload")
                if hashlib.sha256(data).hexdigest() != oid:
                    raise HubError(400, f"uploaded content does not hash to {oid}")
                with server._lock:
                    server._lfs[oid] = data
                self._send(200, b"")

            def _lfs_verify(self) -> None:
                payload = json.loads(self._body() or b"{}")
                with server._lock:
                    data = server._lfs.get(payload.get("oid"))
                if data is None or len(data) != payload.get("size"):
                    raise HubError(404, f"LFS object {payload.get('oid')} not found or of the wrong size")
                self._json({"success": True})

            def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
                with server._lock:
                    repo = server._repo(repo_type, repo_id)
                    commit = repo.resolve(revision)
                    entry = commit.files.get(path)
                    if entry is None:
                        raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit.oid)
                    data = server._contents[entry.content_key]
                headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
                if entry.is_lfs:
                    headers |= {"ETag": f'"{entry.sha256}"', "X-Linked-Etag": f'"{entry.sha256}"',
                                "X-Linked-Size": str(entry.size)}
                else:
                    headers["ETag"] = f'"{entry.git_oid}"'
                status = 200
                byte_range = self.headers.get("Range")
                if byte_range and byte_range.startswith("bytes=") and self.command == "GET":
                    start_text, _, end_text = byte_range[len("bytes="):].partition("-")
                    start = int(start_text or 0)
                    end = int(end_text) if end_text else len(data) - 1
                    if start >= len(data) and len(data) > 0:
                        raise HubError(416, "range not satisfiable")
                    headers["Content-Range"] = f"bytes {start}-{min(end, len(data) - 1)}/{len(data)}"
                    data, status = data[start:end + 1], 206
                self._send(status, data, content_type="application/octet-stream", headers=headers)

        return Handler


def query_flag(path: str, name: str) -> bool:
    values = parse_qs(urlsplit(path).query).get(name, [])
    return bool(values) and values[0].lower() in ("1", "true")
