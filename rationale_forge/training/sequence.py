"""The SFT sequence: prompt, rationale, ``<begin_of_image>``, image codes, ``<end_of_image>``, EOS.

Each position carries a *kind* that says how its token is trained:

===========  =========================================  ==========================
kind         tokens                                     head, default loss weight
===========  =========================================  ==========================
``PROMPT``   BOS + the chat-formatted prompt             not trained (masked)
``TEXT``     rationale, ``<end_of_image>``, EOS          text head, 2.0
``BOI``      ``<begin_of_image>``                        text head, 0.5
``IMAGE``    the VQ codes                                generation head, 1.0
===========  =========================================  ==========================

``<begin_of_image>`` gets its own small weight: it is the model's decision to stop thinking
and start drawing. Weight 0 (the public recipe) leaves that decision untrained, so at
sampling time the model rambles until the length cap forces it; a full text weight would
make the one token as loud as a sentence.

Condition dropout replaces the prompt (after BOS) and the rationale with padding and trains
only the image: that is the unconditional branch classifier-free guidance samples from
(:func:`rationale_forge.training.sampling.uncond_ids` builds the same rows).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

__all__ = [
    "BOI",
    "IMAGE",
    "PROMPT",
    "TEXT",
    "LossWeights",
    "SpecialIds",
    "build_sequence",
    "collate",
]

PROMPT, TEXT, IMAGE, BOI = 0, 1, 2, 3


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    pad: int
    boi: int
    eoi: int

    @classmethod
    def of(cls, bundle) -> SpecialIds:
        return cls(bundle.bos_id, bundle.eos_id, bundle.pad_id, bundle.boi_id, bundle.eoi_id)


@dataclass(frozen=True)
class LossWeights:
    """Per-kind loss weights (see the module docstring for the defaults' reasons)."""

    text: float = 2.0
    image: float = 1.0
    boi: float = 0.5

    def of_kinds(self, kinds: torch.Tensor) -> torch.Tensor:
        table = torch.tensor([0.0, self.text, self.image, self.boi], device=kinds.device)
        return table[kinds]


def build_sequence(
    ids: SpecialIds,
    prompt_ids: list[int],
    rationale_ids: list[int],
    image_codes: list[int],
    drop_condition: bool = False,
) -> dict[str, list]:
    """One training row: ``input_ids``, ``image_mask`` and ``kinds`` (lists of equal length).

    ``prompt_ids`` starts with BOS. With ``drop_condition`` the prompt and rationale become
    padding and only the image (and the closing tokens) are trained.
    """
    if not prompt_ids or prompt_ids[0] != ids.bos:
        prompt_ids = [ids.bos, *prompt_ids]
    if drop_condition:
        cond = [ids.pad] * (len(prompt_ids) - 1 + len(rationale_ids))
        input_ids = [ids.bos, *cond, ids.boi]
        kinds = [PROMPT] * len(input_ids)
    else:
        input_ids = [*prompt_ids, *rationale_ids, ids.boi]
        kinds = [PROMPT] * len(prompt_ids) + [TEXT] * len(rationale_ids) + [BOI]
    input_ids += [*image_codes, ids.eoi, ids.eos]
    kinds += [IMAGE] * len(image_codes) + [TEXT, TEXT]
    image_mask = [k == IMAGE for k in kinds]
    return {"input_ids": input_ids, "image_mask": image_mask, "kinds": kinds}


def collate(rows: list[dict[str, list]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows from :func:`build_sequence` into a batch (padding is never trained)."""
    width = max(len(r["input_ids"]) for r in rows)
    batch = {
        "input_ids": torch.full((len(rows), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
        "image_mask": torch.zeros((len(rows), width), dtype=torch.bool),
        "kinds": torch.zeros((len(rows), width), dtype=torch.long),
    }
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        batch["input_ids"][i, :n] = torch.tensor(r["input_ids"])
        batch["attention_mask"][i, :n] = 1
        batch["image_mask"][i, :n] = torch.tensor(r["image_mask"])
        batch["kinds"][i, :n] = torch.tensor(r["kinds"])
    return batch


def should_drop(rng: random.Random, rate: float) -> bool:
    return rate > 0 and rng.random() < rate
