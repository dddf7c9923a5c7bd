"""A loopback stand-in for the Hugging Face Hub HTTP API (stdlib only), for push and load tests.

It answers what huggingface_hub 2.4 (create_repo, create_branch, create_commit with LFS, list_repo_tree,
get_paths_info, repo_info) and datasets 5.2 (load_dataset, streaming with Range reads) call, on
127.0.0.1 with an ephemeral port. File contents live under a temp folder as content-addressed objects,
so a test can tamper with what the "Hub" holds; checksums are always recomputed from the stored bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".arrow", ".mp4", ".flac", ".m4a", ".gif", ".bin", ".safetensors")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.mp4 filter=lfs diff=lfs merge=lfs -text\n"
REPO_TYPES = {"datasets": "dataset", "models": "model", "spaces": "space"}
URL_PREFIXES = {"dataset": "datasets/", "model": "", "space": "spaces/"}


def git_blob_sha1(data: bytes) -> str:
    """The git object id of ``data`` stored as a regular blob."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class HubError(Exception):
    """An HTTP error answer; ``code`` goes to the `X-Error-Code` header huggingface_hub maps to exceptions."""

    def __init__(self, status: int, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class Commit:
    oid: str
    title: str
    date: str
    files: dict[str, tuple[str, bool]]  # path -> (object key, stored as LFS)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid


class FakeHub:
    """The server plus its state. Counters let tests see what was uploaded; hooks simulate failures."""

    def __init__(self, storage: Path, token: str):
        self.storage = Path(storage)
        (self.storage / "objects").mkdir(parents=True, exist_ok=True)
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.commits: dict[str, Commit] = {}
        self.lfs_puts = 0  # LFS objects received (PUT)
        self.regular_files = 0  # inline (base64) files received in commits
        self.commit_count = 0
        self.ranged_reads = 0  # resolve requests answered 206 (streaming reads Parquet footers and row groups)
        self.unhandled: list[str] = []  # requests no route matched or that raised
        self.fail_commits_after: Optional[int] = None  # answer 500 to every commit after this many
        self.tamper_on_commit: set[str] = set()  # paths whose stored bytes get corrupted when committed
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def uploads(self) -> int:
        """Every file body the server received (LFS PUTs + inline commit files)."""
        return self.lfs_puts + self.regular_files

    # ----- storage -------------------------------------------------------------------------------------------
    def _put_object(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        path = self.storage / "objects" / key
        if not self._object_intact(key):
            path.write_bytes(data)
        return key

    def _object_intact(self, key: str) -> bool:
        path = self.storage / "objects" / key
        return path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == key

    def _commit(self, repo: Repo, branch: str, files: dict[str, tuple[str, bool]], title: str) -> Commit:
        parent = repo.branches.get(branch, "")
        oid = hashlib.sha1(json.dumps([parent, title, sorted(files.items()), len(self.commits)]).encode()).hexdigest()
        commit = Commit(oid, title, datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"), files)
        self.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def _owned(self, repo_type: str, repo_id: str) -> Repo:
        """A repo looked up as its owner (tests inspect private repos too)."""
        return self._repo(repo_type, repo_id, f"Bearer {self.token}")

    def object_path(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset") -> Path:
        """Where the server keeps the bytes of ``path`` (for tests that tamper with the Hub's copy)."""
        key, _ = self._snapshot(self._owned(repo_type, repo_id), revision).files[path]
        return self.storage / "objects" / key

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """What the repo holds at ``revision``: path -> bytes."""
        commit = self._snapshot(self._owned(repo_type, repo_id), revision)
        return {path: (self.storage / "objects" / key).read_bytes() for path, (key, _) in commit.files.items()}

    def tamper(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset") -> None:
        """Flip the last byte of the stored copy of ``path``, as a storage fault would."""
        target = self.object_path(repo_id, path, revision, repo_type)
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))

    # ----- lookups -------------------------------------------------------------------------------------------
    def _repo(self, repo_type: str, repo_id: str, auth: Optional[str] = None, write: bool = False) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        authorized = auth == f"Bearer {self.token}"
        if repo is None or (repo.private and not authorized):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        if write and not authorized:
            raise HubError(401, "Invalid credentials in Authorization header")
        return repo

    def _snapshot(self, repo: Repo, revision: str) -> Commit:
        oid = repo.branches.get(revision, revision)
        if oid not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]

    def _entry(self, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        key, is_lfs = commit.files[path]
        data = (self.storage / "objects" / key).read_bytes()
        entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data)}
        if is_lfs:
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = lfs_pointer(sha256, len(data))
            entry["oid"] = git_blob_sha1(pointer)
            entry["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": len(pointer)}
        else:
            entry["oid"] = git_blob_sha1(data)
        if expand:
            entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return entry

    def _folder(self, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        inside = sorted(p for p in commit.files if p.startswith(path + "/"))
        entry: dict[str, Any] = {"type": "directory", "path": path, "size": 0,
                                 "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest()}
        if expand:
            entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return entry

    def _folders(self, commit: Commit) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in commit.files for i in range(1, p.count("/") + 1)}

    # ----- API -----------------------------------------------------------------------------------------------
    def create_repo(self, body: dict[str, Any], auth: Optional[str]) -> tuple[int, dict[str, Any]]:
        if auth != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        repo_type = body.get("type") or "model"
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        url = f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.repos:  # the Hub answers the existing repo's url with the conflict
            return 409, {"error": "You already created this dataset repo", "url": url}
        repo = Repo(repo_type, repo_id, private=body.get("visibility") == "private" or bool(body.get("private")))
        self.repos[(repo_type, repo_id)] = repo
        self._commit(repo, "main", {".gitattributes": (self._put_object(GITATTRIBUTES), False)}, "initial commit")
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def repo_info(self, repo: Repo, revision: str) -> dict[str, Any]:
        commit = self._snapshot(repo, revision)
        return {"id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.oid,
                "private": repo.private, "gated": False, "disabled": False, "lastModified": commit.date,
                "createdAt": commit.date, "tags": [], "downloads": 0, "likes": 0,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)]}

    def preupload(self, repo: Repo, revision: str, body: dict[str, Any]) -> dict[str, Any]:
        commit = self._snapshot(repo, revision)
        answers = []
        for item in body["files"]:
            lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] >= LFS_MIN_SIZE
            answer = {"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            if item["path"] in commit.files:
                remote = self._entry(commit, item["path"], expand=False)
                answer["oid"] = remote["lfs"]["oid"] if "lfs" in remote else remote["oid"]
            answers.append(answer)
        return {"files": answers, "commitOid": commit.oid}

    def lfs_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        objects = []
        for obj in body["objects"]:
            answer: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self._object_intact(obj["oid"]):
                answer["actions"] = {"upload": {"href": f"{self.url}/_lfs/{obj['oid']}"}}
            objects.append(answer)
        return {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_put(self, oid: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"sha256 of the uploaded body does not match {oid}")
        self._put_object(data)
        self.lfs_puts += 1

    def commit(self, repo: Repo, revision: str, body: bytes) -> dict[str, Any]:
        if self.fail_commits_after is not None and self.commit_count >= self.fail_commits_after:
            raise HubError(500, "simulated server crash during commit")
        files = dict(self._snapshot(repo, revision).files)
        added = set()
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = (self._put_object(base64.b64decode(value["content"])), False)
                added.add(value["path"])
                self.regular_files += 1
            elif key == "lfsFile":
                if not self._object_intact(value["oid"]):
                    raise HubError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                files[value["path"]] = (value["oid"], True)
                added.add(value["path"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            elif key == "deletedFolder":
                files = {p: v for p, v in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
        commit = self._commit(repo, revision, files, header["summary"])
        self.commit_count += 1
        for path in self.tamper_on_commit & added:
            self.tamper(repo.repo_id, path, commit.oid, repo.repo_type)
        url = f"{self.url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        return {"commitUrl": url, "commitOid": commit.oid, "pullRequestUrl": None, "success": True}

    def tree(self, repo: Repo, revision: str, path: str, recursive: bool, expand: bool) -> list[dict[str, Any]]:
        commit = self._snapshot(repo, revision)
        folders = self._folders(commit)
        if path and path not in folders:
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        prefix = path + "/" if path else ""
        depth = prefix.count("/")
        entries = []
        for folder in sorted(f for f in folders if f.startswith(prefix)):
            if recursive or folder.count("/") == depth:
                entries.append(self._folder(commit, folder, expand))
        for file in sorted(p for p in commit.files if p.startswith(prefix)):
            if recursive or file.count("/") == depth:
                entries.append(self._entry(commit, file, expand))
        return entries

    def paths_info(self, repo: Repo, revision: str, paths: list[str], expand: bool) -> list[dict[str, Any]]:
        commit = self._snapshot(repo, revision)
        folders = self._folders(commit)
        return [self._entry(commit, p, expand) if p in commit.files else self._folder(commit, p, expand)
                for p in paths if p in commit.files or p in folders]

    def resolve(self, repo: Repo, revision: str, path: str) -> tuple[bytes, dict[str, str]]:
        commit = self._snapshot(repo, revision)
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        entry = self._entry(commit, path, expand=False)
        data = (self.storage / "objects" / commit.files[path][0]).read_bytes()
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        return data, {"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}


def _handler_class(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    repo_part = r"(?P<repo>[^/]+/[^/]+)"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not traffic
            pass

        def do_GET(self) -> None:
            self._dispatch()

        def do_HEAD(self) -> None:
            self._dispatch()

        def do_POST(self) -> None:
            self._dispatch()

        def do_PUT(self) -> None:
            self._dispatch()

        # ----- plumbing ----------------------------------------------------------------------------------------
        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", headers: Optional[dict[str, str]] = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, payload: Any, status: int = 200) -> None:
            self._send(status, json.dumps(payload).encode())

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            body = self._body() if self.command in ("POST", "PUT") else b""
            try:
                with hub._lock:
                    self._route(url.path, query, body)
            except HubError as err:
                headers = {"X-Error-Code": err.code} if err.code else {}
                if err.code:
                    headers["X-Error-Message"] = err.message
                self._send(err.status, json.dumps({"error": err.message}).encode(), headers)
            except Exception as err:  # a bug here or a request shape this server does not expect
                hub.unhandled.append(f"{self.command} {self.path}: {err!r}")
                self._send(500, json.dumps({"error": repr(err)}).encode())

        def _route(self, path: str, query: dict[str, str], body: bytes) -> None:
            auth = self.headers.get("Authorization")
            flag = lambda name: query.get(name, "").lower() in ("1", "true")  # noqa: E731
            method = self.command
            if method == "GET" and path == "/api/agent-harnesses":
                return self._json({"standardEnvVars": [], "harnesses": {}})
            if method == "POST" and path == "/api/repos/create":
                status, payload = hub.create_repo(json.loads(body), auth)
                return self._json(payload, status)
            if method == "POST" and path == "/api/validate-yaml":
                return self._json({"errors": [], "warnings": []})
            if method == "PUT" and (m := re.fullmatch(r"/_lfs/(?P<oid>[0-9a-f]{64})", path)):
                hub.lfs_put(m["oid"], body)
                return self._send(200)
            if m := re.fullmatch(rf"/(?P<prefix>datasets/|spaces/)?{repo_part}\.git/info/lfs/objects/batch", path):
                hub._repo(_type(m["prefix"]), m["repo"], auth, write=True)
                return self._send(200, json.dumps(hub.lfs_batch(json.loads(body))).encode(),
                                  content_type="application/vnd.git-lfs+json")
            if m := re.fullmatch(rf"/(?P<prefix>datasets/|spaces/)?{repo_part}/resolve/(?P<rev>[^/]+)/(?P<file>.+)",
                                 path):
                repo = hub._repo(_type(m["prefix"]), m["repo"], auth)
                return self._serve_file(*hub.resolve(repo, unquote(m["rev"]), unquote(m["file"])))
            m = re.fullmatch(rf"/api/(?P<kind>datasets|models|spaces)/{repo_part}(?P<rest>/.*)?", path)
            if m is None:
                hub.unhandled.append(f"{method} {self.path}")
                raise HubError(404, f"no route for {method} {path}")
            repo_type, rest = REPO_TYPES[m["kind"]], m["rest"] or ""
            write = method == "POST"
            repo = hub._repo(repo_type, m["repo"], auth, write=write)
            if method == "GET" and (rest == "" or rest.startswith("/revision/")):
                return self._json(hub.repo_info(repo, unquote(rest[len("/revision/"):]) if rest else "main"))
            if method == "POST" and (r := re.fullmatch(r"/branch/(?P<branch>[^/]+)", rest)):
                branch = unquote(r["branch"])
                if branch in repo.branches:
                    raise HubError(409, f"Branch {branch} already exists")
                start = (json.loads(body) if body else {}).get("startingPoint") or "main"
                repo.branches[branch] = hub._snapshot(repo, start).oid
                return self._json({})
            if method == "POST" and (r := re.fullmatch(r"/preupload/(?P<rev>[^/]+)", rest)):
                return self._json(hub.preupload(repo, unquote(r["rev"]), json.loads(body)))
            if method == "POST" and (r := re.fullmatch(r"/commit/(?P<rev>[^/]+)", rest)):
                return self._json(hub.commit(repo, unquote(r["rev"]), body))
            if method == "GET" and (r := re.fullmatch(r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", rest)):
                entries = hub.tree(repo, unquote(r["rev"]), unquote(r["path"] or "").strip("/"),
                                   flag("recursive"), flag("expand"))
                return self._json(entries)
            if method == "POST" and (r := re.fullmatch(r"/paths-info/(?P<rev>[^/]+)", rest)):
                form = parse_qs(body.decode())
                expand = form.get("expand", ["false"])[-1].lower() in ("1", "true")
                return self._json(hub.paths_info(repo, unquote(r["rev"]), form.get("paths", []), expand))
            hub.unhandled.append(f"{method} {self.path}")
            raise HubError(404, f"no route for {method} {path}")

        def _serve_file(self, data: bytes, headers: dict[str, str]) -> None:
            ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
            if not ranged:
                return self._send(200, data, headers, "application/octet-stream")
            first, last = ranged.groups()
            if first:
                start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            else:
                start, end = max(len(data) - int(last), 0), len(data) - 1
            if start >= len(data) or start > end:
                return self._send(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"}
            hub.ranged_reads += 1
            return self._send(206, data[start:end + 1], headers, "application/octet-stream")

    return Handler


def _type(prefix: Optional[str]) -> str:
    return {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
