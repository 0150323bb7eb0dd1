"""Images under a directory (recursive); the caption comes from a same-stem ``.txt`` or
``.json`` file beside the image, or there is none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fsspec

from .base import Flag, Source, SourceError, SourceItem
from .files import path_reader

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CAPTION_KEYS = ("captions", "caption", "text", "prompt")


def captions_from_json(obj: Any) -> list[str]:
    """Captions from a JSON sidecar: a string, a list, or an object with a caption key."""
    if isinstance(obj, str):
        return [obj.strip()] if obj.strip() else []
    if isinstance(obj, list):
        return [c.strip() for c in obj if isinstance(c, str) and c.strip()]
    if isinstance(obj, dict):
        for key in CAPTION_KEYS:
            if obj.get(key):
                return captions_from_json(obj[key])
    return []


class FolderSource(Source):
    kind = "folder"
    description = "image files under a directory; captions from same-stem .txt/.json files"
    flags = (Flag("data_dir", "the directory to search recursively", required=True),)

    def __init__(self, options):
        super().__init__(options)
        self.fs, self.root = fsspec.core.url_to_fs(options.data_dir)
        if not self.fs.isdir(self.root):
            raise SourceError(f"{options.data_dir}: not a directory")
        self._listing: list[str] | None = None
        self._all: set[str] = set()

    def _files(self) -> list[str]:
        if self._listing is None:
            everything = self.fs.find(self.root)
            self._all = set(everything)
            self._listing = sorted(p for p in everything if p.lower().endswith(IMAGE_SUFFIXES))
        return self._listing

    def count(self) -> int:
        return len(self._files())

    def _captions(self, image_path: str) -> tuple[list[str], str | None]:
        """The captions of an image and, for an unreadable caption file, the error."""
        stem = image_path.rsplit(".", 1)[0]
        txt, js = stem + ".txt", stem + ".json"
        if txt in self._all:
            raw = self.fs.cat_file(txt)
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                return [], f"{txt}: caption is not valid UTF-8 ({exc.reason} at byte {exc.start})"
            return ([text] if text else []), None
        if js in self._all:
            try:
                return captions_from_json(json.loads(self.fs.cat_file(js))), None
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                return [], f"{js}: caption file is not valid UTF-8 JSON ({exc})"
        return [], None

    def items(self) -> Iterator[SourceItem]:
        prefix = self.root.rstrip("/") + "/"
        for path in self._files():
            rel = path[len(prefix) :] if path.startswith(prefix) else path
            captions, error = self._captions(path)
            yield SourceItem(
                key=rel,
                read=path_reader(self.fs.unstrip_protocol(path)),
                path=rel,
                captions=captions,
                error_kind="caption_encoding" if error else None,
                error=error,
            )
