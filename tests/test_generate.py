"""`forge generate` against real HTTP: a fault-injecting OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import jpeg_bytes
from fake_openai import FakeOpenAI

from rationale_forge.generate import GenerateConfig, generate
from rationale_forge.ingest import ingest
from rationale_forge.sources import SourceOptions
from rationale_forge.store import RunDir

FAULTS = [
    "ok1",
    "ok2",
    "429",
    "500",
    "timeout",
    "broken",
    "garbage",
    "length",
    "filter",
    "refusal",
    "500always",
]


def caption_folder(root: Path, captions: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, caption in enumerate(captions):
        (root / f"img{i:04d}.jpg").write_bytes(
            jpeg_bytes((40 + i % 50, 30 + i // 50), (i * 7 % 255, 90, 40))
        )
        (root / f"img{i:04d}.txt").write_text(caption)
    return root


def config(server: FakeOpenAI, **kw) -> GenerateConfig:
    base = dict(
        backend="openai",
        model="fake-vlm",
        base_url=server.base_url,
        concurrency=4,
        timeout=1.0,
        max_retries=3,
        backoff_base=0.05,
    )
    return GenerateConfig(**{**base, **kw})


def by_caption(out: Path) -> dict[str, dict]:
    return {r["captions"][0]: r for r in RunDir(str(out)).iter_rows()}


@pytest.fixture
def faults_folder(tmp_path):
    return caption_folder(tmp_path / "imgs", [f"a red circle FAULT:{f}" for f in FAULTS])


def test_every_fault_is_handled_and_nothing_is_lost(tmp_path, faults_folder):
    out = tmp_path / "gen"
    with FakeOpenAI(timeout_delay=2.0) as server:
        stats = generate(
            SourceOptions(kind="folder", data_dir=str(faults_folder)),
            str(out),
            config(server),
            progress=False,
        )
        counts = server.counts()
    rows = by_caption(out)
    assert len(rows) == len(FAULTS) and stats.rows == len(FAULTS)
    status = {c.split("FAULT:")[1]: (r["status"], r["error_kind"]) for c, r in rows.items()}
    assert status == {
        "ok1": ("ok", None),
        "ok2": ("ok", None),
        "429": ("ok", None),
        "500": ("ok", None),
        "timeout": ("ok", None),
        "broken": ("ok", None),
        "garbage": ("error", "unparseable"),
        "length": ("error", "length"),
        "filter": ("error", "content_filter"),
        "refusal": ("error", "refusal"),
        "500always": ("error", "request_failed"),
    }
    attempts = {c.split("FAULT:")[1]: r["attempts"] for c, r in rows.items()}
    assert attempts["429"] == 3 and attempts["500"] == 2 and attempts["timeout"] == 2
    assert attempts["500always"] == 4  # 1 + max_retries
    assert sorted(counts.values()) == sorted(attempts.values())  # the server agrees
    assert rows["a red circle FAULT:429"]["latency_s"] >= 0.4  # Retry-After 0.2 s, twice
    broken = rows["a red circle FAULT:broken"]
    assert broken["repaired"] and broken["tags"] == ["shape", "colour", "simple"]
    ok = rows["a red circle FAULT:ok1"]
    assert len(ok["paraphrases"]) == 3 and ok["rationale"].startswith("I plan the scene")
    assert ok["model"] == "fake-vlm" and ok["backend"] == "openai" and ok["prompt_tokens"] > 0
    garbage = rows["a red circle FAULT:garbage"]
    assert garbage["raw_answer"] == "The picture is nice." and "img" in garbage["error"]
    assert stats.errors == {
        "unparseable": 1,
        "length": 1,
        "content_filter": 1,
        "refusal": 1,
        "request_failed": 1,
    }
    manifest = RunDir(str(out)).read_manifest()["stages"]["generate"]
    assert manifest["counts"]["requests"] == len(FAULTS)
    assert manifest["config"]["prompt_hash"] == ok["prompt_hash"]


def test_rerun_sends_nothing_and_retry_failed_resends_only_failures(tmp_path, faults_folder):
    out = tmp_path / "gen"
    source = SourceOptions(kind="folder", data_dir=str(faults_folder))
    with FakeOpenAI(timeout_delay=2.0) as server:
        generate(source, str(out), config(server), progress=False)
        before = server.counts()
        again = generate(source, str(out), config(server), progress=False)
        assert server.counts() == before and again.requests == 0
        assert again.skipped == len(FAULTS)
        retried = generate(source, str(out), config(server, retry_failed=True), progress=False)
        after = server.counts()
    assert retried.requests == 5 and retried.rows == 5
    grew = {cid for cid in after if after[cid] > before[cid]}
    assert len(grew) == 5
    rows = list(RunDir(str(out)).iter_rows())
    assert len(rows) == len(FAULTS) and len({r["key"] for r in rows}) == len(FAULTS)


def test_answers_come_from_the_cache_when_output_rows_were_lost(tmp_path):
    folder = caption_folder(tmp_path / "imgs", [f"shape {i}" for i in range(6)])
    out = tmp_path / "gen"
    source = SourceOptions(kind="folder", data_dir=str(folder))
    with FakeOpenAI() as server:
        generate(source, str(out), config(server), progress=False)
        for shard in RunDir(str(out)).shards():  # as if the process died before writing
            os.remove(shard)
        stats = generate(source, str(out), config(server), progress=False)
        assert len(server.requests) == 6
    assert stats.cache_hits == 6 and stats.requests == 0 and stats.ok == 6


def test_falls_back_when_the_server_refuses_response_format(tmp_path):
    folder = caption_folder(tmp_path / "imgs", [f"shape {i}" for i in range(4)])
    with FakeOpenAI(structured=False) as server:
        stats = generate(
            SourceOptions(kind="folder", data_dir=str(folder)),
            str(tmp_path / "gen"),
            config(server, concurrency=1),
            progress=False,
        )
        formats = list(server.response_formats)
    assert stats.ok == 4
    assert formats[0] is True and formats[1:] == [False] * 4


def test_generate_from_an_ingested_run_with_cost_and_a_custom_template(tmp_path):
    ingested = tmp_path / "ingested"
    ingest(SourceOptions(kind="sample", limit=5), str(ingested), progress=False)
    template = tmp_path / "mine.j2"
    template.write_text(
        "Describe. Captions: {% for c in captions %}\n- {{ c }}{% endfor %}\n"
        "Objects: {{ objects | join('; ') }}\n"
    )
    with FakeOpenAI() as server:
        stats = generate(
            str(ingested),
            str(tmp_path / "gen"),
            config(server, prompt=str(template), price_per_mtok=(2.0, 8.0)),
            progress=False,
        )
    assert stats.ok == 5 and stats.cost == pytest.approx(
        (stats.prompt_tokens * 2 + stats.completion_tokens * 8) / 1e6
    )
    row = next(RunDir(str(tmp_path / "gen")).iter_rows())
    assert row["objects"] and row["image"]["bytes"]
    manifest = RunDir(str(tmp_path / "gen")).read_manifest()["stages"]["generate"]
    assert manifest["config"]["prompt_template"] == str(template)


def test_api_key_comes_from_the_environment_and_never_leaks(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rationale_forge.cli import app

    secret = "sk-test-" + "x" * 32
    monkeypatch.setenv("MY_VLM_KEY", secret)
    folder = caption_folder(tmp_path / "imgs", ["a FAULT:500always", "fine"])
    out = tmp_path / "gen"
    with FakeOpenAI() as server:
        result = CliRunner().invoke(
            app,
            [
                "generate",
                "--source",
                "folder",
                "--data-dir",
                str(folder),
                "--out",
                str(out),
                "--base-url",
                server.base_url,
                "--model",
                "fake-vlm",
                "--api-key-env",
                "MY_VLM_KEY",
                "--max-retries",
                "0",
            ],
            env={"COLUMNS": "200"},
        )
    assert result.exit_code == 0, result.output
    assert "requests sent" in result.output
    everything = result.output + (out / "manifest.json").read_text()
    everything += json.dumps(
        [{k: v for k, v in r.items() if k != "image"} for r in RunDir(str(out)).iter_rows()],
        default=str,
    )
    assert secret not in everything


def test_missing_api_key_for_openai_itself_is_a_clear_error(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rationale_forge.cli import app

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--source",
            "sample",
            "--backend",
            "openai",
            "--model",
            "gpt-4.1",
            "--out",
            str(tmp_path / "g"),
        ],
    )
    assert result.exit_code == 2 and "OPENAI_API_KEY" in result.output


KILLED_RUN = """
import sys
from rationale_forge.generate import GenerateConfig, generate
from rationale_forge.sources import SourceOptions
generate(SourceOptions(kind="folder", data_dir=sys.argv[1]), sys.argv[2],
         GenerateConfig(backend="openai", model="fake", base_url=sys.argv[3], concurrency=4,
                        rows_per_shard=7), progress=False)
