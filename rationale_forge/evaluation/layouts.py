"""Writing samples in each benchmark's own folder layout, so its official scorer runs unchanged.

GenEval (``evaluation/evaluate_images.py``) walks the sub-folders of OUT whose names are
digits, ``json.load``s each one's ``metadata.jsonl`` and scores every ``samples/<digits>.png``::

    OUT/00000/metadata.jsonl      the prompt's line of evaluation_metadata.jsonl
    OUT/00000/samples/0000.png    sample k as {k:04d}
    OUT/00000/grid.png            all samples in a row (optional for the scorer)
    OUT/00000/rationales.jsonl    one line per sample (with --think)

DPG-Bench (``dpg_bench/compute_dpg_bench.py``) lists every file in ``--image-root-path``,
keys it by the name before the first dot and cuts up to four ``--resolution`` squares out of
it: (0, 0), (r, 0), (0, r), (r, r), i.e. a 2x2 grid filled row by row; ``--pic-num`` says
how many. Nothing else may sit in that folder::

    OUT/images/<item_id>.png      the grid the scorer reads
    OUT/samples/<item_id>/0000.png  the single samples (for the judge and the report)
    OUT/rationales/<item_id>.jsonl

T2I-CompBench's scorers read ``<outpath>/samples/``, take the prompt from the file name up
to the first ``_`` and sort by the number after the last ``_`` (its generation script counts
images across prompts, prompt after prompt; the 3-in-1 scorer relies on that order)::

    OUT/<category>/samples/<prompt>_<counter:06d>.png
    OUT/<category>/rationales.jsonl

``prompts`` uses GenEval's layout (``forge prompts`` writes GenEval-style metadata).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from .benchmarks import BenchPrompt

#: How many samples the DPG-Bench scorer can cut out of one grid.
DPG_MAX_SAMPLES = 4


class SampleLike(Protocol):
    """What a sampler returns per image (``rationale_forge.training.sampling.Sample``)."""

    prompt: str
    rationale: str
    image: Image.Image


class LayoutError(ValueError):
    """Samples that the benchmark's layout cannot hold."""


def save_png(image: Image.Image, path: Path) -> None:
    """Write a PNG atomically (temporary name, then rename): a crash never leaves a
    half-written image where a scorer would read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.convert("RGB").save(tmp, format="PNG")
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def grid_image(images: Sequence[Image.Image], cols: int, side: int | None = None) -> Image.Image:
    """Images pasted row by row into a ``cols``-wide grid of equal cells (white where a
    row is short). ``side`` resizes every cell to a square of that size."""
    if not images:
        raise LayoutError("no images to put in a grid")
    cell_w, cell_h = (side, side) if side else images[0].size
    rows = math.ceil(len(images) / cols)
    grid = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    for k, img in enumerate(images):
        if img.size != (cell_w, cell_h):
            img = img.resize((cell_w, cell_h), Image.Resampling.BICUBIC)
        grid.paste(img.convert("RGB"), ((k % cols) * cell_w, (k // cols) * cell_h))
    return grid


def dpg_grid(images: Sequence[Image.Image]) -> tuple[Image.Image, int]:
    """The DPG-Bench grid of up to four square samples and its cell side (``--resolution``)."""
    if not 1 <= len(images) <= DPG_MAX_SAMPLES:
        raise LayoutError(
            f"DPG-Bench grids hold 1 to {DPG_MAX_SAMPLES} samples (its scorer crops at most "
            f"4), got {len(images)}"
        )
    sizes = {img.size for img in images}
    if len(sizes) != 1:
        raise LayoutError(f"DPG-Bench samples must share one size, got {sorted(sizes)}")
    width, height = sizes.pop()
    if width != height:
        raise LayoutError(f"DPG-Bench crops squares; samples are {width}x{height}")
    return grid_image(images, cols=min(len(images), 2)), width


def t2i_counter(position: int, n: int, k: int) -> int:
    """The number in a T2I-CompBench file name: images counted prompt after prompt."""
    return position * n + k


def t2i_name(prompt: str, counter: int) -> str:
    return f"{prompt}_{counter:06d}.png"


def write_prompt_samples(
    bench: str, out: Path, item: BenchPrompt, position: int, samples: Sequence[SampleLike]
) -> list[str]:
    """Write one prompt's samples where ``bench``'s scorer reads them; returns each
    sample's image path relative to ``out``. ``position`` is the prompt's place within its
    category (T2I-CompBench numbering)."""
    images = [s.image for s in samples]
    if bench in ("geneval", "prompts"):
        folder = out / item.key
        metadata = item.metadata if item.metadata is not None else {"prompt": item.prompt}
        paths = []
        for k, img in enumerate(images):
            rel = f"{item.key}/samples/{k:04d}.png"
            save_png(img, out / rel)
            paths.append(rel)
        save_png(grid_image(images, cols=min(len(images), 4)), folder / "grid.png")
        # GenEval's scorer reads this with json.load: one object, nothing else.
        write_text(folder / "metadata.jsonl", json.dumps(metadata, ensure_ascii=False) + "\n")
        return paths
    if bench == "dpg":
        grid, _ = dpg_grid(images)
        paths = []
        for k, img in enumerate(images):
            rel = f"samples/{item.key}/{k:04d}.png"
            save_png(img, out / rel)
            paths.append(rel)
        save_png(grid, out / "images" / f"{item.key}.png")
        return paths
    if bench == "t2i-compbench":
        paths = []
        for k, img in enumerate(images):
            name = t2i_name(item.prompt, t2i_counter(position, len(images), k))
            rel = f"{item.category}/samples/{name}"
            save_png(img, out / rel)
            paths.append(rel)
        return paths
    raise LayoutError(f"unknown benchmark {bench!r}")


def rationale_files(bench: str, records: Iterable[dict[str, Any]]) -> dict[str, list[dict]]:
    """The rationale JSONL files of a run (path relative to OUT -> lines), grouped where
    each layout keeps them; records without a rationale (``--no-think``) are left out."""
    files: dict[str, list[dict]] = {}
    for rec in sorted(records, key=lambda r: (r["index"], r["k"])):
        if rec.get("rationale") is None:
            continue
        if bench in ("geneval", "prompts"):
            rel = f"{rec['key']}/rationales.jsonl"
        elif bench == "dpg":
            rel = f"rationales/{rec['key']}.jsonl"
        else:
            rel = f"{rec['categories'][0]}/rationales.jsonl"
        line = {k: rec[k] for k in ("key", "k", "prompt", "image", "rationale")}
        files.setdefault(rel, []).append(line)
    return files


def write_rationales(out: Path, bench: str, records: Iterable[dict[str, Any]]) -> list[Path]:
    """Write the rationale JSONL files beside the images; returns their paths."""
    written = []
    for rel, lines in rationale_files(bench, records).items():
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        write_text(out / rel, text)
        written.append(out / rel)
    return written
