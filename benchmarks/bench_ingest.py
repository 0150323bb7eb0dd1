"""Benchmark `forge ingest` on synthetic corpora of growing size.

What it measures
    For each layout (``folder`` and ``coco``) and each corpus size N, the wall time and the
    peak resident memory (RSS) of one real ``forge ingest ... --overwrite`` run, started as a
    subprocess exactly as a user would. It checks that the run wrote N rows and reports
    rows/s and MB/s of image bytes read.

Target
    Ingest streams: peak memory must NOT grow with corpus size, and must stay under 1 GB.
    The last line says whether both held (growth of the largest size over the smallest,
    per layout, under ~20% counts as flat).

Data
    N synthetic 256x192-ish RGB JPEGs with drawn shapes are generated once per N (in a
    process pool) under ``.bench/ingest/data/n{N}/`` (git-ignored) and reused by later runs:

    folder/  nested subdirectories, ``img_000123.jpg`` + same-stem ``img_000123.txt``
    coco/    ``annotations/captions_bench.json`` (3 captions per image),
             ``annotations/instances_bench.json`` (2 boxes per image), images in ``bench/``

    Runs are written to ``.bench/ingest/runs/{layout}-{N}/``. The images were just written
    (or read by an earlier run), so timings are warm page cache timings.

Usage
    .venv/bin/python benchmarks/bench_ingest.py                  # N = 5,000 and 20,000
    .venv/bin/python benchmarks/bench_ingest.py --sizes 500,2000 # quick check
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass
from io import BytesIO
from multiprocessing import Pool
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run_measured  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WORK = REPO / ".bench" / "ingest"
FORGE = Path(sys.executable).parent / "forge"  # the console script of this virtualenv
SPLIT = "bench"
RSS_LIMIT_MB = 1024
FLAT_GROWTH = 0.20  # peak RSS growth (largest vs smallest N) still counted as flat

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "grey"]
SHAPES = ["circle", "square", "triangle", "line"]
CATEGORIES = [{"id": i + 1, "name": s} for i, s in enumerate(SHAPES)]


# -- corpus generation -------------------------------------------------------------------


def folder_image_path(root: Path, i: int) -> Path:
    """Nested layout: 1,000 images per top folder, 100 per subfolder."""
    return root / f"{i // 1000:03d}" / f"{(i // 100) % 10:02d}" / f"img_{i:06d}.jpg"


def coco_file_name(i: int) -> str:
    return f"{i + 1:012d}.jpg"


def make_image(i: int) -> tuple[bytes, list[dict], list[str]]:
    """One deterministic synthetic JPEG with a few drawn shapes; returns its bytes, two
    COCO-style boxes and three captions."""
    rng = random.Random(i)
    w, h = rng.randint(232, 280), rng.randint(172, 212)
    background = tuple(rng.randint(0, 255) for _ in range(3))
    img = Image.new("RGB", (w, h), background)
    draw = ImageDraw.Draw(img)
    boxes, drawn = [], []
    for k in range(rng.randint(2, 5)):
        shape, color = rng.choice(SHAPES), rng.choice(COLORS)
        x0, y0 = rng.randint(0, w - 40), rng.randint(0, h - 40)
        x1, y1 = rng.randint(x0 + 20, min(w, x0 + 140)), rng.randint(y0 + 20, min(h, y0 + 120))
        if shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=color, outline="black")
        elif shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=color, outline="black")
        elif shape == "triangle":
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=color)
        else:
            draw.line((x0, y0, x1, y1), fill=color, width=rng.randint(2, 8))
        drawn.append(f"{color} {shape}")
        if k < 2:
            boxes.append(
                {
                    "category_id": SHAPES.index(shape) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float((x1 - x0) * (y1 - y0)),
                }
            )
    # Some speckle so JPEG sizes vary like photos rather than flat cartoons.
    for _ in range(rng.randint(50, 400)):
        x, y = rng.randrange(w), rng.randrange(h)
        draw.point((x, y), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    buf = BytesIO()
    img.save(buf, format="JPEG", quality=rng.randint(80, 92))
    captions = [
        f"A picture with a {' and a '.join(drawn)}.",
        f"{len(drawn)} shapes on a plain background.",
        f"Synthetic image number {i} showing a {drawn[0]}.",
    ]
    return buf.getvalue(), boxes, captions


def _write_one(args: tuple[int, str]) -> tuple[int, int, int, int, list[dict], list[str]]:
    """Pool worker: write image ``i`` into both layouts; returns what the COCO JSON needs."""
    i, root = args
    data, boxes, captions = make_image(i)
    path = folder_image_path(Path(root) / "folder", i)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(captions[0] + "\n", encoding="utf-8")
    (Path(root) / "coco" / SPLIT / coco_file_name(i)).write_bytes(data)
    with Image.open(path) as im:
        w, h = im.size
    return i, w, h, len(data), boxes, captions


def generate(root: Path, n: int, processes: int | None = None) -> int:
    """Generate the corpus of ``n`` images under ``root`` unless it is already complete;
    returns the total image bytes (per layout)."""
    marker = root / "complete.json"
    if marker.exists():
        return json.loads(marker.read_text())["image_bytes"]
    if root.exists():
        shutil.rmtree(root)  # a half-written corpus from an interrupted run
    (root / "coco" / SPLIT).mkdir(parents=True)
    (root / "coco" / "annotations").mkdir(parents=True)
    started = time.perf_counter()
    images, captions, instances = [], [], []
    total = 0
    with Pool(processes) as pool:
        jobs = ((i, str(root)) for i in range(n))
        for i, w, h, nbytes, boxes, caps in pool.imap(_write_one, jobs, chunksize=64):
            image_id = i + 1
            total += nbytes
            images.append({"id": image_id, "file_name": coco_file_name(i), "width": w, "height": h})
            for c in caps:
                captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": c})
            for b in boxes:
                instances.append({"id": len(instances) + 1, "image_id": image_id, **b})
    ann = root / "coco" / "annotations"
    info = {"description": f"rationale-forge ingest benchmark, {n} images"}
    (ann / f"captions_{SPLIT}.json").write_text(
        json.dumps({"info": info, "images": images, "annotations": captions})
    )
    (ann / f"instances_{SPLIT}.json").write_text(
        json.dumps(
            {"info": info, "images": images, "annotations": instances, "categories": CATEGORIES}
        )
    )
    marker.write_text(json.dumps({"images": n, "image_bytes": total}))
    print(
        f"generated {n:,} images ({total / 1e6:,.1f} MB per layout) in "
        f"{time.perf_counter() - started:.1f}s under {root}",
        flush=True,
    )
    return total


# -- measuring one ingest ----------------------------------------------------------------


@dataclass
class Result:
    layout: str
    images: int
    seconds: float
    rows: int
    image_bytes: int
    peak_rss_mb: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.image_bytes / 1e6 / self.seconds


def run_ingest(layout: str, data_dir: Path, out: Path, log: Path, workers: int | None) -> Result:
    """Run the real CLI once and measure it.

    Peak RSS: VmHWM polled from /proc (benchmarks/measure.py), not wait4's ru_maxrss,
    which survives exec and can report the parent's size.
    """
    cmd = [str(FORGE), "ingest", "--source", layout, "--data-dir", str(data_dir)]
    if layout == "coco":
        cmd += ["--split", SPLIT]
    if workers:
        cmd += ["--workers", str(workers)]
    cmd += ["--out", str(out), "--overwrite"]
    m = run_measured(cmd, log)
    seconds = m.wall
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "data").glob("part-*.parquet"))
    counts = json.loads((out / "manifest.json").read_text())["stages"]["ingest"]["counts"]
    return Result(
        layout=layout,
        images=0,  # filled in by the caller
        seconds=seconds,
        rows=rows,
        image_bytes=counts["bytes"],
        peak_rss_mb=m.peak_rss_mb,
    )


# -- reporting -----------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    header = (
        f"{'layout':<8} {'images':>8} {'seconds':>8} {'rows/s':>8} {'MB/s':>7} {'peak RSS MB':>12}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.layout:<8} {r.images:>8,} {r.seconds:>8.2f} {r.rows_per_s:>8.0f} "
            f"{r.mb_per_s:>7.1f} {r.peak_rss_mb:>12.0f}"
        )


def verdict(results: list[Result]) -> str:
    peak = max(r.peak_rss_mb for r in results)
    under = peak < RSS_LIMIT_MB
    growth, details = {}, []
    for layout in dict.fromkeys(r.layout for r in results):
        mine = sorted((r for r in results if r.layout == layout), key=lambda r: r.images)
        small, big = mine[0], mine[-1]
        growth[layout] = big.peak_rss_mb / small.peak_rss_mb - 1
        extra = big.images - small.images
        # The slope tells what the percentage hides: a large fixed baseline (imports, one
        # shard's buffer) can make a per-image leak look "flat" at small N.
        slope = (big.peak_rss_mb - small.peak_rss_mb) * 1024 / extra if extra else 0.0
        details.append(f"{layout} {growth[layout]:+.0%} ({slope:+.2f} KB/image)")
    flat = all(g < FLAT_GROWTH for g in growth.values())
    detail = ", ".join(details)
    return (
        f"peak RSS {'stayed under' if under else 'EXCEEDED'} 1 GB (max {peak:,.0f} MB); "
        f"{'flat' if flat else 'GREW'} with corpus size (largest vs smallest N: {detail}; "
        f"flat = under {FLAT_GROWTH:.0%}) -> {'PASS' if under and flat else 'FAIL'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="5000,20000",
        help="comma-separated corpus sizes (default 5000,20000)",
    )
    parser.add_argument(
        "--layouts", default="folder,coco", help="comma-separated layouts (default both)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=DEFAULT_WORK, help=f"default {DEFAULT_WORK}"
    )
    parser.add_argument("--workers", type=int, help="pass --workers to forge (default: its own)")
    parser.add_argument("--processes", type=int, help="generation processes (default: all CPUs)")
    args = parser.parse_args()
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    layouts = [s.strip() for s in args.layouts.split(",") if s.strip()]
    if not FORGE.exists():
        sys.exit(f"{FORGE} not found: run this with the project's virtualenv python")

    runs = args.work_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sizes:
        root = args.work_dir / "data" / f"n{n}"
        generate(root, n, args.processes)
        for layout in layouts:
            out = runs / f"{layout}-{n}"
            print(f"ingest {layout:<6} N={n:>7,} ...", end=" ", flush=True)
            r = run_ingest(layout, root / layout, out, runs / f"{layout}-{n}.log", args.workers)
            r.images = n
            print(f"{r.seconds:.1f}s, peak RSS {r.peak_rss_mb:,.0f} MB", flush=True)
            if r.rows != n:
                sys.exit(f"{layout} N={n}: expected {n} rows, the run wrote {r.rows}")
            results.append(r)
    print_table(results)
    print()
    print(verdict(results))


if __name__ == "__main__":
    main()
