"""`forge filter` end to end on generated runs the tests write, with a tiny open_clip."""

from __future__ import annotations

import pytest
from generated_fixture import write_generated_run

from rationale_forge import filter as filter_mod
from rationale_forge.filter import FilterConfig, filter_run
from rationale_forge.filters.tiny_clip import build_tiny_clip
from rationale_forge.store import RunDir

BAD = {3: "refusal", 5: "repetition", 7: "error", 9: "dup_rationale"}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture
def generated(tmp_path):
    return write_generated_run(tmp_path, BAD)


def config(tiny_clip, **kw) -> FilterConfig:
    model, weights = tiny_clip
    return FilterConfig(
        clip_model=model, clip_pretrained=weights, clip_batch_size=5, phash_distance=0, **kw
    )


def rows(out, subdir):
    return {r["key"]: r for r in RunDir(str(out)).iter_rows(subdir)}


def test_every_row_is_kept_or_rejected_with_its_reasons(tmp_path, generated, tiny_clip):
    out = tmp_path / "filtered"
    stats = filter_run(str(generated), str(out), config(tiny_clip), progress=False)
    kept, rejected = rows(out, "data"), rows(out, "rejected")
    assert len(kept) + len(rejected) == 24 and not set(kept) & set(rejected)
    assert stats.kept == len(kept) and stats.rejected == len(rejected)
    by_index = {int(k) - 1: r for k, r in {**kept, **rejected}.items()}
    reasons = {i: " | ".join(r["reject_reasons"]) for i, r in by_index.items()}
    assert "boilerplate:" in reasons[3]
    assert "repetition:" in reasons[5]
    assert reasons[7].startswith("status: request_failed")
    assert "duplicate_rationale:" in reasons[9] and by_index[9]["duplicate_of"] == "1"
    assert len(kept) >= 18, {k: r["reject_reasons"] for k, r in rejected.items()}
    for row in kept.values():
        assert row["reject_reasons"] == [] and row["phash"]
        assert -1 <= row["score_clip_caption"] <= 1
        assert row["score_clip_rationale_min"] <= row["score_clip_rationale_mean"] + 1e-6
        assert row["score_length"] >= 60 and row["score_language"] >= 0.5
    assert stats.rejected_by_check["boilerplate"] >= 1
    manifest = RunDir(str(out)).read_manifest()["stages"]["filter"]
    assert manifest["counts"]["kept"] == len(kept) and manifest["status"] == "done"


def test_clip_keep_top_keeps_that_fraction(tmp_path, generated, tiny_clip):
    out = tmp_path / "filtered"
    stats = filter_run(
        str(generated),
        str(out),
        config(
            tiny_clip,
            preset="lenient",
            clip_keep_top=0.5,
            dedup_rationales=False,
            disable=["repetition", "boilerplate"],
        ),
        progress=False,
    )
    scored = [
        r["score_clip_rationale_mean"]
        for r in RunDir(str(out)).iter_rows("scored")
        if r["score_clip_rationale_mean"] is not None
    ]
    threshold = stats.thresholds["clip_rationale_mean"]
    assert sum(v >= threshold for v in scored) == round(len(scored) * 0.5)
    for row in rows(out, "rejected").values():
        if (
            row["score_clip_rationale_mean"] is not None
            and row["score_clip_rationale_mean"] < threshold
        ):
            assert any(r.startswith("clip_rationale_mean:") for r in row["reject_reasons"])


def test_rerun_resumes_scoring_and_redecides(tmp_path, generated, tiny_clip, monkeypatch):
    out = tmp_path / "filtered"
    real = filter_mod._Scorer.score
    calls = {"n": 0}

    def dying(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(filter_mod._Scorer, "score", dying)
    with pytest.raises(KeyboardInterrupt):
        filter_run(str(generated), str(out), config(tiny_clip), progress=False)
    assert RunDir(str(out)).count_rows("scored") == 10  # two batches of five survived
    monkeypatch.setattr(filter_mod._Scorer, "score", real)
    stats = filter_run(str(generated), str(out), config(tiny_clip), progress=False)
    assert stats.scored == 14 and stats.rows == 24
    assert RunDir(str(out)).count_rows("data") + RunDir(str(out)).count_rows("rejected") == 24


def test_cli_filter_with_overrides_writes_the_report(tmp_path, generated, tiny_clip):
    from typer.testing import CliRunner

    from rationale_forge.cli import app

    model, weights = tiny_clip
    out = tmp_path / "filtered"
    result = CliRunner().invoke(
        app,
        [
            "filter",
            str(generated),
            "--out",
            str(out),
            "--clip-model",
            model,
            "--clip-pretrained",
            weights,
            "--set",
            "length.min_words=500",
            "--disable",
            "caption_coverage",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "rejected by length" in result.output
    assert (out / "report" / "index.html").exists()
    assert RunDir(str(out)).count_rows("data") == 0  # 500 words is more than any rationale
    bad = CliRunner().invoke(
        app,
        [
            "filter",
            str(generated),
            "--out",
            str(tmp_path / "x"),
            "--no-clip",
            "--set",
            "length.nope=1",
        ],
    )
    assert bad.exit_code == 2 and "nope" in bad.output


def test_offline_clip_weights_are_a_clear_error(tmp_path, generated):
    import os
    import subprocess
    import sys

    # huggingface_hub reads HF_HUB_OFFLINE when imported: a fresh process is needed.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "COLUMNS": "200"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rationale_forge.cli",
            "filter",
            str(generated),
            "--out",
            str(tmp_path / "f"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "laion2b_s34b_b79k" in proc.stderr and "--no-clip" in proc.stderr


def _peak_rss_mb(cmd: list[str]) -> float:
    """Peak RSS of a child process, from /proc VmHWM (polled; survives no fork)."""
    import os
    import subprocess
    import time as _time

    # glibc's per-thread malloc arenas make peak RSS jump by tens of MB from run to run;
    # two arenas keep the measurement about the program, not the allocator
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                peak = max([peak] + [int(x.split()[1]) for x in f if x.startswith("VmHWM:")])
        except OSError:
            pass
        _time.sleep(0.02)
    assert proc.returncode == 0
    return peak / 1024


def test_memory_stays_bounded_as_the_run_grows(tmp_path):
    import sys

    from generated_fixture import write_many

    small, large = write_many(tmp_path / "small", 1000), write_many(tmp_path / "large", 20000)
    # Dedup is off: its index is the one thing that must grow with the run (a few KB per
    # row; see benchmarks/bench_filter.py for 100,000 rows with it on).
    cmd = [
        sys.executable,
        "-m",
        "rationale_forge.cli",
        "filter",
        "--no-clip",
        "--no-report",
        "--no-dedup-images",
        "--no-dedup-rationales",
    ]
    rss_small = _peak_rss_mb([*cmd, str(small), "--out", str(tmp_path / "fs")])
    rss_large = _peak_rss_mb([*cmd, str(large), "--out", str(tmp_path / "fl")])
    done = RunDir(str(tmp_path / "fl"))
    assert done.count_rows("rejected") + done.count_rows("data") == 20000
    # holding the 19,000 extra rows would cost well over 90 MB (a row is a ~60-column dict);
    # seen: 2-6 MB of growth, and up to ~20 MB of run-to-run noise with fewer rows
    assert rss_large - rss_small < 30, (rss_small, rss_large)
