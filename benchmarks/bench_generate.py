"""Benchmark `forge generate` against a local OpenAI-compatible server with fixed latency.

What it measures
    N images (default 5,000) are ingested once, then ``forge generate --input ... --backend
    openai --concurrency C`` runs as a subprocess against a server (``tests/fake_openai.py``,
    in its own process) that answers every request after L seconds (default 0.1). Reported:
    wall time against the ideal N / C x L, CPU seconds per request of the generate process,
    its peak RSS, and then the same command re-run on the finished job (it must send zero
    requests and finish in a few seconds).

Target
    wall time within 1.25x of the ideal.

Usage
    .venv/bin/python benchmarks/bench_generate.py                      # N=5000, C=64, L=0.1
    .venv/bin/python benchmarks/bench_generate.py --n 500 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import psutil
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run_measured  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".bench" / "generate"
FORGE = Path(sys.executable).parent / "forge"
TARGET = 1.25


def make_corpus(root: Path, n: int) -> Path:
    """N small distinct JPEGs with a caption each (folder layout), cached by N."""
    folder = root / f"images-{n}"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(0)
    for i in range(n):
        img = Image.new("RGB", (96, 72), (rng.randrange(256), rng.randrange(256), 200))
        ImageDraw.Draw(img).ellipse((10 + i % 40, 10, 50 + i % 40, 50), fill=(255, 0, 0))
        buf = BytesIO()
        img.save(buf, "JPEG", quality=85)
        (folder / f"{i:06d}.jpg").write_bytes(buf.getvalue())
        (folder / f"{i:06d}.txt").write_text(f"a red circle, picture {i}")
    (folder / ".complete").touch()
    return folder


def run(cmd: list[str], log: Path) -> dict:
    m = run_measured(cmd, log)
    return {"wall": m.wall, "cpu": m.cpu, "rss_mb": m.peak_rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(WORK, args.n)
    ingested, out = WORK / f"ingested-{args.n}", WORK / "gen"
    run(
        [
            str(FORGE),
            "ingest",
            "--source",
            "folder",
            "--data-dir",
            str(corpus),
            "--out",
            str(ingested),
            "--overwrite",
        ],
        WORK / "ingest.log",
    )
    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "fake_openai.py"), "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip()
        cmd = [
            str(FORGE),
            "generate",
            "--input",
            str(ingested),
            "--out",
            str(out),
            "--base-url",
            base_url,
            "--model",
            "fake",
            "--concurrency",
            str(args.concurrency),
        ]
        first = run([*cmd, "--overwrite"], WORK / "generate.log")
        server_cpu = sum(psutil.Process(server.pid).cpu_times()[:2])
        again = run(cmd, WORK / "rerun.log")
    finally:
        server.terminate()
        server.wait()
    counts = json.loads((out / "manifest.json").read_text())["stages"]["generate"]["counts"]
    ideal = args.n / args.concurrency * args.latency
    ratio = first["wall"] / ideal
    rows = [
        ("images", f"{args.n:,}"),
        ("concurrency", args.concurrency),
        ("server latency (s)", args.latency),
        ("ideal N/C x latency (s)", f"{ideal:.2f}"),
        ("wall (s)", f"{first['wall']:.2f}"),
        ("wall / ideal", f"{ratio:.3f}"),
        ("requests/s", f"{args.n / first['wall']:.1f}"),
        ("CPU ms per request", f"{first['cpu'] / args.n * 1000:.2f}"),
        ("peak RSS (MB)", f"{first['rss_mb']:.0f}"),
        ("server CPU s (separate process)", f"{server_cpu:.2f}"),
        ("re-run wall (s)", f"{again['wall']:.2f}"),
        ("re-run requests sent", counts["requests"]),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    print("-" * (width + 12))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    verdict = "PASS" if ratio <= TARGET and counts["requests"] == 0 else "FAIL"
    print(f"\ntarget: wall within {TARGET}x of ideal and zero requests on re-run -> {verdict}")


if __name__ == "__main__":
    main()
