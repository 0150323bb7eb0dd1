"""A small stand-in for the Hugging Face Hub's HTTP API: the endpoints huggingface_hub
calls to create a dataset repository and commit files to it over plain LFS
(``HF_HUB_DISABLE_XET=1``).

Endpoints: repo create, repo info, tree listing, paths-info, branch create, YAML
validation, preupload (upload mode + remote oid), the LFS batch API (objects it already
holds get no upload action, as on the Hub), LFS PUT, and the NDJSON commit. Writes need
``Authorization: Bearer <token>``.

It records what arrived (LFS PUTs by sha256, commits with their files) so tests can assert
it, and can inject faults: ``fail_commits`` (the next N commits answer 503),
``stall_oids`` (PUTs of these objects hang until ``release`` is set, then fail; nothing is
stored). Runs in a thread; stdlib only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})


class FakeHub:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.puts: Counter = Counter()  # sha256 -> completed uploads
        self.commits: list[dict] = []  # {"repo", "revision", "summary", "files"}
        self.requests: list[str] = []  # "METHOD path"
        self.fail_commits = 0
        self.stall_oids: set[str] = set()
        self.stalled = threading.Event()  # set when a PUT starts stalling
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The content of a branch: path -> bytes (LFS pointers resolved)."""
        return dict(self.repos[repo_id].branches[revision])

    # -- the API -----------------------------------------------------------------------------
    def _entries(self, repo: Repo, revision: str, paths=None) -> list[dict]:
        out = []
        for path, data in sorted(repo.branches[revision].items()):
            if paths is not None and path not in paths:
                continue
            entry = {"type": "file", "path": path, "size": len(data), "oid": git_sha1(data)}
            if self._is_lfs(path, len(data)):
                sha = hashlib.sha256(data).hexdigest()
                entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 130}
                entry["oid"] = git_sha1(f"version lfs\noid sha256:{sha}\n".encode())
            out.append(entry)
        return out

    @staticmethod
    def _is_lfs(path: str, size: int) -> bool:
        return path.endswith(".parquet") or size > 10 << 20

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body=None, headers: dict | None = None):
                data = json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {hub.token}":
                    return True
                self._send(401, {"error": "Invalid credentials"})
                return False

            def _repo(self, repo_id: str, revision: str | None = None):
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._send(
                        404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                    )
                    return None
                if revision is not None and revision not in repo.branches:
                    self._send(
                        404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"}
                    )
                    return None
                return repo

            def do_GET(self):
                url = urlparse(self.path)
                hub.requests.append(f"GET {url.path}")
                parts = [unquote(p) for p in url.path.strip("/").split("/")]
                # /api/datasets/{ns}/{name}/tree/{rev}[/path] and /revision/{rev}
                if parts[:2] == ["api", "datasets"] and len(parts) >= 5:
                    repo_id, action, rev = (
                        f"{parts[2]}/{parts[3]}",
                        parts[4],
                        (parts[5:6] or ["main"])[0],
                    )
                    repo = self._repo(repo_id, rev)
                    if repo is None:
                        return
                    if action == "tree":
                        return self._send(200, hub._entries(repo, rev))
                    if action == "revision":
                        return self._send(
                            200,
                            {
                                "id": repo_id,
                                "sha": repo.heads[rev],
                                "private": repo.private,
                                "siblings": [{"rfilename": p} for p in repo.branches[rev]],
                            },
                        )
                if parts[:2] == ["api", "datasets"] and len(parts) == 4:
                    repo = self._repo(f"{parts[2]}/{parts[3]}")
                    if repo is not None:
                        self._send(
                            200,
                            {
                                "id": repo.repo_id,
                                "sha": repo.heads["main"],
                                "private": repo.private,
                            },
                        )
                    return
                self._send(404, {"error": f"no route GET {url.path}"})

            def do_POST(self):
                url = urlparse(self.path)
                hub.requests.append(f"POST {url.path}")
                body = self._body()
                parts = [unquote(p) for p in url.path.strip("/").split("/")]
                if url.path == "/api/validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                if url.path == "/api/repos/create":
                    if not self._authorised():
                        return
                    payload = json.loads(body)
                    if payload.get("type") != "dataset":
                        return self._send(400, {"error": "expected a dataset repository"})
                    repo_id = f"{payload['organization']}/{payload['name']}"
                    with hub.lock:
                        if repo_id in hub.repos:
                            # As on the Hub: the URL comes with the conflict.
                            return self._send(
                                409,
                                {
                                    "error": "You already created this dataset repo",
                                    "url": f"{hub.url}/datasets/{repo_id}",
                                },
                            )
                        private = payload.get("private") or payload.get("visibility") == "private"
                        hub.repos[repo_id] = Repo(repo_id, bool(private))
                    return self._send(
                        200, {"url": f"{hub.url}/datasets/{repo_id}", "name": repo_id}
                    )
                if url.path.endswith(".git/info/lfs/objects/batch"):
                    return self._lfs_batch(json.loads(body))
                if parts[:2] == ["api", "datasets"] and len(parts) >= 5:
                    repo_id, action = f"{parts[2]}/{parts[3]}", parts[4]
                    rev = "/".join(parts[5:]) or "main"
                    if not self._authorised():
                        return
                    if action == "branch":
                        repo = self._repo(repo_id)
                        if repo is None:
                            return
                        with hub.lock:
                            if rev in repo.branches:
                                return self._send(409, {"error": "Reference already exists"})
                            repo.branches[rev] = dict(repo.branches["main"])
                            repo.heads[rev] = repo.heads["main"]
                        return self._send(200, {})
                    repo = self._repo(repo_id, rev)
                    if repo is None:
                        return
                    if action == "preupload":
                        return self._preupload(repo, rev, json.loads(body))
                    if action == "paths-info":
                        form = parse_qs(body.decode())
                        return self._send(200, hub._entries(repo, rev, set(form.get("paths", []))))
                    if action == "commit":
                        return self._commit(repo, rev, body)
                self._send(404, {"error": f"no route POST {url.path}"})

            def do_PUT(self):
                url = urlparse(self.path)
                hub.requests.append(f"PUT {url.path}")
                oid = url.path.rsplit("/", 1)[-1]
                if oid in hub.stall_oids:
                    hub.stalled.set()
                    hub.release.wait(60)  # the client is killed meanwhile
                    self.close_connection = True
                    return self._send(500, {"error": "upload interrupted"})
                data = self._body()
                if hashlib.sha256(data).hexdigest() != oid:
                    return self._send(400, {"error": "sha256 mismatch"})
                with hub.lock:
                    hub.lfs[oid] = data
                    hub.puts[oid] += 1
                self._send(200, {})

            def _preupload(self, repo: Repo, rev: str, payload: dict):
                files = []
                for f in payload["files"]:
                    lfs = hub._is_lfs(f["path"], f["size"])
                    have = repo.branches[rev].get(f["path"])
                    oid = None
                    if have is not None:
                        oid = hashlib.sha256(have).hexdigest() if lfs else git_sha1(have)
                    files.append(
                        {
                            "path": f["path"],
                            "uploadMode": "lfs" if lfs else "regular",
                            "shouldIgnore": False,
                            "oid": oid,
                        }
                    )
                self._send(200, {"files": files, "commitOid": repo.heads[rev]})

            def _lfs_batch(self, payload: dict):
                if not self._authorised():
                    return
                objects = []
                for obj in payload["objects"]:
                    entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                    if obj["oid"] not in hub.lfs:  # the Hub answers no action for known objects
                        entry["actions"] = {
                            "upload": {"href": f"{hub.url}/lfs-upload/{obj['oid']}"}
                        }
                    objects.append(entry)
                self._send(200, {"transfer": "basic", "objects": objects})

            def _commit(self, repo: Repo, rev: str, body: bytes):
                with hub.lock:
                    if hub.fail_commits > 0:
                        hub.fail_commits -= 1
                        return self._send(
                            503, {"error": "Service Unavailable"}, {"Retry-After": "0"}
                        )
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                changes: dict[str, bytes] = {}
                deleted: list[str] = []
                for line in lines:
                    value = line["value"]
                    if line["key"] == "file":
                        changes[value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] == "lfsFile":
                        if value["oid"] not in hub.lfs:
                            return self._send(422, {"error": f"LFS object {value['oid']} missing"})
                        changes[value["path"]] = hub.lfs[value["oid"]]
                    elif line["key"] == "deletedFile":
                        if value["path"] not in repo.branches[rev]:
                            return self._send(404, {"error": f"{value['path']} does not exist"})
                        deleted.append(value["path"])
                    elif line["key"] != "header":
                        return self._send(400, {"error": f"unsupported operation {line['key']}"})
                with hub.lock:
                    repo.branches[rev].update(changes)
                    for path in deleted:
                        repo.branches[rev].pop(path, None)
                    oid = hashlib.sha1(f"{repo.heads[rev]}{time.time_ns()}".encode()).hexdigest()
                    repo.heads[rev] = oid
                    hub.commits.append(
                        {
                            "repo": repo.repo_id,
                            "revision": rev,
                            "summary": header["summary"],
                            "files": sorted(changes),
                            "deleted": sorted(deleted),
                        }
                    )
                self._send(
                    200,
                    {
                        "commitUrl": f"{hub.url}/datasets/{repo.repo_id}/commit/{oid}",
                        "commitOid": oid,
                        "pullRequestUrl": None,
                    },
                )

        return Handler


def main() -> None:
    """Serve on a port for a manual try: ``python tests/fake_hub.py TOKEN``."""
    import sys

    hub = FakeHub(sys.argv[1] if len(sys.argv) > 1 else "hf_test")
    with hub:
        print(hub.url, flush=True)
        hub.thread.join()


if __name__ == "__main__":
    main()
