"""Image handling: inspection, decode guards, normalisation to RGB, hashing.

Ingest keeps the original bytes untouched (the ``image_id`` is their sha256); every consumer
that needs pixels calls :func:`open_rgb`, which applies EXIF orientation and turns any mode
into RGB the same way everywhere.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

#: Default ceiling on width * height; larger images are refused before their pixels are decoded.
DEFAULT_MAX_PIXELS = 64_000_000

# Our own ``max_pixels`` check below is the guard; Pillow's warning for large images would
# only add noise. (Pillow still refuses images above twice its own limit, ~179 MP.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(Exception):
    """An image that cannot be used; ``kind`` is a short cause code counted in summaries."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ImageInfo:
    width: int  # after EXIF orientation
    height: int
    format: str
    mode: str


def image_id(data: bytes) -> str:
    """Stable identity of an image: the sha256 of its original bytes."""
    return hashlib.sha256(data).hexdigest()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageError("empty", "zero-byte file")
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as exc:
        raise ImageError("too_large", f"decompression bomb guard: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("undecodable", "not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError("undecodable", f"cannot read image header: {exc}") from exc
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError("undecodable", f"invalid dimensions {w}x{h}")
    if w * h > max_pixels:
        raise ImageError(
            "too_large", f"{w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}"
        )
    return img


def _decode_error(exc: Exception) -> ImageError:
    """The :class:`ImageError` for a failure while decoding pixels (same kind everywhere)."""
    truncated = isinstance(exc, OSError) and "truncated" in str(exc).lower()
    return ImageError("truncated" if truncated else "undecodable", f"cannot decode pixels: {exc}")


def _orientation_swaps_axes(img: Image.Image) -> bool:
    try:
        orientation = img.getexif().get(0x0112)
    except Exception:  # malformed EXIF: treat as no orientation, the pixels still decode
        return False
    return orientation in (5, 6, 7, 8)


def inspect(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Fully decode ``data`` once to prove it is a usable image and return its facts.

    Raises :class:`ImageError` for empty, undecodable, truncated or oversized images.
    """
    img = _open(data, max_pixels)
    fmt, mode = img.format or "UNKNOWN", img.mode
    w, h = img.size
    swap = _orientation_swaps_axes(img)
    if fmt == "JPEG":
        # Decoding at 1/8 scale still reads every entropy-coded byte (so truncation and
        # corruption are caught) at a fraction of the cost.
        img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _decode_error(exc) from exc
    if swap:
        w, h = h, w
    return ImageInfo(width=w, height=h, format=fmt, mode=mode)


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited on ``background``."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale the full range down to 8 bits instead of clipping.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        if img.mode == "I":
            # 32-bit ints hold either 16-bit samples or 8-bit ones converted up: guess.
            hi = float(arr.max()) if arr.size else 0.0
            full = 65535.0 if hi > 255 else 255.0
        else:
            # I;16*: always 16-bit samples; a dark image must not be read as 8-bit.
            full = 65535.0
        out = np.rint(arr * (255.0 / full)).clip(0, 255).astype("uint8")
        return Image.fromarray(out, "L").convert("RGB")
    if img.mode == "F":
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray((arr.clip(0, 1) * 255).astype("uint8"), "L").convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def open_rgb(
    data: bytes, max_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode ``data`` to an upright RGB image, optionally downscaled so no side exceeds
    ``max_side`` (aspect ratio kept)."""
    img = _open(data, max_pixels)
    try:
        img = ImageOps.exif_transpose(img)
        img = to_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _decode_error(exc) from exc
    if max_side and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img
