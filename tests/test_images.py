"""Image handling on real files written with Pillow: decoding, normalisation, guards, ingest."""

from __future__ import annotations

import hashlib
import io
import time
from collections import Counter

import imagefiles as fx
import pytest
from PIL import Image, ImageFile

from rationale_forge import images
from rationale_forge.images import ImageError
from rationale_forge.ingest import ingest, materialize
from rationale_forge.sources import SourceItem, SourceOptions
from rationale_forge.sources.files import path_reader
from rationale_forge.store import RunDir

WHITE = (255, 255, 255)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# --- good images -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_rgb_formats(fmt):
    data = fx.rgb_bytes(fmt, 48, 32)
    info = images.inspect(data)
    assert (info.width, info.height, info.format, info.mode) == (48, 32, fmt, "RGB")
    img = images.open_rgb(data)
    assert img.mode == "RGB" and img.size == (48, 32)
    if fmt == "PNG":  # lossless: the pixels are exactly the ones written
        assert img.tobytes() == fx.noise_rgb(48, 32).tobytes()


def test_cmyk_jpeg_becomes_rgb_cyan():
    data = fx.cmyk_jpeg_bytes(24, 16)
    info = images.inspect(data)
    assert (info.width, info.height, info.format, info.mode) == (24, 16, "JPEG", "CMYK")
    img = images.open_rgb(data)
    assert img.mode == "RGB" and img.size == (24, 16)
    # Pure cyan, not its inverse (Adobe CMYK JPEGs store inverted samples).
    assert close(img.getpixel((12, 8)), (0, 255, 255), tol=8)


def test_rgba_png_transparent_pixels_composite_to_white():
    data = fx.rgba_png_bytes()
    assert images.inspect(data).mode == "RGBA"
    img = images.open_rgb(data)
    assert img.mode == "RGB" and img.size == (10, 6)
    assert img.getpixel((5, 3)) == WHITE  # transparent red must not show as red (or black)
    assert img.getpixel((0, 0)) == (0, 0, 255)  # opaque pixel kept


def test_la_png_transparent_pixels_composite_to_white():
    data = fx.la_png_bytes()
    assert images.inspect(data).mode == "LA"
    img = images.open_rgb(data)
    assert img.mode == "RGB"
    assert img.getpixel((5, 3)) == WHITE
    assert img.getpixel((0, 0)) == (0, 0, 0)


def test_grey16_png_scales_the_range_instead_of_clipping():
    data = fx.grey16_png_bytes([65535, 32768, 0])
    info = images.inspect(data)
    assert (info.width, info.height, info.format, info.mode) == (3, 2, "PNG", "I;16")
    img = images.open_rgb(data)
    assert img.mode == "RGB" and img.size == (3, 2)
    assert img.getpixel((0, 0)) == WHITE  # clipping would also give 255 here...
    mid = img.getpixel((1, 0))
    assert mid[0] == mid[1] == mid[2] and abs(mid[0] - 128) <= 1  # ...but 255 here
    assert img.getpixel((2, 0)) == (0, 0, 0)


def test_grey16_value_maps_the_same_whatever_the_rest_of_the_image():
    # A dark 16-bit image (every sample <= 255) is still 16-bit: 200/65535 is almost black,
    # exactly as it is in an image that also holds a bright pixel.
    alone = images.open_rgb(fx.grey16_png_bytes([200, 0]))
    with_bright = images.open_rgb(fx.grey16_png_bytes([200, 65535]))
    assert alone.getpixel((0, 0)) == with_bright.getpixel((0, 0))
    assert alone.getpixel((0, 0))[0] <= 1


def test_to_rgb_mode_I_with_8bit_values_is_not_darkened():
    # Mode "I" can hold 8-bit samples converted up (e.g. L -> I); those stay as they are.
    img = Image.new("L", (2, 1), 200).convert("I")
    assert images.to_rgb(img).getpixel((0, 0)) == (200, 200, 200)


def test_palette_png():
    data = fx.palette_png_bytes()
    assert images.inspect(data).mode == "P"
    img = images.open_rgb(data)
    assert img.mode == "RGB" and img.size == (8, 5)
    assert img.getpixel((0, 0)) == (255, 0, 0)
    assert img.getpixel((1, 1)) == (0, 255, 0)


