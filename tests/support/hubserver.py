"""A small, in-memory, Hugging Face Hub compatible HTTP server for tests: the dataset repos `advgen publish` writes.

It runs on 127.0.0.1 (stdlib only: ``http.server.ThreadingHTTPServer`` + ``threading``) and speaks what `advgen
publish` and the loaders of its output call, for the *real* ``huggingface_hub`` (checked against 2.4.0) and
``datasets`` (5.2.0) clients: ``whoami``, ``create_repo``, ``repo_exists``/``dataset_info``, ``list_repo_refs``,
``create_branch``, ``list_repo_files``/``list_repo_tree``/``get_paths_info``, ``create_commit`` (regular *and* LFS
files, deletions), ``hf_hub_download``, ``HfFileSystem`` (``hf://``), ``load_dataset`` (plain and
``streaming=True``), ``DatasetCard.load``/``validate``. Dataset repos only: no models, spaces, pull requests, tags,
repo settings or deletion (advgen never calls them). Use it through the ``hub_server`` fixture of
``tests/support/conftest_hub.py`` (which must configure ``HF_ENDPOINT`` before ``huggingface_hub`` is imported).

Behaviours (what the server does, and why):

* Storage is in memory. Every repo is a real commit graph: each commit gets a 40-hex sha, keeps its parent and the
  full file snapshot; branches point to commits. ``revision`` may be a branch, a full sha or a unique sha prefix
  (>= 7 hex). Like the real Hub, ``create_repo`` makes an ``initial commit`` holding a ``.gitattributes``.
* Errors carry the Hub's headers (``X-Error-Code`` / ``X-Error-Message``) so that the client raises the same
  exceptions as against huggingface.co: unknown repo (or private repo you can't see) -> ``RepoNotFound``
  (401 without a token, 404 with one) -> ``RepositoryNotFoundError``; unknown revision -> 404 ``RevisionNotFound`` ->
  ``RevisionNotFoundError``; missing file -> 404 ``EntryNotFound`` -> ``(Remote)EntryNotFoundError``.
* Auth: ``Authorization: Bearer <token>``. A token the server doesn't know is rejected with 401 "Invalid credentials in
  Authorization header" on *every* endpoint (what huggingface.co does; the client then raises a plain
  ``HfHubHTTPError``). Public repos are readable anonymously, private repos need a token of the user that owns the
  namespace. Writes (create repo, preupload, LFS batch, commit, branch) need a token: none -> 401, read-only token
  -> 403, namespace not owned -> 403. Tokens: ``VALID_TOKEN`` (user ``test-user``, write), ``READ_TOKEN`` (same
  user, read-only), ``OTHER_TOKEN`` (user ``other-user``).
* Uploads. ``preupload`` answers ``uploadMode`` per file like the Hub: ``"lfs"`` if the path matches a
  ``filter=lfs`` pattern of the repo's ``.gitattributes``, or the file is >= 10 MiB, or its 512-byte sample contains
  a NUL byte (binary); otherwise ``"regular"``. It also returns the
  ``oid`` of the file currently stored at that path (git blob sha1 for regular files, sha256 for LFS files -- the
  same ids the client computes locally), which is how the client skips unchanged files.
  LFS files go through ``POST /{datasets/}{repo}.git/info/lfs/objects/batch`` (basic transfer: a pre-signed PUT
  URL + a verify URL; objects already stored in the repo get no ``actions``, so they are not re-uploaded) and then
  appear in the commit as ``lfsFile`` lines.
* ``POST .../commit/{rev}`` takes the NDJSON payload (``header``, ``file`` (base64), ``lfsFile``, ``deletedFile``).
  It checks ``parentCommit`` (412 if the branch moved), rejects unknown LFS objects (400), deleting missing paths
  (404 ``EntryNotFound``, "A file with this name doesn't exist") and committing onto a sha (400). Like the real Hub
  (see huggingface_hub issue #1411) an *empty* commit request is accepted and creates a new commit with an unchanged
  tree. huggingface_hub 2.4.0 never sends one for unchanged files: ``create_commit`` drops every addition whose preupload ``oid`` equals the local oid, and if nothing is left
  it logs "No files have been modified since last commit. Skipping to prevent empty commit." and returns the current
  head (``GET /api/{type}s/{repo}/revision/{rev}``) without calling ``/commit``.
* ``GET .../resolve/{rev}/{path}`` (and HEAD) serves the bytes directly (no CDN redirect) with ``ETag`` (git blob sha1,
  or sha256 for LFS files, plus ``X-Linked-Etag``/``X-Linked-Size`` for LFS), ``X-Repo-Commit``, ``Content-Length``,
  ``Accept-Ranges`` and single ``Range`` requests (206 / 416).
* Listings: ``tree/{rev}[/{path}]`` (``recursive``, ``expand``; listing a file path returns the file) is paginated
  with a GitHub-style ``Link: <...>; rel="next"`` header (``page_size``, default 1000, or 50 with ``expand``, like
  the Hub). ``paths-info`` accepts form or JSON bodies.
* Also: ``whoami-v2``, ``repos/create`` (409 when it exists, so ``exist_ok=True`` works), ``refs`` (branches; no
  tags), ``branch`` (create), ``validate-yaml`` (parses the README front matter), ``agent-harnesses`` (empty
  registry, asked for by huggingface_hub's login helpers).
* Not implemented: models and spaces, pull requests, tags, commit listings, repo settings and deletion, xet storage
  (the fixture sets ``HF_HUB_DISABLE_XET=1``), LFS multipart, the dataset viewer (``datasets`` asks
  ``datasets-server.<endpoint host>``, which doesn't resolve, and falls back silently), discussions, gated repos.
* Requests are handled on their own threads but under one lock (state changes are atomic). A bug in the server
  answers 599 with the traceback on stderr (a 5xx in 500-504 would make the client retry with backoff).
* Test helpers: ``requests_log`` (every request as ``(method, path, headers)`` with lowercase header names, plus a
  ``.status`` attribute), ``requests_matching()``, ``commits()``, ``commit_info()``, ``files()``, ``lfs_files()``,
  ``repo_exists()``, ``create_repo()``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import fnmatch
import hashlib
import itertools
import json
import re
import secrets
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

VALID_TOKEN = "hf_test_valid_token"
READ_TOKEN = "hf_test_read_token"
OTHER_TOKEN = "hf_test_other_user_token"
USER = "test-user"
OTHER_USER = "other-user"

LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
REPO_TYPE = "dataset"           # the only kind advgen publishes

# Trimmed copy of the .gitattributes the Hub puts in a new repo.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.lz4 *.mds *.mlmodel *.model *.msgpack"
        " *.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/*"
        " *.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents* *.mp3 *.ogg *.wav *.jpg *.jpeg *.png"
        " *.webp *.gif"
    ).split()
)


# --------------------------------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------------------------------


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob (what ``huggingface_hub.utils.sha.git_hash`` computes)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _iso(d: _dt.datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Blob:
    content: bytes
    lfs_sha256: str | None = None  # set for files stored through LFS

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def pointer(self) -> bytes | None:
        return lfs_pointer(self.lfs_sha256, self.size) if self.lfs_sha256 else None

    @property
    def oid(self) -> str:
        """Git blob id (of the pointer file for LFS files), as listed by the tree API."""
        return git_blob_oid(self.pointer if self.lfs_sha256 else self.content)

    @property
    def etag(self) -> str:
        return self.lfs_sha256 or self.oid

    @property
    def upload_oid(self) -> str:
        """The oid the preupload endpoint reports (sha256 for LFS, git sha1 for regular files)."""
        return self.lfs_sha256 or self.oid


@dataclass
class Commit:
    oid: str
    parents: tuple[str, ...]
    files: dict[str, Blob]
    title: str
    message: str
    author: str
    date: _dt.datetime


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: _dt.datetime
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def resolve(self, revision: str) -> str | None:
        """Revision (branch, refs/heads/..., sha or sha prefix) -> commit oid, or None."""
        rev = revision
        if rev.startswith("refs/heads/"):
            return self.branches.get(rev[len("refs/heads/") :])
        if rev in self.branches:
            return self.branches[rev]
        if re.fullmatch(r"[0-9a-f]{7,40}", rev):
            matches = [oid for oid in self.commits if oid.startswith(rev)]
            if len(matches) == 1:
                return matches[0]
        return None

    def history(self, oid: str) -> list[Commit]:
        """First-parent history, newest first."""
        out = []
        cur: str | None = oid
        while cur is not None:
            commit = self.commits[cur]
            out.append(commit)
            cur = commit.parents[0] if commit.parents else None
        return out


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def _repo_not_found(user: str | None) -> HttpError:
    # The Hub answers 401 to anonymous requests and 404 to authenticated ones; both carry RepoNotFound.
    return HttpError(401 if user is None else 404, "Repository not found", "RepoNotFound")


def _revision_not_found(revision: str) -> HttpError:
    return HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


class LoggedRequest(tuple):
    """``(method, path, headers)`` of a request received by the server (header names lowercased).

    ``path`` is the raw request target (percent-encoded, with the query string). ``status`` is the status code that
    was answered (None while the request is being handled).
    """

    def __new__(cls, method: str, path: str, headers: dict[str, str]):
        obj = super().__new__(cls, (method, path, headers))
        obj.status = None
        return obj

    method = property(lambda self: self[0])
    path = property(lambda self: self[1])
    headers = property(lambda self: self[2])

    def __repr__(self) -> str:
        return f"LoggedRequest({self[0]} {self[1]} -> {self.status})"


# --------------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    """A client that closes its connection early (a reset) is normal here, not a traceback in the test log."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class HubServer:
    """In-memory Hub. ``start()`` serves it on ``http://127.0.0.1:<port>`` from a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        page_size: int = 1000,
        expand_page_size: int = 50,
    ):
        self.host = host
        self.port = port
        self.page_size = page_size
        self.expand_page_size = expand_page_size
        self.token = VALID_TOKEN
        self.read_token = READ_TOKEN
        self.other_token = OTHER_TOKEN
        self.user = USER
        self.tokens: dict[str, tuple[str, str]] = {
            VALID_TOKEN: (USER, "write"),
            READ_TOKEN: (USER, "read"),
            OTHER_TOKEN: (OTHER_USER, "write"),
        }
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests_log: list[LoggedRequest] = []
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._lfs_tickets: dict[str, tuple[tuple[str, str], str, int]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "HubServer":
        handler = type("_BoundHubHandler", (_HubRequestHandler,), {"hub": self})
        self._httpd = _QuietServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- helpers for tests
    def _repo(self, repo_id: str, repo_type: str) -> Repo:
        try:
            return self.repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on the test hub") from None

    def repo_exists(self, repo_id: str, repo_type: str = "dataset") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self.repos

    def commits(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> list[str]:
        """Commit shas reachable from ``revision`` (first parents), oldest first (``[-1]`` is the head)."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            oid = repo.resolve(revision)
            if oid is None:
                raise KeyError(f"unknown revision {revision!r}")
            return [c.oid for c in reversed(repo.history(oid))]

    def commit_info(self, repo_id: str, oid: str, repo_type: str = "dataset") -> Commit:
        with self._lock:
            return self._repo(repo_id, repo_type).commits[oid]

    def files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> dict[str, bytes]:
        """``{path: content}`` of the repo at ``revision`` (LFS files with their real content)."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            oid = repo.resolve(revision)
            if oid is None:
                raise KeyError(f"unknown revision {revision!r}")
            return {p: b.content for p, b in sorted(repo.commits[oid].files.items())}

    def lfs_files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> set[str]:
        """Paths stored through LFS at ``revision``."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            oid = repo.resolve(revision)
            return {p for p, b in repo.commits[oid].files.items() if b.lfs_sha256}

    def create_repo(self, repo_id: str, repo_type: str = "dataset", private: bool = False) -> Repo:
        """Create a repo directly (no HTTP)."""
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                raise ValueError(f"{repo_type} repo {repo_id} already exists")
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now())
            files = {".gitattributes": Blob(DEFAULT_GITATTRIBUTES.encode())}
            self._new_commit(repo, None, files, "initial commit", "", "system", branch="main")
            self.repos[(repo_type, repo_id)] = repo
            return repo

    def clear_log(self) -> None:
        with self._lock:
            self.requests_log.clear()

    def requests_matching(self, pattern: str, method: str | None = None) -> list[LoggedRequest]:
        """Logged requests whose raw path matches ``pattern`` (re.search)."""
        with self._lock:
            return [
                r
                for r in self.requests_log
                if re.search(pattern, r.path) and (method is None or r.method == method.upper())
            ]

    # ---------------------------------------------------------------- internals
    def _new_commit(
        self,
        repo: Repo,
        parent: str | None,
        files: dict[str, Blob],
        title: str,
        message: str,
        author: str,
        *,
        branch: str | None = None,
    ) -> Commit:
        date = _now()
        tree_digest = hashlib.sha1(
            "".join(f"{p}\0{b.oid}\n" for p, b in sorted(files.items())).encode()
        ).hexdigest()
        raw = f"tree {tree_digest}\nparent {parent or ''}\nauthor {author} {date.isoformat()}\n{next(self._counter)}\n"
        raw += f"{title}\n\n{message}"
        oid = hashlib.sha1(raw.encode()).hexdigest()
        commit = Commit(oid, (parent,) if parent else (), dict(files), title, message, author, date)
        repo.commits[oid] = commit
        if branch is not None:
            repo.branches[branch] = oid
        return commit

    def _can_read(self, repo: Repo, user: str | None) -> bool:
        return not repo.private or repo.namespace == user

    def _upload_mode(self, files: dict[str, Blob], path: str, size: int, sample: bytes) -> str:
        if size >= LFS_SIZE_THRESHOLD:
            return "lfs"
        if b"\0" in sample:
            return "lfs"
        attrs = files.get(".gitattributes")
        if attrs is not None and _matches_lfs_attributes(attrs.content.decode("utf-8", "replace"), path):
            return "lfs"
        return "regular"


