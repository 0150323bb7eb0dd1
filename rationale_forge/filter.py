"""The filter stage: generated rows -> scores -> keep or reject, with every reason kept.

Two passes over the run:

1. *Score* (streaming, resumable): each row gets its rule verdicts, image checks, perceptual
   hash and CLIP scores; rows go to ``FILTERED_DIR/scored/`` as they are done. Images are
   decoded once, in worker threads, while the CLIP model runs on the previous batch.
2. *Decide* (cheap, always redone): thresholds that need the whole run (``clip_keep_top``)
   and near-duplicate clusters are computed from a few columns, then every scored row is
   written to ``data/`` (kept) or ``rejected/`` (with ``reject_reasons``: every failed check
   and its score). Nothing is dropped silently.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import images
from .filters.clip import ClipConfig, ClipScorer
from .filters.dedup import ImageDeduper, TextDeduper, phash_hex
from .filters.rules import PRESETS, RULES, build_rules
from .ingest import default_workers, prepare_run
from .parallel import ordered_map
from .schema import FILTERED_SCHEMA, STATUS_OK, empty_row
from .store import RunDir, ShardWriter, recorded_stage
from .ui import ProgressBar

if TYPE_CHECKING:
    from .engines import Engine

SCORED, KEPT, REJECTED = "scored", "data", "rejected"


@dataclass
class FilterConfig:
    """How to filter; the CLI and ``forge run`` build one of these."""

    preset: str = "default"
    enable: list[str] = field(default_factory=list)  # checks to switch on beyond the preset
    disable: list[str] = field(default_factory=list)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule -> param -> value
    clip: bool = True
    clip_model: str = ClipConfig.model
    clip_pretrained: str | None = ClipConfig.pretrained
    clip_batch_size: int = 32
    device: str | None = None
    min_clip_caption: float | None = None
    min_clip_rationale: float | None = None  # on the mean over rationale chunks
    clip_keep_top: float | None = None  # keep this fraction, ranked by clip_rationale_mean
    dedup_images: bool = True
    phash_distance: int = 4
    dedup_rationales: bool = True
    rationale_similarity: float = 0.8
    workers: int | None = None
    rows_per_shard: int = 1000
    overwrite: bool = False

    def validate(self) -> None:
        """Refuse bad settings before anything is written."""
        unknown = sorted((set(self.enable) | set(self.disable)) - set(RULES))
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; `forge rules` lists them")
        for flag, value in (
            ("--clip-keep-top", self.clip_keep_top),
            ("--rationale-similarity", self.rationale_similarity),
        ):
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{flag} must be in (0, 1], got {value}")
        if self.phash_distance < 0 or self.phash_distance > 32:
            raise ValueError(f"--phash-distance must be in [0, 32], got {self.phash_distance}")
        clip_flags = (self.clip_keep_top, self.min_clip_caption, self.min_clip_rationale)
        if not self.clip and any(v is not None for v in clip_flags):
            raise ValueError("CLIP thresholds were given with --no-clip")
        enabled, params = self.checks()
        build_rules(enabled, params)  # unknown parameters and bad values fail here

    def checks(self) -> tuple[set[str], dict[str, dict[str, Any]]]:
        """The enabled rule checks and their parameters: the preset, then the overrides."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset '{self.preset}'; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[self.preset]
        enabled = (set(preset["enabled"]) | set(self.enable)) - set(self.disable)
        params = {
            rule: dict(values)
            for rule, values in preset.get("params", {}).items()
            if rule in enabled
        }
        for rule, values in self.params.items():
            params.setdefault(rule, {}).update(values)
        return enabled, params

    def output_config(self) -> dict[str, Any]:
        enabled, params = self.checks()
        scoring = {
            k: v
            for k, v in asdict(self).items()
            if k
            not in (
                "workers",
                "overwrite",
                "rows_per_shard",
                "device",
                "clip_batch_size",
                "enable",
                "disable",
                "params",
            )
        }
        return {**scoring, "checks": sorted(enabled), "params": params}


@dataclass
class FilterStats:
    rows: int = 0
    kept: int = 0
    rejected: int = 0
    scored: int = 0  # scored in this run (the rest were scored by an earlier run)
    rejected_by_check: Counter = field(default_factory=Counter)
    thresholds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rejected_by_check"] = dict(self.rejected_by_check)
        d["seconds"] = round(self.seconds, 3)
        return d