def test_palette_png_with_transparency_index():
    data = fx.palette_png_bytes(transparent_index=0)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.info.get("transparency") == 0  # the fixture really has a tRNS index
    assert images.inspect(data).mode == "P"
    img = images.open_rgb(data)
    assert img.getpixel((0, 0)) == WHITE  # transparent index 0 (red) -> background
    assert img.getpixel((1, 1)) == (0, 255, 0)


def test_bilevel_mode_1():
    data = fx.bilevel_png_bytes()
    info = images.inspect(data)
    assert (info.width, info.height, info.mode) == (9, 7, "1")
    img = images.open_rgb(data)
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == WHITE
    assert img.getpixel((4, 4)) == (0, 0, 0)


def test_exif_rotated_jpeg_reports_and_returns_display_size():
    data = fx.exif_rotated_jpeg_bytes(40, 20, orientation=6)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.size == (40, 20)  # stored landscape...
        assert raw.getexif()[fx.EXIF_ORIENTATION] == 6
    info = images.inspect(data)
    assert (info.width, info.height) == (20, 40)  # ...displayed portrait
    img = images.open_rgb(data)
    assert img.size == (20, 40) and img.mode == "RGB"


def test_open_rgb_max_side_keeps_aspect_after_rotation():
    img = images.open_rgb(fx.exif_rotated_jpeg_bytes(40, 20, orientation=6), max_side=10)
    assert img.size == (5, 10)


# --- bad images --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (fx.truncated_jpeg_bytes, "truncated"),
        (lambda: b"", "empty"),
        (fx.random_bytes, "undecodable"),
        (lambda: fx.png_claiming_size(100_000, 100_000), "too_large"),
    ],
    ids=["truncated", "empty", "undecodable", "too_large"],
)
def test_bad_images_raise_image_error_with_kind(make, kind):
    data = make()
    with pytest.raises(ImageError) as inspected:
        images.inspect(data)
    assert inspected.value.kind == kind
    # Every consumer decoding pixels classifies the same file the same way.
    with pytest.raises(ImageError) as opened:
        images.open_rgb(data)
    assert opened.value.kind == kind


