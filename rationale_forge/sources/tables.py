"""Tables of images: Parquet or JSON Lines files whose rows hold image bytes, image paths
or image URLs (the output of img2dataset, exports of other tools)."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from typing import Any

import fsspec
import pyarrow.parquet as pq

from .base import Flag, Source, SourceError, SourceItem
from .files import expand_files, is_url, reader_for

IMAGE_COLUMNS = (
    "image",
    "jpg",
    "png",
    "webp",
    "jpeg",
    "image_bytes",
    "bytes",
    "img",
    "image_path",
    "path",
    "file_name",
    "filepath",
    "image_url",
    "url",
)
CAPTION_COLUMNS = ("captions", "caption", "text", "prompt", "txt", "alt")
KEY_COLUMNS = ("key", "id", "image_id")
BAD_RECORD = "__bad_record__"  # marks a record that could not be parsed; carries the reason


def _pick(
    columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, file: str
) -> str | None:
    if wanted:
        if wanted not in columns:
            raise SourceError(f"{file}: no column '{wanted}' (columns: {', '.join(columns)})")
        return wanted
    return next((c for c in candidates if c in columns), None)


def _captions(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    return [str(v).strip() for v in value if v is not None and str(v).strip()]


class TableSource(Source):
    """Shared logic of the Parquet and JSON Lines readers."""

    suffixes: tuple[str, ...] = ()
    flags = (
        Flag("data_dir", "a file, a directory or a glob of table files", required=True),
        Flag(
            "image_column",
            "column with image bytes, a {bytes, path} struct, a path or a URL "
            "(default: first of " + ", ".join(IMAGE_COLUMNS[:6]) + ", ...)",
        ),
        Flag(
            "caption_column",
            "column with the caption or a list of captions "
            "(default: first of " + ", ".join(CAPTION_COLUMNS) + ")",
        ),
    )

    def __init__(self, options):
        super().__init__(options)
        self.files = expand_files(options.data_dir, self.suffixes, self.kind)

    def _rows(self, file: str) -> Iterator[tuple[list[str], dict[str, Any]]]:
        raise NotImplementedError

    def items(self) -> Iterator[SourceItem]:
        for file in self.files:
            base = posixpath.dirname(file)
            stem = posixpath.basename(file).split(".")[0]
            img_col = None
            for index, (columns, row) in enumerate(self._rows(file)):
                if BAD_RECORD in row:
                    yield SourceItem(
                        key=f"{stem}/{index}", error_kind="bad_record", error=row[BAD_RECORD]
                    )
                    continue
                if img_col is None:
                    img_col = _pick(
                        columns, self.options.image_column, IMAGE_COLUMNS, "image", file
                    )
                    cap_col = _pick(
                        columns, self.options.caption_column, CAPTION_COLUMNS, "caption", file
                    )
                    key_col = next((c for c in KEY_COLUMNS if c in columns), None)
                    if img_col is None:
                        raise SourceError(
                            f"{file}: no image column found among {', '.join(columns)}; "
                            f"pass --image-column"
                        )
                yield self._item(row, img_col, cap_col, key_col, f"{stem}/{index}", base)

    def _item(
        self,
        row: dict[str, Any],
        img_col: str,
        cap_col: str | None,
        key_col: str | None,
        fallback_key: str,
        base: str,
    ) -> SourceItem:
        value = row.get(img_col)
        key = str(row[key_col]) if key_col and row.get(key_col) is not None else fallback_key
        item = SourceItem(key=key, captions=_captions(row.get(cap_col)) if cap_col else [])
        url = row.get("url")
        item.url = url if isinstance(url, str) else None
        if isinstance(value, dict):  # a datasets Image struct
            item.data, location = value.get("bytes"), value.get("path")
        elif isinstance(value, (bytes, bytearray)):
            item.data, location = bytes(value), None
        else:
            location = value if isinstance(value, str) and value else None
        if item.data is None and location:
            if not is_url(location) and "://" not in location and not posixpath.isabs(location):
                location = posixpath.join(base, location)
            item.read = reader_for(location)
            item.url = location if is_url(location) else item.url
        elif item.data is None and item.url:
            item.read = reader_for(item.url)
        item.path = location if isinstance(location, str) else None
        extras = {
            k: v
            for k, v in row.items()
            if k in ("status", "error_message", "similarity") and v is not None
        }
        item.meta = extras
        return item


class ParquetSource(TableSource):
    kind = "parquet"
    description = "Parquet tables of image bytes, paths or URLs (e.g. img2dataset output)"
    suffixes = (".parquet",)

    def count(self) -> int:
        total = 0
        for file in self.files:
            with fsspec.open(file, "rb") as f:
                total += pq.ParquetFile(f).metadata.num_rows
        return total

    def _rows(self, file):
        with fsspec.open(file, "rb") as f:
            pf = pq.ParquetFile(f)
            columns = pf.schema_arrow.names
            for batch in pf.iter_batches(batch_size=256):
                for row in batch.to_pylist():
                    yield columns, row


class JsonlSource(TableSource):
    kind = "jsonl"
    description = "JSON Lines files of image paths or URLs with captions"
    suffixes = (".jsonl", ".jsonl.gz", ".ndjson")

    def _rows(self, file):
        with fsspec.open(file, "rt", encoding="utf-8", compression="infer") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    row = {BAD_RECORD: f"{file}:{lineno}: not valid JSON ({exc})"}
                if not isinstance(row, dict):
                    row = {BAD_RECORD: f"{file}:{lineno}: expected a JSON object per line"}
                yield list(row), row
