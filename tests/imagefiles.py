"""Fixture image files made with Pillow at test time (nothing downloaded, nothing committed).

Each ``*_bytes`` function returns the encoded bytes of one kind of image; :func:`write_corpus`
writes a folder of good and bad files and returns what a correct ingest must report for each.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def noise_rgb(width: int = 48, height: int = 32, seed: int = 0) -> Image.Image:
    """Random pixels: JPEG cannot compress them to nothing, so half a file is truly partial."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def rgb_bytes(fmt: str, width: int = 48, height: int = 32) -> bytes:
    return encode(noise_rgb(width, height), fmt)


def cmyk_jpeg_bytes(width: int = 24, height: int = 16) -> bytes:
    """A CMYK JPEG of pure cyan (C=255, M=Y=K=0)."""
    return encode(Image.new("CMYK", (width, height), (255, 0, 0, 0)), "JPEG", quality=95)


def rgba_png_bytes(width: int = 10, height: int = 6) -> bytes:
    """Fully transparent red everywhere except an opaque blue pixel at (0, 0)."""
    img = Image.new("RGBA", (width, height), (255, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    return encode(img, "PNG")


def la_png_bytes(width: int = 10, height: int = 6) -> bytes:
    """Fully transparent black everywhere except an opaque black pixel at (0, 0)."""
    img = Image.new("LA", (width, height), (0, 0))
    img.putpixel((0, 0), (0, 255))
    return encode(img, "PNG")


def grey16_png_bytes(values: list[int], height: int = 2) -> bytes:
    """A 16-bit greyscale PNG whose first row is ``values`` (other rows are 0)."""
    arr = np.zeros((height, len(values)), dtype=np.uint16)
    arr[0, :] = values
    img = Image.fromarray(arr)
    assert img.mode == "I;16", img.mode
    return encode(img, "PNG")


PALETTE = [255, 0, 0, 0, 255, 0]  # index 0: red, index 1: green


def palette_png_bytes(
    width: int = 8, height: int = 5, transparent_index: int | None = None
) -> bytes:
    """Index 0 (red) everywhere, index 1 (green) at (1, 1); optionally a tRNS index."""
    img = Image.new("P", (width, height), 0)
    img.putpalette(PALETTE + [0] * (768 - len(PALETTE)))
    img.putpixel((1, 1), 1)
    params = {} if transparent_index is None else {"transparency": transparent_index}
    return encode(img, "PNG", **params)


def bilevel_png_bytes(width: int = 9, height: int = 7) -> bytes:
    """Mode "1": black everywhere except a white pixel at (0, 0)."""
    img = Image.new("1", (width, height), 0)
    img.putpixel((0, 0), 1)
    return encode(img, "PNG")


def exif_rotated_jpeg_bytes(width: int = 40, height: int = 20, orientation: int = 6) -> bytes:
    """Stored ``width`` x ``height``; EXIF says to rotate it for display."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    img = Image.new("RGB", (width, height), (200, 30, 30))
    return encode(img, "JPEG", exif=exif.tobytes())


def truncated_jpeg_bytes() -> bytes:
    whole = rgb_bytes("JPEG", 64, 48)
    return whole[: len(whole) // 2]


def random_bytes(n: int = 2048, seed: int = 1) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert not data.startswith(b"\x89PNG") and not data.startswith(b"\xff\xd8")
    return data


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR is patched to claim ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(encode(Image.new("L", (4, 4)), "PNG"))
    # signature (8) | length (4) | b"IHDR" (4) | 13 data bytes | CRC over type + data (4)
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@dataclass(frozen=True)
class Good:
    width: int
    height: int
    format: str
    mode: str
    captions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bad:
    error_kind: str
    names: str  # the file the error message must name


def write_corpus(folder: Path) -> dict[str, Good | Bad]:
    """Write every fixture into ``folder``; returns the expectation per image (relative key)."""
    files: dict[str, bytes] = {
        "photo.jpg": rgb_bytes("JPEG"),
        "drawing.png": rgb_bytes("PNG"),
        "rgb.webp": rgb_bytes("WEBP"),
        "cmyk.jpg": cmyk_jpeg_bytes(),
        "rgba.png": rgba_png_bytes(),
        "la.png": la_png_bytes(),
        "grey16.png": grey16_png_bytes([65535, 32768, 0]),
        "palette.png": palette_png_bytes(),
        "palette_trns.png": palette_png_bytes(transparent_index=0),
        "bilevel.png": bilevel_png_bytes(),
        "sub/rotated.jpg": exif_rotated_jpeg_bytes(),
        "badcaption.png": rgb_bytes("PNG", 12, 12),
        "truncated.jpg": truncated_jpeg_bytes(),
        "empty.png": b"",
        "random.jpg": random_bytes(),
        "huge.png": png_claiming_size(100_000, 100_000),
    }
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (folder / "photo.txt").write_text("  a noisy jpeg \n", encoding="utf-8")
    (folder / "drawing.json").write_text('{"caption": ["first", "second"]}', encoding="utf-8")
    (folder / "sub" / "rotated.txt").write_text("standing up", encoding="utf-8")
    (folder / "badcaption.txt").write_bytes("caf\u00e9".encode("latin-1"))  # not UTF-8
    return {
        "photo.jpg": Good(48, 32, "JPEG", "RGB", ("a noisy jpeg",)),
        "drawing.png": Good(48, 32, "PNG", "RGB", ("first", "second")),
        "rgb.webp": Good(48, 32, "WEBP", "RGB"),
        "cmyk.jpg": Good(24, 16, "JPEG", "CMYK"),
        "rgba.png": Good(10, 6, "PNG", "RGBA"),
        "la.png": Good(10, 6, "PNG", "LA"),
        "grey16.png": Good(3, 2, "PNG", "I;16"),
        "palette.png": Good(8, 5, "PNG", "P"),
        "palette_trns.png": Good(8, 5, "PNG", "P"),
        "bilevel.png": Good(9, 7, "PNG", "1"),
        "sub/rotated.jpg": Good(20, 40, "JPEG", "RGB", ("standing up",)),
        "badcaption.png": Bad("caption_encoding", "badcaption.txt"),
        "truncated.jpg": Bad("truncated", "truncated.jpg"),
        "empty.png": Bad("empty", "empty.png"),
        "random.jpg": Bad("undecodable", "random.jpg"),
        "huge.png": Bad("too_large", "huge.png"),
    }
