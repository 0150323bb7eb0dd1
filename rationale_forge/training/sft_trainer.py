"""Stage one: supervised fine-tuning of Janus-Pro on (prompt, rationale, image).

:class:`SFTCollator` turns examples into sequences (one prompt style drawn per example,
cached image codes, condition dropout); :class:`JanusSFTTrainer` is TRL's ``SFTTrainer`` with
only the loss replaced: text positions through the text head, image positions through the
generation head, weighted by kind (:mod:`.sequence`).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from trl import SFTTrainer

from .data import DEFAULT_STYLE_WEIGHTS, Example, pick_prompt
from .image_cache import ImageTokenCache
from .janus import DEFAULT_INSTRUCTION, JanusBundle
from .sequence import BOI, IMAGE, TEXT, LossWeights, SpecialIds, build_sequence, collate

__all__ = ["JanusSFTTrainer", "SFTCollator", "examples_dataset"]


def examples_dataset(examples: list[Example]):
    """A ``datasets.Dataset`` of examples (prompts as JSON: their styles vary per row)."""
    import datasets

    return datasets.Dataset.from_list(
        [
            {"key": e.key, "rationale": e.rationale, "prompts": json.dumps(e.prompts)}
            for e in examples
        ]
    )


@dataclass
class SFTCollator:
    """Examples -> padded training batches. Counts what it did (styles, dropouts)."""

    bundle: JanusBundle
    cache: ImageTokenCache
    style_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_STYLE_WEIGHTS))
    condition_dropout: float = 0.1
    max_rationale_tokens: int = 512
    instruction: str | None = DEFAULT_INSTRUCTION
    seed: int = 0
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if not 0 <= self.condition_dropout <= 1:
            raise ValueError(f"condition_dropout must be in [0, 1], got {self.condition_dropout}")
        self.ids = SpecialIds.of(self.bundle)
        self.rng = random.Random(self.seed)

    def row(self, item: dict[str, Any]) -> dict[str, list]:
        example = Example(item["key"], item["rationale"], json.loads(item["prompts"]))
        prompt = pick_prompt(example, self.style_weights, self.rng)
        rationale = self.bundle.encode_text(example.rationale)
        if len(rationale) > self.max_rationale_tokens:
            rationale = rationale[: self.max_rationale_tokens]
            self.counts["truncated"] += 1
        drop = self.condition_dropout > 0 and self.rng.random() < self.condition_dropout
        self.counts["rows"] += 1
        self.counts["dropped"] += int(drop)
        return build_sequence(
            self.ids,
            self.bundle.prompt_ids(prompt, self.instruction),
            rationale,
            self.cache.get(example.key),
            drop_condition=drop,
        )

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate([self.row(item) for item in items], self.ids.pad)


class JanusSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss routes text and image positions to their heads, weighted.

    ``loss = -sum(w_t * log p(token_t)) / (number of trained tokens)`` with ``w`` from
    :class:`~.sequence.LossWeights`; logged separately as ``text_loss``, ``image_loss`` and
    ``boi_loss`` (mean negative log-likelihood of each kind).
    """

    def __init__(self, *args, loss_weights: LossWeights | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_weights = loss_weights or LossWeights()
        # The loss is a per-batch mean: let the Trainer divide by the accumulation steps.
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            image_mask=inputs["image_mask"],
            logits_to_keep=inputs["input_ids"].shape[1] - 1,
        )
        kinds = inputs["kinds"][:, 1:]
        trained = inputs["attention_mask"][:, 1:].bool() & (kinds > 0)
        weights = self.loss_weights.of_kinds(kinds) * trained
        nll = -out.logps
        loss = (weights * nll).sum() / trained.sum().clamp(min=1)

        mode = "train" if model.training else "eval"
        with torch.no_grad():
            for name, kind in (("text_loss", TEXT), ("image_loss", IMAGE), ("boi_loss", BOI)):
                sel = trained & (kinds == kind)
                if bool(sel.any()):
                    self._metrics[mode][name].append(nll[sel].mean().item())
        return (loss, out) if return_outputs else loss
