"""Run directories: sharded Parquet written atomically, a streaming reader, the manifest.

Layout of a run directory (a local path or any fsspec URL)::

    RUN_DIR/
      manifest.json          what ran: command, config, versions, counts, timings
      data/part-00000.parquet
      data/part-00001.parquet
      ...

A shard is written under a hidden temporary name and renamed when complete, so a reader
(which only lists ``part-*.parquet``) never sees a partial shard, even after ``kill -9``.
"""

from __future__ import annotations

import json
import posixpath
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SHARD_RE = re.compile(r"^part-(\d{5,})\.parquet$")
MANIFEST = "manifest.json"


class RunDir:
    """A run directory on any fsspec filesystem."""

    def __init__(self, url: str):
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self) -> bool:
        return self.fs.exists(self.root)

    def shards(self, subdir: str = "data") -> list[str]:
        """Complete shards of ``subdir``, in order."""
        folder = self.path(subdir)
        if not self.fs.isdir(folder):
            return []
        names = [posixpath.basename(p) for p in self.fs.ls(folder, detail=False)]
        return [self.path(subdir, n) for n in sorted(names) if SHARD_RE.match(n)]

    def iter_batches(
        self, subdir: str = "data", columns: list[str] | None = None, batch_size: int = 256
    ) -> Iterator[pa.RecordBatch]:
        """Stream record batches of every shard; memory holds one batch at a time."""
        for shard in self.shards(subdir):
            with self.fs.open(shard, "rb") as f:
                pf = pq.ParquetFile(f)
                yield from pf.iter_batches(batch_size=batch_size, columns=columns)

    def iter_rows(
        self, subdir: str = "data", columns: list[str] | None = None, batch_size: int = 256
    ) -> Iterator[dict[str, Any]]:
        for batch in self.iter_batches(subdir, columns, batch_size):
            yield from batch.to_pylist()

    def schema(self, subdir: str = "data") -> pa.Schema:
        """The Arrow schema of the first shard (empty when there is none)."""
        shards = self.shards(subdir)
        if not shards:
            return pa.schema([])
        with self.fs.open(shards[0], "rb") as f:
            return pq.ParquetFile(f).schema_arrow

    def count_rows(self, subdir: str = "data") -> int:
        total = 0
        for shard in self.shards(subdir):
            with self.fs.open(shard, "rb") as f:
                total += pq.ParquetFile(f).metadata.num_rows
        return total

    def read_manifest(self) -> dict[str, Any]:
        path = self.path(MANIFEST)
        if not self.fs.exists(path):
            return {}
        with self.fs.open(path, "r") as f:
            return json.load(f)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace ``manifest.json`` atomically."""
        self.fs.makedirs(self.root, exist_ok=True)
        tmp = self.path(f".{MANIFEST}.tmp-{uuid.uuid4().hex}")
        with self.fs.open(tmp, "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        self.fs.mv(tmp, self.path(MANIFEST))

    def update_stage(self, stage: str, record: dict[str, Any]) -> dict[str, Any]:
        """Merge ``record`` into the manifest's entry for ``stage`` and save it."""
        from . import __version__

        manifest = self.read_manifest()
        manifest.setdefault("tool", "rationale-forge")
        manifest["version"] = __version__
        stages = manifest.setdefault("stages", {})
        stages.setdefault(stage, {}).update(record)
        manifest["updated_at"] = now()
        self.write_manifest(manifest)
        return manifest

    def drop_rows(self, predicate, subdir: str = "data") -> int:
        """Rewrite (atomically, shard by shard) every shard holding rows for which
        ``predicate(table)`` (a boolean array) is true, without those rows; returns the
        number of rows removed. Shards left empty are deleted."""
        removed = 0
        for shard in self.shards(subdir):
            with self.fs.open(shard, "rb") as f:
                table = pq.read_table(f)
            mask = pc.fill_null(predicate(table), False)
            n = pc.sum(mask).as_py() or 0
            if not n:
                continue
            removed += n
            kept = table.filter(pc.invert(mask))
            if kept.num_rows == 0:
                self.fs.rm(shard)
                continue
            tmp = posixpath.join(posixpath.dirname(shard), f".tmp-rewrite-{uuid.uuid4().hex}")
            with self.fs.open(tmp, "wb") as f:
                pq.write_table(kept, f, compression="zstd")
            self.fs.mv(tmp, shard)
        return removed

    def remove(self) -> None:
        if self.exists():
            self.fs.rm(self.root, recursive=True)


class ShardWriter:
    """Buffers rows and writes them as numbered Parquet shards, each atomically.

    A shard is closed when it holds ``rows_per_shard`` rows or about ``bytes_per_shard``
    bytes of row data, whichever comes first, so memory stays bounded for large images.
    Numbering continues after the shards already present, so a resumed run appends.
    """

    def __init__(
        self,
        run: RunDir,
        schema: pa.Schema,
        subdir: str = "data",
        rows_per_shard: int = 1000,
        bytes_per_shard: int = 256 << 20,
    ):
        self.run, self.schema, self.subdir = run, schema, subdir
        self.rows_per_shard, self.bytes_per_shard = rows_per_shard, bytes_per_shard
        self.folder = run.path(subdir)
        run.fs.makedirs(self.folder, exist_ok=True)
        self._clean_temporaries()
        existing = [int(SHARD_RE.match(posixpath.basename(p)).group(1)) for p in run.shards(subdir)]
        self.next_index = max(existing, default=-1) + 1
        self._rows: list[dict[str, Any]] = []
        self._bytes = 0
        self.rows_written = 0
        self.shards_written = 0

    def _clean_temporaries(self) -> None:
        for p in self.run.fs.ls(self.folder, detail=False):
            if posixpath.basename(p).startswith(".tmp-"):
                self.run.fs.rm(p)

    def write(self, row: dict[str, Any], nbytes: int = 0) -> None:
        """Add a row; ``nbytes`` is its approximate size (e.g. image bytes) for shard sizing."""
        self._rows.append(row)
        self._bytes += nbytes
        if len(self._rows) >= self.rows_per_shard or self._bytes >= self.bytes_per_shard:
            self.flush()

    def flush(self) -> str | None:
        """Write the buffered rows as one shard; returns its path (None if nothing buffered)."""
        if not self._rows:
            return None
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        name = f"part-{self.next_index:05d}.parquet"
        tmp = posixpath.join(self.folder, f".tmp-{name}-{uuid.uuid4().hex}")
        final = posixpath.join(self.folder, name)
        with self.run.fs.open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
        self.run.fs.mv(tmp, final)
        self.next_index += 1
        self.rows_written += len(self._rows)
        self.shards_written += 1
        self._rows, self._bytes = [], 0
        return final

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        # Rows already accepted are written even when the loop died (e.g. Ctrl-C):
        # nothing produced is lost.
        self.close()


@contextmanager
def recorded_stage(
    run: RunDir, stage: str, config: dict[str, Any], finish: Callable[[], dict[str, Any]]
) -> Iterator[None]:
    """Record a stage in the manifest: command, config and versions with status "running"
    on entry; on exit the status ("done", "interrupted" or "failed") and what ``finish()``
    returns (counts, timings). Runs even when the body dies, so a manifest never claims
    a run that crashed is still running."""
    from .provenance import command_line, package_versions

    run.update_stage(
        stage,
        {
            "command": command_line(),
            "config": config,
            "versions": package_versions(),
            "status": "running",
            "started_at": now(),
        },
    )
    status = "failed"
    try:
        yield
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        run.update_stage(stage, {"status": status, "finished_at": now(), **finish()})


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
