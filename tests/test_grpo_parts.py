"""The pieces around the GRPO trainer: entropy control, dynamic sampling, advantages and
the run tracker."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from rationale_forge.training.dynamic_sampling import (
    collect_groups,
    group_advantages,
    keep_informative_groups,
    zero_spread_groups,
)
from rationale_forge.training.entropy import (
    AdaptiveEntropyController,
    image_controller,
    masked_mean,
    text_controller,
    token_entropy,
)
from rationale_forge.training.track import Tracker, available_backends, image_grid


# -- entropy ---------------------------------------------------------------------------------
def test_token_entropy_matches_the_definition_and_is_stable():
    logits = torch.randn(3, 5, 17)
    p = logits.softmax(-1)
    expected = -(p * p.log()).sum(-1)
    assert torch.allclose(token_entropy(logits), expected, atol=1e-5)
    uniform = torch.zeros(2, 64)
    assert torch.allclose(token_entropy(uniform), torch.full((2,), math.log(64)))
    huge = torch.tensor([[1e4, 0.0, -1e4], [3e38, 3e38, -3e38]])  # overflow in a naive softmax
    h = token_entropy(huge)
    assert torch.isfinite(h).all() and h[0] == pytest.approx(0.0, abs=1e-6)
    assert h[1] == pytest.approx(math.log(2), abs=1e-5)
    masked = torch.tensor([[0.0, 0.0, -float("inf"), -float("inf")]])  # grammar-masked logits
    assert token_entropy(masked).item() == pytest.approx(math.log(2), abs=1e-6)
    half = token_entropy(torch.randn(4, 9, dtype=torch.bfloat16))
    assert half.dtype == torch.float32


def test_masked_mean():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 1]])
    assert masked_mean(values, mask).item() == pytest.approx(3.0)
    assert masked_mean(values).item() == pytest.approx(3.5)
    assert math.isnan(masked_mean(values, torch.zeros_like(mask)).item())


def test_controller_moves_the_coefficient_the_right_way():
    ctl = AdaptiveEntropyController(target=2.0, coef=0.1, lr=0.01, max_coef=0.5)
    assert ctl.update(1.0) == pytest.approx(0.11)  # below target: more bonus
    assert ctl.update(torch.tensor(4.0)) == pytest.approx(0.09)  # above: less
    assert ctl.update(float("nan")) == pytest.approx(0.09)  # ignored
    for _ in range(1000):
        ctl.update(-100.0)
    assert ctl.coef == 0.5  # clipped at max_coef
    for _ in range(1000):
        ctl.update(100.0)
    assert ctl.coef == 0.0  # and at min_coef
    state = ctl.state_dict()
    other = AdaptiveEntropyController(target=2.0)
    other.load_state_dict(state)
    assert other.coef == ctl.coef
    assert text_controller().target == 2.0 and image_controller().target == 7.0
    assert text_controller() is not text_controller()  # separate state per token kind
    with pytest.raises(ValueError, match="lr"):
        AdaptiveEntropyController(target=1.0, lr=0.0)
    with pytest.raises(ValueError, match="min_coef"):
        AdaptiveEntropyController(target=1.0, min_coef=1.0, max_coef=0.5)


def _toy_run(target: float | None, steps: int = 400, vocab: int = 64) -> list[float]:
    """A policy over ``vocab`` tokens trained toward one token (which collapses its
    entropy) with the controller's entropy bonus; returns the entropy per step."""
    torch.manual_seed(0)
    logits = torch.zeros(vocab, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=0.5)
    ctl = AdaptiveEntropyController(target=target or 0.0, lr=0.05, max_coef=10.0)
    history = []
    for _ in range(steps):
        entropy = token_entropy(logits)
        loss = -torch.log_softmax(logits, -1)[0] - ctl.coef * entropy
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(entropy.item())
        if target is not None:
            ctl.update(entropy.detach())
    return history


