"""`forge push-to-hub` against a local Hub (tests/fake_hub.py) over real HTTP, as a user
runs it: dry run, few commits, retries, a rerun that sends nothing, kill -9 and resume."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_hub import FakeHub
from test_export import make_rows, write_filtered

from rationale_forge.export import ExportConfig, export
from rationale_forge.hub import local_files, plan_commits

TOKEN = "hf_fakeTOKENvalue0123456789"
REPO = "forge-org/shapes"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """An exported dataset of 6 train shards and a card."""
    root = tmp_path_factory.mktemp("hub")
    rows, _ = make_rows(n_distinct=8)
    filtered = write_filtered(root, rows)
    out = root / "dataset"
    stats = export(
        str(filtered), str(out), ExportConfig(test_size=0, rows_per_shard=2), progress=False
    )
    assert len(stats.shards["train"]) == 6
    return out


@pytest.fixture
def hub():
    with FakeHub(TOKEN) as server:
        yield server


def env_for(hub: FakeHub, tmp_path: Path, token: str | None = TOKEN) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf-home"),  # no stored login
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_XET": "1",  # plain LFS, as the fake Hub speaks it
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "COLUMNS": "200",
    }
    if token:
        env["HF_TOKEN"] = token
    return env


def forge(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rationale_forge.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        **kw,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_complete(hub: FakeHub, dataset: Path) -> None:
    files = hub.files(REPO)
    local = {f.path: f.local.read_bytes() for f in local_files(dataset)}
    assert set(files) == set(local) and ".forge/export.json" not in files
    assert all(files[p] == data for p, data in local.items())


def test_dry_run_lists_files_sizes_and_commits_and_sends_nothing(hub, dataset, tmp_path):
    proc = forge(
        ["push-to-hub", str(dataset), "--repo-id", REPO, "--dry-run", "--files-per-commit", "2"],
        env_for(hub, tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    files = local_files(dataset)
    expected = plan_commits(files, 2, 10 << 30)
    for f in files:
        assert f.path in out
    assert f"would send {len(files)} file(s)" in out and f"in {len(expected)} commit(s)" in out
    assert "0 already on the Hub" in out
    assert not hub.repos and not hub.commits and not hub.puts
    assert TOKEN not in out


def test_push_sends_every_file_once_in_few_commits_retrying_a_503(hub, dataset, tmp_path):
    hub.fail_commits = 1  # the first commit answers 503 once
    env = env_for(hub, tmp_path)
    proc = forge(
        ["push-to-hub", str(dataset), "--repo-id", REPO, "--private", "--files-per-commit", "3"],
        env,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "503" in out and "retry 1/" in out
    assert_complete(hub, dataset)
    assert hub.repos[REPO].private
    files = local_files(dataset)
    groups = plan_commits(files, 3, 10 << 30)
    assert [c["files"] for c in hub.commits] == [sorted(f.path for f in g) for g in groups]
    assert hub.commits[-1]["files"][-1] == "README.md"  # the card comes last
    shards = [f for f in files if f.path.endswith(".parquet")]
    assert {f.sha256: 1 for f in shards} == dict(hub.puts)  # each large file sent once
    assert TOKEN not in out

    # Everything is there: a dry run says so, a rerun sends and commits nothing.
    proc = forge(["push-to-hub", str(dataset), "--repo-id", REPO, "--dry-run"], env)
    assert (
        "would send 0 file(s)" in proc.stderr and f"{len(files)} already on the Hub" in proc.stderr
    )
    n_commits, n_requests = len(hub.commits), len(hub.requests)
    proc = forge(["push-to-hub", str(dataset), "--repo-id", REPO], env)
    assert proc.returncode == 0, proc.stderr
    assert len(hub.commits) == n_commits
    assert not [r for r in hub.requests[n_requests:] if "lfs" in r or "commit" in r]


def test_killed_push_resumes_without_resending_finished_files(hub, dataset, tmp_path):
    files = local_files(dataset)
    groups = plan_commits(files, 2, 10 << 30)  # [s0 s1] [s2 s3] [s4 s5] [README]
    shard = {f.path: f for f in files}
    s2, s3 = groups[1][0], groups[1][1]
    hub.stall_oids = {s3.sha256}  # the upload of s3 hangs: s0, s1 committed, s2 uploaded
    env = env_for(hub, tmp_path)
    args = ["push-to-hub", str(dataset), "--repo-id", REPO, "--files-per-commit", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rationale_forge.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (hub.stalled.is_set() and hub.puts[s2.sha256]):
        time.sleep(0.1)
    assert hub.stalled.is_set() and hub.puts[s2.sha256] == 1, "the push never reached s3"
    os.kill(proc.pid, signal.SIGKILL)
    first_out, _ = proc.communicate(timeout=30)
    assert len(hub.commits) == 1 and hub.commits[0]["files"] == [f.path for f in groups[0]]
    assert s3.sha256 not in hub.lfs  # the interrupted upload left nothing behind

    hub.stall_oids = set()
    hub.release.set()
    proc2 = forge(args, env)
    out = proc2.stdout + proc2.stderr
    assert proc2.returncode == 0, out
    assert "2 file(s) already on the Hub" in out
    assert_complete(hub, dataset)
    # Committed files were not committed again, the uploaded-but-uncommitted s2 was not
    # uploaded again, and every shard went over the wire exactly once.
    resumed = [c["files"] for c in hub.commits[1:]]
    assert resumed == [sorted(f.path for f in g) for g in groups[1:]]
    parquet = [f for f in shard.values() if f.path.endswith(".parquet")]
    assert {f.sha256: 1 for f in parquet} == dict(hub.puts)
    assert TOKEN not in first_out and TOKEN not in out


def test_without_a_token_or_with_a_bad_one_the_error_says_so(hub, dataset, tmp_path):
    proc = forge(["push-to-hub", str(dataset), "--repo-id", REPO], env_for(hub, tmp_path, None))
    assert proc.returncode == 2 and "no Hub token" in proc.stderr and "HF_TOKEN" in proc.stderr
    bad = "hf_wrongTOKEN987"
    proc = forge(["push-to-hub", str(dataset), "--repo-id", REPO], env_for(hub, tmp_path, bad))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "401" in out and "invalid" in out
    assert bad not in out and "Traceback" not in out
    assert not hub.repos


def test_a_folder_that_is_not_an_export_is_refused(hub, tmp_path):
    (tmp_path / "nothing").mkdir()
    proc = forge(
        ["push-to-hub", str(tmp_path / "nothing"), "--repo-id", REPO], env_for(hub, tmp_path)
    )
    assert proc.returncode == 2 and "not an exported dataset" in proc.stderr


def test_a_new_export_with_fewer_shards_removes_the_stale_ones(hub, dataset, tmp_path):
    env = env_for(hub, tmp_path)
    assert forge(["push-to-hub", str(dataset), "--repo-id", REPO], env).returncode == 0
    old = {p for p in hub.files(REPO) if p.startswith("data/")}
    # Re-export the same rows into fewer, larger shards.
    smaller = tmp_path / "reexport"
    export(
        str(dataset.parent / "filtered"),
        str(smaller),
        ExportConfig(test_size=0, rows_per_shard=5),
        progress=False,
    )
    proc = forge(["push-to-hub", str(smaller), "--repo-id", REPO, "--dry-run"], env)
    assert "would delete data/train-00005-of-00006.parquet" in proc.stderr
    proc = forge(["push-to-hub", str(smaller), "--repo-id", REPO], env)
    assert proc.returncode == 0, proc.stderr
    assert_complete(hub, smaller)
    assert set(hub.commits[-1]["deleted"]) == old - set(hub.files(REPO))
    assert "README.md" in hub.commits[-1]["files"]  # deletions ride with the card


def test_connection_failures_are_retried_and_client_errors_are_not():
    import requests

    from rationale_forge.hub import _retryable

    assert _retryable(requests.ConnectionError("reset"))
    wrapped = RuntimeError("Error while uploading 'x' to the Hub.")
    wrapped.__cause__ = requests.Timeout("slow")
    assert _retryable(wrapped)
    assert not _retryable(ValueError("bad README"))


def test_push_to_a_branch_creates_it_and_leaves_main_alone(hub, dataset, tmp_path):
    env = env_for(hub, tmp_path)
    proc = forge(["push-to-hub", str(dataset), "--repo-id", REPO, "--revision", "v2"], env)
    assert proc.returncode == 0, proc.stderr
    assert hub.files(REPO, "main") == {}
    assert set(hub.files(REPO, "v2")) == {f.path for f in local_files(dataset)}
    assert {c["revision"] for c in hub.commits} == {"v2"}
    assert "/tree/v2" in proc.stderr
