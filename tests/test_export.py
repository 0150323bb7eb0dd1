"""`forge export`: split by image group, Hub-style shards, the dataset card, loading."""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image

from rationale_forge.export import (
    FORGE_FEATURES,
    ExportConfig,
    ExportError,
    export,
    is_current,
    plan_split,
    stable_fraction,
)
from rationale_forge.filters.dedup import phash_hex
from rationale_forge.images import image_id
from rationale_forge.schema import FILTERED_SCHEMA, GENERATE_SCHEMA, empty_row
from rationale_forge.store import RunDir, ShardWriter

SECRET = "sk-export-secret-123"
REASONS = ["repetition: 41% of 3-grams repeated (max 30%)", "length: 12 words (min 60)"]


def noise_image(seed: int) -> Image.Image:
    """A blocky random picture: distinct seeds give far-apart perceptual hashes."""
    rng = random.Random(seed)
    small = Image.new("RGB", (8, 8))
    small.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(64)])
    return small.resize((96, 96), Image.NEAREST)


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def make_rows(n_distinct: int = 16, seed: int = 0) -> tuple[list[dict], list[set[str]]]:
    """Kept rows: ``n_distinct`` distinct pictures, some with near-duplicates (the same
    picture re-encoded as JPEG and resized), one exact copy under another key, and one pair
    linked by ``duplicate_of`` only. Returns the rows and the groups (sets of keys) that
    must never be split."""
    rows, groups = [], []
    for i in range(n_distinct):
        img = noise_image(seed * 1000 + i)
        variants = [("png", encode(img))]
        if i % 4 == 0:  # a near-duplicate: resized and recompressed
            variants.append(("jpg", encode(img.resize((90, 90)), "JPEG", quality=85)))
        if i % 5 == 0:  # an exact copy under another key
            variants.append(("copy", variants[0][1]))
        keys = set()
        for tag, data in variants:
            key = f"img-{i:03d}-{tag}"
            keys.add(key)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                ph = phash_hex(im.convert("RGB"))
            rows.append(_row(key, data, w, h, ph, i))
        groups.append(keys)
    # Two unrelated pictures that the filter linked (duplicate_of) stay together too.
    by_key = {r["key"]: r for r in rows}
    a, b = by_key["img-001-png"], by_key["img-002-png"]
    b["duplicate_of"] = a["key"]
    groups = [g for g in groups if not ({a["key"], b["key"]} & g)] + [
        {k for g in groups if {a["key"], b["key"]} & g for k in g}
    ]
    return rows, groups


def _row(key: str, data: bytes, w: int, h: int, ph: str, i: int) -> dict:
    words = "the kite drifts above the harbour while gulls circle the masts".split()
    return empty_row(
        FILTERED_SCHEMA,
        image_id=image_id(data),
        source="coco",
        key=key,
        image={"bytes": data, "path": f"/home/me/secret-place/{key}.png"},
        width=w,
        height=h,
        format="PNG",
        mode="RGB",
        captions=[f"caption {i} one", f"caption {i} two"],
        status="ok",
        rationale=" ".join(words * (3 + i % 5)),
        layout="kite top left",
        style="watercolour",
        composition="wide",
        short_caption=f"kite {i}",
        paraphrases=[f"a kite, number {i}"],
        tags=["kite", "harbour"],
        object_prompts=["a kite"],
        varied_captions=[f"kite over harbour {i}"],
        step_by_step="1. sky 2. kite",
        object_centric=["the kite is red"],
        region_descriptions=["top: sky"],
        backend="openai",
        model="tiny-vlm",
        prompt_hash="abc123",
        score_clip_caption=0.2 + i / 100,
        score_clip_rationale_mean=0.1 + i / 200,
        reject_reasons=[],
        phash=ph,
    )