@pytest.mark.parametrize("target", [2.0, 3.5])
def test_controller_holds_entropy_at_target_on_a_toy_policy(target):
    uncontrolled = _toy_run(None)
    assert uncontrolled[-1] < 0.2  # without the bonus the policy collapses
    controlled = _toy_run(target)
    tail = controlled[-100:]
    assert sum(tail) / len(tail) == pytest.approx(target, abs=0.05)
    assert max(abs(h - target) for h in tail) < 0.1


# -- dynamic sampling ------------------------------------------------------------------------
def test_zero_spread_groups_and_keeping_informative_ones():
    rewards = [
        1.0, 1.0, 1.0,  # all equal: dropped
        0.0, 1.0, 0.0,  # kept
        None, None, None,  # all missing: dropped
        0.5, None, 0.5,  # equal where present: dropped
        0.3, None, 0.7,  # kept
        0.2, 0.2 + 1e-9, 0.2,  # within atol: dropped
        None, 0.9, float("nan"),  # a single value present: dropped
    ]  # fmt: skip
    assert zero_spread_groups(rewards, 3) == [0, 2, 3, 5, 6]
    samples = [f"s{i}" for i in range(len(rewards))]
    kept, kept_rewards, dropped = keep_informative_groups(samples, rewards, 3)
    assert kept == ["s3", "s4", "s5", "s12", "s13", "s14"]
    assert kept_rewards == [0.0, 1.0, 0.0, 0.3, None, 0.7]
    assert dropped == 5
    assert zero_spread_groups([0.2, 0.25], 2, atol=0.1) == [0]
    with pytest.raises(ValueError, match="groups of 3"):
        zero_spread_groups([1.0] * 4, 3)
    with pytest.raises(ValueError, match="2 samples but 3 rewards"):
        keep_informative_groups(["a", "b"], [1.0, 0.0, 1.0], 3)


def test_collect_groups_gathers_enough_and_respects_its_bound():
    calls = []

    def sampler(pattern):
        """Each call: the asked number of groups of 2 (numbered across calls); group g is
        informative when ``pattern(g)``."""

        def sample(n_groups):
            calls.append(n_groups)
            samples, rewards = [], []
            for _ in range(n_groups):
                g = len(samples) // 2 + sum(calls[:-1])
                informative = pattern(g)
                samples += [f"g{g}a", f"g{g}b"]
                rewards += [0.0, 1.0] if informative else [1.0, 1.0]
            return samples, rewards

        return sample

    # every other group informative: 4 asked, 2 kept; 2 asked, 1 kept; 1 asked, 1 kept
    result = collect_groups(
        sampler(lambda g: g % 2 == 0), want_groups=4, group_size=2, max_rounds=8
    )
    assert result.complete and result.groups == 4 and len(result.samples) == 8
    assert calls == [4, 2, 1] and result.rounds == 3 and result.dropped == 3
    assert result.samples[::2] == ["g0a", "g2a", "g4a", "g6a"]

    # nothing informative: stops after max_rounds with what it has
    calls.clear()
    result = collect_groups(sampler(lambda g: False), want_groups=3, group_size=2, max_rounds=3)
    assert not result.complete and result.groups == 0 and result.samples == []
    assert result.rounds == 3 and calls == [3, 3, 3] and result.dropped == 9

    # more informative groups than wanted: the extra are not kept
    calls.clear()
    result = collect_groups(sampler(lambda g: True), want_groups=2, group_size=2, max_rounds=1)
    assert result.complete and result.groups == 2 and len(result.rewards) == 4
    with pytest.raises(ValueError, match="max_rounds"):
        collect_groups(sampler(lambda g: True), 2, 2, max_rounds=0)


