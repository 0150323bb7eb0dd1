"""Adaptive entropy control for GRPO, after ReasonGen-R1: the policy's entropy is kept near
a target (one controller for rationale text tokens, about 2.0 nats, one for image tokens,
about 7.0 nats) so that sampling neither collapses nor drifts into noise.

The loss carries an entropy bonus ``-coef * entropy``. After each step the controller
moves ``coef`` by ``lr * (target - observed)``: up while entropy is below target (a larger
bonus pushes entropy up), down while above, clipped to ``[min_coef, max_coef]``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Targets from ReasonGen-R1 (nats per token).
TEXT_ENTROPY_TARGET = 2.0
IMAGE_ENTROPY_TARGET = 7.0


@dataclass
class AdaptiveEntropyController:
    """A proportional controller of the entropy-bonus coefficient.

    ``update(observed)`` returns the coefficient to use next. A non-finite observation
    (NaN from an empty batch) leaves it unchanged."""

    target: float
    coef: float = 0.0
    lr: float = 1e-3
    min_coef: float = 0.0
    max_coef: float = 1.0

    def __post_init__(self) -> None:
        if self.target < 0:
            raise ValueError(f"entropy target {self.target} must be >= 0 (nats)")
        if self.lr <= 0:
            raise ValueError(f"controller lr {self.lr} must be positive")
        if self.min_coef > self.max_coef:
            raise ValueError(f"min_coef {self.min_coef} exceeds max_coef {self.max_coef}")
        self.coef = min(max(self.coef, self.min_coef), self.max_coef)

    def update(self, observed_entropy: float | Any) -> float:
        """Move the coefficient toward what keeps entropy at ``target``; returns it."""
        observed = float(observed_entropy)  # a 0-d tensor or a number
        if not math.isfinite(observed):
            log.warning("entropy controller: ignoring a non-finite entropy (%s)", observed)
            return self.coef
        self.coef += self.lr * (self.target - observed)
        self.coef = min(max(self.coef, self.min_coef), self.max_coef)
        return self.coef

    def state_dict(self) -> dict[str, float]:
        """What a checkpoint needs to resume the controller."""
        return {"coef": self.coef, "target": self.target}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.coef = float(state["coef"])
        self.target = float(state.get("target", self.target))


def text_controller(**kw: Any) -> AdaptiveEntropyController:
    """A controller for rationale tokens (target 2.0 nats unless given)."""
    kw.setdefault("target", TEXT_ENTROPY_TARGET)
    return AdaptiveEntropyController(**kw)


def image_controller(**kw: Any) -> AdaptiveEntropyController:
    """A controller for image tokens (target 7.0 nats unless given)."""
    kw.setdefault("target", IMAGE_ENTROPY_TARGET)
    return AdaptiveEntropyController(**kw)


def token_entropy(logits: Any) -> Any:
    """Entropy in nats of each position's distribution, from logits ``(..., vocab)``.

    Computed from ``log_softmax`` in float32 (stable for large logits); masked entries
    (``-inf``) contribute 0 rather than NaN. Returns a tensor of shape ``(...)``."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    terms = torch.where(p > 0, p * logp, torch.zeros_like(p))
    return -terms.sum(dim=-1)


def masked_mean(values: Any, mask: Any | None = None) -> Any:
    """Mean of ``values`` over positions where ``mask`` is true (all when None); NaN when
    nothing is selected, which :meth:`AdaptiveEntropyController.update` ignores."""
    import torch

    if mask is None:
        return values.float().mean()
    mask = mask.to(values.dtype if values.is_floating_point() else torch.float32)
    total = mask.sum()
    if total == 0:
        return torch.tensor(float("nan"), device=values.device)
    return (values.float() * mask).sum() / total
