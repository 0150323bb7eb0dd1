"""Dynamic sampling and group-normalised advantages for GRPO.

A group (the ``group_size`` samples of one prompt) whose rewards are all equal has zero
advantage everywhere and teaches nothing; ReasonGen-R1 drops such groups and samples more
prompts until the batch is full. Rewards may be None (a judge that failed): a group is
informative only when at least two of its rewards are present and they differ.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Rewards = Sequence[float | None]


def _groups(rewards: Rewards, group_size: int) -> list[list[float | None]]:
    if group_size < 1:
        raise ValueError(f"group_size {group_size} must be >= 1")
    if len(rewards) % group_size:
        raise ValueError(
            f"{len(rewards)} rewards do not split into groups of {group_size} "
            f"(the rollout must give group_size samples per prompt)"
        )
    return [list(rewards[i : i + group_size]) for i in range(0, len(rewards), group_size)]


def _present(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def zero_spread_groups(rewards: Rewards, group_size: int, atol: float = 1e-6) -> list[int]:
    """Indices of the groups with nothing to learn from: every present reward within
    ``atol`` of the others, or fewer than two present (all None, NaN or a single value)."""
    dropped = []
    for index, group in enumerate(_groups(rewards, group_size)):
        values = _present(group)
        if len(values) < 2 or max(values) - min(values) <= atol:
            dropped.append(index)
    return dropped


def keep_informative_groups(
    samples: Sequence[T], rewards: Rewards, group_size: int, atol: float = 1e-6
) -> tuple[list[T], list[float | None], int]:
    """The samples and rewards of the informative groups, in order, and how many groups
    were dropped. ``samples[i]`` goes with ``rewards[i]``."""
    if len(samples) != len(rewards):
        raise ValueError(f"{len(samples)} samples but {len(rewards)} rewards")
    dropped = set(zero_spread_groups(rewards, group_size, atol))
    kept_samples: list[T] = []
    kept_rewards: list[float | None] = []
    for index in range(len(rewards) // group_size):
        if index in dropped:
            continue
        span = slice(index * group_size, (index + 1) * group_size)
        kept_samples.extend(samples[span])
        kept_rewards.extend(rewards[span])
    return kept_samples, kept_rewards, len(dropped)


@dataclass
class Collected(Generic[T]):
    """What :func:`collect_groups` gathered: at most ``want_groups`` informative groups."""

    samples: list[T] = field(default_factory=list)
    rewards: list[float | None] = field(default_factory=list)
    groups: int = 0
    dropped: int = 0  # zero-spread groups thrown away
    rounds: int = 0  # calls to the sampling function
    complete: bool = False  # True when want_groups were reached within max_rounds


def collect_groups(
    sample_fn: Callable[[int], tuple[Sequence[T], Rewards]],
    want_groups: int,
    group_size: int,
    max_rounds: int = 4,
    atol: float = 1e-6,
) -> Collected[T]:
    """Call ``sample_fn(n_groups)`` (which samples and scores ``n_groups`` prompts,
    ``group_size`` samples each, and returns ``(samples, rewards)``) until
    ``want_groups`` informative groups are gathered or ``max_rounds`` calls were made.

    Each round asks for the groups still missing. Extra informative groups beyond
    ``want_groups`` are not kept. When the bound is hit, what was gathered is returned
    (``complete=False``): the trainer goes on with a smaller batch rather than stalling on
    prompts that are too easy or too hard."""
    if want_groups < 1:
        raise ValueError(f"want_groups {want_groups} must be >= 1")
    if max_rounds < 1:
        raise ValueError(f"max_rounds {max_rounds} must be >= 1")
    out: Collected[T] = Collected()
    while out.groups < want_groups and out.rounds < max_rounds:
        need = want_groups - out.groups
        samples, rewards = sample_fn(need)
        out.rounds += 1
        kept, kept_rewards, dropped = keep_informative_groups(samples, rewards, group_size, atol)
        out.dropped += dropped
        room = (want_groups - out.groups) * group_size
        out.samples.extend(kept[:room])
        out.rewards.extend(kept_rewards[:room])
        out.groups = len(out.rewards) // group_size
    out.complete = out.groups >= want_groups
    if not out.complete:
        log.warning(
            "dynamic sampling: %d of %d informative groups after %d rounds (%d dropped)",
            out.groups,
            want_groups,
            out.rounds,
            out.dropped,
        )
    return out


def group_advantages(
    rewards: Rewards, group_size: int, eps: float = 1e-6, scale: str = "std"
) -> Any:
    """GRPO advantages: each reward minus its group's mean, divided by the group's standard
    deviation plus ``eps`` (``scale="std"``; the unbiased estimate, as TRL computes it) or
    not divided (``scale="none"``). A missing reward (None/NaN) gets advantage 0 and is
    left out of its group's statistics; a group with under two present rewards gets 0
    everywhere. Returns a float32 tensor of ``len(rewards)``."""
    import torch

    if scale not in ("std", "none"):
        raise ValueError(f"scale {scale!r}: expected 'std' or 'none'")
    out = torch.zeros(len(rewards), dtype=torch.float32)
    for index, group in enumerate(_groups(rewards, group_size)):
        values = _present(group)
        if len(values) < 2:
            continue
        t = torch.tensor(values, dtype=torch.float64)
        mean = t.mean()
        std = t.std(correction=1)
        for j, value in enumerate(group):
            if value is None or not math.isfinite(value):
                continue
            adv = float(value) - mean
            if scale == "std":
                adv = adv / (std + eps)
            out[index * group_size + j] = float(adv)
    return out
