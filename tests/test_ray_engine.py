"""`--engine ray` on a real local Ray cluster (2 CPUs, started here): the same output as the
local engine, and every row exactly once when a worker or the driver is killed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from generated_fixture import FILLER
from test_generate import caption_folder

from rationale_forge.engines import make_engine
from rationale_forge.filter import FilterConfig, filter_run
from rationale_forge.filters.tiny_clip import build_tiny_clip
from rationale_forge.generate import GenerateConfig, generate
from rationale_forge.ingest import RunConflictError, ingest
from rationale_forge.schema import GENERATE_SCHEMA, empty_row
from rationale_forge.sources import SourceOptions
from rationale_forge.store import RunDir, ShardWriter

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own

FAULTS = ["429", "500", "garbage", "refusal", "500always"]


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster on this machine for the module; yields its address (for drivers in
    other processes)."""
    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield context.address_info["gcs_address"]
    ray.shutdown()


def ingested_folder(root: Path, n: int, per_shard: int, faults: bool = False) -> Path:
    captions = [f"a small red shape number {i}" for i in range(n)]
    if faults:
        for i, fault in enumerate(FAULTS):
            captions[i * 7] += f" FAULT:{fault}"
    folder = caption_folder(root / "imgs", captions)
    out = root / "ingested"
    ingest(
        SourceOptions(kind="folder", data_dir=str(folder)),
        str(out),
        rows_per_shard=per_shard,
        progress=False,
    )
    return out


def gen_config(base_url: str, **kw) -> GenerateConfig:
    base = dict(
        backend="openai",
        model="fake-vlm",
        base_url=base_url,
        concurrency=8,
        timeout=5.0,
        max_retries=2,
        backoff_base=0.05,
    )
    return GenerateConfig(**{**base, **kw})


def by_key(run: Path, subdir: str = "data") -> dict[str, dict]:
    rows = list(RunDir(str(run)).iter_rows(subdir))
    keyed = {r["key"]: r for r in rows}
    assert len(keyed) == len(rows), "a key appears twice"
    return keyed


def test_generate_on_ray_equals_local(cluster, tmp_path):
    ingested = ingested_folder(tmp_path, 200, per_shard=25, faults=True)
    with FakeOpenAI() as server:
        local = generate(
            str(ingested), str(tmp_path / "local"), gen_config(server.base_url), progress=False
        )
    with FakeOpenAI() as a, FakeOpenAI() as b:  # two endpoints share the load
        remote = generate(
            str(ingested),
            str(tmp_path / "ray"),
            gen_config(f"{a.base_url},{b.base_url}"),
            progress=False,
            engine=make_engine("ray"),
        )
        sent = (len(a.requests), len(b.requests))
    want, got = by_key(tmp_path / "local"), by_key(tmp_path / "ray")
    assert len(got) == 200 and got.keys() == want.keys()
    for key, row in want.items():
        differ = {c for c in row if c != "latency_s" and row[c] != got[key][c]}
        assert not differ, (key, {c: (row[c], got[key][c]) for c in differ})
    assert sum(r["status"] == "error" for r in got.values()) == 3  # garbage, refusal, 500
    assert min(sent) > 40, sent  # both endpoints answered a fair share
    for field in ("rows", "ok", "requests", "errors", "prompt_tokens", "completion_tokens"):
        assert getattr(remote, field) == getattr(local, field), field
    run = RunDir(str(tmp_path / "ray"))
    assert len(run.shards()) == 8  # one output shard per input shard
    record = run.read_manifest()["stages"]["generate"]
    assert record["status"] == "done" and record["counts"]["rows"] == 200
    engine = record["engine"]
    assert engine["name"] == "ray" and engine["nodes"] == 1 and engine["cpus"] == 2
    assert engine["gpus"] == 0 and engine["actors"] == 2
    # --retry-failed sends the three failed requests again, and nothing else
    failed = {k for k, r in got.items() if r["status"] == "error"}
    with FakeOpenAI() as server:
        again = generate(
            str(ingested),
            str(tmp_path / "ray"),
            gen_config(server.base_url, retry_failed=True),
            progress=False,
            engine=make_engine("ray"),
        )
        resent = set(server.requests)
    assert len(resent) == 3 and again.retried_failed == 3 and again.rows == 3
    assert again.skipped == 197 and again.cache_hits == 0
    after = by_key(tmp_path / "ray")
    assert after.keys() == got.keys()
    assert {k for k, r in after.items() if r["status"] == "error"} == failed  # same faults
    # a run one engine wrote is not resumed by the other
    with pytest.raises(RunConflictError, match="--engine local"):
        generate(
            str(ingested),
            str(tmp_path / "local"),
            gen_config("http://127.0.0.1:9/v1"),
            progress=False,
            engine=make_engine("ray"),
        )