def write_filtered(
    root: Path, rows: list[dict], rows_per_shard: int = 7, n_rejected: int = 6
) -> Path:
    """A filtered run as `forge filter` leaves it, with the generate and ingest runs it
    came from (their manifests carry the provenance, and a secret that must not leak)."""
    ingested, generated, filtered = root / "ingested", root / "generated", root / "filtered"
    RunDir(str(ingested)).update_stage(
        "ingest",
        {
            "status": "done",
            "config": {"source": {"kind": "coco", "data_dir": "/data/coco", "split": "val2017"}},
        },
    )
    RunDir(str(generated)).update_stage(
        "generate",
        {
            "status": "done",
            "command": f"forge generate --api-key {SECRET}",
            "config": {
                "input": str(ingested),
                "backend": "openai",
                "model": "Qwen/Qwen2.5-VL-7B-Instruct",
                "params": {"temperature": 0.7, "base_url": f"https://me:{SECRET}@vlm.example/v1"},
                "prompt_template": "rationale.j2",
                "prompt_hash": "abc123",
            },
        },
    )
    run = RunDir(str(filtered))
    with ShardWriter(run, FILTERED_SCHEMA, "data", rows_per_shard=rows_per_shard) as w:
        for row in rows:
            w.write(row)
    with ShardWriter(run, FILTERED_SCHEMA, "rejected", rows_per_shard=4) as w:
        for j in range(n_rejected):
            data = encode(noise_image(99_000 + j))
            w.write(
                {
                    **_row(f"rej-{j}", data, 96, 96, "0" * 16, j),
                    "reject_reasons": REASONS[: 1 + j % 2],
                }
            )
    run.update_stage(
        "filter",
        {
            "status": "done",
            "config": {
                "input": str(generated),
                "preset": "default",
                "checks": ["length", "repetition"],
                "phash_distance": 4,
            },
            "counts": {"rows": len(rows) + n_rejected, "kept": len(rows)},
        },
    )
    return filtered


