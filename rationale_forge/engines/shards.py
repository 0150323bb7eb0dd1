"""Shard-at-a-time work for engines that spread a run over many workers.

The unit of work is one input shard: ``data/part-00007.parquet`` of the input run becomes
``SUBDIR/part-00007.parquet`` of the output run, written atomically (temporary name, then
a rename) and then marked done in ``RUN/_progress/STAGE/part-00007.parquet.json``. A
worker that dies mid-shard leaves no partial output; a retried or restarted shard writes
the same file again, so every row ends up exactly once. A restarted job skips marked
shards and sends no answered request again (the request cache).

Nothing here imports Ray: the functions run inside Ray workers but are plain Python.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import uuid
from dataclasses import fields
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..cache import RequestCache
from ..filter import FilterStats, RowScorer, count_decision, scored_batches
from ..generate import Answerer, GenerateConfig, GenerateStats
from ..prompting import PromptTemplate
from ..schema import FILTERED_SCHEMA, GENERATE_SCHEMA
from ..store import RunDir
from ..vlm.base import ERROR_KINDS, Backend

PROGRESS = "_progress"


class Markers:
    """Completion markers of one stage's shards: a small JSON record per finished shard."""

    def __init__(self, run: RunDir, stage: str):
        self.run, self.stage = run, stage
        self.folder = run.path(PROGRESS, stage)

    def _path(self, shard: str) -> str:
        return posixpath.join(self.folder, f"{shard}.json")

    def done(self) -> dict[str, dict[str, Any]]:
        """Shard name -> its record, for every shard marked done."""
        if not self.run.fs.isdir(self.folder):
            return {}
        records = {}
        for path in self.run.fs.ls(self.folder, detail=False):
            name = posixpath.basename(path)
            if name.endswith(".parquet.json"):
                with self.run.fs.open(path, "r") as f:
                    records[name[: -len(".json")]] = json.load(f)
        return records

    def mark(self, shard: str, record: dict[str, Any]) -> None:
        self.run.fs.makedirs(self.folder, exist_ok=True)
        tmp = posixpath.join(self.folder, f".tmp-{uuid.uuid4().hex}")
        with self.run.fs.open(tmp, "w") as f:
            json.dump(record, f)
        self.run.fs.mv(tmp, self._path(shard))

    def clear(self, shard: str | None = None) -> None:
        """Forget one shard's marker, or (``None``) every marker of the stage."""
        path = self.folder if shard is None else self._path(shard)
        if self.run.fs.exists(path):
            self.run.fs.rm(path, recursive=shard is None)


def read_shard(run: RunDir, subdir: str, shard: str) -> list[dict[str, Any]]:
    """Every row of one shard (a shard is bounded in size by the writer that made it)."""
    path = run.path(subdir, shard)
    if not run.fs.exists(path):
        return []
    with run.fs.open(path, "rb") as f:
        return pq.read_table(f).to_pylist()


def shard_rows(run: RunDir, subdir: str, shard: str) -> int:
    """Row count of a shard, from its footer."""
    with run.fs.open(run.path(subdir, shard), "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def write_shard(
    run: RunDir, subdir: str, shard: str, rows: list[dict[str, Any]], schema: pa.Schema
) -> None:
    """Write ``rows`` as ``subdir/shard`` atomically (replacing an earlier try's file)."""
    folder = run.path(subdir)
    run.fs.makedirs(folder, exist_ok=True)
    tmp = posixpath.join(folder, f".tmp-{shard}-{uuid.uuid4().hex}")
    with run.fs.open(tmp, "wb") as f:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), f, compression="zstd")
    run.fs.mv(tmp, run.path(subdir, shard))


def shards_with_failures(run: RunDir) -> set[str]:
    """Output shards holding rows whose generation failed (for ``retry_failed``)."""
    kinds = pa.array(list(ERROR_KINDS), pa.string())
    found = set()
    for path in run.shards():
        with run.fs.open(path, "rb") as f:
            column = pq.read_table(f, columns=["error_kind"]).column(0)
        if pc.any(pc.is_in(column, value_set=kinds)).as_py():
            found.add(posixpath.basename(path))
    return found


