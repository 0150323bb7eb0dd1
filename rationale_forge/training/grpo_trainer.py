"""Stage two: GRPO for Janus-Pro on TRL's ``GRPOTrainer``.

What TRL does unchanged: batching prompts into groups, advantages, the clipped policy loss
(``epsilon``), the KL term (``beta``), loss aggregation (``loss_type``), optimisation, logging,
checkpoints. What is Janus-specific:

* the rollout (:mod:`.rollout`): rationale with the text head, ``<begin_of_image>``, image codes
  with the generation head (KV cache, CFG), decoded pictures handed to the rewards;
* per-token log-probs and entropies (:meth:`JanusGRPOTrainer._get_per_token_logps_and_entropies`):
  TRL's version runs one text head over everything; here each position goes to its own head
  through the model's scoring forward (:class:`~.janus.JanusForRationaleGeneration`);
* a few small hooks, each explained where it is: rationales as the completion text, rewards
  reused from dynamic sampling, text/image balance and per-kind entropy control around TRL's
  loss.

Token weighting. TRL's ``loss_type`` decides how token losses are averaged: ``grpo`` per
sequence then over sequences, ``bnpo`` over the tokens of a micro-batch, ``dapo`` (the paper's
"token-mean") over the tokens of the whole accumulated batch. In all of them a completion's
576 image tokens outweigh its ~100-400 rationale tokens. ``text_image_balance = b`` reweights
each completion so its text tokens carry the share ``b`` of its loss and its image tokens
``1 - b`` (weights average 1 per token, so every ``loss_type`` keeps its scale); ``None`` leaves
plain token weighting.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from trl import GRPOConfig, GRPOTrainer

from .entropy import AdaptiveEntropyController, masked_mean
from .janus import DEFAULT_INSTRUCTION, JanusBundle, JanusForRationaleGeneration
from .logprobs import completion_image_mask, token_logprobs
from .rollout import JanusRollout, prompt_text
from .sampling import CFG_MODES, Sample, SamplingConfig

log = logging.getLogger(__name__)

__all__ = ["JanusGRPOConfig", "JanusGRPOTrainer"]


@dataclass
class JanusGRPOConfig(GRPOConfig):
    """TRL's ``GRPOConfig`` plus what a Janus rollout and loss need.

    Text sampling uses TRL's ``temperature`` and ``top_p``; image tokens have their own."""

    think: bool = field(default=True, metadata={"help": "Write a rationale before drawing."})
    max_rationale_tokens: int = field(
        default=448,
        metadata={"help": "Rationale length cap; <begin_of_image> is forced after it."},
    )
    image_temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of image tokens (0: greedy)."}
    )
    image_top_p: float = field(default=1.0, metadata={"help": "Top-p of image tokens."})
    cfg_mode: str = field(
        default="none",
        metadata={
            "help": "Classifier-free guidance in the rollout: 'none' (sample and train the "
            "conditional model), 'sample_only' (sample guided, train the conditional "
            "log-prob), 'guided' (sample and train the guided log-prob).",
            "choices": list(CFG_MODES),
        },
    )
    cfg_weight: float = field(default=5.0, metadata={"help": "CFG weight (cfg_mode != none)."})
    use_cache: bool = field(default=True, metadata={"help": "KV cache in the rollout."})
    rollout_batch_size: int = field(
        default=16, metadata={"help": "Sequences sampled at once per process."}
    )
    instruction: str | None = field(
        default=DEFAULT_INSTRUCTION,
        metadata={"help": "Instruction after the prompt; must match the one used in SFT."},
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={"help": "Resample groups whose rewards are all equal (then mask them)."},
    )
    dynamic_sampling_max_rounds: int = field(
        default=3, metadata={"help": "At most this many resampling rounds per rollout."}
    )
    text_image_balance: float | None = field(
        default=None,
        metadata={
            "help": "Share of each completion's loss carried by its text tokens (0-1); "
            "None: every token weighs the same."
        },
    )
    entropy_control: bool = field(
        default=False,
        metadata={"help": "Adaptive entropy bonus, one controller for text, one for image."},
    )
    text_entropy_target: float = field(default=2.0, metadata={"help": "Nats per text token."})
    image_entropy_target: float = field(default=7.0, metadata={"help": "Nats per image token."})
    entropy_coef_init: float = field(default=0.0, metadata={"help": "Starting coefficient."})
    entropy_coef_lr: float = field(
        default=1e-3, metadata={"help": "Coefficient step per nat of error per optimizer step."}
    )
    entropy_coef_max: float = field(default=1.0, metadata={"help": "Coefficient upper bound."})
    image_log_steps: int = field(
        default=50, metadata={"help": "Save a grid of rollout images every N steps (0: never)."}
    )
    image_log_count: int = field(default=16, metadata={"help": "Images per grid."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cfg_mode not in CFG_MODES:
            raise ValueError(f"cfg_mode must be one of {', '.join(CFG_MODES)}: {self.cfg_mode!r}")
        if self.text_image_balance is not None and not 0 <= self.text_image_balance <= 1:
            raise ValueError(f"text_image_balance must be in [0, 1], got {self.text_image_balance}")
        if self.max_rationale_tokens < 0:
            raise ValueError("max_rationale_tokens must be >= 0")
        # What the rollout cannot honour is refused, not silently ignored.
        unsupported = {
            "top_k": (self.top_k, (None, 0)),
            "min_p": (self.min_p, (None, 0.0)),
            "repetition_penalty": (self.repetition_penalty, (1.0,)),
            "use_vllm": (self.use_vllm, (False,)),
            "use_transformers_continuous_batching": (
                self.use_transformers_continuous_batching,
                (False,),
            ),
            # completions end with image codes, never EOS: TRL would call all truncated
            "mask_truncated_completions": (self.mask_truncated_completions, (False,)),
        }
        bad = [f"{k}={v!r}" for k, (v, ok) in unsupported.items() if v not in ok]
        if bad:
            raise ValueError(f"not supported by the Janus rollout: {', '.join(bad)}")
        if self.entropy_control and (self.use_adaptive_entropy or self.entropy_coef):
            raise ValueError(
                "entropy_control (text and image controllers) replaces TRL's single entropy "
                "bonus: leave use_adaptive_entropy off and entropy_coef at 0"
            )

    def sampling_config(self) -> SamplingConfig:
        return SamplingConfig(
            think=self.think,
            max_rationale_tokens=self.max_rationale_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            image_temperature=self.image_temperature,
            image_top_p=self.image_top_p,
            cfg_weight=self.cfg_weight,
            cfg_mode=self.cfg_mode,
            use_cache=self.use_cache,
            seed=None,
            batch_size=self.rollout_batch_size,
            instruction=self.instruction,
        )


class JanusGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` for Janus-Pro: give it a :class:`~.janus.JanusBundle` from ``load_janus``."""

    def __init__(
        self,
        bundle: JanusBundle,
        reward_funcs: Any,
        args: JanusGRPOConfig,
        train_dataset=None,
        eval_dataset=None,
        callbacks=None,
        optimizers=(None, None),
        peft_config=None,
        tracker=None,
    ):
        if not isinstance(args, JanusGRPOConfig):
            raise TypeError("args must be a JanusGRPOConfig")
        if not isinstance(bundle.model, JanusForRationaleGeneration):
            raise TypeError(
                "the model must be a JanusForRationaleGeneration (load it with "
                "rationale_forge.training.janus.load_janus)"
            )
        if args.dynamic_sampling:
            per_process = args.per_device_train_batch_size * args.steps_per_generation
            if per_process % args.num_generations:
                raise ValueError(
                    "dynamic sampling resamples whole groups on each process: "
                    f"per_device_train_batch_size * steps_per_generation ({per_process}) must "
                    f"be a multiple of num_generations ({args.num_generations})"
                )
        self.bundle = bundle
        self.rollout = JanusRollout(
            bundle,
            args.sampling_config(),
            args.num_generations,
            dynamic_sampling=args.dynamic_sampling,
            max_rounds=args.dynamic_sampling_max_rounds,
        )
        self.tracker = tracker
        self._rows: list[dict] | None = None
        self._rollout_extra: dict[str, dict[int, Any]] = {}
        self._stashed_entropies: torch.Tensor | None = None
        self._entropy_window: torch.Tensor | None = None
        self._last_image_step = -1
        self.entropy_controllers = {
            kind: AdaptiveEntropyController(
                target=target,
                coef=args.entropy_coef_init,
                lr=args.entropy_coef_lr,
                max_coef=args.entropy_coef_max,
            )
            for kind, target in (
                ("text", args.text_entropy_target),
                ("image", args.image_entropy_target),
            )
        }
        super().__init__(
            model=bundle.model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=bundle.processor,
            callbacks=callbacks,
            optimizers=optimizers,
            peft_config=peft_config,
            rollout_func=self.rollout,
        )
        # Hook: TRL's `dr_grpo` divides by max_completion_length; a completion here is the
        # rationale cap + <begin_of_image> + the image tokens.
        self.max_completion_length = args.max_rationale_tokens + 1 + bundle.image_tokens
        if self.ref_model is not None:
            # Hook: TRL loads the reference copy as the stock class (the saved config's
            # architecture); give it the scoring forward (a subclass, no new parameters)
            # and drop the instance-level forward TRL's fused LM head installed on it.
            ref = self.accelerator.unwrap_model(self.ref_model)
            if not isinstance(ref, JanusForRationaleGeneration):
                ref.__class__ = JanusForRationaleGeneration
            ref.__dict__.pop("forward", None)

    # -- log-probs: the one essential override -----------------------------------------------
    def _scoring_cfg_weight(self) -> float:
        return self.args.cfg_weight if self.args.cfg_mode == "guided" else 1.0

    def _image_mask(self, input_ids: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
        mask = torch.zeros_like(input_ids, dtype=torch.bool)
        completion = input_ids[:, -logits_to_keep:]
        mask[:, -logits_to_keep:] = completion_image_mask(
            completion, self.bundle.boi_id, self.bundle.image_tokens
        )
        return mask

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **multimodal_inputs,
    ):
        """Per-token log-probs (and entropies) of the completions, text positions through the
        text head, image positions through the generation head (guided when cfg_mode is
        ``guided``), at the rollout's temperatures."""
        batch_size = batch_size or input_ids.size(0)
        image_mask = self._image_mask(input_ids, logits_to_keep)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            rows = slice(start, start + batch_size)
            with self.accelerator.autocast():
                lp, ent = token_logprobs(
                    self.bundle,
                    input_ids[rows],
                    image_mask[rows],
                    attention_mask[rows],
                    logits_to_keep,
                    text_temperature=self.temperature,
                    image_temperature=self.args.image_temperature,
                    cfg_weight=self._scoring_cfg_weight(),
                    compute_entropy=compute_entropy,
                    model=model,
                )
            logps.append(lp)
            if compute_entropy:
                entropies.append(ent)
        logps = torch.cat(logps)
        entropies = torch.cat(entropies) if compute_entropy else None
        if compute_entropy and torch.is_grad_enabled():
            # Hook: the loss wrapper below needs these entropies, with their graph, to add
            # the per-kind entropy bonus; TRL's _compute_loss does not return them.
            self._stashed_entropies = entropies
        return logps, entropies, None

    # -- hooks around TRL's loss ---------------------------------------------------------------
    def _loss_masks(self, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(trained, text, image) bool masks over the completion positions."""
        trained = inputs["completion_mask"].bool()
        if "tool_mask" in inputs:
            trained = trained & (inputs["tool_mask"] > 0)
        is_image = completion_image_mask(
            inputs["completion_ids"], self.bundle.boi_id, self.bundle.image_tokens
        )
        return trained, trained & ~is_image, trained & is_image

    def balanced_weights(self, inputs) -> torch.Tensor:
        """Per-token weights giving text the share ``text_image_balance`` of each completion."""
        share = float(self.args.text_image_balance)
        trained, text, image = self._loss_masks(inputs)
        n_text = text.sum(-1, keepdim=True).float()
        n_image = image.sum(-1, keepdim=True).float()
        total = n_text + n_image
        w_text = torch.where(n_image > 0, share * total / n_text.clamp(min=1), 1.0)
        w_image = torch.where(n_text > 0, (1 - share) * total / n_image.clamp(min=1), 1.0)
        return text.float() * w_text + image.float() * w_image

    def _compute_loss(self, model, inputs):
        # Hook: TRL multiplies its loss mask by `tool_mask` (the rollout's env_mask), so the
        # text/image balance enters as per-token weights there; TRL's loss is otherwise
        # untouched. The entropy bonus is added after it.
        trained, text, image = self._loss_masks(inputs)
        if self.args.text_image_balance is not None:
            inputs = {**inputs, "tool_mask": self.balanced_weights(inputs)}
        self._stashed_entropies = None
        loss = super()._compute_loss(model, inputs)
        entropies, self._stashed_entropies = self._stashed_entropies, None
        if entropies is None:
            return loss
        mode = "train" if self.model.training else "eval"
        h_text, h_image = masked_mean(entropies, text), masked_mean(entropies, image)
        sums = torch.stack(
            [
                (entropies.detach() * text).sum(),
                text.sum().float(),
                (entropies.detach() * image).sum(),
                image.sum().float(),
            ]
        )
        global_sums = self.accelerator.reduce(sums, reduction="sum")
        for name, (s, n) in (("text", global_sums[:2]), ("image", global_sums[2:])):
            if n > 0:
                self._metrics[mode][f"entropy/{name}"].append((s / n).item())
        if self.args.entropy_control:
            accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            bonus = 0.0
            for name, h in (("text", h_text), ("image", h_image)):
                coef = self.entropy_controllers[name].coef
                if coef and torch.isfinite(h):
                    bonus = bonus + coef * h
            loss = loss - bonus / accumulation
            if mode == "train":
                # The controllers move once per optimizer step, on the entropy of the whole
                # accumulation window across processes (as TRL's own controller does).
                window = global_sums.detach()
                self._entropy_window = (
                    window if self._entropy_window is None else self._entropy_window + window
                )
                if self.accelerator.sync_gradients:
                    w = self._entropy_window
                    for name, (s, n) in (("text", w[:2]), ("image", w[2:])):
                        if n > 0:
                            self.entropy_controllers[name].update((s / n).item())
                        coef = self.entropy_controllers[name].coef
                        self._metrics[mode][f"entropy/coef_{name}"].append(coef)
                    self._entropy_window = None
        return loss

    # -- hooks around TRL's generation and rewards ----------------------------------------------
    def _generate_and_score_completions(self, inputs):
        # Hook: dynamic sampling scores samples inside the rollout and needs the dataset rows
        # (their extra columns are reward-function arguments); TRL hands the rollout only
        # the prompts.
        self._rows = inputs
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._rows = None

    def _generate(self, prompts):
        # Hook: TRL decodes completion ids as text, but most of a Janus completion is image
        # codes; the completion text (rewards, logs) is the rationale.
        result = list(super()._generate(prompts))
        stats = self.rollout.last
        rationales = [s.rationale for s in stats.samples]
        if len(rationales) == len(result[3]):
            conversational = isinstance(prompts[0], list)
            result[3] = (
                [[{"role": "assistant", "content": r}] for r in rationales]
                if conversational
                else rationales
            )
        self._log_rollout(stats.samples, stats)
        return tuple(result)

    def _log_rollout(self, samples: list[Sample], stats) -> None:
        mode = "train" if self.model.training else "eval"
        device = self.accelerator.device
        local = torch.tensor(
            [
                [
                    len(s.rationale_ids),
                    float(s.stop == "length"),
                    float(s.boi_sampled),
                ]
                for s in samples
            ],
            dtype=torch.float32,
            device=device,
        )
        values = self.accelerator.gather(local).mean(0).tolist()
        metrics = self._metrics[mode]
        metrics["rationale/mean_length"].append(values[0])
        metrics["rationale/clipped_ratio"].append(values[1])
        metrics["rationale/boi_sampled_ratio"].append(values[2])
        if self.args.dynamic_sampling:
            counts = torch.tensor(
                [stats.rounds, stats.resampled_groups, stats.dropped_groups, stats.groups],
                dtype=torch.float32,
                device=device,
            )
            rounds, resampled, dropped, groups = self.accelerator.gather(counts).view(-1, 4).T
            metrics["dynamic_sampling/rounds"].append(float(rounds.max()))
            metrics["dynamic_sampling/resampled_groups"].append(float(resampled.sum()))
            metrics["dynamic_sampling/dropped_frac"].append(
                float(dropped.sum() / groups.sum().clamp(min=1))
            )

    def score_rollout(
        self, indices: list[int], samples: list[Sample]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of samples at the rollout's entry ``indices`` (dynamic sampling).

        Returns (per reward function, weighted sum); both local to this process (no
        collective calls: processes may run different numbers of rounds)."""
        rows = self._rows or [{} for _ in range(max(indices) + 1)]
        keys = [k for k in rows[0] if k not in ("prompt", "completion", "completion_ids")]
        kwargs: dict[str, Any] = {k: [rows[i][k] for i in indices] for k in keys}
        kwargs.update(JanusRollout.extra_fields(samples))
        kwargs["trainer_state"] = self.state
        kwargs["log_metric"] = self._log_metric
        extra: dict[str, list] = {}
        kwargs["log_extra"] = lambda column, values: extra.setdefault(column, []).extend(values)
        prompts = [rows[i].get("prompt", s.prompt) for i, s in zip(indices, samples, strict=True)]
        completions: list[Any] = [s.rationale for s in samples]
        if prompts and isinstance(prompts[0], list):
            completions = [[{"role": "assistant", "content": c}] for c in completions]
        completion_ids = [[*s.rationale_ids, self.bundle.boi_id, *s.image_codes] for s in samples]
        out = torch.zeros(len(samples), len(self.reward_funcs))
        for j, func in enumerate(self.reward_funcs):
            if isinstance(func, nn.Module):
                raise ValueError("dynamic sampling supports reward functions, not reward models")
            call = func(
                prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs
            )
            if asyncio.iscoroutine(call):
                call = asyncio.run_coroutine_threadsafe(call, self.async_loop).result()
            values = [torch.nan if v is None else float(v) for v in call]
            if len(values) != len(samples):
                raise ValueError(
                    f"reward function {self.reward_func_names[j]!r} returned {len(values)} "
                    f"rewards for {len(samples)} samples"
                )
            out[:, j] = torch.tensor(values)
        for column, values in extra.items():
            store = self._rollout_extra.setdefault(column, {})
            store.update(zip(indices, values, strict=False))
        weights = self.reward_weights.to(out.device)
        combined = (out * weights).nansum(-1)
        combined[torch.isnan(out).all(-1)] = torch.nan
        return out, combined

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Hook: with dynamic sampling the rollout already scored its samples; reuse those
        # rewards (a judge call per sample is the expensive part) instead of scoring again.
        stats = self.rollout.last
        if self.args.dynamic_sampling and stats.rewards is not None:
            from accelerate.utils import gather

            rewards = gather(stats.rewards.to(self.accelerator.device))
            for column, by_index in sorted(self._rollout_extra.items()):
                self._log_completion_extra(column, [by_index.get(i) for i in range(len(prompts))])
            self._rollout_extra = {}
            stats.rewards = None
        else:
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._log_group_spread(rewards)
        self._save_image_grid(inputs, rewards)
        return rewards

    def _log_group_spread(self, rewards_per_func: torch.Tensor) -> None:
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        weights = self.reward_weights.to(rewards_per_func.device)
        combined = (rewards_per_func * weights).nansum(-1).view(-1, group)
        spread = combined.max(-1).values - combined.min(-1).values
        self._metrics[mode]["reward/group_std"].append(combined.std(-1).mean().item())
        self._metrics[mode]["reward/group_range"].append(spread.mean().item())

    def _save_image_grid(self, inputs, rewards_per_func: torch.Tensor) -> None:
        every = self.args.image_log_steps
        step = self.state.global_step
        if not every or step % every or step == self._last_image_step:
            return
        self._last_image_step = step
        if not self.accelerator.is_main_process or not self.model.training:
            return
        from .track import image_grid

        weights = self.reward_weights.to(rewards_per_func.device)
        combined = (rewards_per_func * weights).nansum(-1).tolist()  # main process: rows 0..n-1
        n = min(self.args.image_log_count, len(inputs))
        images = [inputs[i]["images"] for i in range(n)]
        captions = [
            f"{prompt_text(inputs[i]['prompt'])[:60]} | r={combined[i]:.2f}" for i in range(n)
        ]
        grid = image_grid(images, captions=captions)
        if self.tracker is not None:  # PNG under OUT/images/ and every installed tracker
            self.tracker.log_images({"rollout": grid}, step=step, force=True)
        else:
            out = Path(self.args.output_dir) / "images" / f"rollout_{step:06d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            grid.save(out)
