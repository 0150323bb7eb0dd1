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


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the last ``logits_to_keep`` tokens of each row.

    With ``cfg_weight != 1`` the image positions use the guided distribution
    ``uncond + w * (cond - uncond)`` (one more forward pass over the unconditional rows).
    A temperature of 0 is scored as 1 (greedy sampling reports temperature-1 log-probs).
    """
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)

    def hidden_of(ids):
        embeds = bundle.embed(ids, image_mask)
        out = bundle.hidden(embeds, attention_mask, positions)
        return out.last_hidden_state[:, -logits_to_keep - 1 : -1]

    hidden = hidden_of(input_ids)
    target = input_ids[:, -logits_to_keep:]
    target_is_image = image_mask[:, -logits_to_keep:]
    uncond = None
    if cfg_weight != 1.0 and bool(target_is_image.any()):
        uncond = hidden_of(uncond_input_ids(bundle, input_ids, image_mask, attention_mask))

    logps = torch.zeros(target.shape, dtype=torch.float32, device=input_ids.device)
    entropies = torch.zeros_like(logps) if compute_entropy else None
    for is_image in (False, True):
        sel = target_is_image if is_image else ~target_is_image
        if not bool(sel.any()):
            continue
        head = bundle.image_logits if is_image else bundle.text_logits
        logits = head(hidden[sel]).float()
        if is_image and uncond is not None:
            u = head(uncond[sel]).float()
            logits = u + cfg_weight * (logits - u)
        temperature = (image_temperature if is_image else text_temperature) or 1.0
        logits = logits / temperature
        logp = torch.log_softmax(logits, dim=-1).gather(-1, target[sel][:, None]).squeeze(-1)
        logps = logps.masked_scatter(sel, logp)
        if entropies is not None:
            entropies = entropies.masked_scatter(sel, _entropy(logits))
    return logps, entropies