def test_truncated_jpeg_fixture_is_half_a_valid_file():
    whole = fx.rgb_bytes("JPEG", 64, 48)
    assert images.inspect(whole).format == "JPEG"
    assert fx.truncated_jpeg_bytes() == whole[: len(whole) // 2]


def test_truncated_images_are_not_silently_accepted():
    # A global LOAD_TRUNCATED_IMAGES (set by some libraries) would hide the error.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_oversized_header_refused_fast_without_decoding(monkeypatch):
    data = fx.png_claiming_size(100_000, 100_000)  # 10**10 pixels, ~10 GB if decoded

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels of an oversized image must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    started = time.perf_counter()
    for fn in (images.inspect, images.open_rgb):
        with pytest.raises(ImageError) as err:
            fn(data)
        assert err.value.kind == "too_large"
    assert time.perf_counter() - started < 1.0


def test_max_pixels_limit_is_checked_before_decoding(monkeypatch):
    data = fx.rgb_bytes("PNG", 48, 32)  # 1536 pixels
    assert images.inspect(data, max_pixels=48 * 32).width == 48  # at the limit: fine

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("decoded an image over max_pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError) as err:
        images.inspect(data, max_pixels=48 * 32 - 1)
    assert err.value.kind == "too_large"
    assert "48x32" in str(err.value)


def test_header_patch_fixture_has_a_valid_crc():
    data = fx.png_claiming_size(30, 20)  # claims a size that is not the data's 4x4...
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (30, 20)  # ...and PIL trusts the (CRC-checked) header


# --- identity and bytes ------------------------------------------------------------------


def test_image_id_is_sha256_of_original_bytes():
    a = fx.encode(fx.noise_rgb(), "PNG", compress_level=1)
    b = fx.encode(fx.noise_rgb(), "PNG", compress_level=9)
    assert a != b
    assert images.image_id(a) == sha256(a)
    # Same pixels, different bytes: different identity (the id is of the file, not pixels).
    assert images.image_id(a) != images.image_id(b)
    assert images.open_rgb(a).tobytes() == images.open_rgb(b).tobytes()


@pytest.mark.parametrize(
    "make",
    [fx.cmyk_jpeg_bytes, fx.exif_rotated_jpeg_bytes, lambda: fx.grey16_png_bytes([1, 65535])],
    ids=["cmyk", "exif", "grey16"],
)
def test_materialize_keeps_original_bytes(tmp_path, make):
    data = make()
    path = tmp_path / "img.bin"
    path.write_bytes(data)
    item = SourceItem(key="img", read=path_reader(str(path)), path="img.bin", captions=["c"])
    row, nbytes = materialize(item, "folder")
    assert row["status"] == "ok", row["error"]
    assert row["image"]["bytes"] == data  # not re-encoded, not rotated, not converted
    assert row["image"]["path"] == "img.bin"
    assert row["image_id"] == sha256(data)
    assert nbytes == len(data)
    assert row["captions"] == ["c"]


@pytest.mark.parametrize("target", ["gone.jpg", "."], ids=["no-such-file", "directory"])
def test_materialize_missing_file(tmp_path, target):
    path = str(tmp_path / target)
    item = SourceItem(key="k1", read=path_reader(path), path=path)
    row, nbytes = materialize(item, "folder")
    assert row["status"] == "error"
    assert row["error_kind"] == "missing"
    assert path in row["error"]
    assert row["image"] is None and row["image_id"] is None and nbytes == 0
    assert row["key"] == "k1"


# --- end to end: folder -> ingest -> rows --------------------------------------------------


def test_ingest_folder_end_to_end(tmp_path):
    data_dir = tmp_path / "corpus"
    expected = fx.write_corpus(data_dir)
    out = str(tmp_path / "run")

    stats = ingest(SourceOptions(kind="folder", data_dir=str(data_dir)), out, progress=False)
    rows = list(RunDir(out).iter_rows())

    # One row per image file (sidecar .txt/.json are not images), each key once.
    keys = [r["key"] for r in rows]
    assert sorted(keys) == sorted(expected)
    assert len(keys) == len(set(keys))

    for row in rows:
        key = row["key"]
        want = expected[key]
        original = (data_dir / key).read_bytes()
        assert row["source"] == "folder"
        if isinstance(want, fx.Good):
            assert row["status"] == "ok", f"{key}: {row['error']}"
            assert row["error_kind"] is None and row["error"] is None
            got = (row["width"], row["height"], row["format"], row["mode"])
            assert got == (want.width, want.height, want.format, want.mode), key
            assert row["image"]["bytes"] == original, key
            assert row["image"]["path"] == key
            assert row["image_id"] == sha256(original)
            assert row["captions"] == list(want.captions), key
            # What was stored decodes to the reported (displayed) size.
            assert images.open_rgb(row["image"]["bytes"]).size == (want.width, want.height)
        else:
            assert row["status"] == "error", key
            assert row["error_kind"] == want.error_kind, (key, row["error"])
            assert want.names in row["error"], (key, row["error"])
            if want.error_kind == "caption_encoding":  # the image itself is fine: kept
                assert row["image"]["bytes"] == original and row["image_id"] == sha256(original)
            else:
                assert row["image"] is None
                assert row["width"] is None and row["height"] is None

    bad = {k: w for k, w in expected.items() if isinstance(w, fx.Bad)}
    want_kinds = Counter(w.error_kind for w in bad.values())
    got_kinds = Counter(r["error_kind"] for r in rows if r["status"] == "error")
    assert got_kinds == want_kinds
    counts = stats.as_dict()
    assert counts["errors_by_kind"] == dict(want_kinds)
    assert counts["rows"] == len(expected)
    assert counts["ok"] == len(expected) - len(bad)
    assert counts["errors"] == len(bad)
    assert counts["bytes"] == sum(  # the image bytes stored: good rows and caption errors
        (data_dir / k).stat().st_size
        for k, w in expected.items()
        if isinstance(w, fx.Good) or w.error_kind == "caption_encoding"
    )
    manifest = RunDir(out).read_manifest()["stages"]["ingest"]
    assert manifest["status"] == "done"
    assert manifest["counts"]["errors_by_kind"] == dict(want_kinds)
    assert manifest["total_rows"] == len(expected)