def _glob_to_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def _path_matches(pattern: str, path: str) -> bool:
    pattern = pattern.strip()
    if not pattern or pattern.startswith("#"):
        return False
    anchored = pattern.startswith("/")
    pattern = pattern.lstrip("/")
    if pattern.endswith("/"):  # directory pattern
        pattern += "**"
    if "/" not in pattern and not anchored:
        return any(fnmatch.fnmatchcase(part, pattern) for part in path.split("/"))
    return bool(_glob_to_regex(pattern).match(path))


def _matches_lfs_attributes(gitattributes: str, path: str) -> bool:
    lfs = False
    for line in gitattributes.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0].startswith("#"):
            continue
        if _path_matches(parts[0], path):
            if "filter=lfs" in parts[1:]:
                lfs = True
            elif "-filter" in parts[1:] or "!filter" in parts[1:]:
                lfs = False
    return lfs


def _read_card_data(files: dict[str, Blob]) -> dict | None:
    readme = files.get("README.md")
    if readme is None:
        return None
    text = readme.content.decode("utf-8", "replace")
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not m:
        return None
    try:
        import yaml  # optional
    except ImportError:
        return None
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _split_revision(segs: list[str]) -> tuple[str, list[str]]:
    """Split raw (still percent-encoded) path segments into (revision, rest).

    Revisions are percent-encoded by the client except ``refs/heads/X``, which ``HfFileSystem`` may send unencoded.
    """
    if not segs or segs[0] == "":
        raise HttpError(400, "Missing revision")
    if unquote(segs[0]) == "refs" and len(segs) >= 3 and segs[1] == "heads":
        return f"refs/{unquote(segs[1])}/{unquote(segs[2])}", segs[3:]
    return unquote(segs[0]), segs[1:]


