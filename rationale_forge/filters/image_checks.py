"""Image checks: size and aspect ratio from the row's ``width``/``height`` (no decoding), and,
optionally, how much of the picture is covered by text (OCR with RapidOCR).

Each check is a :class:`~rationale_forge.filters.base.Rule`; the registry and presets live
in :mod:`rationale_forge.filters.rules`.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import Verdict, fail, ok

OCR_INSTALL_HINT = (
    "the text_in_image check needs RapidOCR: pip install rapidocr-onnxruntime "
    "(or pip install 'rationale-forge[ocr]')"
)


class OCRUnavailableError(RuntimeError):
    """RapidOCR (``rapidocr-onnxruntime``) is not installed."""


def _size(row: dict[str, Any]) -> tuple[int, int] | None:
    width, height = row.get("width"), row.get("height")
    if not width or not height or width <= 0 or height <= 0:
        return None
    return int(width), int(height)


@dataclass
class ImageSize:
    """The shorter side of the image is at least ``min_side`` pixels."""

    name: ClassVar[str] = "image_size"
    description: ClassVar[str] = "shorter image side (px) at least min_side"
    default_enabled: ClassVar[bool] = True

    min_side: int = 256

    def check(self, row: dict[str, Any]) -> Verdict:
        size = _size(row)
        if size is None:
            return ok(self.name)
        side = min(size)
        if side < self.min_side:
            return fail(
                self.name,
                side,
                f"shorter side {side} px ({size[0]}x{size[1]}; min {self.min_side} px)",
            )
        return ok(self.name, side)


@dataclass
class AspectRatio:
    """``max(w, h) / min(w, h)`` is at most ``max_ratio`` (panoramas and slivers out)."""

    name: ClassVar[str] = "aspect_ratio"
    description: ClassVar[str] = "long side / short side at most max_ratio"
    default_enabled: ClassVar[bool] = True

    max_ratio: float = 3.0

    def check(self, row: dict[str, Any]) -> Verdict:
        size = _size(row)
        if size is None:
            return ok(self.name)
        ratio = max(size) / min(size)
        if ratio > self.max_ratio:
            return fail(
                self.name,
                ratio,
                f"aspect ratio {ratio:.2f} ({size[0]}x{size[1]}; max {self.max_ratio:.2f})",
            )
        return ok(self.name, ratio)


_OCR_ENGINES: dict[tuple[int, float], Any] = {}
_OCR_LOCK = threading.Lock()


def ocr_available() -> bool:
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


def ocr_engine(det_side: int = 640, text_score: float = 0.5) -> Any:
    """The RapidOCR engine for these settings, built once per process (thread-safe)."""
    key = (det_side, text_score)
    engine = _OCR_ENGINES.get(key)
    if engine is None:
        with _OCR_LOCK:
            engine = _OCR_ENGINES.get(key)
            if engine is None:
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as exc:
                    raise OCRUnavailableError(OCR_INSTALL_HINT) from exc
                engine = RapidOCR(det_limit_side_len=det_side, text_score=text_score)
                _OCR_ENGINES[key] = engine
    return engine


def text_boxes(pixels: Any, engine: Any, recognize: bool = True) -> list[list[tuple[float, float]]]:
    """Quadrilaterals of the text RapidOCR finds in ``pixels`` (an RGB array)."""
    if recognize:
        result, _ = engine(pixels, use_cls=False)
        return [[tuple(p) for p in item[0]] for item in result or []]
    result, _ = engine(pixels, use_cls=False, use_rec=False)
    return [[tuple(p) for p in box] for box in result or []]


def covered_fraction(boxes: list[list[tuple[float, float]]], width: int, height: int) -> float:
    """Fraction of a ``width`` x ``height`` picture covered by the union of ``boxes``."""
    if not boxes or width <= 0 or height <= 0:
        return 0.0
    from PIL import Image, ImageDraw

    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for box in boxes:
        draw.polygon([(float(x), float(y)) for x, y in box], fill=255)
    covered = mask.histogram()[255]
    return covered / (width * height)


@dataclass
class TextInImage:
    """Share of the picture covered by text that OCR finds (watermarks, captions burned in,
    screenshots, posters) is at most ``max_fraction``. Off unless enabled: it decodes the
    image and runs RapidOCR (about 0.3-1 s per image on a CPU)."""

    name: ClassVar[str] = "text_in_image"
    description: ClassVar[str] = "share of the image covered by OCR text boxes at most max_fraction"
    default_enabled: ClassVar[bool] = False

    max_fraction: float = 0.2
    max_side: int = 1024  # the image is downscaled to this before OCR
    det_side: int = 640  # RapidOCR detector input size (its det_limit_side_len)
    recognize: bool = True  # also read the text and drop boxes scoring below min_text_score
    min_text_score: float = 0.5

    def __post_init__(self) -> None:
        if not ocr_available():
            raise OCRUnavailableError(OCR_INSTALL_HINT)

    def check(self, row: dict[str, Any]) -> Verdict:
        from .. import images

        data = (row.get("image") or {}).get("bytes")
        if not data:
            return ok(self.name)
        try:
            img = images.open_rgb(data, max_side=self.max_side)
        except images.ImageError:
            return ok(self.name)  # undecodable images are reported by the filter stage itself
        import numpy as np

        engine = ocr_engine(self.det_side, self.min_text_score)
        boxes = text_boxes(np.asarray(img), engine, self.recognize)
        fraction = covered_fraction(boxes, img.width, img.height)
        if fraction > self.max_fraction:
            return fail(
                self.name,
                fraction,
                f"text covers {fraction:.0%} of the image in {len(boxes)} boxes "
                f"(max {self.max_fraction:.0%})",
            )
        return ok(self.name, fraction)


IMAGE_RULES: dict[str, type] = {r.name: r for r in (ImageSize, AspectRatio, TextInImage)}
