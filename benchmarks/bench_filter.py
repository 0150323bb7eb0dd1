"""Benchmark `forge filter`: CLIP throughput, rule-check speed, memory on a large run.

What it measures (one run, side by side, so the ratios are fair on a noisy machine)
    (a) CLIP: the filter stage's scoring pass (decode, preprocess, encode images and texts,
        with rules and dedup off) against the same model encoding the same images and texts
        from pre-made tensors. ViT-B-32 shapes with random weights, on the CPU (or CUDA).
        Target: the stage reaches >= 85% of the raw throughput.
    (b) Rules: every default text check on rows with ~150-word rationales, one thread.
        Target: >= 2,000 rows/s.
    (c) Memory: `forge filter --no-clip` on a generated run of 100,000 small rows, as a
        subprocess; peak RSS from /proc VmHWM (benchmarks/measure.py). Target: < 2 GB.

Usage
    .venv/bin/python benchmarks/bench_filter.py                 # all three, full size
    .venv/bin/python benchmarks/bench_filter.py --clip-images 64 --rule-rows 500 --rows 5000
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "benchmarks")]
WORK = REPO / ".bench" / "filter"
FORGE = Path(sys.executable).parent / "forge"

from generated_fixture import FILLER  # noqa: E402
from measure import run_measured  # noqa: E402

from rationale_forge.filter import FilterConfig, score_pass  # noqa: E402
from rationale_forge.filters.clip import ClipConfig, ClipScorer  # noqa: E402
from rationale_forge.filters.rules import PRESETS, build_rules  # noqa: E402
from rationale_forge.schema import GENERATE_SCHEMA, TEXT_CHECKS, empty_row  # noqa: E402
from rationale_forge.store import RunDir, ShardWriter  # noqa: E402

WORDS = (
    "red blue green circle square triangle canvas left right center soft light "
    "shadow bright flat sharp edge corner top bottom"
).split()


def jpeg(side: int, seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", (side, side), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x, y = rng.randrange(side), rng.randrange(side)
        draw.ellipse(
            (x, y, x + side // 4, y + side // 4), fill=tuple(rng.randrange(256) for _ in range(3))
        )
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def answer(i: int) -> dict:
    rng = random.Random(i)
    rationale = " ".join(rng.sample(FILLER, 8)) + " " + " ".join(rng.choices(WORDS, k=40))
    return {
        "rationale": rationale,
        "layout": "A red circle on the left, a square on the right.",
        "style": "Flat colours, crisp edges.",
        "composition": "Centred, eye level, balanced.",
        "short_caption": f"shapes number {i}",
        "paraphrases": [f"p{i} a", f"p{i} b"],
        "tags": ["red", "circle", f"t{i}"],
        "object_prompts": [f"a red circle {i}"],
        "varied_captions": [f"v{i} one", f"v{i} two"],
        "step_by_step": "1. Draw. 2. Colour.",
        "object_centric": [f"the circle {i}"],
        "region_descriptions": ["left", "right"],
    }


def write_run(path: Path, n: int, side: int) -> Path:
    """A generated run of ``n`` rows (cached by size)."""
    marker = path / ".complete"
    if marker.exists():
        return path
    images = [jpeg(side, s) for s in range(64)]
    with ShardWriter(RunDir(str(path)), GENERATE_SCHEMA, rows_per_shard=2000) as writer:
        for i in range(n):
            data = images[i % len(images)]
            writer.write(
                empty_row(
                    GENERATE_SCHEMA,
                    key=str(i),
                    source="bench",
                    image={"bytes": data, "path": None},
                    width=side,
                    height=side,
                    captions=[f"a red circle number {i}"],
                    status="ok",
                    **answer(i),
                ),
                len(data),
            )
    RunDir(str(path)).update_stage("generate", {"status": "done"})
    marker.touch()
    return path


def bench_clip(n: int, batch: int) -> list[tuple[str, str]]:
    import torch

    run = write_run(WORK / f"clip-{n}", n, side=256)
    config = FilterConfig(
        clip_model="ViT-B-32",
        clip_pretrained=None,
        clip_batch_size=batch,
        preset="lenient",
        disable=list(PRESETS["lenient"]["enabled"]),
        dedup_images=False,
        dedup_rationales=False,
        overwrite=True,
    )
    scorer = ClipScorer(ClipConfig("ViT-B-32", None, batch_size=batch))
    rows = list(RunDir(str(run)).iter_rows())
    pixels = [scorer.preprocess(r["image"]["bytes"]) for r in rows]
    texts = [t for r in rows for t in r["captions"] + scorer.chunks(r["rationale"])]
    # raw: the same encode work from pre-made tensors and pre-split texts
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n, batch):
            scorer.model.encode_image(torch.stack(pixels[i : i + batch]))
        for i in range(0, len(texts), batch * 4):
            scorer.model.encode_text(scorer.tokenizer(texts[i : i + batch * 4]))
    raw = time.perf_counter() - start
    out = RunDir(str(WORK / "clip-out"))
    out.remove()
    start = time.perf_counter()
    score_pass(RunDir(str(run)), out, config, scorer, progress=False)
    stage = time.perf_counter() - start
    return [
        ("CLIP images", f"{n}"),
        ("texts encoded", f"{len(texts)}"),
        ("raw images/s (pre-made tensors)", f"{n / raw:.1f}"),
        ("stage images/s (decode+preprocess+encode)", f"{n / stage:.1f}"),
        ("stage / raw", f"{raw / stage:.1%}  (target >= 85%)"),
    ]


def bench_rules(n: int) -> list[tuple[str, str]]:
    enabled = [c for c in PRESETS["default"]["enabled"] if c in TEXT_CHECKS]
    rules = build_rules(enabled, {})
    rows = []
    for i in range(n):
        row = empty_row(
            GENERATE_SCHEMA,
            key=str(i),
            captions=[f"a red circle number {i}"],
            width=256,
            height=256,
            status="ok",
            **answer(i),
        )
        row["objects"] = [{"category": "person", "bbox": [10, 10, 50, 90], "area": 4500.0}]
        rows.append(row)
    for rule in rules:  # warm up lazy models (language detector, lemmatiser)
        rule.check(rows[0])
    start = time.perf_counter()
    for row in rows:
        for rule in rules:
            rule.check(row)
    seconds = time.perf_counter() - start
    words = sum(len(r["rationale"].split()) for r in rows) / n
    return [
        ("rule rows", f"{n} (~{words:.0f}-word rationales, {len(rules)} checks)"),
        ("rule rows/s, one thread", f"{n / seconds:,.0f}  (target >= 2,000)"),
    ]


def bench_memory(n: int) -> list[tuple[str, str]]:
    run = write_run(WORK / f"mem-{n}", n, side=48)
    out = WORK / "mem-out"
    m = run_measured(
        [
            str(FORGE),
            "filter",
            str(run),
            "--out",
            str(out),
            "--no-clip",
            "--overwrite",
            "--no-report",
        ],
        WORK / "mem.log",
    )
    seconds = m.wall
    rows = RunDir(str(out)).count_rows("data") + RunDir(str(out)).count_rows("rejected")
    return [
        ("memory run rows", f"{rows:,} of {n:,}"),
        ("memory run seconds", f"{seconds:.1f}"),
        ("memory run rows/s", f"{n / seconds:,.0f}"),
        ("peak RSS (MB)", f"{m.peak_rss_mb:.0f}  (target < 2048)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-images", type=int, default=256)
    parser.add_argument("--clip-batch", type=int, default=32)
    parser.add_argument("--rule-rows", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--skip", default="", help="comma list of clip,rules,memory")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    skip = set(args.skip.split(","))
    table: list[tuple[str, str]] = []
    if "rules" not in skip:
        table += bench_rules(args.rule_rows)
    if "clip" not in skip:
        table += bench_clip(args.clip_images, args.clip_batch)
    if "memory" not in skip:
        table += bench_memory(args.rows)
    width = max(len(k) for k, _ in table)
    print(f"{'metric':<{width}}  value\n{'-' * (width + 30)}")
    for k, v in table:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