# -- pass 1: score -------------------------------------------------------------------------
class RowScorer:
    """The score pass's core, run by every engine: rule checks and image decoding per row
    (:meth:`prepare`, thread-safe), CLIP per batch (:meth:`score`)."""

    def __init__(self, config: FilterConfig, clip: ClipScorer | None):
        enabled, params = config.checks()
        self.rules = build_rules(enabled, params)
        self.clip = clip
        self.config = config

    def prepare(self, row: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """Worker thread: rule checks, the image decoded once for the hash and CLIP."""
        out = empty_row(FILTERED_SCHEMA, **row)
        reasons: list[str] = []
        if row.get("status") != STATUS_OK:
            out["reject_reasons"] = [f"status: {row.get('error_kind')}: {row.get('error')}"]
            return out, None
        for rule in self.rules:
            verdict = rule.check(row)
            out[f"score_{verdict.rule}"] = verdict.score
            if not verdict.passed:
                reasons.append(verdict.reason or verdict.rule)
        pixels = None
        try:
            img = images.open_rgb(row["image"]["bytes"])
            out["phash"] = phash_hex(img)
            if self.clip is not None:
                pixels = self.clip.preprocess(img)
        except images.ImageError as exc:
            reasons.append(f"image: {exc}")
        out["reject_reasons"] = reasons
        return out, pixels

    def score(self, batch: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
        rows = [row for row, _ in batch]
        if self.clip is None:
            return rows
        scorable = [i for i, (row, px) in enumerate(batch) if px is not None]
        if scorable:
            results = self.clip.score(
                [batch[i][1] for i in scorable],
                [rows[i]["captions"] or [] for i in scorable],
                [rows[i]["rationale"] for i in scorable],
            )
            for i, result in zip(scorable, results, strict=True):
                for name, value in result.items():
                    rows[i][f"score_{name}"] = value
        return rows


_Scorer = RowScorer  # the name tests patch


def _batches(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def scored_batches(
    scorer: RowScorer, rows: Iterable[dict[str, Any]], config: FilterConfig
) -> Iterator[list[dict[str, Any]]]:
    """Scored rows, a CLIP batch at a time, in input order: images are decoded in worker
    threads while the model runs on the previous batch."""
    prepared = ordered_map(
        scorer.prepare,
        rows,
        config.workers or default_workers(),
        prefetch=config.clip_batch_size * 3,
    )
    for batch in _batches(prepared, config.clip_batch_size):
        yield scorer.score(batch)


def score_pass(
    source: RunDir, out: RunDir, config: FilterConfig, clip: ClipScorer | None, progress: bool
) -> int:
    """Score every row of ``source`` not yet in ``out/scored``; returns how many."""
    done = {r["key"] for r in out.iter_rows(SCORED, columns=["key"])}
    todo = (r for r in source.iter_rows() if r["key"] not in done)
    scorer = RowScorer(config, clip)
    total = max(source.count_rows() - len(done), 0)
    n = 0
    with (
        ShardWriter(out, FILTERED_SCHEMA, SCORED, rows_per_shard=config.rows_per_shard) as writer,
        ProgressBar(total, "filter: scoring", progress) as bar,
    ):
        for batch in scored_batches(scorer, todo, config):
            for row in batch:
                writer.write(row, row_bytes(row))
            n += len(batch)
            bar.advance(len(batch))
    return n


def row_bytes(row: dict[str, Any]) -> int:
    """The size of a row's image, for shard sizing."""
    return len((row.get("image") or {}).get("bytes") or b"")


# -- pass 2: decide ------------------------------------------------------------------------
def clip_thresholds(run: RunDir, config: FilterConfig) -> dict[str, float]:
    """Absolute thresholds, with ``clip_keep_top`` turned into one on the rationale score."""
    thresholds: dict[str, float] = {}
    if config.min_clip_caption is not None:
        thresholds["clip_caption"] = config.min_clip_caption
    if config.min_clip_rationale is not None:
        thresholds["clip_rationale_mean"] = config.min_clip_rationale
    if config.clip_keep_top is not None:
        column = "score_clip_rationale_mean"
        values = [
            v
            for b in run.iter_batches(SCORED, columns=[column], batch_size=65536)
            for v in b.column(0).to_pylist()
            if v is not None
        ]
        if values:
            values.sort(reverse=True)
            cut = values[max(0, min(len(values), round(len(values) * config.clip_keep_top)) - 1)]
            thresholds["clip_rationale_mean"] = max(cut, thresholds.get(column[6:], cut))
    return thresholds


def _clip_reasons(row: dict[str, Any], thresholds: dict[str, float]) -> list[str]:
    reasons = []
    for name, limit in thresholds.items():
        value = row.get(f"score_{name}")
        if value is not None and value < limit:
            reasons.append(f"{name}: {value:.3f} (min {limit:.3f})")
    return reasons


@dataclass(frozen=True)
class Duplicate:
    twin: str  # key of the kept row
    check: str  # duplicate_image or duplicate_rationale
    score: float  # Hamming distance, or estimated Jaccard similarity
    reason: str


def duplicates(
    run: RunDir, config: FilterConfig, thresholds: dict[str, float]
) -> dict[str, Duplicate]:
    """key -> (kept twin, reason) for every near-duplicate row. Rows that pass everything
    else are offered first, so a rejected row never stands in for a good one."""
    if not (config.dedup_images or config.dedup_rationales):
        return {}
    columns = ["key", "phash", "rationale", "reject_reasons", *(f"score_{n}" for n in thresholds)]
    text = TextDeduper(config.rationale_similarity) if config.dedup_rationales else None
    entries, hashes = [], {}
    for row in run.iter_rows(SCORED, columns=columns, batch_size=4096):
        clean = not row["reject_reasons"] and not _clip_reasons(row, thresholds)
        entries.append((not clean, row["key"], row["phash"]))
        if text is not None and row["rationale"]:
            hashes[row["key"]] = text.minhash(row["rationale"])
    entries.sort()
    images_ = ImageDeduper(config.phash_distance) if config.dedup_images else None
    found: dict[str, Duplicate] = {}
    for rejected_already, key, phash in entries:
        keep = not rejected_already
        if images_ is not None:
            twin, distance = images_.offer(key, phash, keep)
            if twin is not None:
                found[key] = Duplicate(
                    twin,
                    "duplicate_image",
                    distance,
                    f"duplicate_image: {distance} bits from kept {twin} "
                    f"(max {config.phash_distance})",
                )
                continue
        if text is not None and key in hashes:
            twin, similarity = text.offer_hash(key, hashes.pop(key), keep)
            if twin is not None:
                found[key] = Duplicate(
                    twin,
                    "duplicate_rationale",
                    similarity,
                    f"duplicate_rationale: {similarity:.2f} similar to "
                    f"kept {twin} (min {config.rationale_similarity:.2f})",
                )
    return found


@dataclass
class Decisions:
    """What the decide pass needs from the whole run; each row is then decided alone."""

    thresholds: dict[str, float]
    duplicates: dict[str, Duplicate]

    def decide(self, row: dict[str, Any]) -> bool:
        """Complete ``row``'s reject reasons (CLIP thresholds, duplicates); True if kept."""
        reasons = list(row["reject_reasons"] or []) + _clip_reasons(row, self.thresholds)
        dup = self.duplicates.get(row["key"])
        if dup is not None:
            row["duplicate_of"] = dup.twin
            row[f"score_{dup.check}"] = dup.score
            reasons.append(dup.reason)
        row["reject_reasons"] = reasons
        return not reasons


def count_decision(stats: FilterStats, row: dict[str, Any], kept: bool) -> None:
    stats.rows += 1
    if kept:
        stats.kept += 1
    else:
        stats.rejected += 1
        stats.rejected_by_check.update({r.split(":", 1)[0] for r in row["reject_reasons"]})


def decisions(out: RunDir, config: FilterConfig, stats: FilterStats) -> Decisions:
    """Clear earlier decisions and compute the run-wide ones: thresholds, duplicates."""
    for subdir in (KEPT, REJECTED):
        folder = out.path(subdir)
        if out.fs.exists(folder):
            out.fs.rm(folder, recursive=True)
    thresholds = clip_thresholds(out, config)
    stats.thresholds = thresholds
    return Decisions(thresholds, duplicates(out, config, thresholds))


def decide_pass(out: RunDir, config: FilterConfig, stats: FilterStats, progress: bool) -> None:
    decided = decisions(out, config, stats)
    with (
        ShardWriter(out, FILTERED_SCHEMA, KEPT, rows_per_shard=config.rows_per_shard) as kept,
        ShardWriter(
            out, FILTERED_SCHEMA, REJECTED, rows_per_shard=config.rows_per_shard
        ) as rejected,
        ProgressBar(out.count_rows(SCORED), "filter: deciding", progress) as bar,
    ):
        for row in out.iter_rows(SCORED):
            keep = decided.decide(row)
            (kept if keep else rejected).write(row, row_bytes(row))
            count_decision(stats, row, keep)
            bar.advance()


def load_clip(config: FilterConfig) -> ClipScorer | None:
    if not config.clip:
        return None
    return ClipScorer(
        ClipConfig(
            model=config.clip_model,
            pretrained=config.clip_pretrained,
            device=config.device,
            batch_size=config.clip_batch_size,
        )
    )


def filter_run(
    source: str,
    out: str,
    config: FilterConfig,
    progress: bool = True,
    engine: Engine | None = None,
) -> FilterStats:
    """Run the filter stage on the generated run ``source`` into ``out``. ``engine`` runs
    the passes: in this process (the default) or on a Ray cluster."""
    if engine is None:
        from .engines.local import LocalEngine

        engine = LocalEngine()
    config.validate()
    src = RunDir(source)
    if not src.exists():
        raise FileNotFoundError(f"{source}: no such run directory")
    if not src.shards():
        raise FileNotFoundError(f"{source}: no rows (data/part-*.parquet) to filter")
    if "rationale" not in src.schema().names:
        raise ValueError(
            f"{source} holds no rationales (an ingested run?): run `forge generate "
            f"--input {source} --out GENERATED` first and filter that"
        )
    run_config = {"input": source, **config.output_config()}
    run = prepare_run(out, "filter", run_config, config.overwrite, subdir=SCORED)
    engine.start_filter(run, config)  # loads CLIP (local) or joins the cluster: fails early
    stats = FilterStats()
    started = time.perf_counter()

    def finish() -> dict[str, Any]:
        stats.seconds = time.perf_counter() - started
        return {
            "counts": stats.as_dict(),
            "thresholds": stats.thresholds,
            "engine": engine.describe(),
        }

    with recorded_stage(run, "filter", run_config, finish):
        run.update_stage("filter", {"engine": engine.describe()})  # resume checks it
        stats.scored = engine.score(src, run, config, progress)
        engine.decide(run, config, stats, progress)
    return stats
