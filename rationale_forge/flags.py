"""Parsing of flag values shared by the ``forge`` command and the ``train/`` scripts."""

from __future__ import annotations

import json

__all__ = ["json_object"]


def json_object(text: str | None, flag: str) -> dict | None:
    """A flag's JSON-object value (None when unset); ``ValueError`` naming the flag else."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object")
    return value
