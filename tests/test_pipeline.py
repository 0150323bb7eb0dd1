"""`forge run PIPELINE.yaml` and `forge demo`: the whole pipeline from one file, as a user
runs it (real HTTP to an OpenAI-compatible server, a local Hub, the real stages)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from fake_hub import FakeHub
from fake_openai import FakeOpenAI
from huggingface_hub import DatasetCard
from PIL import Image

from rationale_forge.export import FORGE_FEATURES, REASONGEN_FEATURES
from rationale_forge.pipeline import PipelineError, load_pipeline
from rationale_forge.store import RunDir

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_pipelineTOKEN42"
API_KEY = "sk-pipeline-secret-77"


def run_forge(args: list[str], env: dict[str, str], timeout: int = 600):
    return subprocess.run(
        [sys.executable, "-m", "rationale_forge.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("name", ["coco_rationales", "laion_webdataset", "folder"])
def test_shipped_pipelines_are_valid(name):
    spec = load_pipeline(ROOT / "pipelines" / f"{name}.yaml")
    spec.filter.validate()  # presets, checks and parameters exist
    spec.export.validate()
    assert spec.source.kind in ("coco", "webdataset", "folder")
    assert not spec.source.data_dir.startswith("~")


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_bad_keys_and_values_name_the_file_the_key_and_the_line(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "out: runs/x\n"
        "source:\n"
        "  kind: sample\n"
        "filter:\n"
        "  preset: default\n"
        "  clip_treshold: 0.3\n"
        "generate:\n"
        "  concurrency: many\n"
    )
    with pytest.raises(PipelineError) as err:
        load_pipeline(path)
    text = str(err.value)
    assert f"{path}:6: filter.clip_treshold: unknown key" in text
    assert f"{path}:8: generate.concurrency:" in text and "integer" in text
    path.write_text("out: runs/x\n")
    with pytest.raises(PipelineError, match=r"source: required key missing"):
        load_pipeline(path)
    path.write_text("out: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_pipeline(path)
    with pytest.raises(PipelineError, match="cannot read"):
        load_pipeline(tmp_path / "missing.yaml")


def test_cli_reports_a_bad_file_without_a_traceback(tmp_path):
    path = write_yaml(tmp_path / "p.yaml", {"out": "x", "source": {"kind": "sample", "lim": 3}})
    proc = run_forge(["run", str(path)], {"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert proc.returncode == 2
    assert "source.lim: unknown key" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def servers():
    with FakeOpenAI() as vlm, FakeHub(TOKEN) as hub:
        yield vlm, hub


def pipeline_dict(out: Path, vlm: FakeOpenAI, hub: FakeHub, **changes) -> dict:
    data = {
        "out": str(out),
        "source": {"kind": "sample", "limit": 10},
        "generate": {
            "base_url": vlm.base_url,  # backend defaults to openai with a base_url
            "model": "fake-vlm",
            "api_key_env": "PIPELINE_KEY",
            "concurrency": 4,
        },
        "filter": {
            "preset": "lenient",
            "clip": False,
            "disable": ["repetition"],  # the fake server repeats one sentence on purpose
            "dedup_rationales": False,
        },
        "export": {"test_size": 0.3, "seed": 1},
        "push": {"repo_id": "forge-org/sample-rationales", "files_per_commit": 10},
    }
    for section, values in changes.items():
        data[section] = {**data[section], **values}
    return data


def test_forge_run_end_to_end_then_skips_what_is_done(servers, tmp_path):
    vlm, hub = servers
    out = tmp_path / "run"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PIPELINE_KEY": API_KEY,
        "HF_TOKEN": TOKEN,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "COLUMNS": "200",
    }
    path = write_yaml(tmp_path / "p.yaml", pipeline_dict(out, vlm, hub))
    proc = run_forge(["run", str(path)], env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert len(vlm.requests) == 10
    for stage, sub in (("ingest", "ingested"), ("generate", "rationales"), ("filter", "filtered")):
        record = RunDir(str(out / sub)).read_manifest()["stages"][stage]
        assert record["status"] == "done" and record["pipeline_spec"]
    assert (out / "filtered" / "report" / "index.html").exists()
    assert f"dataset: {out / 'dataset'}" in output and "report:" in output
    ds = datasets.load_dataset(str(out / "dataset"))
    kept = RunDir(str(out / "filtered")).count_rows("data")
    assert kept > 0 and sum(ds.num_rows.values()) == kept
    assert list(ds["train"].features) == list(FORGE_FEATURES)
    assert isinstance(ds["train"][0]["image"], Image.Image)
    card = DatasetCard.load(out / "dataset" / "README.md")
    assert card.data.license == "apache-2.0"  # the built-in sample
    assert "fake-vlm" in card.text and "preset `lenient`" in card.text
    # pushed to the (local) Hub in one commit
    files = hub.files("forge-org/sample-rationales")
    assert "README.md" in files and any(p.startswith("data/train-") for p in files)
    assert len(hub.commits) == 1
    assert API_KEY not in output and TOKEN not in output
    assert API_KEY not in (out / "dataset" / "README.md").read_text()

    # Rerun: every stage is done, nothing is asked again, nothing is sent again.
    proc = run_forge(["run", str(path)], env)
    assert proc.returncode == 0, proc.stderr
    assert "already done (skipped): ingest, generate, filter, export" in proc.stderr
    assert len(vlm.requests) == 10 and len(hub.commits) == 1

    # Another export format: only export (and push) run again.
    path = write_yaml(
        tmp_path / "p.yaml", pipeline_dict(out, vlm, hub, export={"format": "reasongen"})
    )
    proc = run_forge(["run", str(path), "--no-push"], env)
    assert proc.returncode == 0, proc.stderr
    assert "skipped): ingest, generate, filter" in proc.stderr
    ds = datasets.load_dataset(str(out / "dataset"), split="train")
    assert list(ds.features) == list(REASONGEN_FEATURES)

    # Another filter setting: filter and export rerun, generation is not repeated.
    path = write_yaml(
        tmp_path / "p.yaml",
        pipeline_dict(out, vlm, hub, filter={"preset": "lenient", "phash_distance": 0}),
    )
    proc = run_forge(["run", str(path), "--no-push"], env)
    assert proc.returncode == 0, proc.stderr
    assert "skipped): ingest, generate\n" in proc.stderr
    assert "filter: settings changed since the last run, starting over" in proc.stderr
    assert len(vlm.requests) == 10
    config = RunDir(str(out / "filtered")).read_manifest()["stages"]["filter"]["config"]
    assert config["phash_distance"] == 0


def test_forge_run_resumes_an_interrupted_generate(servers, tmp_path):
    """A generate stage that did not finish is resumed, and the stages after it run."""
    vlm, hub = servers
    out = tmp_path / "run"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PIPELINE_KEY": API_KEY,
        "COLUMNS": "200",
    }
    data = pipeline_dict(out, vlm, hub)
    del data["push"]
    data["source"]["limit"] = 6
    path = write_yaml(tmp_path / "p.yaml", data)
    assert run_forge(["run", str(path)], env).returncode == 0
    # Pretend generate was interrupted: its manifest says so and two rows are missing.
    generated = RunDir(str(out / "rationales"))
    generated.drop_rows(
        lambda t: __import__("pyarrow").compute.is_in(
            t.column("key"),
            value_set=__import__("pyarrow").array(
                sorted(r["key"] for r in generated.iter_rows(columns=["key"]))[:2]
            ),
        )
    )
    generated.update_stage("generate", {"status": "interrupted"})
    before = len(vlm.requests)
    proc = run_forge(["run", str(path)], env)
    assert proc.returncode == 0, proc.stderr
    assert "skipped): ingest\n" in proc.stderr
    assert generated.count_rows() == 6
    # Answers are cached: the two rows come back without asking the server again.
    assert len(vlm.requests) == before
    assert (
        RunDir(str(out / "filtered")).count_rows("data")
        + RunDir(str(out / "filtered")).count_rows("rejected")
        == 6
    )


def test_demo_runs_the_whole_pipeline_offline_and_prints_the_paths(tmp_path):
    env = {
        **os.environ,
        "FORGE_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }
    out = tmp_path / "demo"
    proc = run_forge(["demo", "--out", str(out)], env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "RANDOMLY INITIALISED" in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-2].startswith("report:") and str(out / "filtered" / "report") in lines[-2]
    assert lines[-1] == f"dataset: {out / 'dataset'}"
    ds = datasets.load_dataset(str(out / "dataset"))
    kept = RunDir(str(out / "filtered")).count_rows("data")
    assert kept > 0 and sum(ds.num_rows.values()) == kept
    assert set(ds) == {"train", "test"}
    card = DatasetCard.load(out / "dataset" / "README.md")
    assert card.data.task_categories == ["text-to-image", "image-to-text"]
    assert "tiny-random-qwen2-vl (local files)" in card.text  # the model that wrote the rows
    assert str(tmp_path) not in card.text  # local paths stay out of the card
