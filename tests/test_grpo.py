"""GRPO for Janus-Pro on a tiny random checkpoint built here: rollout and loss log-probs agree
in every CFG mode, sampling settings are honoured, a pixel reward is learnt, dynamic sampling
and the entropy controllers act inside training, and train/grpo.py runs end to end against
an OpenAI-compatible judge server."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from fake_openai import FakeOpenAI
from PIL import Image
from scipy.stats import chisquare

from rationale_forge.training.grpo import load_prompts, merge_repeated_flag, parse_rewards
from rationale_forge.training.grpo_trainer import JanusGRPOConfig, JanusGRPOTrainer
from rationale_forge.training.janus import JanusBundle, load_janus
from rationale_forge.training.rollout import JanusRollout, flat_groups
from rationale_forge.training.sampling import Sample, SamplingConfig
from rationale_forge.training.tiny import build_tiny_janus

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_janus(tmp_path_factory.mktemp("janus") / "tiny", seed=0)


def bundle_of(path: Path) -> JanusBundle:
    return load_janus(path, device="cpu")


def config(tmp_path: Path, **kw) -> JanusGRPOConfig:
    base = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        per_device_train_batch_size=8,
        num_generations=4,
        max_steps=1,
        learning_rate=1e-3,
        max_rationale_tokens=6,
        logging_steps=1,
        save_strategy="no",
        gradient_checkpointing=False,
        image_log_steps=0,
        seed=0,
        disable_tqdm=True,
        lr_scheduler_type="constant",
    )
    base.update(kw)
    return JanusGRPOConfig(**base)


def prompts_dataset(texts: list[str]) -> datasets.Dataset:
    return datasets.Dataset.from_list([{"prompt": t, "tag": "test"} for t in texts])


def redness(prompts, completions, images=None, **kw) -> list[float]:
    out = []
    for im in images:
        a = np.asarray(im).astype(float) / 255
        out.append(float((a[..., 0] - (a[..., 1] + a[..., 2]) / 2).mean()))
    return out


def history(trainer, key: str) -> list[float]:
    return [h[key] for h in trainer.state.log_history if key in h]


def make_boi_likely(bundle: JanusBundle, scale: float = 1.6) -> None:
    """Point <begin_of_image>'s output row along the hidden states' common direction, so the
    random model sometimes writes it itself (its input embedding is tied and moves too)."""
    with torch.no_grad():
        ids = torch.tensor([bundle.prompt_ids("a red cube on the left")])
        hidden = bundle.hidden(bundle.embed(ids, torch.zeros_like(ids, dtype=torch.bool)))
        mean = hidden.last_hidden_state[0].mean(0)
        bundle.model.lm_head.weight[bundle.boi_id] = scale * mean / mean.norm()


def padded(rows: list[list], value, left: bool = False) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.tensor(rows[0][:1]).dtype)
    for i, r in enumerate(rows):
        if left:
            out[i, width - len(r) :] = torch.tensor(r)
        else:
            out[i, : len(r)] = torch.tensor(r)
    return out


# -- the loss scores what the rollout sampled --------------------------------------------------
@pytest.mark.parametrize("cfg_mode", ["none", "sample_only", "guided"])
def test_loss_logprobs_equal_rollout_logprobs(tiny_dir, tmp_path, cfg_mode):
    torch.manual_seed(1)
    bundle = bundle_of(tiny_dir)
    make_boi_likely(bundle)
    args = config(
        tmp_path,
        cfg_mode=cfg_mode,
        cfg_weight=3.0,
        temperature=0.7,
        top_p=0.9,
        image_temperature=0.9,
        max_rationale_tokens=12,
    )
    trainer = JanusGRPOTrainer(bundle, [redness], args, train_dataset=prompts_dataset(["x"] * 8))
    prompts = ["a red cube on the left"] * 4 + ["two blue dogs"] * 4
    out = trainer.rollout(prompts, trainer)

    stops = [s.stop for s in trainer.rollout.last.samples]
    assert "boi" in stops and "length" in stops  # both kinds of <begin_of_image> occur
    columns = (out["completion_ids"], out["env_mask"], out["logprobs"])
    for sample, ids, mask, logps in zip(trainer.rollout.last.samples, *columns, strict=True):
        n = len(sample.rationale_ids)
        assert ids[n] == bundle.boi_id and len(ids) == n + 1 + bundle.image_tokens
        assert mask[n] == int(sample.stop == "boi")  # a forced <begin_of_image> is not trained
        assert sum(mask) == len(ids) - (sample.stop != "boi")
        assert len(logps) == len(ids)
        assert isinstance(out["images"][0], Image.Image)

    # the same tensors TRL builds: prompts left-padded, completions right-padded
    prompt_ids = padded(out["prompt_ids"], bundle.pad_id, left=True)
    prompt_mask = padded([[1] * len(p) for p in out["prompt_ids"]], 0, left=True)
    completion_ids = padded(out["completion_ids"], bundle.pad_id)
    completion_mask = padded([[1] * len(c) for c in out["completion_ids"]], 0)
    with torch.no_grad():
        logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            torch.cat([prompt_ids, completion_ids], 1),
            torch.cat([prompt_mask, completion_mask], 1),
            completion_ids.shape[1],
            batch_size=3,
            compute_entropy=True,
        )
    sampled = padded(out["logprobs"], 0.0).float()
    trained = padded(out["env_mask"], 0).bool()
    diff = (logps - sampled).abs()[trained]
    assert diff.numel() > 100 and float(diff.max()) < 1e-4
    assert torch.isfinite(entropies).all() and float(entropies[trained].min()) > 0


# -- sampling settings are honoured in the rollout ---------------------------------------------
def fixed_image_logits(bundle: JanusBundle, logits: torch.Tensor) -> None:
    """Make the generation head return ``logits`` whatever the context."""
    head = bundle.model.model.generation_head.vision_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(logits)


def rollout_codes(bundle, n: int, **kw) -> torch.Tensor:
    sampling = SamplingConfig(think=False, cfg_mode="none", batch_size=n, decode=False, **kw)
    rollout = JanusRollout(bundle, sampling, num_generations=1)
    out = rollout(["a red cube"] * n)
    return torch.tensor([ids[1:] for ids in out["completion_ids"]])


def test_image_temperature_gives_softmax_at_t_and_top_p_keeps_the_nucleus(tiny_dir):
    torch.manual_seed(0)
    bundle = bundle_of(tiny_dir)
    logits = torch.linspace(-3.0, 3.0, bundle.codebook)
    fixed_image_logits(bundle, logits)

    codes = rollout_codes(bundle, 400, image_temperature=0.5).flatten()  # 6,400 draws
    counts = torch.bincount(codes, minlength=bundle.codebook).double()
    at_t = torch.softmax(logits.double() / 0.5, -1)
    at_1 = torch.softmax(logits.double(), -1)
    assert chisquare(counts, at_t * counts.sum()).pvalue > 1e-3
    assert chisquare(counts, at_1 * counts.sum()).pvalue < 1e-12

    # top-p 0.5 at T=1: exactly the smallest set of top codes holding half the mass
    codes = rollout_codes(bundle, 200, image_top_p=0.5).flatten()
    order = torch.argsort(logits, descending=True)
    mass_before = torch.cumsum(at_1[order], 0) - at_1[order]
    nucleus = set(order[mass_before < 0.5].tolist())
    assert set(codes.tolist()) == nucleus and len(nucleus) < bundle.codebook // 4


def test_greedy_is_deterministic_and_text_top_p_stays_in_the_nucleus(tiny_dir):
    bundle = bundle_of(tiny_dir)
    prompts = ["a red cube on the left", "two blue dogs"]

    def run(seed, **kw):
        torch.manual_seed(seed)
        sampling = SamplingConfig(max_rationale_tokens=10, cfg_mode="none", decode=False, **kw)
        return JanusRollout(bundle, sampling, num_generations=1)(prompts)["completion_ids"]

    greedy = run(1, temperature=0.0, image_temperature=0.0)
    assert greedy == run(2, temperature=0.0, image_temperature=0.0)
    assert greedy == run(3, top_p=1e-6, image_top_p=1e-6)  # top-p that small: the top token
    assert run(4) != run(5)  # sampling does vary

    # text top-p 0.3 at T=0.8: every rationale token lies inside its step's nucleus
    torch.manual_seed(6)
    sampling = SamplingConfig(
        max_rationale_tokens=12, temperature=0.8, top_p=0.3, cfg_mode="none", decode=False
    )
    rollout = JanusRollout(bundle, sampling, num_generations=1)
    rollout(prompts * 3)
    checked = 0
    for sample in rollout.last.samples:
        ids = torch.tensor([sample.prompt_ids + sample.rationale_ids])
        with torch.no_grad():
            hidden = bundle.hidden(bundle.embed(ids, torch.zeros_like(ids, dtype=torch.bool)))
            probs = torch.softmax(bundle.text_logits(hidden.last_hidden_state[0]) / 0.8, -1)
        start = len(sample.prompt_ids) - 1
        for k, token in enumerate(sample.rationale_ids):
            p = probs[start + k]
            assert float(p[p > p[token]].sum()) < 0.3 + 1e-5
            checked += 1
    assert checked >= 30


# -- learning -------------------------------------------------------------------------------
def test_grpo_learns_a_pixel_reward(tiny_dir, tmp_path, monkeypatch):
    """A random VQ decoder is a chaotic function of the codes (half the codes matching a
    target image change nothing measurable), unlike a trained one, where each code paints
    its patch. The decoder is replaced by such a palette so a redness reward is learnable."""
    palette = torch.rand(64, 3, generator=torch.Generator().manual_seed(0)) * 255

    def decode(self, codes):
        grid = int(codes.shape[1] ** 0.5)
        return [
            Image.fromarray(palette[row].view(grid, grid, 3).to(torch.uint8).numpy(), "RGB")
            for row in codes.cpu()
        ]

    monkeypatch.setattr(JanusBundle, "decode_images", decode)
    best = float(max(p[0] - (p[1] + p[2]) / 2 for p in palette.tolist()) / 255)
    torch.manual_seed(0)
    args = config(tmp_path, max_steps=12, learning_rate=3e-2, max_rationale_tokens=4)
    trainer = JanusGRPOTrainer(
        bundle_of(tiny_dir), [redness], args, train_dataset=prompts_dataset(["red"] * 8)
    )
    trainer.train()
    rewards = history(trainer, "reward")
    entropy = history(trainer, "entropy/image")
    start, end = np.mean(rewards[:2]), np.mean(rewards[-3:])
    assert end - start > 0.4 * (best - start), rewards
    assert entropy[-1] < entropy[0] - 1.0  # the image policy concentrated
    for key in (
        "rationale/mean_length",
        "reward/group_std",
        "entropy/text",
        "clip_ratio/region_mean",
    ):
        assert history(trainer, key), key


# -- dynamic sampling --------------------------------------------------------------------------
def test_dynamic_sampling_resamples_flat_groups_then_masks_them(tiny_dir, tmp_path):
    calls: list[str] = []
    late_seen = {"n": 0}

    def reward(prompts, completions, images=None, **kw):
        assert kw["tag"] == ["test"] * len(prompts)  # dataset columns reach the reward
        out = []
        for prompt, image in zip(prompts, images, strict=True):
            calls.append(prompt)
            varied = float(np.asarray(image).mean())
            if prompt == "flat":
                out.append(0.5)
            elif prompt == "late":  # flat on the first pass only
                late_seen["n"] += 1
                out.append(0.5 if late_seen["n"] <= 4 else varied)
            else:
                out.append(varied)
        return out

    args = config(
        tmp_path,
        per_device_train_batch_size=12,
        dynamic_sampling=True,
        dynamic_sampling_max_rounds=2,
        shuffle_dataset=False,
    )
    trainer = JanusGRPOTrainer(
        bundle_of(tiny_dir), [reward], args, train_dataset=prompts_dataset(["flat", "late", "ok"])
    )
    trainer.train()
    # 12 first, then round 1: flat + late groups (8), round 2: flat alone (4); never twice
    assert len(calls) == 24
    assert calls.count("flat") == 12 and calls.count("late") == 8 and calls.count("ok") == 4
    assert history(trainer, "dynamic_sampling/rounds") == [2.0]
    assert history(trainer, "dynamic_sampling/dropped_frac") == [pytest.approx(1 / 3)]
    batch = trainer._buffered_inputs[0]
    trained = (batch["completion_mask"] * batch["tool_mask"]).sum(-1)
    assert int((trained == 0).sum()) == 4  # the flat group is out of the loss
    assert torch.all(batch["advantages"][trained == 0] == 0)
    assert int((batch["advantages"] != 0).sum()) >= 7


def test_flat_groups():
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, math.nan, math.nan, math.nan, 2.0])
    assert flat_groups(rewards[:8], 2).tolist() == [True, True, False, True]
    assert flat_groups(rewards[5:], 5).tolist() == [False]


# -- entropy control, balance, KL ----------------------------------------------------------------
def test_entropy_controllers_move_and_enter_the_loss(tiny_dir, tmp_path):
    torch.manual_seed(0)
    args = config(
        tmp_path,
        max_steps=2,
        entropy_control=True,
        text_entropy_target=100.0,  # above any entropy: the text coefficient must rise
        image_entropy_target=0.0,  # below any entropy: the image coefficient must fall
        entropy_coef_init=0.5,
        entropy_coef_lr=1e-3,
        text_image_balance=0.3,
        beta=0.05,
    )
    trainer = JanusGRPOTrainer(
        bundle_of(tiny_dir), [redness], args, train_dataset=prompts_dataset(["a", "b"])
    )
    trainer.train()
    text, image = history(trainer, "entropy/coef_text"), history(trainer, "entropy/coef_image")
    assert text[0] > 0.5 and text[1] > text[0]
    assert image[0] < 0.5 and image[1] < image[0]
    assert len(history(trainer, "kl")) == 2  # the reference model scored every step

    # the bonus is -coef_text * H_text - coef_image * H_image on top of TRL's loss
    inputs = trainer._buffered_inputs[0]
    ctl = trainer.entropy_controllers
    trainer.model.train()
    losses = []
    for coef_text, coef_image in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)):
        ctl["text"].coef, ctl["image"].coef = coef_text, coef_image
        losses.append(trainer._compute_loss(trainer.model, inputs).item())
    h_text = trainer._metrics["train"]["entropy/text"][-1]
    h_image = trainer._metrics["train"]["entropy/image"][-1]
    ga = trainer.current_gradient_accumulation_steps
    assert losses[0] - losses[1] == pytest.approx(h_text / ga, rel=1e-3)
    assert losses[0] - losses[2] == pytest.approx(h_image / ga, rel=1e-3)


def test_text_image_balance_weights(tiny_dir, tmp_path):
    bundle = bundle_of(tiny_dir)
    trainer = JanusGRPOTrainer(
        bundle,
        [redness],
        config(tmp_path, text_image_balance=0.25),
        train_dataset=prompts_dataset(["a"]),
    )
    t, boi = bundle.image_tokens, bundle.boi_id
    rows = [[7, 8, 9, boi] + [1] * t, [boi] + [2] * t + [0, 0, 0]]
    inputs = {
        "completion_ids": torch.tensor(rows),
        "completion_mask": torch.tensor([[1] * (4 + t), [1] * (1 + t) + [0, 0, 0]]),
        "tool_mask": torch.tensor([[1, 1, 1, 0] + [1] * t, [0] + [1] * (t + 3)]),
    }
    w = trainer.balanced_weights(inputs)
    assert float(w[0, :3].sum()) == pytest.approx(0.25 * (3 + t))  # text: a quarter
    assert float(w[0, 4:].sum()) == pytest.approx(0.75 * (3 + t))
    assert float(w[0, 3]) == 0.0  # the forced <begin_of_image> stays out
    assert torch.allclose(w[1, 1 : 1 + t], torch.ones(t))  # no rationale: plain weights
    assert float(w[1].sum()) == t


def test_unsupported_sampling_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="top_k=5"):
        config(tmp_path, top_k=5)
    with pytest.raises(ValueError, match="mask_truncated_completions"):
        config(tmp_path, mask_truncated_completions=True)
    with pytest.raises(ValueError, match="cfg_mode"):
        config(tmp_path, cfg_mode="always")


def test_pack_marks_only_sampled_tokens():
    bundle = type("B", (), {"boi_id": 5})()
    rollout = JanusRollout.__new__(JanusRollout)
    rollout.bundle = bundle
    sampled = Sample("p", "r", None, [1, 2], [7, 8], [3, 4], [-1.0, -2.0], [-3.0, -4.0], True, -0.5)
    forced = Sample("p", "", None, [1, 2], [], [3, 4], [], [-3.0, -4.0], False, None, "length")
    out = rollout.pack([sampled, forced], keep=[True, False])
    assert out["completion_ids"] == [[7, 8, 5, 3, 4], [5, 3, 4]]
    assert out["logprobs"] == [[-1.0, -2.0, -0.5, -3.0, -4.0], [0.0, -3.0, -4.0]]
    assert out["env_mask"] == [[1, 1, 1, 1, 1], [0, 0, 0]]


# -- the script -----------------------------------------------------------------------------------
class RednessJudge(FakeOpenAI):
    """An OpenAI-compatible judge answering yes/no with p(yes) from the image's redness."""

    def handle(self, handler, body: dict) -> None:
        content = body["messages"][0]["content"]
        url = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        with self._lock:
            self.requests.append("judge")
        p_yes = min(0.99, max(0.01, 0.5 + 5 * redness([], [], [image])[0]))
        top = [
            {"token": "Yes", "logprob": math.log(p_yes), "bytes": None},
            {"token": "No", "logprob": math.log(1 - p_yes), "bytes": None},
        ]
        handler._send(
            200,
            {
                "id": "judge",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "length",
                        "message": {"role": "assistant", "content": "Yes"},
                        "logprobs": {"content": [{**top[0], "top_logprobs": top}]},
                    }
                ],
                "usage": {"prompt_tokens": 90, "completion_tokens": 1, "total_tokens": 91},
            },
        )


