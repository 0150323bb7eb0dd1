"""The Arrow schema of every table the stages write, in one place.

Schemas are derived from Hugging Face ``datasets`` features, so every Parquet shard carries
the ``huggingface`` metadata that makes ``datasets.load_dataset("parquet", ...)`` decode the
``image`` column as PIL images.
"""

from __future__ import annotations

import pyarrow as pa
from datasets import Features, Image, List, Value

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


def empty_row(**values: object) -> dict:
    """A row of the ingest schema with every column present (missing ones null)."""
    row: dict = dict.fromkeys(INGEST_SCHEMA.names)
    row["captions"] = []
    row["objects"] = []
    row.update(values)
    return row
