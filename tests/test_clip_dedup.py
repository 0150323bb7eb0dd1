"""CLIP scoring on a tiny random open_clip model loaded through the real path, and the
near-duplicate detectors."""

from __future__ import annotations

import random

import pytest
from conftest import jpeg_bytes

from rationale_forge.filters.clip import ClipConfig, ClipScorer, ClipUnavailableError
from rationale_forge.filters.dedup import ImageDeduper, TextDeduper
from rationale_forge.filters.tiny_clip import build_tiny_clip


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    config, weights = build_tiny_clip(tmp_path_factory.mktemp("clip"))
    return ClipScorer(ClipConfig(model=config, pretrained=weights, batch_size=4))


def test_long_rationales_are_chunked_to_fit_the_context(scorer):
    text = (
        "The red circle sits on the left of the canvas, drawn with a thick outline. " * 12
        + "one-very-long-sentence " * 90
    ).strip()
    chunks = scorer.chunks(text)
    assert len(chunks) > 3
    assert all(len(scorer.tokenizer.encode(c)) <= scorer.context - 2 for c in chunks)
    assert " ".join(chunks).split() == text.split()  # nothing lost, order kept


def test_scores_are_cosines_and_identical_texts_are_encoded_once(scorer, monkeypatch):
    encoded = []
    real = scorer.model.encode_text
    monkeypatch.setattr(
        scorer.model, "encode_text", lambda tokens: encoded.append(tokens.shape[0]) or real(tokens)
    )
    pixels = [scorer.preprocess(jpeg_bytes((50, 40), (i * 40, 20, 200))) for i in range(3)]
    rationale = "A red circle on the left. A blue square on the right. " * 8
    results = scorer.score([*pixels, None], [["a red circle"]] * 4, [rationale] * 4)
    n_chunks = len(scorer.chunks(rationale))
    assert sum(encoded) == 1 + n_chunks  # one caption and the chunks, each encoded once
    for r in results[:3]:
        assert -1 <= r["clip_caption"] <= 1
        assert r["clip_rationale_min"] <= r["clip_rationale_mean"] + 1e-6
    assert results[3] == {
        "clip_caption": None,
        "clip_rationale_mean": None,
        "clip_rationale_min": None,
    }
    assert len({round(r["clip_caption"], 6) for r in results[:3]}) == 3  # images differ


def test_scores_do_not_depend_on_batch_composition(scorer):
    pixels = [scorer.preprocess(jpeg_bytes((50, 40), (i * 60, 90, 10))) for i in range(3)]
    together = scorer.score(pixels, [["x"], ["y"], ["z"]], ["r1.", "r2.", "r3."])
    alone = scorer.score(pixels[1:2], [["y"]], ["r2."])
    assert together[1]["clip_caption"] == pytest.approx(alone[0]["clip_caption"], abs=1e-5)


def test_missing_weights_are_a_clear_error(tmp_path):
    config, _ = build_tiny_clip(tmp_path)
    with pytest.raises(ClipUnavailableError, match="--no-clip"):
        ClipScorer(ClipConfig(model=config, pretrained=str(tmp_path / "nope.bin")))


def brute_force(hashes: list[tuple[str, int]], k: int) -> dict[str, str]:
    kept: list[tuple[str, int]] = []
    dups = {}
    for key, value in hashes:
        best = min(((bin(value ^ v).count("1"), kk) for kk, v in kept), default=None)
        if best is not None and best[0] <= k:
            dups[key] = best[1]
        else:
            kept.append((key, value))
    return dups


def test_image_dedup_matches_brute_force():
    rng = random.Random(3)
    bases = [rng.getrandbits(64) for _ in range(30)]
    hashes = []
    for i in range(300):
        value = bases[i % 30]
        for _ in range(rng.randrange(0, 8)):  # flip a few bits
            value ^= 1 << rng.randrange(64)
        hashes.append((f"k{i:03d}", value))
    deduper = ImageDeduper(max_distance=4)
    found = {}
    for key, value in hashes:
        twin, distance = deduper.offer(key, f"{value:016x}")
        if twin is not None:
            found[key] = twin
            assert distance <= 4
    expected = brute_force(hashes, 4)
    assert set(found) == set(expected) and len(found) > 50
    for key, twin in found.items():  # the twin found is within distance (ties may differ)
        a, b = dict(hashes)[key], dict(hashes)[twin]
        assert bin(a ^ b).count("1") <= 4


def test_rationale_dedup_flags_near_copies_only():
    deduper = TextDeduper(threshold=0.8)
    base = (
        "I draw a wide green meadow under a pale sky, with a red barn on the left, "
        "two white horses grazing in the middle and a line of poplars on the right."
    )
    assert deduper.offer("a", base) == (None, None)
    twin, similarity = deduper.offer("b", base + " Soft light.")
    assert twin == "a" and similarity >= 0.8
    assert deduper.offer(
        "c",
        "A city street at night, neon signs reflected in puddles, "
        "a yellow taxi waiting at a red light.",
    ) == (None, None)
    assert deduper.offer("d", "") == (None, None)
