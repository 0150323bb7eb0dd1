"""`forge push-to-hub`: publish an exported dataset folder as a Hub dataset repository.

How it sends (huggingface_hub does the HTTP: preupload, LFS or Xet transfer, commit):

- The remote tree is listed first and every local file is compared with it (LFS sha256
  for large files, git blob sha1 for small ones); files already there are not sent.
- The rest goes in a few commits of at most ``files_per_commit`` files and
  ``bytes_per_commit`` bytes (the Hub limits commits per hour), data files first and the
  card last, so a half-published repository never shows a card for missing data.
- An interrupted push resumes by running it again: committed files are skipped by the
  tree comparison, and large files uploaded but not yet committed are skipped by the LFS
  batch API (the server says it already has them).
- 429 and 5xx answers are retried with exponential backoff (``Retry-After`` honoured);
  before a commit is retried, the files it may already have committed are checked again.

The token comes from ``HF_TOKEN`` or the stored Hub login (``hf auth login``); it is never
printed, logged or written anywhere.

Why not ``HfApi.upload_large_folder``/``upload_folder``: their resumable multi-commit path
depends on the Xet protocol (recent huggingface_hub releases fold it into
``upload_folder`` and, without Xet, fall back to one single commit), while this batching
of ``create_commit`` behaves the same over Xet and plain LFS, and its skip logic is ours
to test.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ui import console

RETRY_STATUS = {429, 500, 502, 503, 504}


class HubError(Exception):
    """A push that cannot go on: no token, no access, not a dataset folder, retries spent."""


@dataclass
class PushConfig:
    repo_id: str
    private: bool = False
    revision: str | None = None  # branch to push to (created when missing); None: main
    endpoint: str | None = None  # None: HF_ENDPOINT or the public Hub
    files_per_commit: int = 100
    bytes_per_commit: int = 10 << 30
    max_retries: int = 6
    backoff_base: float = 2.0  # seconds before the first retry; doubles each time
    commit_message: str = "Upload dataset with rationale-forge"
    dry_run: bool = False


@dataclass
class LocalFile:
    path: str  # path in the repository (posix)
    local: Path
    size: int
    sha256: str
    git_sha1: str


@dataclass
class PushPlan:
    files: list[LocalFile]
    send: list[LocalFile]
    unchanged: list[str]
    commits: list[list[LocalFile]]
    remote_checked: bool
    remote_note: str = ""
    #: remote data files the local folder no longer has (an earlier export with another
    #: shard count): deleted in the last commit, or `data/train-*` would still match them
    stale: list[str] = field(default_factory=list)

    @property
    def bytes_to_send(self) -> int:
        return sum(f.size for f in self.send)


@dataclass
class PushResult:
    url: str
    plan: PushPlan
    commits: list[str] = field(default_factory=list)  # commit ids made by this run
    retries: int = 0


# -- local files ----------------------------------------------------------------------------
def _hash(path: Path) -> tuple[str, str]:
    """sha256 (the LFS id) and git blob sha1 (the id of a small file in git) of a file."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def local_files(dataset_dir: str | Path) -> list[LocalFile]:
    """The files to publish: everything under the folder but hidden paths (``.forge/``,
    temporary files), data first, the card last."""
    root = Path(dataset_dir)
    if not (root / "README.md").is_file() or not (root / "data").is_dir():
        raise HubError(
            f"{dataset_dir} is not an exported dataset (no README.md and data/): run "
            f"`forge export FILTERED --out {dataset_dir}` first"
        )
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        sha256, sha1 = _hash(path)
        files.append(LocalFile(rel.as_posix(), path, path.stat().st_size, sha256, sha1))
    files.sort(key=lambda f: (f.path == "README.md", f.path))
    return files


def plan_commits(
    files: list[LocalFile], files_per_commit: int, bytes_per_commit: int
) -> list[list[LocalFile]]:
    """Consecutive groups within both limits; the card rides in the last group."""
    card = [f for f in files if f.path == "README.md"]
    groups: list[list[LocalFile]] = []
    current: list[LocalFile] = []
    size = 0
    for f in (f for f in files if f.path != "README.md"):
        if current and (len(current) >= files_per_commit or size + f.size > bytes_per_commit):
            groups.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size
    if current:
        groups.append(current)
    if card:
        if groups and len(groups[-1]) < files_per_commit:
            groups[-1] += card
        else:
            groups.append(card)
    return groups


