"""The `forge` command line, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from rationale_forge.cli import app
from rationale_forge.store import RunDir

runner = CliRunner()


def test_sources_lists_every_kind_and_its_flags():
    result = runner.invoke(app, ["sources"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for kind in ("coco", "folder", "hf", "parquet", "jsonl", "webdataset", "sample"):
        assert kind in result.output
    assert "--data-dir" in result.output and "--image-column" in result.output


def test_ingest_prints_a_summary_and_records_the_manifest(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["ingest", "--source", "sample", "--limit", "5", "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "rows written" in result.output and "rows/s" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    stage = manifest["stages"]["ingest"]
    assert stage["status"] == "done" and stage["counts"]["rows"] == 5
    assert stage["config"]["source"]["kind"] == "sample"
    assert "pyarrow" in stage["versions"]
    assert RunDir(str(out)).count_rows() == 5


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path):
    result = runner.invoke(app, ["ingest", "--source", "folder", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "needs --data-dir" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["ingest", "--source", "nope", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "choose one of" in result.output


def test_console_script_demo_runs_offline_with_the_tiny_fallback(tmp_path):
    env = {
        **os.environ,
        "FORGE_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }
    forge = [sys.executable, "-m", "rationale_forge.cli"]
    proc = subprocess.run(
        [*forge, "demo", "--out", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "RANDOMLY INITIALISED" in proc.stderr
    assert RunDir(str(tmp_path / "demo" / "ingested")).count_rows() == 24
    rows = list(RunDir(str(tmp_path / "demo" / "rationales")).iter_rows())
    assert len(rows) == 24 and all(r["status"] == "ok" and r["rationale"] for r in rows)
    filtered = RunDir(str(tmp_path / "demo" / "filtered"))
    assert filtered.count_rows("data") + filtered.count_rows("rejected") == 24
    assert (tmp_path / "demo" / "filtered" / "report" / "index.html").exists()
    assert "report:" in proc.stderr


def test_secrets_in_flags_and_urls_are_masked_in_the_manifest_command():
    from rationale_forge.provenance import command_line

    line = command_line(
        [
            "forge",
            "generate",
            "--base-url",
            "https://me:s3cret@h/v1",
            "--hf-token=hf_abc",
            "--api-key",
            "sk-1",
            "--api-key-env",
            "MY_KEY",
        ]
    )
    assert "s3cret" not in line and "hf_abc" not in line and "sk-1" not in line
    assert "MY_KEY" in line and "https://***@h/v1" in line


def test_generate_refuses_source_selection_flags_with_an_ingested_input(tmp_path):
    # --limit etc. select rows of a --source; silently ignoring them with --input would
    # send every request of the run (and cost money against a paid API)
    for flags in (["--limit", "1"], ["--num-shards", "2"], ["--seed", "3"]):
        result = runner.invoke(
            app,
            ["generate", "--input", str(tmp_path), "--out", str(tmp_path / "g"), *flags],
            env={"COLUMNS": "200"},
        )
        assert result.exit_code == 2, result.output
        assert f"{flags[0]} select(s) rows of a --source" in result.output
        assert not (tmp_path / "g").exists()


def test_version_flag_prints_the_installed_version():
    from rationale_forge import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"rationale-forge {__version__}"
    assert runner.invoke(app, []).exit_code in (0, 2)  # no arguments: the help, not a crash
    assert "Commands" in runner.invoke(app, [], env={"COLUMNS": "200"}).output
