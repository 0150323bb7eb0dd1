"""COCO in its official layout: ``annotations/captions_{split}.json`` (+ optional
``instances_{split}.json``) and images under ``{split}/``.

Without ``--data-dir`` the annotation archive is downloaded once into the cache directory
and each image is fetched lazily by its ``coco_url``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import httpx

from ..paths import cache_dir
from .base import Flag, Source, SourceError, SourceItem
from .files import USER_AGENT, path_reader, url_reader

DEFAULT_BASE_URL = "http://images.cocodataset.org"


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


class CocoSource(Source):
    kind = "coco"
    description = "COCO captions (and instances when present) in the official layout"
    flags = (
        Flag(
            "data_dir",
            "directory with annotations/captions_{split}.json and {split}/ images; "
            "omit to download the annotations and fetch images by coco_url",
        ),
        Flag("split", "split name, e.g. val2017 or train2017 (default val2017)"),
    )
    default_split = "val2017"

    def __init__(self, options):
        super().__init__(options)
        self.split = options.split or self.default_split
        if options.data_dir:
            self.root = options.data_dir
            self.remote = False
        else:
            self.root = str(self._download_annotations())
            self.remote = True
        self.captions_file = _join(self.root, "annotations", f"captions_{self.split}.json")
        self.instances_file = _join(self.root, "annotations", f"instances_{self.split}.json")
        fs, path = fsspec.core.url_to_fs(self.captions_file)
        if not fs.exists(path):
            raise SourceError(
                f"{self.captions_file}: not found. A COCO directory holds "
                f"annotations/captions_{self.split}.json and {self.split}/ with the images "
                f"(check --data-dir and --split)"
            )
        self._images: list[tuple[int, str, str | None]] | None = None

    # -- annotations ---------------------------------------------------------------------
    def _download_annotations(self) -> Path:
        match = re.search(r"(\d{4})$", self.split)
        if not match:
            raise SourceError(
                f"cannot tell which COCO annotation archive holds split '{self.split}'; "
                f"pass --data-dir DIR with annotations/captions_{self.split}.json"
            )
        year = match.group(1)
        target = cache_dir() / "coco" / year
        if (target / "annotations" / f"captions_{self.split}.json").exists():
            return target
        base = os.environ.get("FORGE_COCO_BASE_URL", DEFAULT_BASE_URL).rstrip("/")
        url = f"{base}/annotations/annotations_trainval{year}.zip"
        target.mkdir(parents=True, exist_ok=True)
        part = target / f"annotations_trainval{year}.zip.part"
        try:
            with (
                open(part, "wb") as tmp,
                httpx.stream(
                    "GET",
                    url,
                    timeout=60,
                    follow_redirects=True,
                    headers={"User-Agent": USER_AGENT},
                ) as response,
            ):
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    tmp.write(chunk)
            with zipfile.ZipFile(part) as archive:
                for name in archive.namelist():
                    if name.startswith("annotations/") and name.endswith(".json"):
                        out = target / name
                        out.parent.mkdir(parents=True, exist_ok=True)
                        with archive.open(name) as src, open(f"{out}.part", "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        os.replace(f"{out}.part", out)
        except (httpx.HTTPError, zipfile.BadZipFile, OSError) as exc:
            raise SourceError(
                f"could not download the COCO annotations from {url} ({type(exc).__name__}: "
                f"{exc}). Offline? Download COCO yourself and pass --data-dir DIR holding "
                f"annotations/captions_{self.split}.json and {self.split}/ images, or use "
                f"--source folder/parquet/webdataset for local data"
            ) from exc
        finally:
            part.unlink(missing_ok=True)
        return target

    def _load(self) -> list[tuple[int, str, str | None]]:
        """(id, file_name, coco_url) of every image, sorted by id; captions and objects are
        kept in compact per-image lists. Each annotation file's parsed JSON is dropped as
        soon as the needed fields are out of it."""
        if self._images is not None:
            return self._images
        data = _read_json(self.captions_file)
        self._captions: dict[int, list[str]] = defaultdict(list)
        for ann in data.get("annotations", []):
            self._captions[ann["image_id"]].append(ann["caption"].strip())
        images = sorted(
            (im["id"], im["file_name"], im.get("coco_url") or im.get("flickr_url"))
            for im in data.get("images", [])
        )
        del data
        # per image: (category name, x, y, w, h, area); names are shared strings
        self._objects: dict[int, list[tuple]] = defaultdict(list)
        fs, ipath = fsspec.core.url_to_fs(self.instances_file)
        self.has_instances = fs.exists(ipath)
        if self.has_instances:
            data = _read_json(self.instances_file)
            names = {c["id"]: c["name"] for c in data.get("categories", [])}
            for ann in data.get("annotations", []):
                name = names.get(ann["category_id"], str(ann["category_id"]))
                self._objects[ann["image_id"]].append(
                    (name, *map(float, ann["bbox"]), float(ann.get("area", 0.0)))
                )
            del data
        self._images = images
        return images

    def count(self) -> int:
        return len(self._load())

    def items(self) -> Iterator[SourceItem]:
        for image_id, file_name, url in self._load():
            if self.remote:
                read = url_reader(url) if url else None
            else:
                read = path_reader(_join(self.root, self.split, file_name))
            objects = [
                {"category": o[0], "bbox": list(o[1:5]), "area": o[5]}
                for o in self._objects.get(image_id, ())
            ]
            yield SourceItem(
                key=str(image_id),
                read=read,
                path=file_name,
                captions=self._captions.get(image_id, []),
                objects=objects,
                url=url,
                meta={"coco_id": image_id, "file_name": file_name, "split": self.split},
            )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "split": self.split, "annotations": self.captions_file}


def _read_json(path: str) -> dict[str, Any]:
    try:
        with fsspec.open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc})") from exc