def test_train_grpo_script_end_to_end(tiny_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"prompt": f"a red cube number {i}", "tag": "color"}) for i in range(4)
        )
    )
    out = tmp_path / "run"
    with RednessJudge() as judge:
        cmd = [
            sys.executable, str(ROOT / "train/grpo.py"),
            "--config", str(ROOT / "train/recipes/grpo_janus_pro.yaml"),
            "--model", str(tiny_dir), "--prompts", str(prompts),
            "--judge_base_url", judge.base_url, "--judge_model", "fake-judge",
            "--reward", "judge:1.0",
            "--judge_mode", "prob", "--trackers", "none",
            "--output_dir", str(out), "--max_steps", "2", "--use_cpu", "true", "--bf16", "false",
            "--gradient_checkpointing", "false", "--per_device_train_batch_size", "8",
            "--gradient_accumulation_steps", "1", "--num_generations", "4",
            "--max_rationale_tokens", "4", "--image_log_steps", "1", "--save_strategy", "no",
        ]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "unused"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 2 steps x 8 samples, plus 4 per group dynamic sampling drew again; each judged once
    resampled = sum(r.get("dynamic_sampling/resampled_groups") or 0 for r in rows)
    assert len(judge.requests) == 16 + 4 * resampled
    scored = [r for r in rows if r.get("reward") is not None]
    assert len(scored) == 2 and all(0 < r["reward"] < 1 for r in scored)
    assert any("entropy/image" in r for r in rows) and any(
        "rationale/mean_length" in r for r in rows
    )
    assert sorted(p.name for p in (out / "images").glob("*.png"))  # rollout grids
    reloaded = load_janus(out, device="cpu")
    assert reloaded.image_tokens == 16
    assert json.loads((out / "config.json").read_text())["architectures"] == [
        "JanusForConditionalGeneration"
    ]