"""


def test_kill_9_mid_run_then_rerun_loses_nothing_and_repeats_nothing_answered(tmp_path):
    n = 60
    folder = caption_folder(tmp_path / "imgs", [f"object number {i}" for i in range(n)])
    out = tmp_path / "gen"
    db = out / "cache" / "requests.sqlite"
    with FakeOpenAI(latency=0.05) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, str(folder), str(out), server.base_url]
        )
        deadline = time.time() + 120
        answered: set[str] = set()
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(db) as con:
                        answered = {k for (k,) in con.execute("SELECT key FROM answers")}
                except sqlite3.OperationalError:
                    pass
            if len(answered) >= 25:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert len(answered) >= 25, "the run finished or stalled before it could be killed"
        completed_before = set(server.completed)
        sent_before = len(server.requests)
        stats = generate(
            SourceOptions(kind="folder", data_dir=str(folder)),
            str(out),
            GenerateConfig(backend="openai", model="fake", base_url=server.base_url, concurrency=4),
            progress=False,
        )
        counts = server.counts()
    rows = list(RunDir(str(out)).iter_rows(columns=["key", "status"]))
    assert len(rows) == n and len({r["key"] for r in rows}) == n
    assert all(r["status"] == "ok" for r in rows)
    # answers recorded before the kill were never asked for again
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == n
    repeated = [cid for cid, c in counts.items() if c > 1]
    assert len(repeated) <= 4  # at most the requests in flight at the kill (concurrency)
    assert len(server.requests) - sent_before == stats.requests
    assert stats.requests + stats.cache_hits + stats.skipped == n
    assert len(completed_before) >= len(answered)


def test_client_side_request_rate_limit_is_honoured():
    import asyncio

    from rationale_forge.vlm.base import VLMRequest
    from rationale_forge.vlm.openai_backend import OpenAIBackend, OpenAIConfig

    with FakeOpenAI() as server:
        backend = OpenAIBackend(
            OpenAIConfig(
                model="fake", base_url=server.base_url, concurrency=8, rpm=4, limit_window_s=1.0
            )
        )

        async def run():
            start = time.perf_counter()
            await asyncio.gather(
                *(backend.complete(VLMRequest(str(i), f"- shape {i}", b"x")) for i in range(8))
            )
            await backend.aclose()
            return time.perf_counter() - start

        elapsed = asyncio.run(run())
    # a burst of 4, then 4 per second: the last of 8 cannot start before ~1 s
    assert elapsed >= 0.9 and len(server.requests) == 8