def _truthy(value: Any) -> bool:
    if isinstance(value, list):
        value = value[-1] if value else None
    return str(value).lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------------------------------------------------
# Request handler
# --------------------------------------------------------------------------------------------------------------------


class _HubRequestHandler(BaseHTTPRequestHandler):
    hub: HubServer  # set on the bound subclass
    protocol_version = "HTTP/1.1"
    server_version = "hubserver/1.0"

    # -------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        hub = self.hub
        entry = LoggedRequest(method, self.path, {k.lower(): v for k, v in self.headers.items()})
        with hub._lock:
            hub.requests_log.append(entry)
        try:
            self.body = self._read_body()
        except Exception:
            self.close_connection = True
            entry.status = 400
            return
        self.method = method
        self.split = urlsplit(self.path)
        self.query = parse_qs(self.split.query, keep_blank_values=True)
        self.base_url = f"http://{self.headers.get('Host') or f'{hub.host}:{hub.port}'}"
        try:
            status, headers, body = self._route()
        except HttpError as err:
            headers = {"Content-Type": "application/json", **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            headers["X-Error-Message"] = err.message
            status, body = err.status, json.dumps({"error": err.message}).encode()
        except Exception as err:  # pragma: no cover - bug in the server: surface it to the client
            import traceback

            traceback.print_exc()
            status, headers = 599, {"Content-Type": "text/plain"}
            body = f"hubserver internal error: {type(err).__name__}: {err}".encode()
        entry.status = status
        self._send(status, headers, body)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        headers = dict(headers)
        headers.setdefault("Content-Length", str(len(body)))
        headers.setdefault("X-Request-Id", secrets.token_hex(8))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.method != "HEAD" and body:
            self.wfile.write(body)

    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict | None = None) -> tuple[int, dict, bytes]:
        return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode()

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise HttpError(400, "Invalid JSON body") from None

    # -------------------------------------------------------------- auth
    def _auth(self) -> tuple[str | None, str | None]:
        header = self.headers.get("Authorization")
        if not header:
            return None, None
        scheme, _, token = header.partition(" ")
        info = self.hub.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if info is None:
            raise HttpError(401, "Invalid credentials in Authorization header")
        return info

    def _require_user(self) -> str:
        user, _ = self._auth()
        if user is None:
            raise HttpError(401, "You must be authenticated to access this resource.")
        return user

    def _require_write(self, namespace: str) -> str:
        user, role = self._auth()
        if user is None:
            raise HttpError(401, "You must be authenticated to write to this repository.")
        if role != "write":
            raise HttpError(403, "This token has read-only access: a write token is required.")
        if namespace != user:
            raise HttpError(403, f"You don't have the rights to write to the namespace {namespace}.")
        return user

    def _get_repo(self, repo_type: str, repo_id: str, *, write: bool = False) -> tuple[Repo, str | None]:
        # Order of checks for writes: 401 (no/invalid token), 404 (repo not visible), 403 (no write access).
        user = self._require_user() if write else self._auth()[0]
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or not self.hub._can_read(repo, user):
            raise _repo_not_found(user)
        if write:
            self._require_write(repo.namespace)
        return repo, user

    def _resolve(self, repo: Repo, revision: str) -> Commit:
        oid = repo.resolve(revision)
        if oid is None:
            raise _revision_not_found(revision)
        return repo.commits[oid]

    # -------------------------------------------------------------- routing
    def _route(self) -> tuple[int, dict, bytes]:
        segs = self.split.path.split("/")[1:]
        m = self.method
        with self.hub._lock:
            if segs[:1] == ["api"]:
                return self._route_api(segs[1:])
            if segs[:1] == ["__lfs"] and len(segs) == 3:
                if segs[1] == "upload" and m == "PUT":
                    return self._lfs_put(segs[2])
                if segs[1] == "verify" and m == "POST":
                    return self._lfs_verify(segs[2])
            # /datasets/ns/name/resolve/rev/path and /datasets/ns/name.git/info/lfs/objects/batch
            repo_type, rest = REPO_TYPE, segs[1:]
            if segs[:1] != ["datasets"]:
                raise HttpError(404, f"Not found: {self.method} {self.split.path} (the test Hub has datasets only)")
            if len(rest) >= 4 and rest[2] == "resolve" and m in ("GET", "HEAD"):
                repo_id = f"{unquote(rest[0])}/{unquote(rest[1])}"
                revision, path_segs = _split_revision(rest[3:])
                return self._resolve_file(repo_type, repo_id, revision, unquote("/".join(path_segs)))
            if len(rest) == 6 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
                if m == "POST":
                    repo_id = f"{unquote(rest[0])}/{unquote(rest[1][:-4])}"
                    return self._lfs_batch(repo_type, repo_id)
        raise HttpError(404, f"Not found: {self.method} {self.split.path}")

    def _route_api(self, segs: list[str]) -> tuple[int, dict, bytes]:
        m = self.method
        if segs == ["whoami-v2"] and m == "GET":
            return self._whoami()
        if segs == ["repos", "create"] and m == "POST":
            return self._create_repo()
        if segs == ["validate-yaml"] and m == "POST":
            return self._validate_yaml()
        if segs == ["agent-harnesses"] and m == "GET":
            return self._json({"standardEnvVars": [], "harnesses": {}})
        if len(segs) >= 3 and segs[0] == "datasets":
            repo_type = REPO_TYPE
            repo_id = f"{unquote(segs[1])}/{unquote(segs[2])}"
            rest = segs[3:]
            action = rest[0] if rest else None
            if action is None and m == "GET":
                return self._repo_info(repo_type, repo_id, None)
            if action == "revision" and m == "GET" and len(rest) >= 2:
                revision, extra = _split_revision(rest[1:])
                if extra:
                    revision = "/".join([revision, *map(unquote, extra)])
                return self._repo_info(repo_type, repo_id, revision)
            if action == "tree" and m == "GET" and len(rest) >= 2:
                revision, path_segs = _split_revision(rest[1:])
                return self._tree(repo_type, repo_id, revision, unquote("/".join(path_segs)).strip("/"))
            if action == "paths-info" and m == "POST" and len(rest) >= 2:
                revision, _ = _split_revision(rest[1:])
                return self._paths_info(repo_type, repo_id, revision)
            if action == "preupload" and m == "POST" and len(rest) >= 2:
                revision, _ = _split_revision(rest[1:])
                return self._preupload(repo_type, repo_id, revision)
            if action == "commit" and m == "POST" and len(rest) >= 2:
                revision, _ = _split_revision(rest[1:])
                return self._commit(repo_type, repo_id, revision)
            if action == "refs" and m == "GET":
                return self._refs(repo_type, repo_id)
            if action == "branch" and len(rest) >= 2 and m == "POST":
                return self._branch(repo_type, repo_id, unquote("/".join(rest[1:])))
        raise HttpError(404, f"Not found: {self.method} {self.split.path}")

    # -------------------------------------------------------------- account / repos
    def _whoami(self):
        user = self._require_user()
        _, role = self._auth()
        return self._json(
            {
                "type": "user",
                "id": hashlib.sha1(user.encode()).hexdigest()[:24],
                "name": user,
                "fullname": user.replace("-", " ").title(),
                "email": f"{user}@example.com",
                "emailVerified": True,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": role}},
            }
        )

    def _create_repo(self):
        body = self._json_body()
        user = self._require_user()
        name = body.get("name")
        if not name or "/" in name:
            raise HttpError(400, "Invalid repo name")
        namespace = body.get("organization") or user
        self._require_write(namespace)
        repo_type = body.get("type") or "model"
        if repo_type != REPO_TYPE:
            raise HttpError(400, f"The test Hub has dataset repos only, not {repo_type!r}")
        repo_id = f"{namespace}/{name}"
        url = f"{self.base_url}/datasets/{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:
            return self._json({"error": f"You already created this {repo_type} repo", "url": url}, 409)
        visibility = body.get("visibility")
        private = visibility in ("private", "protected") if visibility is not None else bool(body.get("private"))
        self.hub.create_repo(repo_id, repo_type, private=private)
        return self._json({"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self):
        self._auth()
        body = self._json_body()
        content = body.get("content") or ""
        m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
        if m:
            try:
                import yaml
            except ImportError:
                yaml = None
            if yaml is not None:
                try:
                    data = yaml.safe_load(m.group(1))
                except yaml.YAMLError as err:
                    return self._json({"errors": [{"message": f"Invalid YAML: {err}"}], "warnings": []}, 400)
                if data is not None and not isinstance(data, dict):
                    return self._json({"errors": [{"message": "Metadata must be a YAML mapping"}], "warnings": []}, 400)
        return self._json({"errors": [], "warnings": []})

    def _repo_info(self, repo_type, repo_id, revision):
        repo, _ = self._get_repo(repo_type, repo_id)
        commit = self._resolve(repo, revision if revision is not None else "main")
        blobs = _truthy(self.query.get("blobs", ["false"]))
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib.update(size=blob.size, blobId=blob.oid)
                if blob.lfs_sha256:
                    sib["lfs"] = {"size": blob.size, "sha256": blob.lfs_sha256, "pointerSize": len(blob.pointer)}
            siblings.append(sib)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo.namespace,
            "sha": commit.oid,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(repo.created_at),
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(b) for b in repo.lfs_objects.values()),
        }
        card = _read_card_data(commit.files)
        if card is not None:
            info["cardData"] = card
        return self._json(info)

    # -------------------------------------------------------------- listings
    def _entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict | None:
        blob = commit.files.get(path)
        if blob is not None:
            out: dict[str, Any] = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
            if blob.lfs_sha256:
                out["lfs"] = {"oid": blob.lfs_sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
        else:
            prefix = path + "/"
            children = sorted((p, b.oid) for p, b in commit.files.items() if p.startswith(prefix))
            if not path or not children:
                return None
            tree_oid = hashlib.sha1("".join(f"{p}\0{o}\n" for p, o in children).encode()).hexdigest()
            out = {"type": "directory", "oid": tree_oid, "size": 0, "path": path}
        if expand:
            last = self._last_commit(repo, commit, path)
            out["lastCommit"] = {"id": last.oid, "title": last.title, "date": _iso(last.date)}
            if blob is not None:
                out["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": None,
                }
        return out

    @staticmethod
    def _last_commit(repo: Repo, commit: Commit, path: str) -> Commit:
        def snapshot(c: Commit):
            if path in c.files:
                return c.files[path].oid
            return tuple(sorted((p, b.oid) for p, b in c.files.items() if p.startswith(path + "/")))

        history = repo.history(commit.oid)
        current = snapshot(commit)
        last = commit
        for older in history[1:]:
            if snapshot(older) != current:
                break
            last = older
        return last

    def _paginate(self, items: list, page_size: int, params: dict) -> tuple[int, dict, bytes]:
        cursor = self.query.get("cursor", ["0"])[-1]
        try:
            start = int(cursor)
        except ValueError:
            raise HttpError(400, "Invalid cursor") from None
        page = items[start : start + page_size]
        headers = {}
        if start + page_size < len(items):
            next_query = urlencode({**params, "cursor": start + page_size})
            headers["Link"] = f'<{self.base_url}{self.split.path}?{next_query}>; rel="next"'
        return self._json(page, headers=headers)

    def _tree(self, repo_type, repo_id, revision, path):
        repo, _ = self._get_repo(repo_type, repo_id)
        commit = self._resolve(repo, revision)
        recursive = _truthy(self.query.get("recursive", ["false"]))
        expand = _truthy(self.query.get("expand", ["false"]))
        if path and path in commit.files:
            paths = [path]
        else:
            prefix = f"{path}/" if path else ""
            below = [p for p in commit.files if p.startswith(prefix)]
            if path and not below:
                raise HttpError(404, f"{path} does not exist on {revision}", "EntryNotFound")
            entries: set[str] = set()
            for p in below:
                parts = p[len(prefix) :].split("/")
                depth = len(parts) if recursive else 1
                for i in range(1, depth + 1):
                    entries.add(prefix + "/".join(parts[:i]))
            paths = sorted(entries)
        items = [self._entry(repo, commit, p, expand) for p in paths]
        params = {"recursive": str(recursive).lower(), "expand": str(expand).lower()}
        return self._paginate(items, self.hub.expand_page_size if expand else self.hub.page_size, params)

    def _paths_info(self, repo_type, repo_id, revision):
        repo, _ = self._get_repo(repo_type, repo_id)
        commit = self._resolve(repo, revision)
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            body = self._json_body()
            paths, expand = body.get("paths", []), _truthy(body.get("expand", False))
        else:
            form = parse_qs(self.body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), _truthy(form.get("expand", ["false"]))
        if isinstance(paths, str):
            paths = [paths]
        out = []
        for p in paths:
            entry = self._entry(repo, commit, p.strip("/"), expand)
            if entry is not None:
                out.append(entry)
        return self._json(out)

    def _refs(self, repo_type, repo_id):
        repo, _ = self._get_repo(repo_type, repo_id)

        def ref(name, full, oid):
            return {"name": name, "ref": full, "targetCommit": oid}

        out = {
            "branches": [ref(n, f"refs/heads/{n}", o) for n, o in sorted(repo.branches.items())],
            "converts": [],
            "tags": [],
        }
        return self._json(out)

    def _branch(self, repo_type, repo_id, branch):
        repo, user = self._get_repo(repo_type, repo_id, write=True)
        body = self._json_body() if self.body else {}
        if branch in repo.branches:
            raise HttpError(409, "Reference already exists")
        start = body.get("startingPoint") or "main"
        repo.branches[branch] = self._resolve(repo, start).oid
        return self._json({})

    # -------------------------------------------------------------- downloads
    def _resolve_file(self, repo_type, repo_id, revision, path):
        repo, _ = self._get_repo(repo_type, repo_id)
        commit = self._resolve(repo, revision)
        blob = commit.files.get(path)
        if blob is None:
            raise HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{blob.etag}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
        }
        if blob.lfs_sha256:
            headers["X-Linked-Etag"] = f'"{blob.lfs_sha256}"'
            headers["X-Linked-Size"] = str(blob.size)
        data = blob.content
        range_header = self.headers.get("Range")
        m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", range_header or "")
        if m and (m.group(1) or m.group(2)):
            size = len(data)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start, end = max(size - int(m.group(2)), 0), size - 1
            if start >= size or start > end:
                raise HttpError(416, "Requested Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return 206, headers, data[start : end + 1]
        return 200, headers, data

    # -------------------------------------------------------------- uploads
    def _preupload(self, repo_type, repo_id, revision):
        repo, _ = self._get_repo(repo_type, repo_id, write=True)
        oid = repo.resolve(revision)
        if oid is None:
            raise _revision_not_found(revision)
        files = repo.commits[oid].files
        body = self._json_body()
        out = []
        for f in body.get("files", []):
            path = f["path"]
            sample = base64.b64decode(f.get("sample") or "")
            existing = files.get(path)
            out.append(
                {
                    "path": path,
                    "uploadMode": self.hub._upload_mode(files, path, int(f.get("size", 0)), sample),
                    "shouldIgnore": False,
                    "oid": existing.upload_oid if existing is not None else None,
                }
            )
        return self._json({"files": out, "commitOid": oid})

    def _lfs_batch(self, repo_type, repo_id):
        repo, _ = self._get_repo(repo_type, repo_id, write=True)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HttpError(422, "Only the upload operation is supported by the test hub")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int):
                objects.append({"oid": str(oid), "size": int(size or 0), "error": {"code": 422, "message": "Invalid oid"}})
                continue
            if oid in repo.lfs_objects:
                objects.append({"oid": oid, "size": size})  # already uploaded: no actions
                continue
            ticket = secrets.token_urlsafe(16)
            self.hub._lfs_tickets[ticket] = ((repo_type, repo_id), oid, size)
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{self.base_url}/__lfs/upload/{ticket}", "expires_in": 3600},
                        "verify": {"href": f"{self.base_url}/__lfs/verify/{ticket}", "header": {}},
                    },
                }
            )
        return self._json(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            headers={"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _lfs_ticket(self, ticket: str) -> tuple[Repo, str, int]:
        info = self.hub._lfs_tickets.get(ticket)
        if info is None:
            raise HttpError(403, "Invalid or expired upload URL")
        key, oid, size = info
        repo = self.hub.repos.get(key)
        if repo is None:
            raise HttpError(404, "Repository not found", "RepoNotFound")
        return repo, oid, size

    def _lfs_put(self, ticket):
        repo, oid, size = self._lfs_ticket(ticket)
        data = self.body
        if len(data) != size or hashlib.sha256(data).hexdigest() != oid:
            raise HttpError(400, "Uploaded content does not match the announced oid/size")
        repo.lfs_objects[oid] = data
        return 200, {"ETag": f'"{hashlib.md5(data).hexdigest()}"'}, b""

    def _lfs_verify(self, ticket):
        repo, oid, size = self._lfs_ticket(ticket)
        body = self._json_body()
        if body.get("oid") != oid or oid not in repo.lfs_objects or len(repo.lfs_objects[oid]) != body.get("size"):
            raise HttpError(404, "Object not found")
        return self._json({"success": True})

    def _commit(self, repo_type, repo_id, revision):
        repo, user = self._get_repo(repo_type, repo_id, write=True)
        lines = []
        for raw in self.body.splitlines():
            if raw.strip():
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    raise HttpError(400, "Invalid NDJSON payload") from None
        if not lines or lines[0].get("key") != "header":
            raise HttpError(400, "The first line of the payload must be the commit header")
        header = lines[0].get("value") or {}
        summary = (header.get("summary") or "").strip()
        if not summary:
            raise HttpError(400, "Commit summary is required")
        parent_commit = header.get("parentCommit")

        # The commit goes onto a branch, whose head must still be parentCommit when that is given.
        target = repo.resolve(revision)
        if target is None:
            raise _revision_not_found(revision)
        branch = revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision
        if branch not in repo.branches:
            raise HttpError(400, f"Invalid rev id: {revision} is not a branch")
        if parent_commit is not None and parent_commit != target:
            raise HttpError(412, "A commit has happened since. Please refresh and try again.", "PreconditionFailed")
        base = target

        files = dict(repo.commits[base].files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path", "")
            if not path or path.startswith("/") or ".." in path.split("/") or path.split("/")[0] == ".git":
                raise HttpError(400, f"Invalid path: {path!r}")
            if key == "file":
                content = value.get("content", "")
                if value.get("encoding", "utf-8") == "base64":
                    data = base64.b64decode(content)
                else:
                    data = content.encode()
                files[path] = Blob(data)
            elif key == "lfsFile":
                oid = value.get("oid")
                if oid not in repo.lfs_objects:
                    raise HttpError(
                        400,
                        f"Your push was rejected because an LFS pointer pointed to a file that does not exist ({path})",
                    )
                files[path] = Blob(repo.lfs_objects[oid], lfs_sha256=oid)
            elif key == "deletedFile":
                if path not in files:
                    raise HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            else:
                raise HttpError(400, f"Unknown operation key: {key!r}")
        commit = self.hub._new_commit(repo, base, files, summary, header.get("description") or "", user, branch=branch)
        url = f"{self.base_url}/datasets/{repo_id}"
        return self._json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{url}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )


__all__ = ["HubServer", "VALID_TOKEN", "READ_TOKEN", "OTHER_TOKEN", "USER", "git_blob_oid"]
