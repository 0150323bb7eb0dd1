"""Shared fixtures: small corpora written by the tests, and a local HTTP file server."""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
from pathlib import Path

import pytest
from PIL import Image


def jpeg_bytes(size=(64, 48), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bytes(size=(32, 32), colour=(30, 30, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def write_coco(
    root: Path,
    split: str = "val2017",
    n: int = 5,
    with_instances: bool = True,
    missing: tuple[int, ...] = (),
    coco_url_base: str | None = None,
) -> Path:
    """A COCO directory in the exact official JSON format: several captions per image,
    instances with categories, images under ``{split}/``."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(parents=True, exist_ok=True)
    images, captions, instances = [], [], []
    for i in range(1, n + 1):
        image_id = 1000 + i
        name = f"{image_id:012d}.jpg"
        if i not in missing:
            (root / split / name).write_bytes(jpeg_bytes((60 + i, 40), (10 * i, 100, 50)))
        url = (
            f"{coco_url_base}/{split}/{name}" if coco_url_base else f"http://images.example/{name}"
        )
        images.append(
            {
                "license": 3,
                "file_name": name,
                "coco_url": url,
                "height": 40,
                "width": 60 + i,
                "date_captured": "2013-11-14 17:02:52",
                "flickr_url": "http://farm.example/x.jpg",
                "id": image_id,
            }
        )
        for j in range(5):
            captions.append(
                {
                    "image_id": image_id,
                    "id": len(captions) + 1,
                    "caption": f"Caption {j} of image {image_id} with a dog. ",
                }
            )
        instances.append(
            {
                "segmentation": [[1.0, 2.0, 3.0, 4.0]],
                "area": 120.5,
                "iscrowd": 0,
                "image_id": image_id,
                "bbox": [1.0, 2.0, 10.0, 12.05],
                "category_id": 18,
                "id": len(instances) + 1,
            }
        )
        if i % 2 == 0:
            instances.append(
                {
                    "segmentation": [[1.0, 2.0]],
                    "area": 50.0,
                    "iscrowd": 0,
                    "image_id": image_id,
                    "bbox": [30.0, 5.0, 5.0, 10.0],
                    "category_id": 1,
                    "id": len(instances) + 1,
                }
            )
    info = {
        "description": "COCO 2017 Dataset",
        "url": "http://cocodataset.org",
        "version": "1.0",
        "year": 2017,
        "contributor": "COCO Consortium",
        "date_created": "2017/09/01",
    }
    licenses = [
        {
            "url": "http://creativecommons.org/licenses/by/2.0/",
            "id": 3,
            "name": "Attribution License",
        }
    ]
    (root / "annotations" / f"captions_{split}.json").write_text(
        json.dumps({"info": info, "licenses": licenses, "images": images, "annotations": captions})
    )
    if with_instances:
        categories = [
            {"supercategory": "person", "id": 1, "name": "person"},
            {"supercategory": "animal", "id": 18, "name": "dog"},
        ]
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(
                {
                    "info": info,
                    "licenses": licenses,
                    "images": images,
                    "annotations": instances,
                    "categories": categories,
                }
            )
        )
    return root


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def http_dir(tmp_path):
    """Serve a directory over HTTP on 127.0.0.1; yields (root, base_url, request_log)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_port}", server.requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    """A tiny randomly initialised Qwen2-VL saved with its processor (built once)."""
    from rationale_forge.vlm.tiny import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))
