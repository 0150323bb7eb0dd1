"""Benchmark the engines: the same generate and filter runs with `--engine local` and
`--engine ray` on this machine, side by side.

What it measures (one process, one run of each, same inputs)
    Ray is started once on this machine (its start time is reported apart); then
    (a) generate: N images (default 2,000, 8 input shards) against a local OpenAI-compatible
        server in its own process (``tests/fake_openai.py``) answering every request after
        L seconds (default 0.1), --concurrency C (default 64) in total for either engine;
        then the finished job re-run (it must send nothing);
    (b) filter: M rows (default 256, 8 shards) of 256x256 JPEGs with ~150-word rationales,
        the default checks, CLIP with ViT-B-32 shapes and random weights (no download);
        CLIP actors: one per CPU. Then the finished job re-run (decide pass only).
    Reported: wall seconds of each engine, the ratio ray / local, and the overhead (ray
    minus local) per run and per input shard. Every run's output row count is checked.

    ``--clip-throughput MODEL`` instead measures the filter's CLIP scorer alone (decode,
    preprocess, image and text encoding, as the score pass runs it) on the device at hand,
    CPU or CUDA: the per-image cost used in the README's scaling estimate.

Usage
    .venv/bin/python benchmarks/bench_engines.py
    .venv/bin/python benchmarks/bench_engines.py --gen-n 500 --filter-rows 64
    python benchmarks/bench_engines.py --clip-throughput ViT-L-14 --clip-images 2048
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "benchmarks")]
WORK = REPO / ".bench" / "engines"


def jpeg(side: int, seed: int) -> bytes:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", (side, side), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = rng.randrange(side), rng.randrange(side)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x, y, x + side // 4, y + side // 4), fill=colour)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


# -- generate ------------------------------------------------------------------------------
def bench_generate(n: int, shards: int, latency: float, concurrency: int, ray_engine) -> list:
    from bench_generate import make_corpus

    from rationale_forge.generate import GenerateConfig, generate
    from rationale_forge.ingest import ingest
    from rationale_forge.sources import SourceOptions
    from rationale_forge.store import RunDir

    corpus = make_corpus(WORK, n)
    ingested = WORK / f"ingested-{n}-{shards}"
    if not (ingested / "manifest.json").exists():
        ingest(
            SourceOptions(kind="folder", data_dir=str(corpus)),
            str(ingested),
            rows_per_shard=-(-n // shards),
            overwrite=True,
            progress=False,
        )
    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "fake_openai.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip()
        config = GenerateConfig(
            backend="openai", model="fake", base_url=base_url, concurrency=concurrency
        )
        results = {}
        for name, engine in (("local", None), ("ray", ray_engine)):
            out = WORK / f"gen-{name}"
            RunDir(str(out)).remove()
            stats, wall = timed(
                lambda out=out, engine=engine: generate(
                    str(ingested), str(out), config, progress=False, engine=engine
                )
            )
            assert stats.rows == n and RunDir(str(out)).count_rows() == n, (name, stats)
            again, rerun = timed(
                lambda out=out, engine=engine: generate(
                    str(ingested), str(out), config, progress=False, engine=engine
                )
            )
            assert again.requests == 0
            results[name] = (wall, rerun)
    finally:
        server.terminate()
        server.wait()
    ideal = n / concurrency * latency
    return [
        (
            f"generate {n:,} rows, {shards} shards (ideal {ideal:.1f} s)",
            results["local"][0],
            results["ray"][0],
        ),
        ("generate re-run of the finished job", results["local"][1], results["ray"][1]),
    ]


# -- filter --------------------------------------------------------------------------------
def write_generated(path: Path, n: int, shards: int) -> Path:
    from bench_filter import answer

    from rationale_forge.schema import GENERATE_SCHEMA, empty_row
    from rationale_forge.store import RunDir, ShardWriter

    if (path / ".complete").exists():
        return path
    RunDir(str(path)).remove()
    pictures = [jpeg(256, s) for s in range(64)]
    with ShardWriter(RunDir(str(path)), GENERATE_SCHEMA, rows_per_shard=-(-n // shards)) as w:
        for i in range(n):
            data = pictures[i % len(pictures)] if i >= 64 else jpeg(256, 1000 + i)
            w.write(
                empty_row(
                    GENERATE_SCHEMA,
                    key=f"{i:06d}",
                    source="bench",
                    image={"bytes": data, "path": None},
                    width=256,
                    height=256,
                    captions=[f"a red circle number {i}"],
                    status="ok",
                    **answer(i),
                ),
                len(data),
            )
    RunDir(str(path)).update_stage("generate", {"status": "done"})
    (path / ".complete").touch()
    return path


def bench_filter(rows: int, shards: int, clip_actors: int | None, ray_engine_for) -> list:
    from rationale_forge.filter import FilterConfig, filter_run
    from rationale_forge.store import RunDir

    generated = write_generated(WORK / f"generated-{rows}-{shards}", rows, shards)
    config = FilterConfig(clip_model="ViT-B-32", clip_pretrained=None, clip_batch_size=16)
    results = {}
    for name in ("local", "ray"):
        out = WORK / f"filter-{name}"
        RunDir(str(out)).remove()
        engine = ray_engine_for(clip_actors) if name == "ray" else None
        stats, wall = timed(
            lambda out=out, engine=engine: filter_run(
                str(generated), str(out), config, progress=False, engine=engine
            )
        )
        assert stats.rows == rows, (name, stats)
        engine = ray_engine_for(clip_actors) if name == "ray" else None
        again, rerun = timed(
            lambda out=out, engine=engine: filter_run(
                str(generated), str(out), config, progress=False, engine=engine
            )
        )
        assert again.scored == 0 and again.kept == stats.kept
        results[name] = (wall, rerun, stats.kept)
    assert results["local"][2] == results["ray"][2], "the engines kept different rows"
    return [
        (
            f"filter {rows:,} rows, {shards} shards (ViT-B-32)",
            results["local"][0],
            results["ray"][0],
        ),
        ("filter re-run (decide pass only)", results["local"][1], results["ray"][1]),
    ]


# -- CLIP alone ----------------------------------------------------------------------------
def clip_throughput(model: str, n: int, batch: int) -> None:
    """Images/s of the filter's CLIP scorer on this device (random weights)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from rationale_forge.filters.clip import ClipConfig, ClipScorer

    scorer = ClipScorer(ClipConfig(model, None, batch_size=batch))
    pictures = [jpeg(384, s) for s in range(64)]
    rationale = (
        "A red circle sits on the left third, a blue square on the right. The background is "
        "a flat pale grey. Soft daylight from the upper left casts short shadows. "
    ) * 3
    workers = os.cpu_count() or 2

    def run(count: int) -> float:
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            for i in range(0, count, batch):
                images = [pictures[(i + j) % 64] for j in range(min(batch, count - i))]
                pixels = list(pool.map(scorer.preprocess, images))
                scorer.score(
                    pixels,
                    [[f"a red circle number {i + j}"] for j in range(len(pixels))],
                    [rationale + f"Item {i + j}." for j in range(len(pixels))],
                )
        if scorer.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def sync() -> None:
        if scorer.device.startswith("cuda"):
            torch.cuda.synchronize()

    run(batch * 2)  # warm-up: kernels, allocator
    seconds = run(n)
    # where the time goes: decoding alone, and the model alone on pre-made inputs
    with ThreadPoolExecutor(workers) as pool:
        start = time.perf_counter()
        pixels = list(pool.map(scorer.preprocess, [pictures[i % 64] for i in range(n)]))
        decode = time.perf_counter() - start
    texts = scorer.chunks(rationale) + ["a red circle number 1"]
    tokens = scorer.tokenizer(texts * (batch // len(texts) + 1)).to(scorer.device)
    with torch.inference_mode():
        sync()
        start = time.perf_counter()
        for i in range(0, n, batch):
            scorer.model.encode_image(torch.stack(pixels[i : i + batch]).to(scorer.device))
            scorer.model.encode_text(tokens)
        sync()
        model_only = time.perf_counter() - start
    name = torch.cuda.get_device_name() if scorer.device.startswith("cuda") else "cpu"
    print(f"CLIP {model} (random weights) on {name}, batch {batch}, {workers} decode threads")
    print(f"images scored: {n}, seconds: {seconds:.2f}, images/s: {n / seconds:.1f}")
    print(f"per image (ms): {seconds / n * 1000:.2f}  (1 caption + ~4 rationale chunks each)")
    print(f"decode + preprocess alone: {n / decode:.1f} images/s")
    print(
        f"model alone (fp32, {len(tokens)} texts per {batch} images): {n / model_only:.1f} images/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gen-n", type=int, default=2000)
    parser.add_argument("--gen-shards", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--filter-rows", type=int, default=256)
    parser.add_argument("--filter-shards", type=int, default=8)
    parser.add_argument("--clip-actors", type=int, default=None)
    parser.add_argument("--skip", default="", help="comma list of generate,filter")
    parser.add_argument("--clip-throughput", metavar="MODEL", default=None)
    parser.add_argument("--clip-images", type=int, default=512)
    parser.add_argument("--clip-batch", type=int, default=64)
    args = parser.parse_args()
    if args.clip_throughput:
        clip_throughput(args.clip_throughput, args.clip_images, args.clip_batch)
        return

    import ray

    from rationale_forge.engines import make_engine

    WORK.mkdir(parents=True, exist_ok=True)
    _, start = timed(lambda: ray.init(include_dashboard=False, logging_level="WARNING"))
    engine = make_engine("ray")
    cluster = engine.connect()
    skip = set(args.skip.split(","))
    table = []
    if "generate" not in skip:
        table += bench_generate(args.gen_n, args.gen_shards, args.latency, args.concurrency, engine)
    if "filter" not in skip:
        table += bench_filter(
            args.filter_rows,
            args.filter_shards,
            args.clip_actors,
            lambda actors: make_engine("ray", clip_actors=actors),
        )
    ray.shutdown()
    print(
        f"\nRay on this machine: {cluster['nodes']} node, {cluster['cpus']} CPUs, "
        f"{cluster['gpus']} GPUs; started in {start:.1f} s (not counted below)\n"
    )
    width = max(len(name) for name, *_ in table)
    print(f"{'run':<{width}}  {'local s':>8}  {'ray s':>8}  {'ray/local':>9}  {'overhead s':>10}")
    print("-" * (width + 44))
    for name, local, remote in table:
        ratio = remote / local if local else float("nan")
        print(f"{name:<{width}}  {local:8.2f}  {remote:8.2f}  {ratio:9.2f}  {remote - local:10.2f}")


if __name__ == "__main__":
    main()
