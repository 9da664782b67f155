"""A local stand-in for the Hugging Face Hub's HTTP API, for upload and download tests offline.

It serves the endpoints that `HfApi.create_repo`, `repo_info` and `upload_folder` call in
huggingface_hub 2.x, and those `snapshot_download` reads (tree listing, file metadata and
contents), answers them from what it has stored (so "is this file already there?" gets an
honest answer), and records every request (method, path, headers, body) for the tests.

    with HubStub(token="hf_test") as hub:        # HF_ENDPOINT=hub.url in the client's env
        ...
        hub.repos[("model", "user/name")].files  # path -> bytes, as committed
        hub.fail["commit"] = (500, "the Hub is down")   # the next commits answer with an error
        hub.add_model("org/name", {"config.json": b"{}"}, commit="ab" * 20)  # to download

Endpoints (paths as huggingface_hub builds them):
- POST /api/repos/create                                  create a repo (409 if it exists)
- GET  /api/{models,datasets}/{ns}/{name}[/revision/{rev}] repo info: id, sha, siblings
- POST /api/validate-yaml                                 README metadata must be YAML
- POST /api/{type}s/{ns}/{name}/preupload/{rev}           upload mode + stored oid per path
- POST /[datasets/]{ns}/{name}.git/info/lfs/objects/batch LFS batch: upload actions only for
                                                           objects not stored yet
- PUT  /lfs-objects/{oid}                                 LFS upload (no auth, like S3)
- POST /lfs-verify                                        LFS verify
- POST /api/{type}s/{ns}/{name}/commit/{rev}              ndjson commit: header, file (base64),
                                                           lfsFile, deletedFile
- GET  /api/{type}s/{ns}/{name}/tree/{rev}                the file list (one page, recursive)
- HEAD, GET /[datasets/]{ns}/{name}/resolve/{rev}/{path}   file metadata (X-Repo-Commit, ETag,
                                                           size) and contents; {rev} is the head
                                                           commit or "main"

Files are committed as LFS when their name has a binary suffix (like the Hub's default
.gitattributes) or they are 10 MB or larger; `lfs=False` makes every file a regular one (the
Xet upload path of huggingface_hub would otherwise need a Xet storage server).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".gguf",
    ".parquet",
    ".arrow",
    ".h5",
    ".onnx",
)
LFS_MIN_SIZE = 10 * 1024 * 1024
REPO_API = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+?)(?:/revision/([^/]+))?$")
REPO_ACTION = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/(preupload|commit)/([^/]+)$")
LFS_BATCH = re.compile(r"^/(datasets/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch$")
REPO_TREE = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)$")
RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a regular file, as huggingface_hub computes it for comparisons."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Recorded:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    lfs_paths: set[str] = field(default_factory=set)
    commits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.commits[-1]["oid"]

    def oid(self, path: str) -> str | None:
        if path not in self.files:
            return None
        content = self.files[path]
        return (
            hashlib.sha256(content).hexdigest()
            if path in self.lfs_paths
            else git_blob_sha1(content)
        )


class HubStub:
    def __init__(self, token: str | None = None, lfs: bool = True) -> None:
        self.token = token  # when set, API calls without "Bearer <token>" get a 401
        self.lfs = lfs
        self.requests: list[Recorded] = []
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.fail: dict[str, tuple[int, str]] = {}  # endpoint name -> (status, message)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---------------------------------------------------------------- queries for tests

    def commits(self, repo_type: str, repo_id: str) -> list[dict[str, Any]]:
        repo = self.repos.get((repo_type, repo_id))
        return [] if repo is None else list(repo.commits)

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def add_model(self, repo_id: str, files: dict[str, bytes], commit: str | None = None) -> Repo:
        """A model repo holding `files` in one commit (`commit`: its id, e.g. a pinned sha)."""
        repo = Repo("model", repo_id, private=False, files=dict(files))
        oid = commit or self._commit_oid(repo, "add files")
        repo.commits.append({"oid": oid, "summary": "add files", "paths": sorted(files)})
        self.repos[("model", repo_id)] = repo
        return repo

    # ---------------------------------------------------------------- request handling

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()  # the CRLF after each chunk
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                headers = {key.lower(): value for key, value in self.headers.items()}
                record = Recorded(self.command, self.path, headers, body)
                with hub._lock:
                    hub.requests.append(record)
                    status, payload, headers = hub._route(record)
                raw = isinstance(payload, bytes)  # a file's contents, not a JSON answer
                data = payload if raw else json.dumps(payload).encode()
                self.send_response(status)
                content_type = "application/octet-stream" if raw else "application/json"
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        return Handler

    def _error(self, status: int, message: str, code: str | None = None) -> tuple[int, dict, dict]:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        return status, {"error": message}, headers

    def _authorized(self, record: Recorded) -> bool:
        return self.token is None or record.headers.get("authorization") == f"Bearer {self.token}"

    def _repo(self, kind: str, repo_id: str) -> Repo | None:
        return self.repos.get(("dataset" if kind.startswith("dataset") else "model", repo_id))

    def _repo_url(self, repo: Repo) -> str:
        prefix = "datasets/" if repo.repo_type == "dataset" else ""
        return f"{self.url}/{prefix}{repo.repo_id}"

    def _route(self, record: Recorded) -> tuple[int, dict, dict]:
        path = unquote(urlsplit(record.path).path)
        if record.method == "PUT" and path.startswith("/lfs-objects/"):
            return self._lfs_put(path.rsplit("/", 1)[1], record.body)
        if not self._authorized(record):
            return self._error(401, "Invalid credentials in Authorization header")
        if record.method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(record.body))
        if record.method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(record.body))
        if record.method == "POST" and path == "/lfs-verify":
            oid = json.loads(record.body)["oid"]
            return (
                (200, {}, {}) if oid in self.lfs_objects else self._error(404, f"no object {oid}")
            )
        if record.method == "GET" and (match := REPO_API.match(path)):
            return self._repo_info(match.group(1), match.group(2))
        if record.method == "GET" and (match := REPO_TREE.match(path)):
            return self._tree(*match.groups())
        if record.method in ("GET", "HEAD") and (match := RESOLVE.match(path)):
            kind = "datasets" if match.group(1) else "models"
            return self._resolve(kind, *match.groups()[1:])
        if record.method == "POST" and (match := REPO_ACTION.match(path)):
            kind, repo_id, action, _revision = match.groups()
            repo = self._repo(kind, repo_id)
            if repo is None:
                return self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
            if action in self.fail:
                return self._error(*self.fail[action])
            if action == "preupload":
                return self._preupload(repo, json.loads(record.body))
            return self._commit(repo, record.body)
        if record.method == "POST" and (match := LFS_BATCH.match(path)):
            repo = self._repo("datasets" if match.group(1) else "models", match.group(2))
            if repo is None:
                return self._error(404, f"Repository {match.group(2)} not found", "RepoNotFound")
            return self._lfs_batch(json.loads(record.body))
        return self._error(404, f"the Hub stand-in does not serve {record.method} {path}")

    # ---------------------------------------------------------------- endpoints

    def _create_repo(self, payload: dict) -> tuple[int, dict, dict]:
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}"
        if (repo_type, repo_id) in self.repos:
            repo = self.repos[(repo_type, repo_id)]
            status, body, headers = self._error(409, f"You already created this {repo_type} repo")
            body["url"] = self._repo_url(repo)
            return status, body, headers
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = Repo(repo_type, repo_id, private)
        # Like the Hub: a new repo starts with one commit holding .gitattributes.
        repo.files[".gitattributes"] = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
        repo.commits.append(
            {"oid": self._commit_oid(repo, "initial commit"), "summary": "initial commit"}
        )
        self.repos[(repo_type, repo_id)] = repo
        return 200, {"url": self._repo_url(repo), "name": repo_id}, {}

    def _repo_info(self, kind: str, repo_id: str) -> tuple[int, dict, dict]:
        repo = self._repo(kind, repo_id)
        if repo is None:
            return self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
        siblings = [{"rfilename": name} for name in sorted(repo.files)]
        return (
            200,
            {"id": repo_id, "sha": repo.head, "private": repo.private, "siblings": siblings},
            {},
        )

    def _at_revision(self, kind: str, repo_id: str, revision: str) -> Repo | tuple:
        repo = self._repo(kind, repo_id)
        if repo is None:
            return self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
        if revision not in ("main", repo.head):  # the stand-in keeps only the head commit
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo

    def _tree(self, kind: str, repo_id: str, revision: str) -> tuple[int, Any, dict]:
        repo = self._at_revision(kind, repo_id, revision)
        if isinstance(repo, tuple):
            return repo
        entries = [
            {"type": "file", "path": name, "size": len(content), "oid": git_blob_sha1(content)}
            for name, content in sorted(repo.files.items())
        ]
        return 200, entries, {}

    def _resolve(self, kind: str, repo_id: str, revision: str, name: str) -> tuple[int, Any, dict]:
        repo = self._at_revision(kind, repo_id, revision)
        if isinstance(repo, tuple):
            return repo
        if name not in repo.files:
            status, body, headers = self._error(404, f"{name} not found", "EntryNotFound")
            return status, body, {**headers, "X-Repo-Commit": repo.head}
        content = repo.files[name]
        headers = {"X-Repo-Commit": repo.head, "ETag": f'"{git_blob_sha1(content)}"'}
        return 200, content, headers

    def _validate_yaml(self, payload: dict) -> tuple[int, dict, dict]:
        content = payload.get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": f"invalid YAML: {exc}"}]}, {}
        if not isinstance(meta, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def _is_lfs(self, path: str, size: int) -> bool:
        return self.lfs and (path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE)

    def _preupload(self, repo: Repo, payload: dict) -> tuple[int, dict, dict]:
        files = [
            {
                "path": item["path"],
                "uploadMode": "lfs" if self._is_lfs(item["path"], item["size"]) else "regular",
                "shouldIgnore": False,
                "oid": repo.oid(item["path"]),
            }
            for item in payload["files"]
        ]
        return 200, {"files": files}, {}

    def _lfs_batch(self, payload: dict) -> tuple[int, dict, dict]:
        objects = []
        for item in payload["objects"]:
            entry = {"oid": item["oid"], "size": item["size"]}
            if item["oid"] not in self.lfs_objects:  # already stored: nothing to upload
                entry["authenticated"] = True
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-objects/{item['oid']}"},
                    "verify": {"href": f"{self.url}/lfs-verify"},
                }
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, {}

    def _lfs_put(self, oid: str, body: bytes) -> tuple[int, dict, dict]:
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, f"content does not match sha256 {oid}")
        self.lfs_objects[oid] = body
        return 200, {}, {}

    def _commit_oid(self, repo: Repo, summary: str) -> str:
        state = json.dumps(
            {
                "parent": repo.commits[-1]["oid"] if repo.commits else None,
                "summary": summary,
                "files": {path: repo.oid(path) for path in sorted(repo.files)},
            },
            sort_keys=True,
        )
        return hashlib.sha1(state.encode()).hexdigest()

    def _commit(self, repo: Repo, body: bytes) -> tuple[int, dict, dict]:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return self._error(400, "a commit starts with a header line")
        files, lfs_paths, deleted = dict(repo.files), set(repo.lfs_paths), []
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                lfs_paths.discard(value["path"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    return self._error(422, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = self.lfs_objects[value["oid"]]
                lfs_paths.add(value["path"])
            elif line["key"] in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
                files.pop(value["path"], None)
            else:
                return self._error(400, f"unknown commit operation {line['key']!r}")
        summary = lines[0]["value"].get("summary", "")
        repo.files, repo.lfs_paths = files, lfs_paths
        oid = self._commit_oid(repo, summary)
        repo.commits.append(
            {"oid": oid, "summary": summary, "paths": [line["value"]["path"] for line in lines[1:]]}
        )
        url = f"{self._repo_url(repo)}/commit/{oid}"
        return 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None}, {}
