"""A small filtered run written by the tests: kept rows in ``data/``, rejected rows in
``rejected/``, and a ``manifest.json`` whose ``stages.filter`` holds config and counts,
as ``forge filter`` writes them. Images are real PNG/JPEG files made with Pillow."""

from __future__ import annotations

import io
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from rationale_forge.schema import CHECKS, FILTERED_SCHEMA, STATUS_OK, empty_row
from rationale_forge.store import RunDir, ShardWriter

EVIL_CAPTION = "<script>alert(1)</script> a cat on a mat"
#: Checks the fixture leaves off: their score columns stay null (no histogram expected).
OFF_CHECKS = ("text_in_image", "positions", "duplicate_rationale")

#: (check, reason text, failing score) of the rejections the fixture hands out.
REJECTIONS = [
    ("repetition", "repetition: 41% of 3-grams repeated (max 30%)", 0.41),
    ("clip_caption", "clip_caption: 0.14 below 0.20", 0.14),
    ("length", "length: 12 words (min 40)", 12.0),
    ("boilerplate", "boilerplate: starts with 'The image shows'", 1.0),
    ("duplicate_image", "duplicate_image: phash distance 2 to kept-0003", 2.0),
]
THRESHOLDS = {"repetition": {"max": 0.3}, "clip_caption": 0.2, "length": {"min": 40}}

WORDS = (
    "a red kite drifts above a quiet harbour while gulls circle the masts of small boats "
    "soft morning light warms the stone quay and long shadows fall toward the water"
).split()


@dataclass
class FilteredFixture:
    root: Path
    kept_keys: list[str] = field(default_factory=list)
    rejected_keys: list[str] = field(default_factory=list)
    rejected_by_check: Counter = field(default_factory=Counter)
    score_columns: set[str] = field(default_factory=set)  # columns with a non-null value

    @property
    def rows(self) -> int:
        return len(self.kept_keys) + len(self.rejected_keys)


def picture(i: int, fmt: str) -> bytes:
    """A small, recognisable picture: a two-colour gradient with a shape, ``fmt`` encoded."""
    w, h = (96 + 16 * (i % 4), 72 + 8 * (i % 3))
    img = Image.new("RGB", (w, h))
    a = ((37 * i) % 255, (91 * i + 60) % 255, (53 * i + 120) % 255)
    b = (255 - a[0], 255 - a[1], 255 - a[2])
    px = img.load()
    for y in range(h):
        t = y / (h - 1)
        row = tuple(int(a[c] * (1 - t) + b[c] * t) for c in range(3))
        for x in range(w):
            px[x, y] = row
    draw = ImageDraw.Draw(img)
    box = (w // 4, h // 4, w // 4 + w // 3, h // 4 + h // 3)
    if i % 2:
        draw.ellipse(box, fill=(250, 250, 250), outline=(20, 20, 20), width=2)
    else:
        draw.rectangle(box, fill=(20, 20, 20), outline=(250, 250, 250), width=2)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _rationale(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words)).capitalize() + "."


def _row(key: str, i: int, rng: random.Random, reasons: list[tuple[str, str, float]]) -> dict:
    fmt = "PNG" if i % 3 == 0 else "JPEG"
    data = picture(i, fmt)
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
    scores = {f"score_{c}": round(rng.uniform(0.0, 1.0), 4) for c in CHECKS}
    scores["score_length"] = float(rng.randint(45, 220))
    scores["score_counts"] = float(rng.randint(0, 4))
    scores["score_repetition"] = round(rng.uniform(0.0, 0.28), 4)
    scores["score_clip_caption"] = round(rng.uniform(0.21, 0.36), 4)
    for check in OFF_CHECKS:
        scores[f"score_{check}"] = None
    for check, _, value in reasons:
        scores[f"score_{check}"] = value
    captions = [f"Caption {j} of picture {i}: a {WORDS[i % len(WORDS)]} scene." for j in range(2)]
    if i == 1:
        captions.append(EVIL_CAPTION)
    return empty_row(
        FILTERED_SCHEMA,
        image_id=f"{i:064x}",
        source="folder",
        key=key,
        image={"bytes": data, "path": f"{key}.{fmt.lower()}"},
        width=width,
        height=height,
        format=fmt,
        mode="RGB",
        captions=captions,
        status=STATUS_OK,
        rationale=_rationale(rng, 12 if any(c == "length" for c, *_ in reasons) else 90),
        layout="Kite upper left, boats along the bottom third.",
        style="Soft watercolour, pastel palette, morning light.",
        composition="Wide shot, low horizon, kite as focal point.",
        short_caption=f"Picture {i}",
        tags=["kite", "harbour", "boats"],
        paraphrases=[f"A harbour scene number {i}."],
        backend="fake",
        model="tiny-vlm",
        reject_reasons=[text for _, text, _ in reasons],
        duplicate_of="kept-0003" if any(c == "duplicate_image" for c, *_ in reasons) else None,
        phash=f"{i:016x}",
        **scores,
    )


def write_filtered_dir(
    root: Path, n_kept: int = 20, n_rejected: int = 10, manifest: bool = True, seed: int = 0
) -> FilteredFixture:
    """Write a filtered run at ``root``; returns what a correct report must find there."""
    rng = random.Random(seed)
    run = RunDir(str(root))
    fx = FilteredFixture(root=root)
    with ShardWriter(run, FILTERED_SCHEMA, subdir="data", rows_per_shard=8) as writer:
        for i in range(n_kept):
            key = f"kept-{i:04d}"
            writer.write(_row(key, i, rng, []))
            fx.kept_keys.append(key)
    with ShardWriter(run, FILTERED_SCHEMA, subdir="rejected", rows_per_shard=4) as writer:
        for j in range(n_rejected):
            reasons = [REJECTIONS[j % len(REJECTIONS)]]
            if j % 4 == 3:  # some rows fail two checks
                reasons.append(REJECTIONS[(j + 1) % len(REJECTIONS)])
            key = f"rej-{j:04d}"
            writer.write(_row(key, 100 + j, rng, reasons))
            fx.rejected_keys.append(key)
            fx.rejected_by_check.update({c for c, *_ in reasons})
    fx.score_columns = {f"score_{c}" for c in CHECKS if c not in OFF_CHECKS}
    if manifest:
        run.update_stage(
            "filter",
            {
                "config": {"preset": "default", "thresholds": THRESHOLDS},
                "counts": {
                    "rows": fx.rows,
                    "kept": n_kept,
                    "rejected": n_rejected,
                    "rejected_by_check": dict(fx.rejected_by_check),
                },
            },
        )
    return fx
