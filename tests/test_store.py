"""The run directory: atomic shards, streaming reads, manifest, resume, datasets round trip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from rationale_forge import ingest as ingest_mod
from rationale_forge.ingest import RunConflictError, ingest
from rationale_forge.schema import INGEST_SCHEMA, empty_row
from rationale_forge.sources import SourceOptions
from rationale_forge.store import RunDir, ShardWriter

SCHEMA = pa.schema([("key", pa.string()), ("blob", pa.binary())])


def test_writer_numbers_shards_and_reader_streams_them_in_order(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    with ShardWriter(run, SCHEMA, rows_per_shard=3) as w:
        for i in range(8):
            w.write({"key": str(i), "blob": b"x"})
    assert [os.path.basename(p) for p in run.shards()] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert [r["key"] for r in run.iter_rows()] == [str(i) for i in range(8)]
    with ShardWriter(run, SCHEMA, rows_per_shard=3) as w:  # appends after existing shards
        w.write({"key": "8", "blob": b""})
    assert run.shards()[-1].endswith("part-00003.parquet") and run.count_rows() == 9


def test_shards_close_on_byte_budget(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    with ShardWriter(run, SCHEMA, rows_per_shard=1000, bytes_per_shard=100) as w:
        for i in range(5):
            w.write({"key": str(i), "blob": b"y" * 60}, nbytes=60)
    assert len(run.shards()) == 3


def test_reader_ignores_temporaries_and_writer_cleans_them(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    data = tmp_path / "run" / "data"
    data.mkdir(parents=True)
    (data / ".tmp-part-00000.parquet-abc").write_bytes(b"PAR1 half a shard")
    assert run.shards() == [] and list(run.iter_rows()) == []
    ShardWriter(run, SCHEMA)
    assert not any(p.name.startswith(".tmp-") for p in data.iterdir())


WRITER = textwrap.dedent("""
    import os, sys, pyarrow as pa
    from rationale_forge.store import RunDir, ShardWriter
    schema = pa.schema([("key", pa.string()), ("blob", pa.binary())])
    w = ShardWriter(RunDir(sys.argv[1]), schema, rows_per_shard=4)
    i = 0
    while True:  # incompressible rows make each shard write take a while
        w.write({"key": str(i), "blob": os.urandom(3 << 20)})
        i += 1
""")


def test_writer_killed_mid_shard_leaves_nothing_partial_visible(tmp_path):
    out = tmp_path / "run"
    run = RunDir(str(out))
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)])
        deadline = time.time() + 60
        while len(run.shards()) < 2 * (attempt + 1) and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.05 * attempt)  # vary where in the shard the kill lands
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        shards = run.shards()
        assert len(shards) >= 2
        keys = [r["key"] for r in run.iter_rows(columns=["key"])]
        assert len(keys) == 4 * len(shards)  # every visible shard is whole


def test_manifest_is_merged_per_stage_and_written_atomically(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.update_stage("ingest", {"status": "running"})
    run.update_stage("ingest", {"status": "done", "counts": {"rows": 3}})
    run.update_stage("generate", {"status": "running"})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["ingest"] == {"status": "done", "counts": {"rows": 3}}
    assert set(manifest["stages"]) == {"ingest", "generate"}
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_interrupted_ingest_resumes_without_duplicates(tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    real = ingest_mod.materialize
    calls = {"n": 0}

    def flaky(item, kind, max_pixels):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(item, kind, max_pixels)

    monkeypatch.setattr(ingest_mod, "materialize", flaky)
    with pytest.raises(KeyboardInterrupt):
        ingest(SourceOptions(kind="sample"), out, workers=1, rows_per_shard=4, progress=False)
    run = RunDir(out)
    assert run.count_rows() == 9  # rows accepted before the interrupt were written
    assert run.read_manifest()["stages"]["ingest"]["status"] == "interrupted"
    monkeypatch.setattr(ingest_mod, "materialize", real)
    stats = ingest(SourceOptions(kind="sample"), out, workers=1, progress=False)
    keys = [r["key"] for r in run.iter_rows(columns=["key"])]
    assert stats.skipped == 9 and stats.rows == 15
    assert sorted(keys, key=int) == [str(i) for i in range(1, 25)]


def test_a_different_config_in_the_same_directory_is_refused(tmp_path):
    out = str(tmp_path / "run")
    ingest(SourceOptions(kind="sample", limit=2), out, progress=False)
    with pytest.raises(RunConflictError, match="--overwrite"):
        ingest(SourceOptions(kind="sample", limit=3), out, progress=False)
    stats = ingest(SourceOptions(kind="sample", limit=3), out, progress=False, overwrite=True)
    assert stats.rows == 3 and RunDir(out).count_rows() == 3


def test_round_trip_through_datasets_gives_pil_images(tmp_path):
    import datasets
    from PIL import Image

    out = tmp_path / "run"
    ingest(SourceOptions(kind="sample", limit=5), str(out), progress=False)
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["captions"].feature.dtype == "string"
    assert len(ds) == 5 and isinstance(ds[0]["image"], Image.Image)
    assert ds[0]["image"].size == (ds[0]["width"], ds[0]["height"])
    assert ds[0]["objects"][0]["category"] in {"circle", "square", "triangle"}


def test_empty_row_matches_the_schema():
    table = pa.Table.from_pylist([empty_row(key="k", status="ok")], schema=INGEST_SCHEMA)
    assert table.num_rows == 1 and table.column("captions").to_pylist() == [[]]