def test_script_flags_and_prompt_loading(tmp_path):
    argv = ["--model", "m", "--reward", "judge:1", "--x", "1", "--reward", "clip:0.5"]
    assert merge_repeated_flag(argv) == [
        "--model",
        "m",
        "--x",
        "1",
        "--reward",
        "judge:1",
        "clip:0.5",
    ]

    from rationale_forge.training.grpo import GRPOScriptArguments

    script = GRPOScriptArguments(model="m", prompts="p", reward=["judge:2", "clip:0.5"])
    with pytest.raises(ValueError, match="judge_base_url"):
        parse_rewards(script)
    script.judge_base_url, script.judge_model = "http://x/v1", "j"
    specs = parse_rewards(script)
    assert [(s["type"], s["weight"]) for s in specs] == [("vlm_judge", 2.0), ("clip", 0.5)]
    with pytest.raises(ValueError, match="kind 'dice'"):
        parse_rewards(GRPOScriptArguments(model="m", prompts="p", reward=["dice:1"]))

    good = tmp_path / "good.jsonl"
    good.write_text(
        '{"prompt": "a cat", "tag": "single"}\n\n{"prompt": "two dogs", "tag": "count"}\n'
    )
    table = load_prompts(str(good))
    assert table["prompt"] == ["a cat", "two dogs"] and table["tag"] == ["single", "count"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a cat"}\n{"prompt": \n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_prompts(str(bad))
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"prompt": "a cat"}\n{"prompt": ""}\n')
    with pytest.raises(ValueError, match="row 1"):
        load_prompts(str(empty))
    # forge prompts output: nested GenEval metadata of varying shape, train/val rows
    rl = tmp_path / "rl.jsonl"
    subprocess.run(
        [sys.executable, "-m", "rationale_forge.cli", "prompts", "--kind", "mixed", "--n", "40",
         "--val-fraction", "0.25", "--seed", "1", "--out", str(rl)],
        check=True, capture_output=True,
    )  # fmt: skip
    lines = [json.loads(x) for x in rl.read_text().splitlines()]
    table = load_prompts(str(rl))
    assert len(table) == sum(x["split"] == "train" for x in lines) < len(lines)
    assert set(table["split"]) == {"train"}
    assert (
        json.loads(table["include"][0])
        == next(x for x in lines if x["split"] == "train")["include"]
    )
    assert len(load_prompts(str(rl), split="val")) == sum(x["split"] == "val" for x in lines)
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "a cat"}\n')
    with pytest.raises(ValueError, match="no 'prompt' column"):
        load_prompts(str(other))
    assert load_prompts(str(other), column="text")["prompt"] == ["a cat"]
