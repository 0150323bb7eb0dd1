"""Images under a directory (recursive); the caption comes from a same-stem ``.txt`` or
``.json`` file beside the image, or there is none.

The tree is walked one directory at a time (sorted, so the order is deterministic) and
caption files are read in the worker threads: memory depends on the largest directory,
not on the size of the corpus.
"""

from __future__ import annotations

import functools
import json
import posixpath
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
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )

    def _walk(self) -> Iterator[tuple[str, list[str]]]:
        """(directory, sorted file names) for every directory, depth first, sorted."""
        for dirpath, dirs, files in self.fs.walk(self.root, topdown=True):
            dirs.sort()  # fsspec honours in-place changes with topdown=True
            yield dirpath, sorted(files)

    def count(self) -> int:
        return sum(
            sum(f.lower().endswith(IMAGE_SUFFIXES) for f in files) for _, files in self._walk()
        )

    def _path(self, path: str) -> str:
        return path if self.local else self.fs.unstrip_protocol(path)

    def _read_captions(self, txt: str | None, js: str | None, item: SourceItem) -> None:
        """Fill ``item.captions`` from its caption file (runs in a worker thread)."""
        if txt:
            try:
                text = self.fs.cat_file(txt).decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                item.error_kind = "caption_encoding"
                item.error = f"{txt}: caption is not valid UTF-8 ({exc.reason} at byte {exc.start})"
                return
            item.captions = [text] if text else []
        elif js:
            try:
                item.captions = captions_from_json(json.loads(self.fs.cat_file(js)))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                item.error_kind = "caption_encoding"
                item.error = f"{js}: caption file is not valid UTF-8 JSON ({exc})"

    def items(self) -> Iterator[SourceItem]:
        prefix = self.root.rstrip("/") + "/"
        for dirpath, files in self._walk():
            names = set(files)
            for name in files:
                if not name.lower().endswith(IMAGE_SUFFIXES):
                    continue
                path = posixpath.join(dirpath, name)
                stem = name.rsplit(".", 1)[0]
                txt = posixpath.join(dirpath, stem + ".txt") if stem + ".txt" in names else None
                js = posixpath.join(dirpath, stem + ".json") if stem + ".json" in names else None
                rel = path[len(prefix) :] if path.startswith(prefix) else path
                yield SourceItem(
                    key=rel,
                    read=path_reader(self._path(path)),
                    path=rel,
                    resolve=functools.partial(self._read_captions, txt, js) if txt or js else None,
                )
