"""Local directories the tool keeps between runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where downloads and local caches live: ``$FORGE_CACHE_DIR`` or
    ``~/.cache/rationale-forge``."""
    root = os.environ.get("FORGE_CACHE_DIR") or Path.home() / ".cache" / "rationale-forge"
    return Path(root)
