"""Draw the built-in sample corpus: coloured shapes in known places, so every caption, count,
position and box is exactly true. Written in the official COCO layout (split ``sample``)::

    data/annotations/captions_sample.json
    data/annotations/instances_sample.json
    data/sample/000000000001.jpg ...

Deterministic: ``python -m rationale_forge.sample.make`` rewrites the same files.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 384, 288
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "purple": (140, 60, 180),
    "orange": (245, 140, 20),
}
SHAPES = ("circle", "square", "triangle")
COLUMNS = ("left", "center", "right")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
N_IMAGES = 24


def _draw(
    draw: ImageDraw.ImageDraw,
    shape: str,
    colour: tuple[int, int, int],
    cx: float,
    cy: float,
    r: float,
) -> tuple[list[float], float]:
    """Draw one shape centred at (cx, cy) with half-size r; returns its COCO bbox and area."""
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        return [cx - r, cy - r, 2 * r, 2 * r], math.pi * r * r
    if shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
        return [cx - r, cy - r, 2 * r, 2 * r], 4 * r * r
    draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return [cx - r, cy - r, 2 * r, 2 * r], 2 * r * r


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _plural(word: str, n: int) -> str:
    return word if n == 1 else word + "s"


def _captions(objs: list[dict]) -> list[str]:
    named = [_a(f"{o['colour']} {o['shape']}") for o in objs]
    first = _join(
        [
            f"{name} on the {o['column']}" if o["column"] != "center" else f"{name} in the center"
            for name, o in zip(named, objs, strict=True)
        ]
    )
    counts: dict[str, int] = {}
    for o in objs:
        counts[o["shape"]] = counts.get(o["shape"], 0) + 1
    tally = " and ".join(f"{NUMBER_WORDS[n]} {_plural(s, n)}" for s, n in sorted(counts.items()))
    n = len(objs)
    captions = [
        first[0].upper() + first[1:] + ".",
        f"{NUMBER_WORDS[n].capitalize()} {_plural('shape', n)} on a plain background: {tally}.",
        f"A simple drawing of {_join(named)}.",
    ]
    if n >= 2:
        a, b = objs[0], objs[-1]
        right_of = (
            f"{_a(b['colour'] + ' ' + b['shape'])} to the right of "
            f"{_a(a['colour'] + ' ' + a['shape'])}."
        )
        captions.append(right_of[0].upper() + right_of[1:])
    return captions


def build(out: Path, n_images: int = N_IMAGES, seed: int = 0) -> None:
    rng = random.Random(seed)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "sample").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]
    cat_id = {c["name"]: c["id"] for c in categories}
    images, captions, instances = [], [], []
    for image_id in range(1, n_images + 1):
        background = rng.choice([(255, 255, 255), (235, 235, 235), (250, 245, 230)])
        img = Image.new("RGB", (WIDTH, HEIGHT), background)
        draw = ImageDraw.Draw(img)
        n = 1 + (image_id - 1) % 3
        columns = sorted(rng.sample(range(3), n))
        objs = []
        for col in columns:
            shape = rng.choice(SHAPES)
            colour = rng.choice(list(COLOURS))
            r = rng.uniform(28, 48)
            cx = (col + 0.5) * WIDTH / 3
            cy = rng.uniform(r + 10, HEIGHT - r - 10)
            bbox, area = _draw(draw, shape, COLOURS[colour], cx, cy, r)
            objs.append({"shape": shape, "colour": colour, "column": COLUMNS[col]})
            instances.append(
                {
                    "id": len(instances) + 1,
                    "image_id": image_id,
                    "category_id": cat_id[shape],
                    "iscrowd": 0,
                    "bbox": [round(v, 2) for v in bbox],
                    "area": round(area, 2),
                    "segmentation": [],
                }
            )
        file_name = f"{image_id:012d}.jpg"
        img.save(out / "sample" / file_name, quality=90)
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": WIDTH,
                "height": HEIGHT,
                "license": 1,
                "coco_url": "",
                "flickr_url": "",
                "date_captured": "2026-01-01 00:00:00",
            }
        )
        for text in _captions(objs):
            captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": text})
    info = {
        "description": "rationale-forge built-in sample: procedurally drawn shapes",
        "version": "1.0",
        "year": 2026,
        "contributor": "rationale-forge",
        "date_created": "2026-01-01",
    }
    licenses = [
        {"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}
    ]
    common = {"info": info, "licenses": licenses, "images": images}
    (out / "annotations" / "captions_sample.json").write_text(
        json.dumps({**common, "annotations": captions}, indent=1)
    )
    (out / "annotations" / "instances_sample.json").write_text(
        json.dumps({**common, "annotations": instances, "categories": categories}, indent=1)
    )


if __name__ == "__main__":
    build(Path(__file__).parent / "data")
