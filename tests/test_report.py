"""The filter report: counts, histograms, a self-contained index.html, and how it renders."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from filtered_fixture import EVIL_CAPTION, FilteredFixture, write_filtered_dir
from PIL import Image

from rationale_forge import report as report_mod
from rationale_forge.report import reason_check, write_report
from rationale_forge.store import RunDir

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[FilteredFixture, Path]:
    """One filtered run and its report (default out_dir), shared by the read-only tests."""
    fx = write_filtered_dir(tmp_path_factory.mktemp("run") / "filtered")
    index = write_report(str(fx.root))
    return fx, index


def test_reason_check_reads_the_prefix():
    assert reason_check("repetition: 41% of 3-grams repeated (max 30%)") == "repetition"
    assert reason_check("clip_caption:0.1") == "clip_caption"
    assert reason_check("no colon here") == "other"


def test_image_card_escapes_text_and_survives_unreadable_images():
    card = report_mod.image_card(
        'k"<1>',
        b"not an image",
        status="rejected",
        captions=["a <b>bold</b> cat"],
        reasons=["length: 3 words (min 40) & more"],
    )
    assert '<span class="noimg">no image</span>' in card
    assert 'data-key="k&quot;&lt;1&gt;"' in card and "a &lt;b&gt;bold&lt;/b&gt; cat" in card
    assert "length: 3 words (min 40) &amp; more" in card
    page = report_mod.html_page("<title>", card)
    assert page.startswith("<!doctype html>") and "<title>&lt;title&gt;</title>" in page


def test_counts_json_matches_the_rows_and_the_manifest(made):
    fx, index = made
    assert index == fx.root / "report" / "index.html"
    counts = json.loads((index.parent / "counts.json").read_text())
    assert counts["rows"] == 30 and counts["kept"] == 20 and counts["rejected"] == 10
    assert counts["kept_ratio"] == pytest.approx(20 / 30)
    assert counts["rejected_by_check"] == dict(fx.rejected_by_check)
    assert sum(counts["rejected_by_check"].values()) > counts["rejected"]  # some fail twice
    assert counts["preset"] == "default"
    assert counts["manifest"] == {"present": True, "agrees": True, "mismatches": []}
    assert counts["rejected_without_reason"] == 0 and counts["kept_with_reasons"] == 0
    table = (index.parent / "counts.md").read_text()
    assert "| kept | 20 |" in table and "| repetition | 2 |" in table


def test_counts_flag_a_manifest_that_disagrees(tmp_path):
    fx = write_filtered_dir(tmp_path / "filtered", n_kept=4, n_rejected=3)
    run = RunDir(str(fx.root))
    manifest = run.read_manifest()
    manifest["stages"]["filter"]["counts"]["kept"] = 5
    manifest["stages"]["filter"]["counts"]["rejected_by_check"]["repetition"] = 9
    manifest["stages"]["filter"]["thresholds"] = {"clip_rationale_mean": 0.25, "length": 7}
    run.write_manifest(manifest)
    write_report(str(fx.root), str(tmp_path / "out"), max_examples=2)
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores["score_clip_rationale_mean"]["thresholds"] == {"threshold": 0.25}
    assert scores["score_length"]["thresholds"] == {"min": 40}  # config.thresholds wins
    counts = json.loads((tmp_path / "out" / "counts.json").read_text())
    assert counts["manifest"]["agrees"] is False
    assert counts["manifest"]["mismatches"] == [
        "kept: manifest 5, rows 4",
        "rejected_by_check.repetition: manifest 9, rows 1",
    ]
    assert "Counts disagree with" in (tmp_path / "out" / "index.html").read_text()


def test_report_without_manifest_or_rejections(tmp_path):
    fx = write_filtered_dir(tmp_path / "filtered", n_kept=3, n_rejected=0, manifest=False)
    index = write_report(str(fx.root))
    counts = json.loads((index.parent / "counts.json").read_text())
    assert (counts["rows"], counts["kept"], counts["rejected"]) == (3, 3, 0)
    assert counts["rejected_by_check"] == {}
    assert counts["manifest"]["present"] is False
    page = index.read_text()
    assert "No rejected rows." in page and "No rejections." in page


def test_histograms_are_valid_pngs_for_every_score_with_values(made):
    fx, index = made
    folder = index.parent / "histograms"
    assert {p.name for p in folder.iterdir()} == {f"{c}.png" for c in fx.score_columns}
    for path in folder.iterdir():
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 200 and img.height > 100
            img.verify()
    scores = json.loads((index.parent / "scores.json").read_text())
    assert scores["score_repetition"]["thresholds"] == {"max": 0.3}
    assert scores["score_clip_caption"]["thresholds"] == {"threshold": 0.2}
    assert scores["score_facets"]["thresholds"] is None
    assert (
        scores["score_length"]["kept"]["n"] == 20 and scores["score_length"]["rejected"]["n"] == 10
    )


def test_index_html_is_self_contained_escaped_and_shows_every_sample(made):
    fx, index = made
    page = index.read_text()
    samples = json.loads((index.parent / "samples.json").read_text())
    assert sorted(samples["kept"]) == fx.kept_keys  # fewer rows than max_examples: all shown
    assert sorted(samples["rejected"]) == fx.rejected_keys
    shown = re.findall(r'<article class="card (\w+)" data-key="([^"]+)"', page)
    assert sorted(k for s, k in shown if s == "kept") == fx.kept_keys
    assert sorted(k for s, k in shown if s == "rejected") == fx.rejected_keys
    # Every card's thumbnail and every histogram is embedded.
    assert page.count('src="data:image/jpeg;base64,') == fx.rows
    assert page.count('src="data:image/png;base64,') == len(fx.score_columns)
    # Text is escaped: the caption with a script tag shows as text, never as markup.
    assert EVIL_CAPTION not in page and "<script>alert(1)" not in page
    assert html.escape(EVIL_CAPTION) in page
    # Reject reasons are shown (escaped) and highlighted.
    assert 'class="reasons"' in page
    assert html.escape("boilerplate: starts with 'The image shows'") in page
    # Nothing external: no http(s) or protocol-relative src/href, no stylesheet links.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"<link\b|@import|url\(\s*['\"]?(?:https?:)?//", page, re.I)


def test_gallery_sample_is_bounded_and_deterministic(made, tmp_path):
    fx, _ = made

    def sampled(seed: int, name: str) -> dict:
        index = write_report(str(fx.root), str(tmp_path / name), max_examples=5, seed=seed)
        page = index.read_text()
        keys = json.loads((index.parent / "samples.json").read_text())
        assert sorted(re.findall(r'data-key="([^"]+)"', page)) == sorted(
            keys["kept"] + keys["rejected"]
        )
        return keys

    a, b, c = sampled(0, "a"), sampled(0, "b"), sampled(1, "c")
    assert len(a["kept"]) == 5 and len(a["rejected"]) == 5
    assert set(a["kept"]) <= set(fx.kept_keys) and set(a["rejected"]) <= set(fx.rejected_keys)
    assert a == b
    assert a != c


def test_counts_and_histograms_read_only_the_small_columns(made, tmp_path, monkeypatch):
    fx, _ = made
    calls: list[list[str] | None] = []
    original = RunDir.iter_batches

    def spy(self, subdir="data", columns=None, batch_size=256):
        calls.append(columns)
        return original(self, subdir, columns, batch_size)

    monkeypatch.setattr(RunDir, "iter_batches", spy)
    write_report(str(fx.root), str(tmp_path / "out"))
    allowed = {f"score_{c}" for c in report_mod.CHECKS} | {"reject_reasons"}
    assert calls and all(columns is not None and set(columns) <= allowed for columns in calls)


def test_gallery_sample_reads_only_the_shards_it_needs(made, monkeypatch):
    fx, _ = made
    run = RunDir(str(fx.root))
    assert len(run.shards("data")) == 3  # 8 + 8 + 4 rows
    reads = []
    original = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        reads.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    one = report_mod.sample_rows(run, "data", 20, 1, seed=3)
    assert len(one) == 1 and one[0]["key"] in fx.kept_keys and len(reads) == 1
    every = report_mod.sample_rows(run, "data", 20, 50, seed=3, batch_size=3)
    assert [r["key"] for r in every] == fx.kept_keys  # all rows, in run order
    some = report_mod.sample_rows(run, "data", 20, 7, seed=3, batch_size=3)
    assert len({r["key"] for r in some}) == 7
    assert some == report_mod.sample_rows(run, "data", 20, 7, seed=3)  # batch size: no matter


def test_report_renders_in_headless_chromium(made, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install it with `apt-get update && apt-get install -y "
            "chromium` (CI installs it); this test renders the report in a real browser"
        )
    _, index = made
    shot = tmp_path / "report.png"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,2000",
        f"--screenshot={shot}",
        index.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"no screenshot (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    with Image.open(shot) as img:
        assert img.size == (1280, 2000)
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.std() > 20, "the screenshot is (nearly) blank"
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 50, f"only {len(colours)} colours: the page did not render"
    # The kept/rejected colours of the counts tiles and histograms are on screen.
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 100