def write_generated(path: Path, n: int, per_shard: int) -> Path:
    """A generated run of ``n`` rows with near-duplicate images and rationales, a failed
    request and a refusal, so every kind of decision is exercised."""
    import io

    from PIL import Image, ImageDraw

    rng = random.Random(7)
    previous, last_rationale = None, ""
    with ShardWriter(RunDir(str(path)), GENERATE_SCHEMA, rows_per_shard=per_shard) as writer:
        for i in range(n):
            img = Image.new("RGB", (160, 128), (rng.randrange(256), rng.randrange(256), 90))
            ImageDraw.Draw(img).ellipse((5 + i % 90, 20, 60 + i % 90, 90), fill=(250, 10, 10))
            twin = i % 50 == 49  # the same picture as the row before
            buf = io.BytesIO()
            (previous if twin else img).save(buf, "PNG")
            previous = img
            rationale = " ".join(rng.sample(FILLER, 7)) + f" A red circle, item {i}."
            if i % 40 == 20:
                rationale = last_rationale  # a copied answer
            last_rationale = rationale
            status = "error" if i == 33 else "ok"
            if i == 66:
                rationale = "I'm sorry, but I can't help with that. " * 10
            writer.write(
                empty_row(
                    GENERATE_SCHEMA,
                    key=f"{i:04d}",
                    source="test",
                    status=status,
                    error_kind="request_failed" if status == "error" else None,
                    error="boom" if status == "error" else None,
                    image={"bytes": buf.getvalue(), "path": None},
                    width=160,
                    height=128,
                    captions=[f"a red circle number {i}"],
                    rationale=rationale if status == "ok" else None,
                    layout="a red circle on the left",
                    style="flat colours",
                    composition="centred",
                    short_caption=f"a red circle {i}",
                    paraphrases=[f"red circle {i}", f"circle {i}"],
                    tags=["red", "circle"],
                    varied_captions=[f"a circle {i}", f"red {i}"],
                    step_by_step="1. Fill the background. 2. Draw the circle.",
                    object_centric=[f"the circle {i} is red"],
                    region_descriptions=["left: a red circle"],
                )
            )
    RunDir(str(path)).update_stage("generate", {"status": "done"})
    return path


