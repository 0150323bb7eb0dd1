"""The request cache: every answer stored durably the moment it arrives.

A SQLite database in WAL mode; each answer is committed on its own, so a process killed
with ``kill -9`` loses no answer it had received. Rerunning a stage looks each request up
by its content key before sending it.

Run directories on object stores (``s3://`` ...) keep their cache on local disk under the
cache directory, keyed by the run's URL.

Several processes on one machine may share a cache (the Ray engine's workers do): SQLite
serialises their writes, and each waits for its turn.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from .paths import cache_dir
from .store import RunDir
from .vlm.base import VLMResult

_COLUMNS = (
    "key",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "error_kind",
    "error",
    "attempts",
    "seconds",
    "refusal",
    "extra",
)


def cache_path(run: RunDir, name: str = "requests.sqlite") -> Path:
    protocols = run.fs.protocol if isinstance(run.fs.protocol, tuple) else (run.fs.protocol,)
    if "file" in protocols or "local" in protocols:
        return Path(run.root) / "cache" / name
    digest = hashlib.sha256(run.url.encode()).hexdigest()[:16]
    return cache_dir() / "runs" / digest / name


class RequestCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Several processes may share one cache (the Ray engine's workers on a machine):
        # WAL lets readers run beside the writer, and writers wait their turn for up to
        # a minute instead of failing with "database is locked".
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT, "
            "finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, "
            "error_kind TEXT, error TEXT, attempts INTEGER, seconds REAL, refusal TEXT, "
            "extra TEXT, created REAL)"
        )

    def get(self, key: str) -> VLMResult | None:
        row = self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM answers WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        values: dict[str, Any] = dict(zip(_COLUMNS, row, strict=True))
        values["extra"] = json.loads(values["extra"] or "{}")
        return VLMResult(**values)

    def put(self, result: VLMResult) -> None:
        values = result.to_dict()
        values["extra"] = json.dumps(values["extra"])
        placeholders = ", ".join("?" for _ in _COLUMNS)
        self.db.execute(
            f"INSERT OR REPLACE INTO answers ({', '.join(_COLUMNS)}, created) "
            f"VALUES ({placeholders}, ?)",
            [values[c] for c in _COLUMNS] + [time.time()],
        )

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self.db.close()
