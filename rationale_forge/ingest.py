"""The ingest stage: source items -> checked, identified rows in a run directory.

Every item becomes exactly one row. A file that is missing, empty, truncated, undecodable,
too large, or has an unreadable caption becomes a row with ``status="error"`` and an
``error`` naming the file and the cause; the run goes on. Rerunning into the same run
directory skips the keys already written (resume after a crash or Ctrl-C).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import images
from .parallel import ordered_map
from .schema import INGEST_SCHEMA, STATUS_ERROR, STATUS_OK, empty_row
from .sources import Source, SourceItem, SourceOptions, open_source
from .store import RunDir, ShardWriter, recorded_stage
from .ui import track


class RunConflictError(Exception):
    """The output directory holds a different run; the user must pick --overwrite or
    another directory."""


@dataclass
class IngestStats:
    rows: int = 0
    ok: int = 0
    skipped: int = 0  # already present from an earlier, interrupted run
    bytes: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, row: dict[str, Any], nbytes: int) -> None:
        self.rows += 1
        self.bytes += nbytes
        if row["status"] == STATUS_OK:
            self.ok += 1
        else:
            self.errors[row["error_kind"]] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "ok": self.ok,
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(self.errors),
            "skipped_existing": self.skipped,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows / self.seconds, 2) if self.seconds else None,
        }


def materialize(
    item: SourceItem, kind: str, max_pixels: int = images.DEFAULT_MAX_PIXELS
) -> tuple[dict[str, Any], int]:
    """Read and check one item; returns the row and the number of image bytes it holds."""
    if item.resolve is not None:
        item.resolve(item)
    row = empty_row(
        source=kind,
        key=item.key,
        captions=item.captions,
        objects=item.objects,
        url=item.url,
        meta=json.dumps(item.meta, sort_keys=True, default=str) if item.meta else None,
        status=STATUS_OK,
    )
    where = item.path or item.url or item.key

    def fail(error_kind: str, message: str) -> tuple[dict[str, Any], int]:
        row.update(status=STATUS_ERROR, error_kind=error_kind, error=f"{where}: {message}")
        return row, 0

    if item.error_kind and item.read is None and item.data is None:  # no image to read
        row.update(status=STATUS_ERROR, error_kind=item.error_kind, error=item.error)
        return row, 0
    try:
        data = item.load()
    except FileNotFoundError:
        return fail("missing", "file not found")
    except IsADirectoryError:
        return fail("missing", "is a directory, not an image file")
    except httpx.HTTPStatusError as exc:
        return fail("download", f"HTTP {exc.response.status_code} fetching the image")
    except httpx.HTTPError as exc:
        return fail("download", f"cannot fetch the image ({type(exc).__name__}: {exc})")
    except OSError as exc:
        return fail("unreadable", f"cannot read the file ({exc.strerror or exc})")
    row["image_id"] = images.image_id(data) if data else None
    try:
        info = images.inspect(data, max_pixels)
    except images.ImageError as exc:
        return fail(exc.kind, str(exc))
    row.update(
        image={"bytes": data, "path": item.path},
        width=info.width,
        height=info.height,
        format=info.format,
        mode=info.mode,
    )
    if item.error_kind:  # a bad record around a good image (e.g. a non-UTF-8 caption):
        # the row is an error, but the image and its identity are kept
        row.update(status=STATUS_ERROR, error_kind=item.error_kind, error=item.error)
    return row, len(data)


def default_workers() -> int:
    return min(16, (os.cpu_count() or 2) * 2)


def existing_keys(run: RunDir) -> set[str]:
    """Keys already written to ``run`` (for resuming)."""
    keys: set[str] = set()
    for batch in run.iter_batches(columns=["key"], batch_size=65536):
        keys.update(batch.column(0).to_pylist())
    return keys


def prepare_run(
    out: str, stage: str, config: dict[str, Any], overwrite: bool, subdir: str = "data"
) -> RunDir:
    """Open ``out`` for ``stage``: wipe it with ``overwrite``; otherwise refuse a directory
    that holds a run made with another configuration (resuming needs the same one)."""
    run = RunDir(out)
    if overwrite:
        run.remove()
    previous = run.read_manifest().get("stages", {}).get(stage)
    if previous and previous.get("config") != config:
        raise RunConflictError(
            f"{out} already holds a '{stage}' run made with another configuration "
            f"(was {previous.get('config')}); pass --overwrite to start over, or choose "
            f"another --out"
        )
    if not previous and run.shards(subdir):
        raise RunConflictError(
            f"{out} already holds data that this tool did not record; pass --overwrite "
            f"or choose another --out"
        )
    return run


def ingest(
    options: SourceOptions,
    out: str,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    rows_per_shard: int = 1000,
    max_pixels: int = images.DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> IngestStats:
    """Run the ingest stage: read ``options``' source into ``out``; returns the counts."""
    source: Source = open_source(options)
    config = {"source": source.describe(), "max_pixels": max_pixels}
    run = prepare_run(out, "ingest", config, overwrite)
    started = time.perf_counter()
    done = existing_keys(run)
    stats = IngestStats(skipped=len(done))
    todo = (item for item in source.selected() if item.key not in done)
    expected = source.expected()
    total = None if expected is None else max(expected - len(done), 0)

    def finish() -> dict[str, Any]:
        stats.seconds = time.perf_counter() - started
        return {"counts": stats.as_dict(), "total_rows": run.count_rows()}

    with (
        recorded_stage(run, "ingest", config, finish),
        ShardWriter(run, INGEST_SCHEMA, rows_per_shard=rows_per_shard) as writer,
    ):
        results = ordered_map(
            lambda it: materialize(it, source.kind, max_pixels), todo, workers or default_workers()
        )
        for row, nbytes in track(results, total, f"ingest {source.kind}", progress):
            writer.write(row, nbytes)
            stats.add(row, nbytes)
    return stats
