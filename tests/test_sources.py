"""Every source kind, on corpora the tests write, read through the real ingest stage."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import jpeg_bytes, png_bytes, write_coco

from rationale_forge.ingest import ingest
from rationale_forge.sources import SourceError, SourceOptions, open_source
from rationale_forge.store import RunDir


def run_ingest(tmp_path, **opts):
    out = tmp_path / "run"
    stats = ingest(SourceOptions(**opts), str(out), progress=False, overwrite=True)
    rows = list(RunDir(str(out)).iter_rows())
    return stats, rows


# -- coco ---------------------------------------------------------------------------------
def test_coco_official_layout_keeps_all_captions_and_instances(tmp_path):
    root = write_coco(tmp_path / "coco", n=4, missing=(3,))
    stats, rows = run_ingest(tmp_path, kind="coco", data_dir=str(root))
    assert [r["key"] for r in rows] == ["1001", "1002", "1003", "1004"]
    assert stats.rows == 4 and stats.ok == 3 and stats.errors == {"missing": 1}
    first = rows[0]
    assert first["captions"] == [f"Caption {j} of image 1001 with a dog." for j in range(5)]
    assert first["objects"] == [
        {"category": "dog", "bbox": pytest.approx([1, 2, 10, 12.05]), "area": pytest.approx(120.5)}
    ]
    assert {o["category"] for o in rows[1]["objects"]} == {"dog", "person"}
    assert (first["width"], first["height"], first["format"]) == (61, 40, "JPEG")
    assert json.loads(first["meta"])["file_name"] == "000000001001.jpg"
    bad = rows[2]
    assert bad["status"] == "error" and bad["error_kind"] == "missing"
    assert "000000001003.jpg" in bad["error"] and bad["image"] is None


def test_coco_without_instances_has_no_objects(tmp_path):
    root = write_coco(tmp_path / "coco", n=2, with_instances=False)
    _, rows = run_ingest(tmp_path, kind="coco", data_dir=str(root))
    assert all(r["objects"] == [] and len(r["captions"]) == 5 for r in rows)


def test_coco_wrong_split_names_the_missing_file(tmp_path):
    root = write_coco(tmp_path / "coco", n=1)
    with pytest.raises(SourceError, match="captions_train2017.json: not found"):
        open_source(SourceOptions(kind="coco", data_dir=str(root), split="train2017"))


def test_coco_download_caches_annotations_and_fetches_images_lazily(
    tmp_path, http_dir, monkeypatch
):
    www, base, requests = http_dir
    write_coco(www, n=3, coco_url_base=base)
    (www / "annotations").mkdir(exist_ok=True)
    with zipfile.ZipFile(www / "annotations" / "annotations_trainval2017.zip", "w") as z:
        for name in ("captions_val2017.json", "instances_val2017.json"):
            z.write(www / "annotations" / name, f"annotations/{name}")
    monkeypatch.setenv("FORGE_COCO_BASE_URL", base)
    monkeypatch.setenv("FORGE_CACHE_DIR", str(tmp_path / "cache"))
    stats, rows = run_ingest(tmp_path, kind="coco", limit=2)
    assert stats.ok == 2 and [r["key"] for r in rows] == ["1001", "1002"]
    assert rows[0]["image"]["bytes"] == (www / "val2017" / "000000001001.jpg").read_bytes()
    assert rows[0]["objects"][0]["category"] == "dog"
    image_requests = [p for p in requests if p.startswith("/val2017/")]
    assert len(image_requests) == 2  # lazily: only the images taken
    run_ingest(tmp_path, kind="coco", limit=1)
    assert sum(p.endswith(".zip") for p in requests) == 1  # the archive is cached


def test_coco_offline_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGE_COCO_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("FORGE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SourceError, match="Offline.*--data-dir"):
        open_source(SourceOptions(kind="coco"))


def test_sample_source_is_exactly_described(tmp_path):
    stats, rows = run_ingest(tmp_path, kind="sample")
    assert stats.rows == stats.ok == 24
    for row in rows:
        n = len(row["objects"])
        assert 1 <= n <= 3 and len(row["captions"]) >= 3
        words = {1: "One shape", 2: "Two shapes", 3: "Three shapes"}
        assert any(c.startswith(words[n]) for c in row["captions"])
        for obj in row["objects"]:
            assert obj["category"] in row["captions"][0]


# -- folder -------------------------------------------------------------------------------
def test_folder_captions_from_txt_json_or_none(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(jpeg_bytes())
    (root / "a.txt").write_text("  a red square  \n")
    (root / "sub" / "b.png").write_bytes(png_bytes())
    (root / "sub" / "b.json").write_text(json.dumps({"caption": "a blue square"}))
    (root / "sub" / "c.webp").write_bytes(b"")
    (root / "d.jpg").write_bytes(jpeg_bytes())
    (root / "d.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "notes.md").write_text("not an image")
    stats, rows = run_ingest(tmp_path, kind="folder", data_dir=str(root))
    by_key = {r["key"]: r for r in rows}
    assert sorted(by_key) == ["a.jpg", "d.jpg", "sub/b.png", "sub/c.webp"]
    assert by_key["a.jpg"]["captions"] == ["a red square"]
    assert by_key["sub/b.png"]["captions"] == ["a blue square"]
    assert by_key["sub/c.webp"]["error_kind"] == "empty"
    assert by_key["d.jpg"]["error_kind"] == "caption_encoding"
    assert "d.txt" in by_key["d.jpg"]["error"] and "UTF-8" in by_key["d.jpg"]["error"]
    assert by_key["d.jpg"]["image_id"] and by_key["d.jpg"]["image"]["bytes"]  # image kept
    assert stats.errors == {"empty": 1, "caption_encoding": 1}


def test_folder_requires_an_existing_directory(tmp_path):
    with pytest.raises(SourceError, match="needs --data-dir"):
        open_source(SourceOptions(kind="folder"))
    with pytest.raises(SourceError, match="not a directory"):
        open_source(SourceOptions(kind="folder", data_dir=str(tmp_path / "nope")))


# -- parquet / jsonl ----------------------------------------------------------------------
def test_parquet_with_bytes_structs_paths_and_urls(tmp_path, http_dir):
    www, base, _ = http_dir
    (www / "remote.jpg").write_bytes(jpeg_bytes((20, 10)))
    tables = tmp_path / "tables"
    (tables / "imgs").mkdir(parents=True)
    (tables / "imgs" / "local.png").write_bytes(png_bytes((12, 8)))
    # img2dataset-like: key, caption, url and the jpg bytes
    pq.write_table(
        pa.table(
            {
                "key": ["000001"],
                "caption": ["inline bytes"],
                "url": ["http://x/1.jpg"],
                "jpg": [jpeg_bytes((30, 20))],
            }
        ),
        tables / "a.parquet",
    )
    pq.write_table(
        pa.table({"image": [{"bytes": png_bytes((9, 9)), "path": "p.png"}], "text": ["hf struct"]}),
        tables / "b.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "image_path": ["imgs/local.png", f"{base}/remote.jpg", f"{base}/gone.jpg"],
                "captions": [["x", "y"], ["remote"], ["404"]],
            }
        ),
        tables / "c.parquet",
    )
    stats, rows = run_ingest(tmp_path, kind="parquet", data_dir=str(tables))
    by_key = {r["key"]: r for r in rows}
    assert by_key["000001"]["captions"] == ["inline bytes"]
    assert (by_key["000001"]["width"], by_key["000001"]["url"]) == (30, "http://x/1.jpg")
    assert by_key["b/0"]["width"] == 9 and by_key["b/0"]["captions"] == ["hf struct"]
    assert by_key["c/0"]["captions"] == ["x", "y"] and by_key["c/0"]["width"] == 12
    assert by_key["c/1"]["width"] == 20 and by_key["c/1"]["url"].endswith("remote.jpg")
    assert by_key["c/2"]["error_kind"] == "download" and "404" in by_key["c/2"]["error"]
    assert stats.ok == 4 and stats.errors == {"download": 1}


def test_parquet_unknown_image_column_is_named(tmp_path):
    pq.write_table(pa.table({"foo": [1]}), tmp_path / "t.parquet")
    with pytest.raises(SourceError, match="no column 'pic'"):
        list(
            open_source(
                SourceOptions(kind="parquet", data_dir=str(tmp_path), image_column="pic")
            ).items()
        )


def test_jsonl_paths_and_a_bad_line(tmp_path):
    (tmp_path / "img.jpg").write_bytes(jpeg_bytes())
    lines = [
        json.dumps({"image": "img.jpg", "caption": "ok"}),
        "{not json",
        json.dumps({"image": "absent.jpg", "caption": "missing"}),
    ]
    (tmp_path / "set.jsonl").write_text("\n".join(lines) + "\n")
    stats, rows = run_ingest(tmp_path, kind="jsonl", data_dir=str(tmp_path / "set.jsonl"))
    assert [r["status"] for r in rows] == ["ok", "error", "error"]
    assert rows[1]["error_kind"] == "bad_record" and "set.jsonl:2" in rows[1]["error"]
    assert rows[2]["error_kind"] == "missing" and "absent.jpg" in rows[2]["error"]


# -- webdataset ---------------------------------------------------------------------------
def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_webdataset_shards_as_img2dataset_writes_them(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "00000.tar", "w") as tar:
        _add(tar, "000000000.jpg", jpeg_bytes((40, 30)))
        _add(tar, "000000000.txt", b"a cat on a mat")
        _add(tar, "000000000.json", json.dumps({"url": "http://a/0.jpg", "key": "0"}).encode())
        _add(tar, "000000001.json", json.dumps({"caption": "only json"}).encode())
        _add(tar, "000000001.webp", _webp())
    with tarfile.open(shards / "00001.tar", "w") as tar:
        _add(tar, "000010000.txt", b"no image here")
        _add(tar, "000010001.jpg", jpeg_bytes())
        _add(tar, "000010001.txt", b"\xff\xfe bad")
    stats, rows = run_ingest(tmp_path, kind="webdataset", data_dir=str(shards))
    by_key = {r["key"]: r for r in rows}
    assert list(by_key) == [
        "00000/000000000",
        "00000/000000001",
        "00001/000010000",
        "00001/000010001",
    ]
    first = by_key["00000/000000000"]
    assert first["captions"] == ["a cat on a mat"] and first["url"] == "http://a/0.jpg"
    assert first["width"] == 40
    assert by_key["00000/000000001"]["captions"] == ["only json"]
    assert by_key["00000/000000001"]["format"] == "WEBP"
    assert by_key["00001/000010000"]["error_kind"] == "missing"
    assert by_key["00001/000010001"]["error_kind"] == "caption_encoding"
    assert stats.ok == 2


def _webp() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (10, 10), "green").save(buf, "WEBP")
    return buf.getvalue()


# -- hf -----------------------------------------------------------------------------------
@pytest.fixture
def hf_dataset(tmp_path):
    from datasets import Dataset, Image

    ds = Dataset.from_dict(
        {
            "image": [{"bytes": jpeg_bytes((16 + i, 16)), "path": None} for i in range(6)],
            "text": [f"caption {i}" for i in range(6)],
        }
    ).cast_column("image", Image())
    repo = tmp_path / "hf_repo"
    (repo / "data").mkdir(parents=True)
    ds.to_parquet(str(repo / "data" / "train-00000-of-00001.parquet"))
    saved = tmp_path / "saved"
    ds.save_to_disk(str(saved))
    return repo, saved


@pytest.mark.parametrize("layout,streaming", [("repo", False), ("repo", True), ("saved", False)])
def test_hf_dataset_local_paths_and_streaming(tmp_path, hf_dataset, layout, streaming):
    repo, saved = hf_dataset
    path = repo if layout == "repo" else saved
    stats, rows = run_ingest(tmp_path, kind="hf", dataset=str(path), streaming=streaming)
    assert stats.ok == 6
    assert [r["captions"] for r in rows] == [[f"caption {i}"] for i in range(6)]
    assert [r["width"] for r in rows] == [16 + i for i in range(6)]
    assert rows[0]["key"] == "train/0"


def test_hf_unknown_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError, match="cannot open dataset"):
        open_source(SourceOptions(kind="hf", dataset=str(tmp_path / "nothing-here")))


def test_unknown_source_kind_lists_the_known_ones():
    with pytest.raises(SourceError, match="choose one of: coco, folder"):
        open_source(SourceOptions(kind="flickr"))
