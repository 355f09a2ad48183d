"""A loopback Hugging Face Hub for tests: the endpoints the real `huggingface_hub` client calls.

It keeps model repositories in memory as a chain of commits and speaks the Hub's HTTP API closely
enough for `HfApi.create_repo`, `create_commit`/`upload_folder` (preupload + NDJSON commit),
`push_to_hub`, `repo_info`/`model_info`, `list_repo_tree`, `hf_hub_download` and
`snapshot_download`, and Space repositories for `create_repo(repo_type="space")` and commits to them.
Every file is accepted as a "regular" (base64 in the commit) upload, which the
client supports for any size, so no LFS/Xet storage is needed. Writes require a bearer token; reads
are public. Start it with `LoopbackHub().start()` and point `HF_ENDPOINT` at `hub.endpoint`.
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
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


MAX_BODY_BYTES = 512 * 1024 * 1024
SOCKET_TIMEOUT_S = 60


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob, which the Hub uses as the ETag of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    summary: str
    files: dict[str, bytes]
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)

    def resolve(self, revision: str) -> Commit | None:
        """The commit a branch name ("main") or a full commit hash points to."""
        if revision == "main":
            return self.commits[-1]
        return next((c for c in self.commits if c.oid == revision), None)


class HubState:
    """Repositories and the request log, shared by the handler threads."""

    def __init__(self, user: str):
        self.user = user
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        now = _now()
        initial = Commit(
            oid=hashlib.sha1(f"init {repo_id} {now}".encode()).hexdigest(),
            summary="initial commit",
            files={".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
            date=now,
        )
        repo = Repo(repo_id=repo_id, private=private, commits=[initial])
        self.repos[repo_id] = repo
        return repo

    def commit(
        self, repo: Repo, summary: str, additions: dict[str, bytes], deletions: list[str], deleted_folders: list[str]
    ) -> Commit:
        parent = repo.commits[-1]
        files = dict(parent.files)
        for path in deletions:
            files.pop(path, None)
        for folder in deleted_folders:
            prefix = folder.rstrip("/") + "/"
            files = {p: c for p, c in files.items() if not p.startswith(prefix)}
        files.update(additions)
        digest = hashlib.sha1(parent.oid.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_oid(files[path]).encode())
        digest.update(summary.encode())
        commit = Commit(oid=digest.hexdigest(), summary=summary, files=files, date=_now())
        repo.commits.append(commit)
        return commit


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request; `server.state` holds the repositories."""

    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S  # a stalled client cannot hold a handler thread forever

    # ----------------------------------------------------------------- plumbing
    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        return

    @property
    def state(self) -> HubState:
        return self.server.state  # type: ignore[attr-defined]

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]  # type: ignore[index]
        return f"http://{host}:{port}"

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"request body of {length} bytes exceeds {MAX_BODY_BYTES}")
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        head_only: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body and not head_only:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None, head_only: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers, head_only=head_only)

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and len(auth) > len("Bearer "):
            return True
        self._error(401, "Invalid credentials in Authorization header")
        return False

    def _repo_or_404(self, repo_id: str, head_only: bool = False) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound", head_only=head_only)
        return repo

    def _commit_or_404(self, repo: Repo, revision: str, head_only: bool = False) -> Commit | None:
        commit = repo.resolve(unquote(revision))
        if commit is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", head_only=head_only)
        return commit

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        with self.state.lock:
            self.state.requests.append((method, path))
        try:
            for pattern, verb, handler in ROUTES:
                match = pattern.fullmatch(path)
                if match and verb == method:
                    with self.state.lock:
                        handler(self, query=query, **match.groupdict())
                    return
            self._error(404, f"no route for {method} {path}", head_only=method == "HEAD")
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            self._error(400, f"bad request: {exc}")
        except Exception as exc:  # a server bug must reach the client as a 500, not as a dropped socket
            self._error(500, f"{type(exc).__name__}: {exc}")

    def do_GET(self):  # noqa: N802
        self._route("GET")

    def do_HEAD(self):  # noqa: N802
        self._route("HEAD")

    def do_POST(self):  # noqa: N802
        self._route("POST")

    # ----------------------------------------------------------------- endpoints
    def create_repo(self, query) -> None:
        body = json.loads(self._read_body() or b"{}")
        if not self._authorized():
            return
        repo_type = body.get("type", "model")
        if repo_type not in ("model", "space"):
            self._error(400, f"only model and space repositories are served here, got type={repo_type!r}")
            return
        if repo_type == "space" and not body.get("sdk"):
            self._error(400, "a space needs an sdk (gradio, docker or static)")
            return
        repo_id = f"{body.get('organization') or self.state.user}/{body['name']}"
        key = _key(f"{repo_type}s", repo_id)
        url = f"{self.endpoint}/{key}"
        if key in self.state.repos:
            self._json(
                409,
                {"error": f"You already created this {repo_type} repo", "url": url},
                {"X-Error-Message": f"You already created this {repo_type} repo"},
            )
            return
        self.state.create_repo(key, bool(body.get("private")))
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def validate_yaml(self, query) -> None:
        body = json.loads(self._read_body() or b"{}")
        content = body.get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, flags=re.S)
        errors = []
        if match:
            try:
                metadata = yaml.safe_load(match.group(1))
                if metadata is not None and not isinstance(metadata, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        status = 400 if errors else 200
        self._json(status, {"errors": errors, "warnings": []})

    def preupload(self, query, namespace, name, revision, kind="models") -> None:
        body = json.loads(self._read_body() or b"{}")
        if not self._authorized():
            return
        repo = self._repo_or_404(_key(kind, f"{namespace}/{name}"))
        if repo is None or (commit := self._commit_or_404(repo, revision)) is None:
            return
        files = []
        for entry in body["files"]:
            existing = commit.files.get(entry["path"])
            files.append(
                {
                    "path": entry["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_oid(existing) if existing is not None else None,
                }
            )
        self._json(200, {"files": files, "commitOid": commit.oid})

    def commit(self, query, namespace, name, revision, kind="models") -> None:
        raw = self._read_body()
        if not self._authorized():
            return
        repo = self._repo_or_404(_key(kind, f"{namespace}/{name}"))
        if repo is None:
            return
        if unquote(revision) != "main":
            self._error(400, f"commits are accepted on 'main' only, got revision={revision!r}")
            return
        summary, additions, deletions, deleted_folders = "", {}, [], []
        for line in raw.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", "")
                parent = value.get("parentCommit")
                if parent and parent != repo.commits[-1].oid:
                    self._error(412, f"parent commit {parent} is not the head of main")
                    return
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise ValueError(f"file {value.get('path')!r}: expected base64 encoding")
                additions[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                deletions.append(value["path"])
            elif key == "deletedFolder":
                deleted_folders.append(value["path"])
            else:
                self._error(400, f"unsupported commit operation {key!r} (this hub takes regular uploads only)")
                return
        commit = self.state.commit(repo, summary, additions, deletions, deleted_folders)
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.endpoint}/{repo.repo_id}/commit/{commit.oid}",
            },
        )

    def repo_info(self, query, namespace, name, revision="main", kind="models") -> None:
        repo = self._repo_or_404(_key(kind, f"{namespace}/{name}"))
        if repo is None or (commit := self._commit_or_404(repo, revision)) is None:
            return
        siblings = [
            {"rfilename": p, "size": len(c), "blobId": git_blob_oid(c)} for p, c in sorted(commit.files.items())
        ]
        card = commit.files.get("README.md", b"").decode(errors="replace")
        match = re.match(r"^---\n(.*?)\n---\n", card, flags=re.S)
        card_data = yaml.safe_load(match.group(1)) if match else None
        self._json(
            200,
            {
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "author": namespace,
                "sha": commit.oid,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "lastModified": commit.date,
                "createdAt": repo.commits[0].date,
                "tags": (card_data or {}).get("tags", []),
                "pipeline_tag": (card_data or {}).get("pipeline_tag"),
                "library_name": (card_data or {}).get("library_name"),
                "cardData": card_data,
                "siblings": siblings,
                "downloads": 0,
                "likes": 0,
            },
        )

    def tree(self, query, namespace, name, revision, path=None) -> None:
        path = path or ""
        repo = self._repo_or_404(f"{namespace}/{name}")
        if repo is None or (commit := self._commit_or_404(repo, revision)) is None:
            return
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        entries, folders = [], set()
        for file_path, content in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            parents = rest.split("/")[:-1]
            for depth in range(1, len(parents) + 1):
                folders.add(prefix + "/".join(parents[:depth]))
            entries.append({"type": "file", "path": file_path, "size": len(content), "oid": git_blob_oid(content)})
        if prefix and not entries and not folders:
            self._error(404, f"{path} does not exist on {revision}", "EntryNotFound")
            return
        folder_entries = [
            {"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest()} for f in sorted(folders)
        ]
        self._json(200, folder_entries + entries)

    def resolve(self, query, namespace, name, revision, path, head_only: bool = False) -> None:
        repo = self._repo_or_404(f"{namespace}/{name}", head_only)
        if repo is None or (commit := self._commit_or_404(repo, revision, head_only)) is None:
            return
        content = commit.files.get(path)
        if content is None:
            headers = {
                "X-Repo-Commit": commit.oid,
                "X-Error-Code": "EntryNotFound",
                "X-Error-Message": "Entry not found",
            }
            self._send(404, b"" if head_only else b'{"error": "Entry not found"}', headers, head_only=head_only)
            return
        headers = {"ETag": f'"{git_blob_oid(content)}"', "X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        byte_range = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if byte_range and not head_only:
            start = int(byte_range.group(1))
            end = int(byte_range.group(2)) if byte_range.group(2) else len(content) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            self._send(206, content[start : end + 1], headers, "application/octet-stream")
            return
        self._send(200, content, headers, "application/octet-stream", head_only=head_only)

    def resolve_head(self, query, **kwargs) -> None:
        self.resolve(query, head_only=True, **kwargs)


_REPO = r"(?P<namespace>[\w.-]+)/(?P<name>[\w.-]+)"


def _key(kind: str, repo_id: str) -> str:
    """Model repositories are stored under their id, Spaces under 'spaces/<id>'."""
    return repo_id if kind == "models" else f"{kind}/{repo_id}"


ROUTES = [
    (re.compile(r"/api/repos/create"), "POST", HubRequestHandler.create_repo),
    (re.compile(r"/api/validate-yaml"), "POST", HubRequestHandler.validate_yaml),
    (
        re.compile(rf"/api/(?P<kind>models|spaces)/{_REPO}/preupload/(?P<revision>[^/]+)"),
        "POST",
        HubRequestHandler.preupload,
    ),
    (
        re.compile(rf"/api/(?P<kind>models|spaces)/{_REPO}/commit/(?P<revision>[^/]+)"),
        "POST",
        HubRequestHandler.commit,
    ),
    (re.compile(rf"/api/(?P<kind>models|spaces)/{_REPO}"), "GET", HubRequestHandler.repo_info),
    (
        re.compile(rf"/api/(?P<kind>models|spaces)/{_REPO}/revision/(?P<revision>[^/]+)"),
        "GET",
        HubRequestHandler.repo_info,
    ),
    (re.compile(rf"/api/models/{_REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?"), "GET", HubRequestHandler.tree),
    (re.compile(rf"/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)"), "GET", HubRequestHandler.resolve),
    (re.compile(rf"/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)"), "HEAD", HubRequestHandler.resolve_head),
]


class LoopbackHub:
    """A Hub-compatible server on 127.0.0.1 and a free port, served from a daemon thread."""

    def __init__(self, user: str = "tester"):
        self.state = HubState(user)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("LoopbackHub: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self.state.lock:
            return list(self.state.requests)

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The files of a repository (or Space, with repo_type="space") at a revision, as the server stores them."""
        with self.state.lock:
            return dict(self.state.repos[_key(f"{repo_type}s", repo_id)].resolve(revision).files)

    def start(self) -> "LoopbackHub":
        server = ThreadingHTTPServer(("127.0.0.1", 0), HubRequestHandler)
        server.daemon_threads = True
        server.state = self.state  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="loopback-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["LoopbackHub", "git_blob_oid"]
