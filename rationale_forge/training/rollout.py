"""The GRPO rollout for Janus-Pro: rationale, ``<begin_of_image>``, image codes, picture.

:class:`JanusRollout` is what TRL's ``GRPOTrainer`` calls as ``rollout_func(prompts, trainer)``.
For every prompt entry (TRL repeats each prompt ``num_generations`` times) it samples one
rationale with the text head (temperature and top-p from the trainer's config, length cap
``max_rationale_tokens``), appends ``<begin_of_image>`` (forced when the model did not write
it), samples the VQ codes with the generation head (KV cache, optional classifier-free
guidance) and decodes them to a picture. It returns

* ``prompt_ids``, ``completion_ids`` (``rationale + [<begin_of_image>] + codes``),
  ``logprobs`` (the sampler's, the same quantity the loss recomputes; ``0.0`` at a forced
  ``<begin_of_image>``, whose position the loss ignores);
* ``env_mask``: 1 where the model chose the token, 0 at a forced ``<begin_of_image>`` (the
  model did not write it, so it is not trained as if it had) and on every token of a group
  that dynamic sampling had to give up on;
* extra fields, handed to the reward functions: ``images`` (PIL), ``rationale`` (text),
  ``stop`` (``boi``, ``eos``, ``length`` or ``none``).

Dynamic sampling: after the first pass the group's rewards are computed (by the trainer's
reward functions, through ``trainer.score_rollout``); a group whose rewards are all equal
gives no learning signal (every advantage is zero), so it is sampled again for the same
prompt, at most ``max_rounds`` more times. Groups still flat after that are masked out.
Resampling the *same* prompt (rather than drawing new prompts, as DAPO does) keeps TRL's
bookkeeping of prompts, rows and logs aligned; the rewards computed here are reused by the
trainer, so a judge never scores a sample twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .dynamic_sampling import zero_spread_groups
from .janus import JanusBundle
from .rewards import prompt_text
from .sampling import Sample, SamplingConfig, generate_samples

__all__ = ["JanusRollout", "RolloutStats", "flat_groups", "prompt_text"]


def flat_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(groups,) bool: True where a group teaches nothing (see
    :func:`~.dynamic_sampling.zero_spread_groups`; NaN rewards count as missing)."""
    values = [None if v != v else float(v) for v in rewards.tolist()]
    flat = torch.zeros(len(values) // group_size, dtype=torch.bool)
    flat[zero_spread_groups(values, group_size)] = True
    return flat


@dataclass
class RolloutStats:
    """What the last rollout did, for logging."""

    samples: list[Sample] = field(default_factory=list)
    rounds: int = 0  # resampling rounds run (0: dynamic sampling off or nothing flat)
    resampled_groups: int = 0
    dropped_groups: int = 0
    groups: int = 0
    rewards: torch.Tensor | None = None  # (N, reward funcs) when dynamic sampling scored them


# Scores samples at the given entry indices: (len(indices), reward funcs) float tensor and the
# combined (weighted) reward per sample.
Scorer = Callable[[list[int], list[Sample]], tuple[torch.Tensor, torch.Tensor]]


class JanusRollout:
    """``rollout_func`` for :class:`~.grpo_trainer.JanusGRPOTrainer` (see the module doc)."""

    def __init__(
        self,
        bundle: JanusBundle,
        sampling: SamplingConfig,
        num_generations: int,
        dynamic_sampling: bool = False,
        max_rounds: int = 3,
    ):
        if sampling.seed is not None:
            # A fixed seed would replay the same random stream every step.
            raise ValueError("the rollout draws from torch's global RNG: leave sampling.seed None")
        if max_rounds < 0:
            raise ValueError(f"max_rounds must be >= 0, got {max_rounds}")
        self.bundle = bundle
        self.sampling = sampling
        self.num_generations = num_generations
        self.dynamic_sampling = dynamic_sampling
        self.max_rounds = max_rounds
        self.last = RolloutStats()

    # -- sampling --------------------------------------------------------------------------
    def sample(self, texts: list[str], model=None) -> list[Sample]:
        """One sample per entry of ``texts`` with ``model`` (default: the bundle's)."""
        bundle = self.bundle if model is None else replace(self.bundle, model=model)
        return generate_samples(bundle, texts, 1, self.sampling)

    @staticmethod
    def extra_fields(samples: list[Sample]) -> dict[str, list]:
        """The per-sample fields the reward functions receive."""
        return {
            "images": [s.image for s in samples],
            "rationale": [s.rationale for s in samples],
            "stop": [s.stop for s in samples],
        }

    def _model_context(self, trainer):
        if trainer is None:
            return contextlib.nullcontext(None)
        from trl.models.utils import unwrap_model_for_generation

        # The plain module (out of DDP/FSDP/DeepSpeed wrappers, ZeRO-3 weights gathered)
        # runs the hand-written KV-cached loop; autocast gives bf16 sampling on GPUs.
        unwrap = unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
        )
        stack = contextlib.ExitStack()
        model = stack.enter_context(unwrap)
        dist = getattr(trainer, "_dist", None)
        if dist is not None:  # FSDP v1: the root's own parameters (embeddings, heads) whole
            stack.enter_context(dist.summon_full_params(trainer.model_wrapped, recurse=False))
        stack.enter_context(trainer.accelerator.autocast())
        return _Entered(stack, model)

    # -- the rollout -------------------------------------------------------------------------
    def __call__(self, prompts: list[Any], trainer=None) -> dict[str, list]:
        texts = [prompt_text(p) for p in prompts]
        stats = RolloutStats(groups=len(texts) // max(1, self.num_generations))
        with self._model_context(trainer) as model:
            samples = self.sample(texts, model)
            keep = [True] * len(samples)
            scorer: Scorer | None = getattr(trainer, "score_rollout", None)
            training = getattr(getattr(trainer, "model", None), "training", False)
            if self.dynamic_sampling and scorer is not None and training:
                if len(texts) % self.num_generations:
                    raise ValueError(
                        f"dynamic sampling needs whole groups: {len(texts)} prompts per rollout is "
                        f"not a multiple of num_generations={self.num_generations}"
                    )
                per_func, combined = scorer(list(range(len(samples))), samples)
                for _ in range(self.max_rounds):
                    flat = flat_groups(combined, self.num_generations)
                    if not bool(flat.any()):
                        break
                    stats.rounds += 1
                    stats.resampled_groups += int(flat.sum())
                    index = [
                        g * self.num_generations + j
                        for g in torch.nonzero(flat).flatten().tolist()
                        for j in range(self.num_generations)
                    ]
                    fresh = self.sample([texts[i] for i in index], model)
                    new_per_func, new_combined = scorer(index, fresh)
                    for k, i in enumerate(index):
                        samples[i] = fresh[k]
                    per_func[index] = new_per_func
                    combined[index] = new_combined
                flat = flat_groups(combined, self.num_generations)
                stats.dropped_groups = int(flat.sum())
                keep = flat.repeat_interleave(self.num_generations).logical_not().tolist()
                stats.rewards = per_func
        stats.samples = samples
        self.last = stats
        return self.pack(samples, keep)

    def pack(self, samples: list[Sample], keep: list[bool] | None = None) -> dict[str, list]:
        """TRL's rollout output for ``samples`` (``keep[i]`` False masks sample i out)."""
        boi = self.bundle.boi_id
        keep = keep or [True] * len(samples)
        out: dict[str, list] = {
            "prompt_ids": [],
            "completion_ids": [],
            "logprobs": [],
            "env_mask": [],
        }
        for sample, kept in zip(samples, keep, strict=True):
            on = int(kept)
            n_text, n_image = len(sample.rationale_ids), len(sample.image_codes)
            out["prompt_ids"].append(list(sample.prompt_ids))
            out["completion_ids"].append([*sample.rationale_ids, boi, *sample.image_codes])
            boi_logprob = sample.boi_logprob if sample.boi_sampled else 0.0
            out["logprobs"].append([*sample.text_logprobs, boi_logprob, *sample.image_logprobs])
            mask = [on] * n_text + [on if sample.boi_sampled else 0] + [on] * n_image
            out["env_mask"].append(mask)
        out.update(self.extra_fields(samples))
        return out


class _Entered:
    """An ExitStack that yields a value from ``__enter__``."""

    def __init__(self, stack: contextlib.ExitStack, value):
        self.stack, self.value = stack, value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)
