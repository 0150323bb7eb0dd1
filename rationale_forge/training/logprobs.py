"""Per-token log-probs and entropies over whole Janus sequences, each position through its head.

A position whose *next* token is text is scored by ``lm_head``; one whose next token is a VQ
code by the generation head (see :mod:`.janus`). SFT's loss and GRPO's policy log-probs both
come from :func:`token_logprobs`, so what sampling reports (:mod:`.sampling`) and what the
loss optimises are the same numbers.
"""

from __future__ import annotations

import torch

from .janus import JanusBundle

__all__ = ["completion_image_mask", "token_logprobs", "uncond_input_ids"]


def completion_image_mask(completion_ids: torch.Tensor, boi_id: int, image_tokens: int):
    """Where the VQ codes are in GRPO completions ``rationale, <boi>, codes, [padding]``.

    The rationale never holds ``<begin_of_image>`` (sampling stops there), so the codes are
    the ``image_tokens`` positions after the first one.
    """
    is_boi = completion_ids == boi_id
    has = is_boi.any(-1, keepdim=True)
    start = torch.where(has.squeeze(-1), is_boi.int().argmax(-1), completion_ids.shape[1])
    index = torch.arange(completion_ids.shape[1], device=completion_ids.device)
    offset = index[None, :] - start[:, None]
    return (offset >= 1) & (offset <= image_tokens)


def uncond_input_ids(
    bundle: JanusBundle, input_ids: torch.Tensor, image_mask: torch.Tensor, attention_mask
) -> torch.Tensor:
    """The unconditional twin of each row: the condition (everything before the codes except
    the first token and ``<begin_of_image>``) becomes padding; positions stay aligned."""
    first = (attention_mask.cumsum(-1) == 1) & attention_mask.bool()
    before_image = image_mask.int().flip(-1).cumsum(-1).flip(-1) > 0  # some code lies ahead
    is_boi = (input_ids == bundle.boi_id) & ~image_mask
    blank = before_image & ~image_mask & ~first & ~is_boi & attention_mask.bool()
    return input_ids.masked_fill(blank, bundle.pad_id)


def token_logprobs(
    bundle: JanusBundle,
    input_ids: torch.Tensor,
    image_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    text_temperature: float = 1.0,
    image_temperature: float = 1.0,
    cfg_weight: float = 1.0,
    compute_entropy: bool = False,
    model=None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the last ``logits_to_keep`` tokens of each row.

    With ``cfg_weight != 1`` the image positions use the guided distribution
    ``uncond + w * (cond - uncond)`` (one more pass over the unconditional rows).
    A temperature of 0 is scored as 1 (greedy sampling reports temperature-1 log-probs).
    ``model`` is what to call (a DDP/FSDP-wrapped model in a trainer); default the bundle's,
    which must be a :class:`~.janus.JanusForRationaleGeneration` (``load_janus`` gives one).
    """
    uncond = None
    if cfg_weight != 1.0:
        uncond = uncond_input_ids(bundle, input_ids, image_mask, attention_mask)
    out = (model or bundle.model)(
        input_ids=input_ids,
        attention_mask=attention_mask,
        image_mask=image_mask,
        logits_to_keep=logits_to_keep,
        uncond_input_ids=uncond,
        text_temperature=text_temperature,
        image_temperature=image_temperature,
        cfg_weight=cfg_weight,
        compute_entropy=compute_entropy,
    )
    return out.logps, out.entropies
