"""SFT of a tiny random Janus-Pro on CPU: layout, data mapping, image cache, overfit, scripts."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from rationale_forge.training.data import DataError, load_rows, pick_prompt, to_example
from rationale_forge.training.image_cache import ImageTokenCache, vq_fingerprint
from rationale_forge.training.janus import load_janus
from rationale_forge.training.sampling import SamplingConfig, generate_samples, sample_next
from rationale_forge.training.sequence import BOI, IMAGE, PROMPT, TEXT, SpecialIds, build_sequence
from rationale_forge.training.sft import SFTScriptArguments, parse_style_weights, run_sft
from rationale_forge.training.sft_trainer import SFTCollator
from rationale_forge.training.tiny import build_tiny_janus

REPO = Path(__file__).resolve().parents[1]
COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 30)]
RATIONALES = [
    "A red square fills the frame.",
    "A green field under a bright sky.",
    "The blue sea at night.",
    "A yellow house in the park.",
]


@pytest.fixture(scope="module")
def janus_dir(tmp_path_factory) -> Path:
    return build_tiny_janus(tmp_path_factory.mktemp("janus"))


@pytest.fixture(scope="module")
def bundle(janus_dir):
    return load_janus(janus_dir, device="cpu")


def write_dataset(root: Path, rows: list[dict]) -> Path:
    """A folder laid out as `forge export` writes it (data/train-*.parquet, Image feature)."""
    import datasets

    table = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())
    (root / "data").mkdir(parents=True, exist_ok=True)
    table.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    return root


def png(colour, size=(80, 64)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def forge_rows() -> list[dict]:
    return [
        {
            "image": {"bytes": png(colour), "path": None},
            "image_id": f"img{i}",
            "caption": f"picture number {i}",
            "rationale": RATIONALES[i],
            "short_caption": None,
            "paraphrases": [],
            "tags": [],
            "object_prompts": [],
            "varied_captions": [],
        }
        for i, colour in enumerate(COLOURS)
    ]


def test_sequence_layout_kinds_and_dropout():
    ids = SpecialIds(bos=0, eos=1, pad=2, boi=4, eoi=5)
    seq = build_sequence(ids, [0, 10, 11], [20, 21], [4, 7, 7], drop_condition=False)
    assert seq["input_ids"] == [0, 10, 11, 20, 21, 4, 4, 7, 7, 5, 1]
    assert seq["kinds"] == [PROMPT] * 3 + [TEXT, TEXT, BOI] + [IMAGE] * 3 + [TEXT, TEXT]
    # a VQ code equal to the <begin_of_image> id is still an image token
    assert seq["image_mask"] == [False] * 6 + [True] * 3 + [False] * 2
    dropped = build_sequence(ids, [0, 10, 11], [20, 21], [4, 7, 7], drop_condition=True)
    assert dropped["input_ids"] == [0, 2, 2, 2, 2, 4, 4, 7, 7, 5, 1]
    assert dropped["kinds"][:6] == [PROMPT] * 6  # nothing of the condition is trained
    assert len(dropped["input_ids"]) == len(seq["input_ids"])


def test_reasongen_columns_map_to_examples(tmp_path):
    row = {
        "image": {"bytes": png((1, 2, 3)), "path": None},
        "brief_caption": "a cat on a mat",
        "detailed_caption": "The cat sits centred on a woven mat, soft light from the left.",
        "augmented_prompts": {
            "short_caption": "cat on mat",
            "paraphrases": ["a mat with a cat on it"],
            "tags": ["cat", "mat"],
            "varied_captions": [],
            "object_prompts": ["a cat"],
        },
        "augmented_cots": {"step_by_step": "1. mat 2. cat", "object_centric": [], "tags": []},
    }
    ex = to_example(row)
    assert ex.rationale.startswith("The cat sits centred")
    assert ex.prompts == {
        "caption": ["a cat on a mat"],
        "short_caption": ["cat on mat"],
        "paraphrases": ["a mat with a cat on it"],
        "tags": ["cat, mat"],
        "objects": ["a cat"],
    }
    assert len(ex.key) == 64  # sha256 of the image bytes when there is no image_id
    # through a real Parquet file with struct columns, loaded the way training loads it
    write_dataset(tmp_path / "rg", [row, {**row, "detailed_caption": ""}])
    rows = load_rows(str(tmp_path / "rg"))
    assert to_example(rows[0]).prompts["objects"] == ["a cat"]
    with pytest.raises(DataError, match="row 1: no rationale"):
        to_example(rows[1], where="row 1")


def test_prompt_styles_follow_weights():
    ex = to_example(
        {
            "image_id": "x",
            "rationale": "r",
            "caption": "c",
            "paraphrases": ["p1", "p2"],
            "tags": ["t"],
        }
    )
    rng = random.Random(0)
    weights = parse_style_weights("caption=1,paraphrases=3,tags=0")
    drawn = Counter(pick_prompt(ex, weights, rng) for _ in range(4000))
    assert "t" not in drawn  # weight 0
    assert drawn["p1"] + drawn["p2"] == pytest.approx(3 * drawn["c"], rel=0.12)
    with pytest.raises(ValueError, match="unknown prompt style 'colour'"):
        parse_style_weights("colour=1")


def test_condition_dropout_rate_matches_setting(bundle, tmp_path):
    cache = ImageTokenCache(tmp_path, vq_fingerprint(bundle))
    cache.fill(bundle, [("k", Image.new("RGB", (64, 64), (9, 9, 9)))])
    item = {"key": "k", "rationale": "A red cat.", "prompts": json.dumps({"caption": ["cat"]})}
    collator = SFTCollator(bundle, cache, condition_dropout=0.3, seed=1)
    batches = [collator([item] * 50) for _ in range(40)]
    assert collator.counts["rows"] == 2000
    assert collator.counts["dropped"] / 2000 == pytest.approx(0.3, abs=0.03)
    # a dropped row trains no text: its rationale positions are padding, kind PROMPT
    kinds = torch.cat([b["kinds"] for b in batches])
    dropped_rows = (kinds == TEXT).sum(1) == 2  # only <end_of_image> and EOS remain
    assert int(dropped_rows.sum()) == collator.counts["dropped"]


def test_image_cache_encodes_each_image_once(bundle, tmp_path):
    calls = []
    vq = bundle.model.model.vqmodel
    original = vq.encode

    def counting(pixels, *args, **kwargs):
        calls.append(pixels.shape[0])
        return original(pixels, *args, **kwargs)

    items = [(f"k{i}", Image.new("RGB", (70, 64), c)) for i, c in enumerate(COLOURS)]
    vq.encode = counting
    try:
        first = ImageTokenCache(tmp_path, vq_fingerprint(bundle))
        assert first.fill(bundle, items + items[:2], batch_size=3) == 4  # repeats skipped
        again = ImageTokenCache(tmp_path, vq_fingerprint(bundle))  # a new run, from disk
        assert again.fill(bundle, items) == 0
    finally:
        vq.encode = original
    assert sum(calls) == 4
    assert again.get("k2") == first.get("k2")
    assert len(again.get("k2")) == bundle.image_tokens
    # another model's codes are never read: the fingerprint follows the VQ weights
    other = load_janus(build_tiny_janus(tmp_path / "other", seed=7), device="cpu")
    assert vq_fingerprint(other) != vq_fingerprint(bundle)


def test_sample_next_honours_temperature_and_top_p():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    for temperature in (0.5, 2.0):
        tokens, _ = sample_next(logits, temperature, 1.0, gen)
        freq = torch.bincount(tokens, minlength=4).float() / len(tokens)
        expected = torch.softmax(logits[0] / temperature, -1)
        assert torch.allclose(freq, expected, atol=0.015)
    tokens, _ = sample_next(logits, 1.0, 0.7, gen)  # p = .64, .24, ...: top-2 reach 0.7
    assert set(tokens.tolist()) == {0, 1}
    tokens, logps = sample_next(logits[:3], 0.0, 1.0, gen)
    assert tokens.tolist() == [0, 0, 0]
    assert torch.allclose(logps, torch.log_softmax(logits[0], -1)[0].expand(3))


def test_cfg_weight_changes_the_image(bundle):
    def codes(weight, mode="guided"):
        config = SamplingConfig(
            think=False, image_temperature=0, cfg_weight=weight, cfg_mode=mode, seed=0
        )
        return [s.image_codes for s in generate_samples(bundle, ["a red cat", "a dog"], 1, config)]

    assert codes(1.0) == codes(3.0, mode="none")  # weight 1 and no guidance agree
    assert codes(3.0) != codes(1.0)


def test_overfit_four_examples_then_greedy_reproduces(janus_dir, tmp_path):
    from trl import SFTConfig

    data = write_dataset(tmp_path / "data", forge_rows())
    script = SFTScriptArguments(
        model=str(janus_dir),
        dataset=str(data),
        image_cache_dir=str(tmp_path / "cache"),
        condition_dropout=0.0,
        prompt_styles="caption=1",
    )
    args = SFTConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        max_steps=100,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
    )
    trainer = run_sft(script, args)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < 0.1 * losses[0], losses  # from ~6 to well under a tenth

    # save -> load gives identical logits
    model = trainer.model.eval()
    saved = load_janus(tmp_path / "out", device="cpu")
    probe = torch.tensor([[saved.bos_id, 40, 41, 42, saved.boi_id, 3, 5, 7]])
    mask = torch.tensor([[False] * 5 + [True] * 3])
    attn = torch.ones_like(probe)
    with torch.no_grad():
        before = model(input_ids=probe, attention_mask=attn, image_mask=mask).logps
        after = saved.model(input_ids=probe, attention_mask=attn, image_mask=mask).logps
    assert torch.equal(before, after)
    config_json = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config_json["architectures"] == ["JanusForConditionalGeneration"]

    # greedy sampling writes the training rationale, stops by itself, draws the image
    cache = ImageTokenCache(tmp_path / "cache", vq_fingerprint(saved))
    greedy = SamplingConfig(
        temperature=0, image_temperature=0, cfg_weight=1.0, max_rationale_tokens=40
    )
    for sample in generate_samples(saved, ["picture number 0", "picture number 2"], 1, greedy):
        i = int(sample.prompt[-1])
        assert sample.rationale == RATIONALES[i]
        assert sample.stop == "boi"
        matching = sum(
            a == b for a, b in zip(sample.image_codes, cache.get(f"img{i}"), strict=True)
        )
        assert matching >= 0.9 * saved.image_tokens
        assert sample.image.size == (saved.image_size, saved.image_size)


def test_scripts_end_to_end(janus_dir, tmp_path):
    rows = forge_rows()
    rows.append(
        {**rows[0], "image_id": "broken", "image": {"bytes": b"not an image", "path": None}}
    )
    rows.append({**rows[1], "image_id": "empty", "rationale": ""})
    data = write_dataset(tmp_path / "data", rows)
    out = tmp_path / "ckpt"
    env_cache = tmp_path / "cache"
    cmd = [
        sys.executable, str(REPO / "train/sft.py"),
        "--config", str(REPO / "train/recipes/sft_janus_pro.yaml"),
        "--model", str(janus_dir), "--dataset", str(data), "--output_dir", str(out),
        "--image_cache_dir", str(env_cache), "--max_steps", "2",
        "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1", "--logging_steps", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "sft_summary.json").read_text())
    assert summary["examples"] == "4"
    assert summary["rows skipped"] == "2"  # the undecodable image and the empty rationale
    output = proc.stdout + proc.stderr
    if not torch.cuda.is_available():  # the recipe's bf16 is turned off, with a note
        assert "no CUDA device: training in fp32" in output
    assert "row 5: no rationale" in output
    assert "image broken: cannot decode" in output

    gen = [
        sys.executable, str(REPO / "train/generate.py"), "--model", str(out),
        "--prompt", "a red square", "--n", "2", "--cfg", "3", "--max-rationale-tokens", "8",
        "--seed", "0", "--out", str(tmp_path / "samples"), "--device", "cpu",
    ]  # fmt: skip
    proc = subprocess.run(gen, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "samples/samples.jsonl").read_text().splitlines()]
    assert [x["image"] for x in lines] == ["0000_00.png", "0000_01.png"]
    assert Image.open(tmp_path / "samples" / lines[1]["image"]).size == (64, 64)

    # a mistyped dataset path ends with one clear line and exit code 2, not a traceback
    bad = [sys.executable, str(REPO / "train/sft.py"), "--model", str(janus_dir),
           "--dataset", str(tmp_path / "no-such-dataset"), "--output_dir", str(out)]  # fmt: skip
    proc = subprocess.run(
        bad, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no dataset folder" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
