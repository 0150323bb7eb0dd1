"""WebDataset ``.tar`` shards as img2dataset writes them: ``KEY.jpg`` beside ``KEY.txt``
and/or ``KEY.json`` (the usual form of LAION subsets). Read as a stream, one member at a
time, so a shard is never held in memory."""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator

import fsspec

from .base import Flag, Source, SourceItem
from .files import expand_files
from .folder import captions_from_json

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def _split_member(name: str) -> tuple[str, str]:
    """``dir/000123.jpg`` -> (``dir/000123``, ``jpg``); the key ends at the first dot of the
    base name, as in WebDataset."""
    folder, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(folder, stem), ext.lower()


class WebDatasetSource(Source):
    kind = "webdataset"
    description = "WebDataset .tar shards (KEY.jpg + KEY.txt/KEY.json), e.g. LAION subsets"
    flags = (Flag("data_dir", "a .tar file, a directory of shards or a glob", required=True),)

    def __init__(self, options):
        super().__init__(options)
        self.files = expand_files(options.data_dir, (".tar",), "WebDataset")

    def items(self) -> Iterator[SourceItem]:
        for file in self.files:
            shard = posixpath.basename(file)[: -len(".tar")]
            yield from self._shard_items(file, shard)

    def _shard_items(self, file: str, shard: str) -> Iterator[SourceItem]:
        current: str | None = None
        parts: dict[str, bytes] = {}
        with fsspec.open(file, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_member(member.name)
                if key != current:
                    if current is not None:
                        yield self._item(shard, current, parts)
                    current, parts = key, {}
                handle = tar.extractfile(member)
                parts[ext] = handle.read() if handle else b""
            if current is not None:
                yield self._item(shard, current, parts)

    def _item(self, shard: str, key: str, parts: dict[str, bytes]) -> SourceItem:
        item = SourceItem(key=f"{shard}/{key}", path=f"{shard}.tar/{key}")
        ext = next((e for e in IMAGE_EXTENSIONS if e in parts), None)
        if ext is None:
            item.error_kind, item.error = (
                "missing",
                (
                    f"{shard}.tar: sample '{key}' has no image member "
                    f"(members: {', '.join(sorted(parts)) or 'none'})"
                ),
            )
            return item
        item.data = parts[ext]
        item.path = f"{shard}.tar/{key}.{ext}"
        meta = {}
        if "json" in parts:
            try:
                meta = json.loads(parts["json"])
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                item.error_kind = "bad_record"
                item.error = f"{shard}.tar: {key}.json is not valid UTF-8 JSON ({exc})"
            if isinstance(meta, dict):
                item.url = meta.get("url") if isinstance(meta.get("url"), str) else None
                item.meta = {k: meta[k] for k in ("status", "similarity") if k in meta}
        if "txt" in parts:
            try:
                text = parts["txt"].decode("utf-8").strip()
                item.captions = [text] if text else []
            except UnicodeDecodeError as exc:
                item.error_kind = "caption_encoding"
                item.error = (
                    f"{shard}.tar: {key}.txt is not valid UTF-8 ({exc.reason} at byte {exc.start})"
                )
        elif meta:
            item.captions = captions_from_json(meta)
        return item