def split_of(out: Path) -> dict[str, set[str]]:
    return {
        split: {
            r["image_id"]
            for f in sorted((out / "data").glob(f"{split}-*.parquet"))
            for r in pq.read_table(f, columns=["image_id"]).to_pylist()
        }
        for split in ("train", "test")
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    rows, groups = make_rows()
    filtered = write_filtered(root, rows)
    out = root / "dataset"
    stats = export(str(filtered), str(out), ExportConfig(test_size=0.3), progress=False)
    return root, rows, groups, filtered, out, stats


def test_fixture_has_real_near_duplicates():
    rows, _ = make_rows()
    by_key = {r["key"]: r for r in rows}
    near = hamming(by_key["img-000-png"]["phash"], by_key["img-000-jpg"]["phash"])
    assert near <= 4 and by_key["img-000-png"]["image_id"] != by_key["img-000-jpg"]["image_id"]
    assert hamming(by_key["img-000-png"]["phash"], by_key["img-003-png"]["phash"]) > 12


def test_near_duplicates_and_copies_never_straddle_the_split(dataset):
    _, rows, groups, _, out, stats = dataset
    split = split_of(out)
    assert split["train"] and split["test"] and not split["train"] & split["test"]
    by_key = {r["key"]: r for r in rows}
    for group in groups:
        sides = {("test" if by_key[k]["image_id"] in split["test"] else "train") for k in group}
        assert len(sides) == 1, group
    # Brute force over all pairs: nothing in test is within 4 bits of anything in train.
    side = {r["key"]: r["image_id"] in split["test"] for r in rows}
    for a in rows:
        for b in rows:
            if side[a["key"]] != side[b["key"]]:
                assert hamming(a["phash"], b["phash"]) > 4
    assert stats.groups == len(groups)
    # The test has power: a per-row split (no grouping) would have cut a group.
    naive = {r["key"]: stable_fraction(r["image_id"], 0) < 0.3 for r in rows}
    assert any(len({naive[k] for k in g}) > 1 for g in groups)


def test_split_is_the_same_across_runs_row_orders_and_shard_layouts(dataset, tmp_path):
    root, rows, _, filtered, out, _ = dataset
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    other = write_filtered(tmp_path / "again", shuffled, rows_per_shard=3)
    config = ExportConfig(test_size=0.3, rows_per_shard=4)
    out2 = tmp_path / "dataset2"
    export(str(other), str(out2), config, progress=False)
    assert split_of(out2) == split_of(out)
    names = sorted(p.name for p in (out2 / "data").iterdir())
    n_train = sum(n.startswith("train-") for n in names)
    assert n_train > 1
    assert all(
        re.fullmatch(rf"(train-\d{{5}}-of-{n_train:05d}|test-\d{{5}}-of-\d{{5}})\.parquet", n)
        for n in names
    ), names
    for f in (out2 / "data").glob("*.parquet"):
        assert pq.ParquetFile(f).metadata.num_rows <= 4
    # Another seed gives another split; the same seed the same one.
    out3 = tmp_path / "dataset3"
    export(str(filtered), str(out3), ExportConfig(test_size=0.3, seed=5), progress=False)
    assert split_of(out3) != split_of(out)


def test_plan_split_ignores_row_order():
    ids = [f"{i:064x}" for i in range(40)]
    keys = [f"k{i}" for i in range(40)]
    hashes = [f"{(i * 0x9E3779B97F4A7C15) % 2**64:016x}" for i in range(40)]
    plan = plan_split(ids, keys, hashes, [None] * 40, 0.25, 0, 4)
    order = list(range(40))
    random.Random(1).shuffle(order)
    again = plan_split(
        [ids[i] for i in order],
        [keys[i] for i in order],
        [hashes[i] for i in order],
        [None] * 40,
        0.25,
        0,
        4,
    )
    assert {ids[i] for i in range(40) if plan.is_test[i]} == {
        ids[order[j]] for j in range(40) if again.is_test[j]
    }
    assert 0 < plan.is_test.sum() < 40


def test_card_parses_validates_and_tells_how_the_data_was_made(dataset):
    _, rows, _, _, out, stats = dataset
    card = DatasetCard.load(out / "README.md")
    meta = card.data.to_dict()
    assert DatasetCardData(**meta).to_dict() == meta  # round-trips through the schema
    assert meta["license"] == "cc-by-4.0"  # COCO
    assert meta["task_categories"] == ["text-to-image", "image-to-text"]
    assert meta["size_categories"] == ["n<1K"] and meta["pretty_name"]
    files = meta["configs"][0]["data_files"]
    assert {f["split"]: f["path"] for f in files} == {
        "train": "data/train-*",
        "test": "data/test-*",
    }
    text = card.text
    assert (
        f"| train | {stats.rows['train']} |" in text and f"| test | {stats.rows['test']} |" in text
    )
    total = len(rows) + 6
    assert f"kept **{len(rows)} of {total} rows" in text
    assert f"| repetition | 6 | {6 / total:.1%} |" in text  # every rejected row
    assert f"| length | 3 | {3 / total:.1%} |" in text  # every second one
    assert "| score_clip_caption |" in text and "| rationale words |" in text
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in text and "abc123" in text  # VLM, prompt hash
    assert "preset `default`" in text and "rationale.j2" in text
    for name in FORGE_FEATURES:
        assert f"| `{name}` |" in text
    raw = (out / "README.md").read_text()
    assert SECRET not in raw and "/home/me" not in raw and "/data/coco" not in raw


def test_load_dataset_gives_the_documented_columns_and_pil_images(dataset):
    _, rows, _, _, out, stats = dataset
    ds = datasets.load_dataset(str(out))
    assert set(ds) == {"train", "test"}
    assert ds["train"].num_rows == stats.rows["train"] and ds["test"].num_rows == stats.rows["test"]
    assert list(ds["train"].features) == list(FORGE_FEATURES)
    assert isinstance(ds["train"].features["image"], datasets.Image)
    row = ds["train"][0]
    assert isinstance(row["image"], Image.Image)
    source = next(r for r in rows if r["key"] == row["key"])
    assert row["image"].size == (source["width"], source["height"])
    assert row["captions"] == source["captions"] and row["caption"] == source["captions"][0]
    assert row["rationale"] == source["rationale"] and row["tags"] == source["tags"]
    assert row["score_clip_caption"] == pytest.approx(source["score_clip_caption"])
    # The local path the image was read from is not published, only its file name.
    table = pq.read_table(next((out / "data").glob("train-*.parquet")), columns=["image"])
    assert all("/" not in r["image"]["path"] for r in table.to_pylist())


def test_reasongen_format_has_the_public_layout_with_structs(dataset, tmp_path):
    _, rows, _, filtered, _, _ = dataset
    out = tmp_path / "rg"
    export(str(filtered), str(out), ExportConfig(test_size=0.3, format="reasongen"), progress=False)
    ds = datasets.load_dataset(str(out), split="train")
    assert list(ds.features) == [
        "image",
        "brief_caption",
        "detailed_caption",
        "augmented_prompts",
        "augmented_cots",
    ]
    assert set(ds.features["augmented_prompts"]) == {
        "short_caption",
        "paraphrases",
        "tags",
        "varied_captions",
        "object_prompts",
    }
    assert set(ds.features["augmented_cots"]) == {
        "step_by_step",
        "object_centric",
        "region_descriptions",
        "tags",
    }
    row = ds[0]
    source = next(r for r in rows if r["captions"][0] == row["brief_caption"])
    assert row["detailed_caption"] == source["rationale"]
    assert row["augmented_prompts"]["paraphrases"] == source["paraphrases"]
    assert row["augmented_cots"]["step_by_step"] == source["step_by_step"]
    assert row["augmented_cots"]["region_descriptions"] == source["region_descriptions"]
    assert isinstance(row["image"], Image.Image)
    assert "| `augmented_cots` | struct |" in (out / "README.md").read_text()


def test_shards_stay_under_the_size_limit(dataset, tmp_path):
    _, rows, _, filtered, _, _ = dataset
    out = tmp_path / "small"
    limit = 3 * max(len(r["image"]["bytes"]) for r in rows)
    stats = export(
        str(filtered),
        str(out),
        ExportConfig(test_size=0, max_shard_bytes=limit, row_group_rows=2),
        progress=False,
    )
    files = sorted((out / "data").glob("*.parquet"))
    assert len(files) == len(stats.shards["train"]) > 2 and list(stats.rows) == ["train"]
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == len(rows)
    for f in files:  # the payload of each shard stays within the limit (+ a little text)
        table = pq.read_table(f, columns=["image"])
        assert sum(len(r["image"]["bytes"]) for r in table.to_pylist()) <= limit
        assert pq.ParquetFile(f).metadata.num_row_groups >= table.num_rows / 2
    assert datasets.load_dataset(str(out), split="train").num_rows == len(rows)
    meta = DatasetCard.load(out / "README.md").data.to_dict()
    assert [f["split"] for f in meta["configs"][0]["data_files"]] == ["train"]


def test_rerun_is_recognised_and_foreign_folders_are_refused(dataset, tmp_path):
    _, _, _, filtered, out, _ = dataset
    assert is_current(str(filtered), str(out), ExportConfig(test_size=0.3))
    assert not is_current(str(filtered), str(out), ExportConfig(test_size=0.1))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export(str(filtered), str(busy), progress=False)
    assert (busy / "notes.txt").exists()


def test_cli_refuses_a_run_that_is_not_filtered(tmp_path):
    generated = tmp_path / "generated"
    with ShardWriter(RunDir(str(generated)), GENERATE_SCHEMA) as w:
        w.write(empty_row(GENERATE_SCHEMA, key="a", status="ok"))
    RunDir(str(generated)).update_stage("generate", {"status": "done"})
    proc = subprocess.run(
        [sys.executable, "-m", "rationale_forge.cli", "export", str(generated), "--out", "x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "not a filtered run" in proc.stderr and "forge filter" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


def test_cli_export_writes_the_dataset(dataset, tmp_path):
    _, rows, _, filtered, _, _ = dataset
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rationale_forge.cli",
            "export",
            str(filtered),
            "--out",
            str(out),
            "--test-size",
            "0.3",
            "--license",
            "mit",
        ],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "train rows" in proc.stderr and str(out) in proc.stderr
    state = json.loads((out / ".forge" / "export.json").read_text())
    assert sum(state["stats"]["rows"].values()) == len(rows)
    assert DatasetCard.load(out / "README.md").data.license == "mit"


def test_a_run_that_kept_nothing_is_refused_with_the_reason(tmp_path):
    filtered = write_filtered(tmp_path, [], n_rejected=3)
    with pytest.raises(ExportError, match=r"no row passed the filter \(0 of 3 kept\)"):
        export(str(filtered), str(tmp_path / "empty"), progress=False)
    assert not (tmp_path / "empty").exists()


def test_a_re_export_in_place_loads_the_new_rows_not_a_cached_copy(dataset, tmp_path):
    _, _, _, filtered, _, _ = dataset
    out = tmp_path / "dataset"  # the same folder name as other exports: cache keys could clash
    loaded = []
    for seed in (0, 5):  # same layout and card configs, other rows in each split
        export(str(filtered), str(out), ExportConfig(test_size=0.3, seed=seed), progress=False)
        ds = datasets.load_dataset(str(out))
        assert {s: set(ds[s]["image_id"]) for s in ("train", "test")} == split_of(out)
        loaded.append(set(ds["test"]["image_id"]))
    assert loaded[0] != loaded[1]


def test_groups_are_transitive_and_linked_by_duplicate_of():
    # a~b (3 bits) and b~c (3 bits) though a and c are 6 bits apart: one group; d apart.
    a, b, c, d = 0, 0b111, 0b111111, 0xFFFF_0000_FFFF_0000
    ids = [f"{i:064x}" for i in range(6)]
    hashes = [f"{h:016x}" for h in (a, b, c, d)] + [None, None]
    # e has no hash but names d as its twin; f is alone.
    plan = plan_split(ids, list("abcdef"), hashes, [None] * 4 + ["d", None], 0.5, 0, 4)
    assert plan.groups == 3 and plan.grouped_rows == 5
    sides = plan.is_test.tolist()
    assert sides[0] == sides[1] == sides[2] and sides[3] == sides[4]
    # With distance 2 nothing is near any more; the twin link still holds.
    plan = plan_split(ids, list("abcdef"), hashes, [None] * 4 + ["d", None], 0.5, 0, 2)
    assert plan.groups == 5 and plan.grouped_rows == 2
