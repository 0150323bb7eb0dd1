"""Schema-constrained decoding for local models: the JSON skeleton is forced, the model
writes only the string contents.

The rationale object has a fixed shape (:mod:`rationale_forge.rationale`), so instead of a
general grammar engine we force its skeleton token by token (``{"rationale": "``,
``", "layout": "`` ...) and let the model fill each string slot with tokens that cannot
break out of a JSON string (no quote, backslash or control character). A slot ends when the
model emits a quote token or its token budget runs out. Lists get a fixed number of items.
Whatever the model's weights, every answer parses and validates, so even a weak (or
random) model yields schema-valid objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..rationale import (
    FIELDS,
    LIST_FIELDS,
    LIST_ITEMS,
    REFERENCE_MAX_TOKENS,
    SLOT_BUDGETS,
    budget_scale,
)


@dataclass(frozen=True)
class Segment:
    literal: str  # text forced before the slot (after the first, it starts with the quote
    #               that closed the previous slot)
    budget: int | None  # tokens for the string slot that follows; None = end of object


def skeleton(
    max_tokens: int = REFERENCE_MAX_TOKENS, n_variants: int | None = None
) -> list[Segment]:
    """The forced pieces and slot budgets of one rationale object."""
    scale = budget_scale(max_tokens)
    segments: list[Segment] = []
    close = ""
    for i, name in enumerate(FIELDS):
        sep = "" if i == 0 else ", "
        opener = "{" if i == 0 else ""
        budget = max(4, int(SLOT_BUDGETS[name] * scale))
        if name in LIST_FIELDS:
            items = LIST_ITEMS[name]
            if n_variants and name in ("paraphrases", "varied_captions"):
                items = n_variants
            segments.append(Segment(f'{opener}{close}{sep}"{name}": ["', budget))
            segments.extend(Segment('", "', budget) for _ in range(items - 1))
            close = '"]'
        else:
            segments.append(Segment(f'{opener}{close}{sep}"{name}": "', budget))
            close = '"'
    segments.append(Segment(close + "}", None))
    return segments


def max_new_tokens(segments: list[Segment], tokenizer) -> int:
    """An upper bound on the tokens one constrained answer can take."""
    forced = sum(len(tokenizer.encode(s.literal, add_special_tokens=False)) for s in segments)
    return forced + sum(s.budget or 0 for s in segments) + len(segments) + 2


class _RowState:
    def __init__(self, plan: list[list[int]], budgets: list[int | None], eos: int):
        self.plan, self.budgets, self.eos = plan, budgets, eos
        self.seg = 0
        self.forced = list(plan[0])
        self.in_slot = False
        self.used = 0
        self.finished = False

    def _after_literal(self) -> None:
        if self.budgets[self.seg] is None:
            self.forced = [self.eos]
            self.finished = True
        else:
            self.in_slot, self.used = True, 0

    def step(self, token: int, quote_ids: set[int]) -> None:
        if self.forced:
            self.forced.pop(0)
            if not self.forced and not self.finished:
                self._after_literal()
        elif self.in_slot:
            if token in quote_ids:  # the slot's closing quote: force the rest of the literal
                self.in_slot = False
                self.seg += 1
                self.forced = list(self.plan[self.seg])
                if not self.forced:
                    self._after_literal()
            else:
                self.used += 1


class SkeletonLogitsProcessor:
    """A ``transformers`` logits processor enforcing :func:`skeleton` on every row of a
    batch. Create one per ``generate`` call."""

    def __init__(self, tokenizer, segments: list[Segment], vocab_size: int):
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no EOS token; constrained decoding needs one")
        self.eos = eos
        quote = tokenizer.encode('"', add_special_tokens=False)
        if len(quote) != 1:
            raise ValueError("the tokenizer has no single token for '\"'")
        self.quote = quote[0]
        # Literals after the first start with the quote that closed the slot; the model
        # writes that quote itself, so only the rest is forced.
        self.plan = [
            tokenizer.encode(s.literal if i == 0 else s.literal[1:], add_special_tokens=False)
            for i, s in enumerate(segments)
        ]
        self.budgets = [s.budget for s in segments]
        self.safe = _string_safe_mask(tokenizer, vocab_size)
        self.rows: list[_RowState] | None = None
        self.start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.rows is None:
            self.rows = [
                _RowState(self.plan, self.budgets, self.eos) for _ in range(input_ids.shape[0])
            ]
            self.start = input_ids.shape[1]
        elif input_ids.shape[1] > self.start:
            last = input_ids[:, -1].tolist()
            for state, token in zip(self.rows, last, strict=True):
                state.step(token, {self.quote})
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        safe = self.safe.to(scores.device)
        if safe.shape[0] < scores.shape[1]:
            safe = torch.nn.functional.pad(safe, (0, scores.shape[1] - safe.shape[0]))
        for i, state in enumerate(self.rows):
            if state.forced:
                allowed[i, state.forced[0]] = True
            elif state.finished:
                allowed[i, self.eos] = True
            elif state.in_slot:
                if state.used < self.budgets[state.seg]:
                    allowed[i] = safe[: scores.shape[1]]
                if state.used > 0 or not allowed[i].any():
                    allowed[i, self.quote] = True
        return scores.masked_fill(~allowed, float("-inf"))


def _string_safe_mask(tokenizer, vocab_size: int) -> torch.Tensor:
    """True for tokens that can sit inside a JSON string as they are."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    special = set(tokenizer.all_special_ids)
    special.update(getattr(tokenizer, "added_tokens_decoder", {}) or {})  # <|image_pad|> ...
    for token_id in range(min(vocab_size, len(tokenizer))):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        if text and '"' not in text and "\\" not in text and all(ord(ch) >= 0x20 for ch in text):
            mask[token_id] = True
    return mask