def test_group_advantages():
    rewards = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 1.0, None, 0.0, 0.5]
    adv = group_advantages(rewards, 4)
    t = torch.tensor([1.0, 0.0, 0.0, 1.0])
    expected = (t - t.mean()) / (t.std() + 1e-6)
    assert torch.allclose(adv[:4], expected, atol=1e-6)
    assert torch.equal(adv[4:8], torch.zeros(4))  # zero spread: no signal
    present = torch.tensor([1.0, 0.0, 0.5])
    scaled = (present - present.mean()) / (present.std() + 1e-6)
    assert adv[9].item() == 0.0  # a missing reward has no advantage
    assert torch.allclose(adv[[8, 10, 11]], scaled, atol=1e-6)
    raw = group_advantages(rewards, 4, scale="none")
    assert torch.allclose(raw[:4], t - 0.5)
    assert adv.dtype == torch.float32 and adv.shape == (12,)
    # TRL's formula on the same rewards (its GRPO: mean/std per group, unbiased std)
    grouped = torch.tensor(rewards[:8]).view(-1, 4)
    trl_like = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-6)
    assert torch.allclose(adv[:8], trl_like.flatten(), atol=1e-6)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(rewards, 4, scale="rank")


# -- tracking --------------------------------------------------------------------------------
def test_image_grid_layout_and_captions():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0)]
    images = [Image.new("RGB", (32, 32), c) for c in colours]
    grid = image_grid(images, cols=2)
    assert grid.size == (64, 96)
    assert grid.getpixel((5, 5)) == colours[0] and grid.getpixel((40, 5)) == colours[1]
    assert grid.getpixel((5, 70)) == colours[4]
    assert grid.getpixel((40, 70)) == (255, 255, 255)  # the empty cell
    captioned = image_grid(images, cols=3, captions=[f"prompt {i}" for i in range(5)], cell=64)
    assert captioned.size == (192, 2 * (64 + 40))
    strip = captioned.crop((0, 64, 64, 104))  # the first caption's strip has dark text
    assert strip.convert("L").getextrema()[0] < 100
    mixed = image_grid([Image.new("L", (10, 40), 128), Image.new("RGBA", (80, 20))], cols=2)
    assert mixed.size == (160, 80) and mixed.mode == "RGB"
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        image_grid(images[:2], 2, captions=["x"])
    with pytest.raises(TypeError, match="captions="):
        image_grid(images[:2], ["a", "b"])
    assert image_grid(images).size == (96, 64)  # default: 3 columns for 5 images


def test_tracker_writes_jsonl_and_image_grids(tmp_path, caplog):
    caplog.set_level("INFO")
    with Tracker(tmp_path / "run", backends="none", image_every=2) as tracker:
        tracker.log({"loss": 0.5, "reward/mean": torch.tensor(0.25), "note": "skip"}, step=1)
        tracker.log({"loss": float("nan")}, step=2)
        images = [Image.new("RGB", (16, 16), (i * 40, 0, 0)) for i in range(4)]
        assert tracker.log_images(images, step=1) is None  # not an image step
        path = tracker.log_images(images, step=2, captions=["a"] * 4, name="rollouts")
        forced = tracker.log_images(images, step=3, force=True)
        ready = tracker.log_images({"rollout": image_grid(images, 4)}, step=4)
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["loss"] == 0.5 and rows[0]["reward/mean"] == 0.25 and "note" not in rows[0]
    assert rows[1]["loss"] is None
    assert path == tmp_path / "run" / "images" / "rollouts_000002.png"
    assert Image.open(path).size[0] == 32  # two columns of 16 px
    assert forced.name == "samples_000003.png"
    assert ready.name == "rollout_000004.png" and Image.open(ready).size == (64, 16)
    assert "loss=0.5" in caplog.text


def test_tracker_backends_are_detected_lazily(tmp_path):
    installed = available_backends()
    tracker = Tracker(tmp_path / "auto")  # "auto": whatever is installed, none is fine
    assert tracker.backends == installed
    tracker.close()
    missing = [b for b in ("tensorboard", "trackio", "wandb") if b not in installed]
    if missing:
        with pytest.raises(ValueError, match="not installed"):
            Tracker(tmp_path / "x", backends=[missing[0]])
    with pytest.raises(ValueError, match="unknown tracker"):
        Tracker(tmp_path / "y", backends=["mlflow"])