def test_filter_on_ray_equals_local(cluster, tmp_path):
    generated = write_generated(tmp_path / "generated", 240, per_shard=40)
    model, weights = build_tiny_clip(tmp_path / "clip")
    config = dict(
        clip_model=model,
        clip_pretrained=weights,
        clip_batch_size=10,  # divides the shards: the same CLIP batches either way
        clip_keep_top=0.8,
        phash_distance=2,
        preset="lenient",
        disable=["language"],  # slow to load per worker; the other checks show equality
    )
    local = filter_run(
        str(generated), str(tmp_path / "local"), FilterConfig(**config), progress=False
    )
    remote = filter_run(
        str(generated),
        str(tmp_path / "ray"),
        FilterConfig(**config),
        progress=False,
        engine=make_engine("ray", clip_actors=2),
    )
    for subdir in ("data", "rejected"):
        want, got = by_key(tmp_path / "local", subdir), by_key(tmp_path / "ray", subdir)
        assert got.keys() == want.keys(), subdir
        for key, row in want.items():
            other = got[key]
            assert other["reject_reasons"] == row["reject_reasons"], key
            assert other["duplicate_of"] == row["duplicate_of"] and other["phash"] == row["phash"]
            for column in row:
                if column.startswith("score_"):
                    assert other[column] == pytest.approx(row[column], abs=1e-5), (key, column)
    reasons = " ".join(
        r for row in by_key(tmp_path / "ray", "rejected").values() for r in row["reject_reasons"]
    )
    for check in ("duplicate_image", "duplicate_rationale", "clip_rationale_mean", "status"):
        assert check in reasons, check
    assert (remote.kept, remote.rejected, remote.rows) == (local.kept, local.rejected, 240)
    assert remote.rejected_by_check == local.rejected_by_check
    assert remote.thresholds == pytest.approx(local.thresholds, abs=1e-6)
    record = RunDir(str(tmp_path / "ray")).read_manifest()["stages"]["filter"]
    assert record["engine"]["name"] == "ray" and record["engine"]["clip_actors"] == 2
    assert len(RunDir(str(tmp_path / "ray")).shards("scored")) == 6
    # a second run scores nothing again and decides the same
    again = filter_run(
        str(generated),
        str(tmp_path / "ray"),
        FilterConfig(**config),
        progress=False,
        engine=make_engine("ray", clip_actors=2),
    )
    assert again.scored == 0 and again.kept == local.kept


def worker_pids(name: str) -> list[int]:
    """Ray worker processes running the Ray Data UDF ``name``."""
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith("ray::") and name in cmdline:
            pids.append(proc.info["pid"])
    return pids


def test_a_killed_worker_is_retried_and_every_row_is_written_once(cluster, tmp_path):
    n = 160
    ingested = ingested_folder(tmp_path, n, per_shard=20)
    killed: list[int] = []
    with FakeOpenAI(latency=0.1) as server:

        def kill_one_worker() -> None:
            deadline = time.time() + 120
            while time.time() < deadline and len(server.requests) < 50:
                time.sleep(0.02)
            pids = worker_pids("GenerateWorker")
            if pids and len(server.requests) < n:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        stats = generate(
            str(ingested),
            str(tmp_path / "gen"),
            gen_config(server.base_url, concurrency=4),
            progress=False,
            engine=make_engine("ray"),
        )
        killer.join()
        counts = server.counts()
    assert killed, "the run ended before a worker could be killed"
    rows = by_key(tmp_path / "gen")
    assert len(rows) == n and all(r["status"] == "ok" for r in rows.values())
    # answers that arrived before the kill came from the cache; at most the killed
    # worker's requests in flight (concurrency 4 over 2 workers) were sent twice
    assert sum(c - 1 for c in counts.values()) <= 2, counts.most_common(3)
    assert stats.requests + stats.cache_hits == n and stats.rows == n


DRIVER = """
import sys
from rationale_forge.engines import make_engine
from rationale_forge.generate import GenerateConfig, generate
generate(sys.argv[1], sys.argv[2],
         GenerateConfig(backend="openai", model="fake", base_url=sys.argv[3], concurrency=4),
         progress=False, engine=make_engine("ray", address=sys.argv[4]))
"""


