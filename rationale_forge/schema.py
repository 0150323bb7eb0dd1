"""The Arrow schema of every table the stages write, in one place.

Schemas are declared as Hugging Face ``datasets``-style features (:mod:`.features`), so every
Parquet shard carries the ``huggingface`` metadata that makes
``datasets.load_dataset("parquet", ...)`` decode the ``image`` column as PIL images.
"""

from __future__ import annotations

import pyarrow as pa

from .features import Features, Image, List, Value

STATUS_OK = "ok"
STATUS_ERROR = "error"

OBJECT_FEATURE = {
    "category": Value("string"),
    # COCO convention: [x, y, width, height] in pixels of the stored image.
    "bbox": List(Value("float32"), length=4),
    "area": Value("float32"),
}

#: Columns of an ingested row (the output of ``forge ingest``, the input of every later stage).
INGEST_FEATURES = Features(
    {
        "image_id": Value("string"),  # sha256 of the original bytes; null when unreadable
        "source": Value("string"),  # source kind, e.g. "coco"
        "key": Value("string"),  # the row's identity inside its source (path, COCO id, ...)
        "image": Image(),  # {"bytes", "path"}: the original bytes, never re-encoded
        "width": Value("int32"),  # as displayed, i.e. after EXIF orientation
        "height": Value("int32"),
        "format": Value("string"),  # PIL format name: JPEG, PNG, WEBP, ...
        "mode": Value("string"),  # PIL mode of the original: RGB, CMYK, P, I;16, ...
        "captions": List(Value("string")),
        "objects": List(OBJECT_FEATURE),
        "url": Value("string"),
        "meta": Value("string"),  # JSON of source-specific extras
        "status": Value("string"),  # "ok" or "error"
        "error_kind": Value("string"),  # a short cause code, e.g. "truncated"
        "error": Value("string"),  # human-readable: names the file and the cause
    }
)

INGEST_SCHEMA: pa.Schema = INGEST_FEATURES.arrow_schema


#: Columns that ``forge generate`` adds: the rationale object (one column per field, named
#: as in :mod:`rationale_forge.rationale`) and how it was made.
GENERATION_FEATURES = Features(
    {
        "rationale": Value("string"),
        "layout": Value("string"),
        "style": Value("string"),
        "composition": Value("string"),
        "short_caption": Value("string"),
        "paraphrases": List(Value("string")),
        "tags": List(Value("string")),
        "object_prompts": List(Value("string")),
        "varied_captions": List(Value("string")),
        "step_by_step": Value("string"),
        "object_centric": List(Value("string")),
        "region_descriptions": List(Value("string")),
        "backend": Value("string"),
        "model": Value("string"),
        "prompt_hash": Value("string"),  # content hash of the prompt template
        "request_key": Value("string"),  # content key of the request (the cache key)
        "finish_reason": Value("string"),
        "repaired": Value("bool"),  # the answer needed JSON repair to parse
        "raw_answer": Value("string"),  # kept only when the answer could not be used
        "prompt_tokens": Value("int32"),
        "completion_tokens": Value("int32"),
        "attempts": Value("int32"),
        "latency_s": Value("float32"),
    }
)

GENERATE_FEATURES = Features({**INGEST_FEATURES, **GENERATION_FEATURES})
GENERATE_SCHEMA: pa.Schema = GENERATE_FEATURES.arrow_schema

#: Every check of ``forge filter``, by name. Each gets a ``score_<name>`` column holding
#: the number it measured (null when the check was off or did not apply).
TEXT_CHECKS = (
    "length",
    "facets",
    "boilerplate",
    "repetition",
    "language",
    "caption_coverage",
    "counts",
    "objects_mentioned",
    "hallucination",
    "positions",
    "variants",
)
IMAGE_CHECKS = ("image_size", "aspect_ratio", "text_in_image")
CLIP_SCORES = ("clip_caption", "clip_rationale_mean", "clip_rationale_min")
DEDUP_CHECKS = ("duplicate_image", "duplicate_rationale")
CHECKS = TEXT_CHECKS + IMAGE_CHECKS + CLIP_SCORES + DEDUP_CHECKS

#: Columns that ``forge filter`` adds: one score per check, ``reject_reasons`` (every
#: failed check with its score, e.g. "repetition: 41% of 3-grams repeated (max 30%)";
#: empty for kept rows), ``duplicate_of`` (the key of the kept twin of a near-duplicate)
#: and ``phash`` (the image's perceptual hash, hex).
FILTER_FEATURES = Features(
    {
        **{f"score_{name}": Value("float32") for name in CHECKS},
        "reject_reasons": List(Value("string")),
        "duplicate_of": Value("string"),
        "phash": Value("string"),
    }
)

FILTERED_FEATURES = Features({**GENERATE_FEATURES, **FILTER_FEATURES})
FILTERED_SCHEMA: pa.Schema = FILTERED_FEATURES.arrow_schema

_LIST_COLUMNS = {name for name, f in FILTERED_FEATURES.items() if isinstance(f, List)}


def empty_row(schema: pa.Schema = INGEST_SCHEMA, **values: object) -> dict:
    """A row of ``schema`` with every column present: lists empty, the rest null."""
    row: dict = {name: [] if name in _LIST_COLUMNS else None for name in schema.names}
    row.update(values)
    return row