def _matches(local: LocalFile, remote: Any) -> bool:
    lfs = getattr(remote, "lfs", None)
    if lfs:
        sha = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
        return sha == local.sha256
    return getattr(remote, "blob_id", None) == local.git_sha1


# -- the Hub --------------------------------------------------------------------------------
def _token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def _scrub(text: str) -> str:
    token = _token()
    return text.replace(token, "***") if token else text


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


#: Connection-level failures, by class name: huggingface_hub has used requests, httpx and
#: httpx2 across versions, and each names them alike.
TRANSPORT_ERRORS = {
    "TransportError",
    "ConnectionError",
    "ConnectError",
    "Timeout",
    "TimeoutException",
    "TimeoutError",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
}


def _retryable(exc: BaseException) -> bool:
    if _status(exc) in RETRY_STATUS:
        return True
    if any(cls.__name__ in TRANSPORT_ERRORS for cls in type(exc).__mro__):
        return True
    # huggingface_hub wraps a failed LFS upload in a RuntimeError; look at the cause too.
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and _retryable(cause)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def with_retries(
    what: str,
    call: Callable[[], Any],
    config: PushConfig,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
) -> Any:
    """``call()``, retried on 429/5xx/connection errors with exponential backoff."""
    for attempt in range(config.max_retries + 1):
        try:
            return call()
        except Exception as exc:
            if attempt >= config.max_retries or not _retryable(exc):
                raise
            wait = _retry_after(exc)
            if wait is None:
                wait = config.backoff_base * 2**attempt * (0.75 + random.random() / 2)
            console.print(
                f"[yellow]{what}: {_scrub(_describe(exc))}; retry {attempt + 1}/"
                f"{config.max_retries} in {wait:.1f}s[/]"
            )
            if on_retry is not None:
                on_retry(attempt, wait, exc)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _describe(exc: BaseException) -> str:
    status = _status(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"HTTP {status}: {first}" if status else f"{type(exc).__name__}: {first}"


class _Hub:
    def __init__(self, config: PushConfig):
        from huggingface_hub import HfApi
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # our own progress line per commit; theirs would interleave
        self.config = config
        self.api = HfApi(endpoint=config.endpoint)
        self.revision = config.revision or "main"
        self.retries = 0

    def _count(self, *_: Any) -> None:
        self.retries += 1

    def retry(self, what: str, call: Callable[[], Any]) -> Any:
        return with_retries(what, call, self.config, self._count)

    def remote_files(self, paths: list[str] | None = None) -> dict[str, Any]:
        """path -> remote file entry, of the whole tree or of ``paths``; empty when the
        repository or the branch does not exist yet."""
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
        from huggingface_hub.hf_api import RepoFile

        kwargs = {"repo_type": "dataset", "revision": self.revision}
        try:
            if paths is None:
                entries = list(
                    self.api.list_repo_tree(self.config.repo_id, recursive=True, **kwargs)
                )
            else:
                entries = self.api.get_paths_info(self.config.repo_id, paths, **kwargs)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            return {}
        return {e.path: e for e in entries if isinstance(e, RepoFile)}

    def url(self) -> str:
        base = self.api.endpoint.rstrip("/")
        suffix = f"/tree/{self.revision}" if self.config.revision else ""
        return f"{base}/datasets/{self.config.repo_id}{suffix}"


def make_plan(files: list[LocalFile], remote: dict[str, Any], config: PushConfig) -> PushPlan:
    unchanged = [f.path for f in files if f.path in remote and _matches(f, remote[f.path])]
    send = [f for f in files if f.path not in set(unchanged)]
    commits = plan_commits(send, config.files_per_commit, config.bytes_per_commit)
    local = {f.path for f in files}
    stale = sorted(p for p in remote if p.startswith("data/") and p not in local)
    if stale and not commits:
        commits = [[]]  # a commit that only deletes
    return PushPlan(files, send, unchanged, commits, remote_checked=True, stale=stale)


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint accepts a TCP connection (a quick check before a dry run)."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def push_to_hub(
    dataset_dir: str | Path, config: PushConfig, progress: bool = True
) -> PushResult | PushPlan:
    """Publish ``dataset_dir``; with ``config.dry_run``, only say what would be sent
    (returns the plan)."""
    from huggingface_hub.errors import HfHubHTTPError

    if config.files_per_commit < 1 or config.bytes_per_commit < 1:
        raise HubError("files and bytes per commit must be positive")
    files = local_files(dataset_dir)
    if not config.dry_run and not _token():
        raise HubError(
            "no Hub token: set HF_TOKEN or log in with `hf auth login` (a token with write "
            "access to the target namespace)"
        )
    hub = _Hub(config)
    if config.dry_run:
        try:
            if not _reachable(hub.api.endpoint):  # skip the client's retries when offline
                raise ConnectionError(f"cannot connect to {hub.api.endpoint}")
            remote = hub.remote_files()
            plan = make_plan(files, remote, config)
        except Exception as exc:  # offline, no access: say so and plan for an empty repo
            plan = make_plan(files, {}, config)
            plan.remote_checked = False
            plan.remote_note = _scrub(_describe(exc))
        return plan
    try:
        return _push(hub, files, config, progress)
    except HfHubHTTPError as exc:
        status = _status(exc)
        hint = {
            401: "the token is missing or invalid",
            403: f"the token has no write access to {config.repo_id}",
            404: f"{config.repo_id} not found (or not visible with this token)",
        }.get(status or 0, "")
        raise HubError(
            f"push to {config.repo_id} failed: {_scrub(_describe(exc))}"
            + (f" ({hint})" if hint else "")
            + "; rerun the same command to resume"
        ) from None