def in_input_order(rows: list[dict[str, Any]], order: dict[str, int]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: order.get(r["key"], len(order)))


class _RowList:
    """The writer an :class:`~rationale_forge.generate.Answerer` gets for one shard."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any], nbytes: int = 0) -> None:
        self.rows.append(row)


class _NoBar:
    def advance(self, n: int = 1) -> None:
        pass


def stats_to_json(stats: GenerateStats | FilterStats) -> str:
    # not dataclasses.asdict: it rebuilds a Counter from (key, count) pairs, as keys
    return json.dumps({f.name: getattr(stats, f.name) for f in fields(stats)}, default=str)


def generate_stats_from_json(text: str) -> GenerateStats:
    from collections import Counter

    values = json.loads(text)
    values["errors"] = Counter(values["errors"])
    return GenerateStats(**values)


def generate_shard(
    source: RunDir,
    out: RunDir,
    shard: str,
    *,
    backend: Backend,
    cache: RequestCache,
    template: PromptTemplate,
    config: GenerateConfig,
    loop: asyncio.AbstractEventLoop,
) -> GenerateStats:
    """Generate one input shard into the same-named output shard and mark it done.

    Rows an earlier try already wrote are kept (failed ones dropped with
    ``retry_failed``); the rest go through the stage's :class:`Answerer`, whose cache
    lookups make answers received before a crash free."""
    stats = GenerateStats()
    rows = read_shard(source, "data", shard)
    kept = read_shard(out, "data", shard)
    if config.retry_failed:
        failed = [r for r in kept if r.get("error_kind") in ERROR_KINDS]
        stats.retried_failed = len(failed)
        kept = [r for r in kept if r.get("error_kind") not in ERROR_KINDS]
    stats.skipped = len(kept)
    done = {r["key"] for r in kept}
    sink = _RowList()
    answerer = Answerer(backend, cache, sink, template, config, stats, _NoBar())
    loop.run_until_complete(answerer.run(r for r in rows if r["key"] not in done))
    order = {r["key"]: i for i, r in enumerate(rows)}
    written = in_input_order(kept + sink.rows, order)
    write_shard(out, "data", shard, written, GENERATE_SCHEMA)
    Markers(out, "generate").mark(shard, {"rows": len(written)})
    return stats


def score_shard(
    source: RunDir, out: RunDir, shard: str, scorer: RowScorer, config: Any, subdir: str
) -> int:
    """Score one generated shard into ``subdir`` (the filter's scored part); returns the
    row count. Scoring is cheap to repeat, so a retried shard is scored again whole."""
    rows = [
        row
        for batch in scored_batches(scorer, read_shard(source, "data", shard), config)
        for row in batch
    ]
    write_shard(out, subdir, shard, rows, FILTERED_SCHEMA)
    Markers(out, "filter").mark(shard, {"rows": len(rows)})
    return len(rows)


def decide_shard(
    out: RunDir, shard: str, decisions: Any, scored: str, kept: str, rejected: str
) -> FilterStats:
    """Apply the run-wide decisions to one scored shard: its kept rows go to
    ``kept/shard``, the others to ``rejected/shard`` (a part is written only if it has
    rows)."""
    stats = FilterStats()
    parts: dict[str, list[dict[str, Any]]] = {kept: [], rejected: []}
    for row in read_shard(out, scored, shard):
        keep = decisions.decide(row)
        parts[kept if keep else rejected].append(row)
        count_decision(stats, row, keep)
    for subdir, rows in parts.items():
        if rows:
            write_shard(out, subdir, shard, rows, FILTERED_SCHEMA)
    return stats


__all__ = [
    "Markers",
    "decide_shard",
    "generate_shard",
    "read_shard",
    "score_shard",
    "shard_rows",
    "shards_with_failures",
    "write_shard",
]
