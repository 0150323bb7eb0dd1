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
        self._images: list[dict[str, Any]] | None = None

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

    def _load(self) -> list[dict[str, Any]]:
        if self._images is not None:
            return self._images
        captions = _read_json(self.captions_file)
        by_image: dict[int, list[str]] = defaultdict(list)
        for ann in captions.get("annotations", []):
            by_image[ann["image_id"]].append(ann["caption"].strip())
        objects: dict[int, list[dict[str, Any]]] = defaultdict(list)
        fs, ipath = fsspec.core.url_to_fs(self.instances_file)
        self.has_instances = fs.exists(ipath)
        if self.has_instances:
            instances = _read_json(self.instances_file)
            names = {c["id"]: c["name"] for c in instances.get("categories", [])}
            for ann in instances.get("annotations", []):
                objects[ann["image_id"]].append(
                    {
                        "category": names.get(ann["category_id"], str(ann["category_id"])),
                        "bbox": [float(v) for v in ann["bbox"]],
                        "area": float(ann.get("area", 0.0)),
                    }
                )
        images = sorted(captions.get("images", []), key=lambda im: im["id"])
        for im in images:
            im["_captions"] = by_image.get(im["id"], [])
            im["_objects"] = objects.get(im["id"], [])
        self._images = images
        return images

    def count(self) -> int:
        return len(self._load())

    def items(self) -> Iterator[SourceItem]:
        for im in self._load():
            if self.remote:
                location = im.get("coco_url") or im.get("flickr_url")
                read = url_reader(location) if location else None
            else:
                location = _join(self.root, self.split, im["file_name"])
                read = path_reader(location)
            yield SourceItem(
                key=str(im["id"]),
                read=read,
                path=im["file_name"],
                captions=im["_captions"],
                objects=im["_objects"],
                url=im.get("coco_url"),
                meta={"coco_id": im["id"], "file_name": im["file_name"], "split": self.split},
            )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "split": self.split, "annotations": self.captions_file}


def _read_json(path: str) -> dict[str, Any]:
    try:
        with fsspec.open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc})") from exc
