"""Generated runs written by the tests: the sample corpus with hand-made answers, good
ones that pass every default check and bad ones that fail known checks."""

from __future__ import annotations

import random
from pathlib import Path

from rationale_forge.ingest import ingest
from rationale_forge.prompting import coarse_position
from rationale_forge.schema import GENERATE_SCHEMA, empty_row
from rationale_forge.sources import SourceOptions
from rationale_forge.store import RunDir, ShardWriter

FILLER = [
    "The edges stay crisp and the fills are flat, with no gradients or texture.",
    "Generous empty space around every shape keeps the picture calm and readable.",
    "Lighting is even and shadowless, like a printed diagram or a children's book.",
    "Every shape keeps its true proportions, nothing is stretched or rotated.",
    "The palette is limited to saturated primary and secondary hues on a pale ground.",
    "I keep the outlines smooth so that the forms read instantly at a small size.",
    "The viewpoint is straight on, at eye level, with no perspective distortion.",
    "Spacing between the shapes stays generous so none of them touch or overlap.",
    "The overall mood is simple, tidy and deliberate, close to an icon set.",
    "Nothing else appears in the frame: no text, no borders and no decoration.",
    "Each form is centred in its own column so the eye moves from left to right.",
    "The background is uniform, a single light tone without any visible noise.",
    "Colours are fully opaque and each shape is filled with one solid colour.",
    "I check that the sizes stay comparable, none of the shapes dominates.",
    "The drawing should feel geometric and precise, almost like vector art.",
]


def good_answer(row: dict, rng: random.Random) -> dict:
    objects = row["objects"]
    parts = []
    for obj in objects:
        where = coarse_position(obj["bbox"], row["width"], row["height"]).split()[-1]
        place = "in the center" if where == "center" else f"on the {where}"
        parts.append(f"a {obj['category']} {place}")
    names = sorted({o["category"] for o in objects})
    caption = row["captions"][0].rstrip(".")
    plan = (
        f"I draw a simple drawing of shapes on a plain background. {caption}. "
        f"I place {', '.join(parts)}. " + " ".join(rng.sample(FILLER, 6))
    )
    return {
        "rationale": plan,
        "layout": f"Layout: {', '.join(parts)}, spread across the width.",
        "style": "Flat vector shapes with solid colours and crisp edges.",
        "composition": "Straight-on view, balanced spacing, plain background.",
        "short_caption": caption,
        "paraphrases": [
            f"{caption}, drawn flat",
            f"A plain picture: {caption.lower()}",
            f"Shapes only: {caption.lower()}",
        ],
        "tags": [*names, "flat", "geometric", "simple"],
        "object_prompts": [f"a {n} drawn as a flat shape" for n in names],
        "varied_captions": [
            f"{caption} on a plain ground",
            f"A drawing of {', '.join(names)}",
            f"Minimal art: {caption.lower()}",
        ],
        "step_by_step": "1. Fill the plain background. 2. Draw each shape in its place. "
        "3. Check the colours and the spacing.",
        "object_centric": [f"The {n} is a flat, solid shape." for n in names],
        "region_descriptions": ["left: as drawn", "center: as drawn", "right: as drawn"],
    }


def write_generated_run(root: Path, bad: dict[int, str] | None = None, limit: int = 24) -> Path:
    """A generated run of the sample with good answers, except rows whose index is in
    ``bad``: "refusal", "repetition", "error" (a failed request), "dup_rationale" (copies
    row 0's answer)."""
    ingested = root / "ingested"
    ingest(SourceOptions(kind="sample", limit=limit), str(ingested), progress=False)
    out = root / "generated"
    rng = random.Random(0)
    answers = []
    with ShardWriter(RunDir(str(out)), GENERATE_SCHEMA, rows_per_shard=10) as writer:
        for i, row in enumerate(RunDir(str(ingested)).iter_rows()):
            answer = good_answer(row, rng)
            kind = (bad or {}).get(i)
            status, error_kind = "ok", None
            if kind == "refusal":
                answer["rationale"] = "I'm sorry, but I can't help with that. " * 12
            elif kind == "repetition":
                answer["rationale"] = "a red circle " * 60
            elif kind == "dup_rationale":
                answer = {**answers[0]}
            elif kind == "error":
                answer = {k: ([] if isinstance(v, list) else None) for k, v in answer.items()}
                status, error_kind = "error", "request_failed"
            answers.append(answer)
            writer.write(
                empty_row(
                    GENERATE_SCHEMA,
                    **{
                        **row,
                        **answer,
                        "status": status,
                        "error_kind": error_kind,
                        "error": "boom" if error_kind else None,
                        "backend": "test",
                        "model": "hand",
                    },
                )
            )
    RunDir(str(out)).update_stage("generate", {"status": "done"})
    return out


def write_many(path: Path, n: int) -> Path:
    """A generated run of ``n`` distinct small rows (for scale tests)."""
    import io

    from PIL import Image

    rng = random.Random(n)
    with ShardWriter(RunDir(str(path)), GENERATE_SCHEMA, rows_per_shard=500) as writer:
        for i in range(n):
            buf = io.BytesIO()
            Image.new("RGB", (40, 30), (i % 256, (i // 256) % 256, 90)).save(buf, "PNG")
            rationale = " ".join(rng.sample(FILLER, 7)) + f" Item {i}."
            writer.write(
                empty_row(
                    GENERATE_SCHEMA,
                    key=str(i),
                    source="test",
                    status="ok",
                    image={"bytes": buf.getvalue(), "path": None},
                    width=40,
                    height=30,
                    captions=[f"picture {i}"],
                    rationale=rationale,
                    layout="left to right",
                    style="flat",
                    composition="even",
                    short_caption=f"picture {i}",
                    paraphrases=[f"p {i}"],
                    tags=["flat"],
                    varied_captions=[f"v {i}"],
                )
            )
    RunDir(str(path)).update_stage("generate", {"status": "done"})
    return path