def _push(hub: _Hub, files: list[LocalFile], config: PushConfig, progress: bool) -> PushResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    from .ui import ProgressBar

    api, repo_id = hub.api, config.repo_id
    hub.retry(
        "create repo",
        lambda: api.create_repo(
            repo_id, repo_type="dataset", private=config.private, exist_ok=True
        ),
    )
    if config.revision and config.revision != "main":
        hub.retry(
            "create branch",
            lambda: api.create_branch(
                repo_id, branch=config.revision, repo_type="dataset", exist_ok=True
            ),
        )
    plan = make_plan(files, hub.retry("list remote files", hub.remote_files), config)
    result = PushResult(hub.url(), plan)
    if plan.unchanged:
        console.print(f"push: {len(plan.unchanged)} file(s) already on the Hub, not sent again")
    n = len(plan.commits)
    with ProgressBar(len(plan.send), f"push to {repo_id}", progress) as bar:
        for i, group in enumerate(plan.commits, 1):
            pending = list(group)
            deletes = list(plan.stale) if i == n else []
            message = f"{config.commit_message} ({i}/{n})" if n > 1 else config.commit_message

            def commit(
                pending: list[LocalFile] = pending, deletes: list[str] = deletes, message=message
            ) -> Any:
                # Fresh operations each attempt (an operation object commits only once).
                ops: list[Any] = [CommitOperationAdd(f.path, str(f.local)) for f in pending]
                ops += [CommitOperationDelete(path) for path in deletes]
                return api.create_commit(
                    repo_id,
                    ops,
                    commit_message=message,
                    repo_type="dataset",
                    revision=hub.revision,
                )

            def recheck(pending: list[LocalFile] = pending, deletes: list[str] = deletes) -> None:
                # The failed attempt may have committed after all: keep only what is missing.
                hub.retries += 1
                try:
                    there = hub.remote_files([f.path for f in pending] + deletes)
                except Exception:  # the next attempt will tell
                    return
                pending[:] = [f for f in pending if not _matches_any(f, there)]
                deletes[:] = [p for p in deletes if p in there]

            for attempt in range(config.max_retries + 1):
                if not pending and not deletes:
                    break
                try:
                    info = commit()
                    result.commits.append(info.oid)
                    break
                except Exception as exc:
                    if attempt >= config.max_retries or not _retryable(exc):
                        raise
                    wait = _retry_after(exc) or config.backoff_base * 2**attempt * (
                        0.75 + random.random() / 2
                    )
                    console.print(
                        f"[yellow]commit {i}/{n}: {_scrub(_describe(exc))}; retry "
                        f"{attempt + 1}/{config.max_retries} in {wait:.1f}s[/]"
                    )
                    time.sleep(wait)
                    recheck()
            bar.advance(len(group))
    result.retries = hub.retries
    return result


def _matches_any(local: LocalFile, remote: dict[str, Any]) -> bool:
    return local.path in remote and _matches(local, remote[local.path])


def hub_endpoint(endpoint: str | None) -> str:
    """The endpoint a push goes to, for messages."""
    from huggingface_hub import constants

    return endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
