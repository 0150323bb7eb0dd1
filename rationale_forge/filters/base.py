"""What every check returns: a named verdict with a score and, when it fails, a reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check on one row.

    ``score`` is the number the check measured (a ratio, a count, a similarity); it is
    stored in the row's ``scores`` map under ``rule`` so thresholds can be studied later.
    ``reason`` says, for a failed check, what failed and by how much, e.g.
    ``"repetition: 41% of 3-grams repeated (max 30%)"``.
    """

    rule: str
    passed: bool
    score: float | None = None
    reason: str | None = None


class Rule(Protocol):
    """A named, documented check on a generated row (a dict with the generate columns)."""

    name: str  # e.g. "repetition"; also the flag prefix (--no-repetition, ...)
    description: str  # one line for `forge filter --help` and the README table

    def check(self, row: dict[str, Any]) -> Verdict: ...


def fail(rule: str, score: float | None, reason: str) -> Verdict:
    return Verdict(rule=rule, passed=False, score=score, reason=f"{rule}: {reason}")


def ok(rule: str, score: float | None = None) -> Verdict:
    return Verdict(rule=rule, passed=True, score=score)