def test_a_restarted_job_redoes_only_unfinished_shards(cluster, tmp_path):
    n = 160
    ingested = ingested_folder(tmp_path, n, per_shard=20)
    out = tmp_path / "gen"
    markers = out / "_progress" / "generate"
    with FakeOpenAI(latency=0.15) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(ingested), str(out), server.base_url, cluster]
        )
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if markers.is_dir() and len(list(markers.glob("*.json"))) >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = {p.name[: -len(".json")] for p in markers.glob("*.json")}
        assert 3 <= len(finished) < 8, "the job finished or stalled before it was killed"
        before = len(server.requests)  # wait for the dead job's workers to go
        while True:
            time.sleep(1.0)
            if len(server.requests) == before:
                break
            before = len(server.requests)
        answered = set(server.completed)
        stamps = {s: (out / "data" / s).stat().st_mtime_ns for s in finished}
        stats = generate(
            str(ingested),
            str(out),
            GenerateConfig(backend="openai", model="fake", base_url=server.base_url, concurrency=4),
            progress=False,
            engine=make_engine("ray", address=cluster),
        )
        resent = [cid for cid in server.requests[before:] if cid in answered]
    rows = by_key(out)
    assert len(rows) == n and all(r["status"] == "ok" for r in rows.values())
    assert stats.skipped >= 20 * len(finished)
    assert {s: (out / "data" / s).stat().st_mtime_ns for s in finished} == stamps
    assert len(resent) <= 4, resent  # at most what was in flight at the kill
    assert stats.requests + stats.cache_hits + stats.skipped == n
    manifest = json.loads((out / "manifest.json").read_text())["stages"]["generate"]
    assert manifest["status"] == "done" and manifest["total_rows"] == n


def test_generate_on_ray_against_the_vllm_server(cluster, tiny_qwen, tmp_path):
    from vllm_server import start_vllm_server

    ingested = tmp_path / "ingested"
    ingest(SourceOptions(kind="sample", limit=6), str(ingested), rows_per_shard=2, progress=False)
    template = tmp_path / "short.j2"
    template.write_text("Plan this image as JSON. Captions: {{ captions | join('; ') }}")
    so_config = {"backend": "xgrammar", "disable_any_whitespace": True}
    extra = ["--structured-outputs-config", json.dumps(so_config)]
    with start_vllm_server(tiny_qwen, enforce_eager=True, extra_args=extra, max_model_len=4096) as (
        base_url,
        model,
        _,
    ):
        config = dict(
            model=model,
            max_tokens=3900,
            max_image_side=64,
            timeout=300,
            temperature=1.0,
            sampling_seed=1,
            prompt=str(template),
        )
        local = generate(
            str(ingested), str(tmp_path / "local"), gen_config(base_url, **config), progress=False
        )
        remote = generate(
            str(ingested),
            str(tmp_path / "ray"),
            gen_config(base_url, **config),
            progress=False,
            engine=make_engine("ray"),
        )
    want, got = by_key(tmp_path / "local"), by_key(tmp_path / "ray")
    assert remote.ok == local.ok == 6 and got.keys() == want.keys()
    for key, row in want.items():
        assert got[key]["request_key"] == row["request_key"]
        assert got[key]["rationale"] == row["rationale"], key  # seeded: the same answer


CACHE_WRITER = """
import sys
from pathlib import Path
from rationale_forge.cache import RequestCache
from rationale_forge.vlm.base import VLMResult
cache = RequestCache(Path(sys.argv[1]))
for i in range(300):
    cache.put(VLMResult(key=f"{sys.argv[2]}-{i}", text="x" * 2000))
"""


def test_processes_share_one_request_cache(tmp_path):
    from rationale_forge.cache import RequestCache

    path = tmp_path / "cache" / "requests.sqlite"
    procs = [
        subprocess.Popen([sys.executable, "-c", CACHE_WRITER, str(path), name])
        for name in ("a", "b", "c")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    cache = RequestCache(path)
    assert len(cache) == 900 and cache.get("b-299").text == "x" * 2000


def test_cli_refuses_bad_engine_flags(tmp_path):
    from typer.testing import CliRunner

    from rationale_forge.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "generate",
            "--source",
            "sample",
            "--out",
            str(tmp_path / "g"),
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--engine",
            "ray",
        ],
    )
    assert result.exit_code == 2 and "forge ingest" in result.output
    result = runner.invoke(
        app, ["filter", str(tmp_path), "--out", str(tmp_path / "f"), "--engine", "spark"]
    )
    assert result.exit_code == 2 and "unknown engine" in result.output
