"""The export stage: a filtered run -> a Hub-ready dataset folder.

::

    DATASET_DIR/
      README.md                                 dataset card (YAML front matter + stats)
      data/train-00000-of-00002.parquet         Parquet shards named as the Hub expects
      data/train-00001-of-00002.parquet
      data/test-00000-of-00001.parquet
      .forge/export.json                        what was exported from what (not uploaded)

The train/test split is decided per *group* of images: rows with the same image, rows
linked by ``duplicate_of`` and rows whose perceptual hashes are within ``phash_distance``
bits (transitively) form one group, and a group goes to the test split when a stable hash
of its smallest ``image_id`` (and the seed) falls under ``test_size``. So no image, nor a
near-duplicate of it, is in both splits, and the split is the same on every run and
machine, whatever the row order or shard layout of the input.

Two passes over the kept rows: the first reads four small columns to group and assign;
the second streams the rows into the shards. Memory holds a few bytes per row, not rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .features import Features, Image, List, Value
from .provenance import redact_argv
from .rationale import FIELDS as RATIONALE_FIELDS
from .report import reason_check
from .schema import GENERATION_FEATURES
from .store import RunDir
from .ui import ProgressBar

FORMATS = ("forge", "reasongen")
STATE = ".forge/export.json"

#: ``--format forge``: the columns the SFT trainer reads (names are part of the contract).
FORGE_FEATURES = Features(
    {
        "image": Image(),
        "image_id": Value("string"),
        "key": Value("string"),
        "source": Value("string"),
        "width": Value("int32"),
        "height": Value("int32"),
        "captions": List(Value("string")),
        "caption": Value("string"),
        # the rationale object, one column per field, as generate wrote it
        **{n: f for n, f in GENERATION_FEATURES.items() if n in RATIONALE_FIELDS},
        "model": Value("string"),
        "prompt_hash": Value("string"),
        "score_clip_caption": Value("float32"),
        "score_clip_rationale_mean": Value("float32"),
    }
)

#: ``--format reasongen``: the layout of the public ReasonGen-R1 SFT set.
REASONGEN_FEATURES = Features(
    {
        "image": Image(),
        "brief_caption": Value("string"),
        "detailed_caption": Value("string"),
        "augmented_prompts": {
            "short_caption": Value("string"),
            "paraphrases": List(Value("string")),
            "tags": List(Value("string")),
            "varied_captions": List(Value("string")),
            "object_prompts": List(Value("string")),
        },
        "augmented_cots": {
            "step_by_step": Value("string"),
            "object_centric": List(Value("string")),
            "region_descriptions": List(Value("string")),
            "tags": List(Value("string")),
        },
    }
)

#: What each column holds, for the dataset card.
COLUMN_DOCS = {
    "forge": {
        "image": "the image (original bytes, never re-encoded); decodes to a PIL image",
        "image_id": "sha256 of the image bytes",
        "key": "the row's identity in its source corpus (path, COCO id, ...)",
        "source": "source corpus kind (coco, folder, hf, parquet, jsonl, webdataset, sample)",
        "width": "width in pixels, as displayed (after EXIF orientation)",
        "height": "height in pixels, as displayed",
        "captions": "every caption the corpus has for the image",
        "caption": "the first caption (null when there is none)",
        "rationale": "what the generator thinks through before drawing: layout, style, "
        "composition, key details",
        "layout": "where things are in the frame",
        "style": "medium, palette, lighting, mood",
        "composition": "viewpoint, framing, balance",
        "short_caption": "a short prompt for the image",
        "paraphrases": "the prompt reworded",
        "tags": "tag-style prompt terms",
        "object_prompts": "prompts naming the main objects",
        "varied_captions": "captions of varied length and focus",
        "step_by_step": "the rationale written as numbered steps",
        "object_centric": "the rationale as one description per object",
        "region_descriptions": "the rationale as one description per region of the frame",
        "model": "the vision-language model that wrote the rationale",
        "prompt_hash": "content hash of the prompt template it was asked with",
        "score_clip_caption": "CLIP image-caption cosine similarity",
        "score_clip_rationale_mean": "CLIP image-rationale cosine (mean over the "
        "rationale's 77-token chunks)",
    },
    "reasongen": {
        "image": "the image (original bytes); decodes to a PIL image",
        "brief_caption": "the corpus caption (the short prompt when the corpus has none)",
        "detailed_caption": "the rationale: what the generator thinks through before drawing",
        "augmented_prompts": "struct: short_caption, paraphrases[], tags[], varied_captions[], "
        "object_prompts[]",
        "augmented_cots": "struct: step_by_step, object_centric[], region_descriptions[], tags[]",
    },
}

#: Licenses of the corpora this tool reads, where the corpus has one license.
SOURCE_LICENSES = {
    # COCO annotations are CC BY 4.0; each image keeps its own Flickr license (see the card).
    "coco": "cc-by-4.0",
    "sample": "apache-2.0",  # drawn by this project
}

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


class ExportError(Exception):
    """The input is not a filtered run, or the output cannot be written."""


@dataclass
class ExportConfig:
    """How to export; the CLI and ``forge run`` build one of these."""

    test_size: float = 0.05  # fraction of image groups in the test split (0: train only)
    format: str = "forge"
    seed: int = 0
    max_shard_bytes: int = 500 << 20  # the Hub's recommended upper size of a Parquet file
    rows_per_shard: int | None = None  # also cap rows per shard (None: bytes only)
    row_group_rows: int = 100  # small row groups: the dataset viewer reads images row-group-wise
    phash_distance: int | None = None  # None: the filter's --phash-distance (default 4)
    license: str | None = None  # None: from the source corpus ("other" when unknown)
    pretty_name: str | None = None
    examples: int = 3  # example rows shown in the card
    overwrite: bool = False

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ExportError(f"unknown format '{self.format}'; choose one of {', '.join(FORMATS)}")
        if not 0 <= self.test_size < 1:
            raise ExportError(f"--test-size must be in [0, 1), got {self.test_size}")
        if self.max_shard_bytes <= 0 or (
            self.rows_per_shard is not None and self.rows_per_shard < 1
        ):
            raise ExportError("shard limits must be positive")
        if self.phash_distance is not None and not 0 <= self.phash_distance <= 32:
            raise ExportError(f"phash distance must be in [0, 32], got {self.phash_distance}")

    def output_config(self) -> dict[str, Any]:
        """What shapes the dataset (a rerun with the same values and input is a no-op)."""
        return {k: v for k, v in asdict(self).items() if k != "overwrite"}


@dataclass
class ExportStats:
    out: str = ""
    format: str = "forge"
    rows: dict[str, int] = field(default_factory=dict)
    shards: dict[str, list[str]] = field(default_factory=dict)
    groups: int = 0
    grouped_rows: int = 0  # rows that share a group with at least one other row
    bytes: int = 0
    seconds: float = 0.0
    card: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


# -- reading the filtered run ------------------------------------------------------------
def open_filtered(filtered_dir: str) -> tuple[RunDir, dict[str, Any]]:
    """The filtered run and its manifest; a clear error when ``filtered_dir`` is not one."""
    run = RunDir(filtered_dir)
    if not run.exists():
        raise ExportError(f"{filtered_dir}: no such directory")
    manifest = run.read_manifest()
    stage = (manifest.get("stages") or {}).get("filter")
    names = run.schema("data").names or run.schema("rejected").names
    if not stage or ("reject_reasons" not in names and not run.shards("rejected")):
        have = ", ".join(sorted(manifest.get("stages") or {})) or "no manifest stages"
        raise ExportError(
            f"{filtered_dir} is not a filtered run (manifest.json has {have}, no 'filter' "
            f"stage): run `forge filter RUN --out FILTERED` and export FILTERED"
        )
    if stage.get("status") not in (None, "done"):
        raise ExportError(
            f"{filtered_dir}: the filter stage is '{stage.get('status')}', not done; "
            f"rerun the same `forge filter` command to finish it"
        )
    if not run.shards("data"):
        rejected = run.count_rows("rejected")
        raise ExportError(
            f"{filtered_dir}: no row passed the filter (0 of {rejected} kept), nothing to "
            f"export; the report ({filtered_dir}/report/index.html) shows which checks "
            f"rejected them"
        )
    missing = {"image", "image_id", "key", "rationale"} - set(names)
    if missing:
        raise ExportError(f"{filtered_dir}: kept rows lack column(s) {', '.join(sorted(missing))}")
    return run, manifest


def upstream_stages(run: RunDir, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every stage record that made this run: its own manifest's stages, then those of the
    runs named by ``config.input`` (generate -> ingest), as far as they can be read."""
    stages = dict(manifest.get("stages") or {})
    seen = {run.url}
    frontier = [s.get("config", {}).get("input") for s in stages.values()]
    while frontier:
        url = frontier.pop()
        if not isinstance(url, str) or url in seen:
            continue
        seen.add(url)
        try:
            upstream = RunDir(url).read_manifest()
        except (OSError, ValueError):  # moved or unreadable: provenance stays partial
            continue
        for name, record in (upstream.get("stages") or {}).items():
            if name not in stages:
                stages[name] = record
                frontier.append((record.get("config") or {}).get("input"))
    return stages


def _mask(value: Any) -> Any:
    """URL credentials masked in any string of ``value``."""
    if isinstance(value, str):
        return redact_argv([value])[0]
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def _is_local_path(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    path = value.removeprefix("local-dir:")
    return path.startswith(("/", "~", "./", "../")) or bool(re.match(r"^[A-Za-z]:[\\/]", path))


def _public_name(value: Any) -> Any:
    """A model, template or weights name as the card shows it: Hub ids and tags as they
    are, local files by their base name only (the path means nothing to a reader)."""
    if not _is_local_path(value):
        return value
    path = value.removeprefix("local-dir:").replace("\\", "/").rstrip("/")
    return f"{posixpath.basename(path)} (local files)"


def provenance(stages: dict[str, dict[str, Any]], version: str | None) -> dict[str, Any]:
    """What the card says about how the data was made. A whitelist: commands, environment
    variable names, endpoints' credentials and anything else not named here stay out."""
    gen = (stages.get("generate") or {}).get("config") or {}
    flt = (stages.get("filter") or {}).get("config") or {}
    source = ((stages.get("ingest") or {}).get("config") or {}).get("source") or gen.get("source")
    # Local paths mean nothing to a reader of the card (and may name the user): only
    # remote corpus locations are kept.
    source = {
        k: v
        for k, v in (source or {}).items()
        if k not in ("num_shards", "shard_index") and not _is_local_path(v)
    }
    return _mask(
        {
            "source": source or None,
            "vlm": {
                "backend": gen.get("backend"),
                "model": _public_name(gen.get("model")),
                "params": gen.get("params"),
                "prompt_template": _public_name(gen.get("prompt_template")),
                "prompt_hash": gen.get("prompt_hash"),
            }
            if gen
            else None,
            "filter": {
                k: _public_name(flt.get(k))
                for k in (
                    "preset",
                    "checks",
                    "params",
                    "clip",
                    "clip_model",
                    "clip_pretrained",
                    "min_clip_caption",
                    "min_clip_rationale",
                    "clip_keep_top",
                    "dedup_images",
                    "phash_distance",
                    "dedup_rationales",
                    "rationale_similarity",
                )
                if k in flt
            },
            "filter_thresholds": (stages.get("filter") or {}).get("thresholds") or {},
            "versions": {
                "rationale-forge": version,
                **{
                    k: v
                    for k, v in ((stages.get("filter") or {}).get("versions") or {}).items()
                    if k in ("datasets", "pyarrow", "open_clip_torch", "transformers", "vllm")
                },
            },
        }
    )


def source_license(source: dict[str, Any] | None) -> str:
    """The source corpus's license identifier, ``other`` when it is not known."""
    return SOURCE_LICENSES.get((source or {}).get("kind"), "other")


# -- the split -----------------------------------------------------------------------------
def _near_pairs(values: np.ndarray, distance: int) -> np.ndarray:
    """Index pairs (k, 2) of distinct 64-bit hashes within ``distance`` bits. Multi-index
    hashing: cut the hash into ``distance + 1`` bands; two hashes that close share a band
    exactly (pigeonhole), so only hashes in the same band bucket are compared (vectorised)."""
    found: list[np.ndarray] = []
    if len(values) < 2 or distance < 1:
        return np.empty((0, 2), dtype=np.int64)
    bands = distance + 1
    width = -(-64 // bands)
    for b in range(bands):
        band = (values >> np.uint64(b * width)) & np.uint64((1 << width) - 1)
        order = np.argsort(band, kind="stable")
        sorted_band = band[order]
        starts = np.flatnonzero(np.r_[True, sorted_band[1:] != sorted_band[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts, ends, strict=True):
            if e - s < 2:
                continue
            idx = order[s:e]
            for lo in range(0, len(idx), 1024):  # bounded memory for large buckets
                block = idx[lo : lo + 1024]
                bits = np.bitwise_count(values[block][:, None] ^ values[idx][None, :])
                i, j = np.nonzero(bits <= distance)
                pairs = np.stack([block[i], idx[j]], axis=1)
                found.append(pairs[pairs[:, 0] < pairs[:, 1]])
    return np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)


def _equal_neighbours(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Edges (k, 2) joining the ``rows`` whose ``values`` are equal (a chain per value)."""
    order = np.argsort(values, kind="stable")
    same = values[order][1:] == values[order][:-1]
    return np.stack([rows[order][:-1][same], rows[order][1:][same]], axis=1)


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label (the smallest row index) of each of ``n`` rows, by label
    propagation with pointer jumping: a few vectorised passes, no per-row Python."""
    labels = np.arange(n, dtype=np.int64)
    if not len(edges):
        return labels
    a, b = edges[:, 0], edges[:, 1]
    while True:
        low = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        labels = labels[labels]  # jump to the label's label until settled
        while not np.array_equal(labels, labels[labels]):
            labels = labels[labels]
        if np.array_equal(labels, before):
            return labels


def key_hash(key: str) -> int:
    """A 64-bit hash of a row key (keys are matched by hash to stay compact in memory)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def stable_fraction(image_id: str, seed: int) -> float:
    """A number in [0, 1) from the image id and seed, the same on every machine."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class SplitIndex:
    """The few bytes per row the split needs (about 90), gathered batch by batch."""

    ids: list[np.ndarray] = field(default_factory=list)  # image_id, S64
    keys: list[np.ndarray] = field(default_factory=list)  # key_hash, uint64
    phashes: list[np.ndarray] = field(default_factory=list)  # uint64
    has_phash: list[np.ndarray] = field(default_factory=list)
    twins: list[tuple[int, int]] = field(default_factory=list)  # (row, key_hash of its twin)
    n: int = 0

    def add(
        self,
        image_ids: list[str | None],
        keys: list[str],
        phashes: list[str | None],
        duplicate_of: list[str | None],
    ) -> None:
        # A row without an image id (never for kept rows) is identified by its key.
        ids = [
            i or hashlib.sha256(k.encode()).hexdigest()
            for i, k in zip(image_ids, keys, strict=True)
        ]
        self.ids.append(np.array(ids, dtype="S64"))
        self.keys.append(np.fromiter((key_hash(k) for k in keys), np.uint64, len(keys)))
        self.phashes.append(np.fromiter((int(p or "0", 16) for p in phashes), np.uint64))
        self.has_phash.append(np.array([bool(p) for p in phashes], dtype=bool))
        self.twins += [(self.n + i, key_hash(t)) for i, t in enumerate(duplicate_of) if t]
        self.n += len(keys)

    def plan(self, test_size: float, seed: int, distance: int) -> SplitPlan:
        def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

        ids, keys = cat(self.ids, "S64"), cat(self.keys, np.uint64)
        phashes, has = cat(self.phashes, np.uint64), cat(self.has_phash, bool)
        rows = np.arange(self.n, dtype=np.int64)
        edges = [_equal_neighbours(ids, rows)]  # the same image under several keys
        if self.twins:  # duplicate_of links, by key hash
            order = np.argsort(keys)
            twin_rows = np.array([r for r, _ in self.twins], dtype=np.int64)
            wanted = np.array([h for _, h in self.twins], dtype=np.uint64)
            at = np.clip(np.searchsorted(keys[order], wanted), 0, max(self.n - 1, 0))
            hit = keys[order][at] == wanted
            edges.append(np.stack([twin_rows[hit], order[at][hit]], axis=1))
        with_hash = rows[has]
        edges.append(_equal_neighbours(phashes[has], with_hash))
        values, first = np.unique(phashes[has], return_index=True)
        pairs = _near_pairs(values, distance)
        edges.append(with_hash[first][pairs])
        labels = _components(self.n, np.concatenate(edges).astype(np.int64))
        return _assign(ids, labels, test_size, seed)


@dataclass
class SplitPlan:
    is_test: np.ndarray  # per input row (in reading order)
    groups: int
    grouped_rows: int


def _assign(ids: np.ndarray, labels: np.ndarray, test_size: float, seed: int) -> SplitPlan:
    """Each group to test when the stable hash of its smallest image id is under
    ``test_size``. When that leaves one split empty though there are two groups or more,
    the group with the smallest (largest) hash moves, so a tiny dataset still gets both
    splits; the choice depends on the ids only, never on row order."""
    order = np.lexsort((ids, labels))  # by group, then image id
    sorted_labels = labels[order]
    heads = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    group_labels = sorted_labels[heads]
    smallest = [i.decode() for i in ids[order][heads]]
    fraction = np.array([stable_fraction(i, seed) for i in smallest])
    test = fraction < test_size
    if test_size > 0 and len(fraction) >= 2:
        rank = sorted(range(len(fraction)), key=lambda g: (fraction[g], smallest[g]))
        if not test.any():
            test[rank[0]] = True
        elif test.all():
            test[rank[-1]] = False
    sizes = np.diff(np.r_[heads, len(labels)])
    return SplitPlan(np.isin(labels, group_labels[test]), len(heads), int(sizes[sizes > 1].sum()))


def plan_split(
    image_ids: list[str],
    keys: list[str],
    phashes: list[str | None],
    duplicate_of: list[str | None],
    test_size: float,
    seed: int,
    distance: int,
) -> SplitPlan:
    """Group rows (same image, ``duplicate_of`` links, perceptual hashes within
    ``distance`` bits, transitively) and assign each group to a split (see ``_assign``)."""
    index = SplitIndex()
    index.add(image_ids, keys, phashes, duplicate_of)
    return index.plan(test_size, seed, distance)


# -- rows in the output layout -------------------------------------------------------------
def _image(row: dict[str, Any]) -> dict[str, Any]:
    """The image struct with a bare file name (never the local path it was read from)."""
    image = row.get("image") or {}
    path = image.get("path")
    name = posixpath.basename(path.replace("\\", "/")) if path else None
    if not name:
        name = f"{row.get('image_id')}.{(row.get('format') or 'jpg').lower()}"
    return {"bytes": image.get("bytes"), "path": name}


def forge_row(row: dict[str, Any]) -> dict[str, Any]:
    captions = row.get("captions") or []
    out = {name: row.get(name) for name in FORGE_FEATURES}
    out.update(image=_image(row), captions=captions, caption=captions[0] if captions else None)
    for name, feature in FORGE_FEATURES.items():
        if isinstance(feature, List) and out[name] is None:
            out[name] = []
    return out


def reasongen_row(row: dict[str, Any]) -> dict[str, Any]:
    captions = row.get("captions") or []

    def strings(name: str) -> list[str]:
        return list(row.get(name) or [])

    return {
        "image": _image(row),
        "brief_caption": captions[0] if captions else row.get("short_caption"),
        "detailed_caption": row.get("rationale"),
        "augmented_prompts": {
            "short_caption": row.get("short_caption"),
            "paraphrases": strings("paraphrases"),
            "tags": strings("tags"),
            "varied_captions": strings("varied_captions"),
            "object_prompts": strings("object_prompts"),
        },
        "augmented_cots": {
            "step_by_step": row.get("step_by_step"),
            "object_centric": strings("object_centric"),
            "region_descriptions": strings("region_descriptions"),
            "tags": strings("tags"),
        },
    }


LAYOUTS = {"forge": (FORGE_FEATURES, forge_row), "reasongen": (REASONGEN_FEATURES, reasongen_row)}


# -- writing shards ------------------------------------------------------------------------
class SplitWriter:
    """Streams one split's rows into Parquet shards of at most ``max_bytes`` (and
    ``max_rows``), in small row groups, under temporary names; ``finish()`` names them
    ``{split}-{i:05d}-of-{n:05d}.parquet`` once the count is known."""

    def __init__(
        self,
        folder: Path,
        split: str,
        schema: pa.Schema,
        max_bytes: int,
        max_rows: int | None,
        row_group_rows: int,
    ):
        self.folder, self.split, self.schema = folder, split, schema
        self.max_bytes, self.max_rows, self.row_group_rows = max_bytes, max_rows, row_group_rows
        self._writer: pq.ParquetWriter | None = None
        self._parts: list[Path] = []
        self._buffer: list[dict[str, Any]] = []
        self._shard_bytes = self._shard_rows = 0
        self.rows = self.bytes = 0

    def write(self, row: dict[str, Any], nbytes: int) -> None:
        if self._writer is not None and (
            self._shard_bytes + nbytes > self.max_bytes
            or (self.max_rows is not None and self._shard_rows >= self.max_rows)
        ):
            self._close_shard()
        self._buffer.append(row)
        self._shard_bytes += nbytes
        self._shard_rows += 1
        self.rows += 1
        self.bytes += nbytes
        if self._writer is None:
            path = self.folder / f".{self.split}-{len(self._parts):05d}.tmp"
            self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
            self._parts.append(path)
        if len(self._buffer) >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._buffer and self._writer is not None:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer = []

    def _close_shard(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._shard_bytes = self._shard_rows = 0

    def finish(self) -> list[str]:
        self._close_shard()
        n = len(self._parts)
        names = []
        for i, part in enumerate(self._parts):
            name = f"{self.split}-{i:05d}-of-{n:05d}.parquet"
            part.rename(self.folder / name)
            names.append(f"data/{name}")
        return names


def _row_bytes(row: dict[str, Any]) -> int:
    """Approximate stored size of a row: its image bytes plus its text."""
    image = (row.get("image") or {}).get("bytes") or b""
    text = sum(len(v) for v in row.values() if isinstance(v, str))
    return len(image) + text + 64


# -- statistics for the card ---------------------------------------------------------------
def quantiles(values: list[float]) -> list[float] | None:
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not finite.size:
        return None
    return [float(q) for q in np.quantile(finite, QUANTILES)]


def rejection_counts(run: RunDir) -> tuple[int, Counter]:
    """Rows in ``rejected/`` and how many each check rejected (a row counts once per
    check)."""
    total, by_check = 0, Counter()
    for batch in run.iter_batches("rejected", columns=["reject_reasons"], batch_size=8192):
        total += batch.num_rows
        for reasons in batch.column(0).to_pylist():
            by_check.update({reason_check(r) for r in reasons or ()})
    return total, by_check


def size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ):
        if n < limit:
            return label
    return "n>1T" if n >= 10**12 else "1B<n<10B"


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.{digits}f}".rstrip("0")


def _md(text: Any) -> str:
    """A value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def card_body(
    *,
    title: str,
    config: ExportConfig,
    stats: ExportStats,
    kept: int,
    rejected: int,
    by_check: Counter,
    score_q: dict[str, list[float] | None],
    prov: dict[str, Any],
    license_id: str,
    examples: list[dict[str, Any]],
) -> str:
    total = kept + rejected
    lines = [f"# {title}", ""]
    lines += [
        'A "think, then draw" dataset: for every image, a vision-language model wrote the '
        "*rationale* an image generator should think through before drawing it (layout, "
        "style, composition, key details) and prompt variants, after ReasonGen-R1. Rows were "
        "filtered with CLIP scores and rule checks; the split is by image, near-duplicates "
        "kept together. Made with rationale-forge.",
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        "",
        'ds = datasets.load_dataset("REPO_OR_DIR")  # this repository or the exported folder',
        'row = ds["train"][0]',
        'row["image"]  # a PIL image',
    ]
    if config.format == "forge":
        lines.append('row["rationale"], row["short_caption"]')
    else:
        lines.append('row["detailed_caption"], row["augmented_prompts"]["short_caption"]')
    lines += ["```", "", "## Statistics", "", "| split | rows | shards |", "|---|---:|---:|"]
    for split, n in stats.rows.items():
        if not stats.shards.get(split):
            continue
        lines.append(f"| {split} | {n:,} | {len(stats.shards.get(split, []))} |")
    lines += [
        "",
        f"Split by image: {stats.groups:,} groups (identical images, `duplicate_of` links and "
        f"perceptual hashes within {prov.get('split_phash_distance')} bits), test share "
        f"{config.test_size:g}, seed {config.seed}."
        + (
            " The test split is empty: every row is in one group."
            if config.test_size and not stats.rows.get("test")
            else ""
        ),
        "",
        f"Filtering kept **{kept:,} of {total:,} rows ({kept / total:.1%})**"
        if total
        else "No filter counts.",
        "",
    ]
    if by_check:
        lines += ["| check | rows rejected | share of all rows | passed |", "|---|---:|---:|---:|"]
        for check, n in sorted(by_check.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"| {_md(check)} | {n:,} | {n / total:.1%} | {1 - n / total:.1%} |")
        lines += ["", "(A row rejected by several checks counts once under each.)", ""]
    header = " | ".join(
        f"{'min' if q == 0 else 'max' if q == 1 else f'p{int(q * 100)}'}" for q in QUANTILES
    )
    lines += [f"| exported rows | {header} |", "|---|" + "---:|" * len(QUANTILES)]
    for name, qs in score_q.items():
        cells = " | ".join(_fmt(v) for v in qs) if qs else " | ".join("-" for _ in QUANTILES)
        lines.append(f"| {name} | {cells} |")
    lines += ["", "## Columns", "", "| column | type | what it holds |", "|---|---|---|"]
    features = LAYOUTS[config.format][0]
    for name, feature in features.items():
        kind = (
            "image"
            if isinstance(feature, Image)
            else "struct"
            if isinstance(feature, dict)
            else f"list[{feature.feature.dtype}]"
            if isinstance(feature, List)
            else feature.dtype
        )
        lines.append(f"| `{name}` | {kind} | {_md(COLUMN_DOCS[config.format][name])} |")
    lines += ["", "## How it was made", ""]
    source = prov.get("source") or {}
    lines.append(f"- **Source corpus**: {_md(json.dumps(source, sort_keys=True) or 'unknown')}")
    lines.append(f"- **License**: `{license_id}`" + _license_note(source, license_id))
    vlm = prov.get("vlm") or {}
    if vlm:
        lines.append(
            f"- **VLM**: backend `{vlm.get('backend')}`, model `{vlm.get('model')}`, "
            f"sampling {json.dumps(vlm.get('params'), sort_keys=True)}"
        )
        lines.append(
            f"- **Prompt template**: `{vlm.get('prompt_template')}` "
            f"(content hash `{vlm.get('prompt_hash')}`)"
        )
    flt = prov.get("filter") or {}
    lines.append(
        f"- **Filter**: preset `{flt.get('preset')}`; checks {', '.join(flt.get('checks') or [])}"
    )
    lines.append("")
    lines += ["```json", json.dumps(prov, indent=2, sort_keys=True, default=str), "```", ""]
    if examples:
        lines += ["## Examples", ""]
        for ex in examples:
            lines += _example_md(ex, config.format)
    return "\n".join(lines) + "\n"


def _license_note(source: dict[str, Any], license_id: str) -> str:
    kind = source.get("kind")
    if kind == "coco":
        return (
            " (the COCO annotations; every image keeps the Flickr license COCO lists for it, "
            "check those before redistributing)"
        )
    if license_id == "other":
        return " (the source corpus's license is not known to the tool: set it before publishing)"
    return ""


def _example_md(row: dict[str, Any], fmt: str) -> list[str]:
    if fmt == "reasongen":
        caption, rationale = row.get("brief_caption"), row.get("detailed_caption")
        variants = (row.get("augmented_prompts") or {}).get("paraphrases") or []
        short = (row.get("augmented_prompts") or {}).get("short_caption")
    else:
        caption, rationale = row.get("caption"), row.get("rationale")
        variants, short = row.get("paraphrases") or [], row.get("short_caption")
    out = [f"**{_md(caption or short or 'example')}**", ""]
    if short:
        out.append(f"- short caption: {_md(short)}")
    if variants:
        out.append(f"- a paraphrase: {_md(variants[0])}")
    out += ["", "> " + (rationale or "").replace("\n", "\n> "), ""]
    return out


def dataset_info(root: Path, stats: ExportStats, splits: list[str]) -> dict[str, Any]:
    """Split sizes for the card. Besides informing the Hub, they make ``datasets``' cache key
    depend on the content: it hashes the card's metadata and the data-file *patterns*, so
    without them two exports to folders of the same name (or a re-export in place) would
    share a cache entry and load stale rows."""
    sizes = {s: sum((root / f).stat().st_size for f in stats.shards[s]) for s in splits}
    return {
        "splits": [
            {"name": s, "num_bytes": sizes[s], "num_examples": stats.rows[s]} for s in splits
        ],
        "download_size": sum(sizes.values()),
        "dataset_size": sum(sizes.values()),
    }


def write_card(path: Path, data_kwargs: dict[str, Any], body: str) -> None:
    """The dataset card, through huggingface_hub's DatasetCard (YAML front matter)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(**data_kwargs)
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    card.save(path)


# -- the stage -----------------------------------------------------------------------------
def input_fingerprint(manifest: dict[str, Any]) -> str:
    """Identifies the filter run an export was made from (its config, counts, end time)."""
    stage = (manifest.get("stages") or {}).get("filter") or {}
    wanted = {k: stage.get(k) for k in ("config", "counts", "finished_at", "thresholds")}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True, default=str).encode()).hexdigest()


def read_state(out: str) -> dict[str, Any]:
    path = Path(out) / STATE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def is_current(filtered_dir: str, out: str, config: ExportConfig) -> bool:
    """True when ``out`` holds an export of this filtered run with this configuration."""
    state = read_state(out)
    if not state or state.get("config") != config.output_config():
        return False
    manifest = RunDir(filtered_dir).read_manifest()
    return state.get("input_fingerprint") == input_fingerprint(manifest) and all(
        (Path(out) / p).exists() for shards in state.get("shards", {}).values() for p in shards
    )


def _prepare_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if overwrite:
        shutil.rmtree(out)
        return
    if any(out.iterdir()) and not (out / STATE).exists():
        raise ExportError(
            f"{out} is not empty and holds no earlier export; pass --overwrite to replace "
            f"its content, or choose another --out"
        )


def export(
    filtered_dir: str, out: str, config: ExportConfig | None = None, progress: bool = True
) -> ExportStats:
    """Export the kept rows of the filtered run ``filtered_dir`` to the dataset folder
    ``out`` (a local path): split, shards, dataset card."""
    from . import __version__

    config = config or ExportConfig()
    config.validate()
    run, manifest = open_filtered(filtered_dir)
    out_path = Path(out)
    _prepare_out(out_path, config.overwrite)
    started = time.perf_counter()
    stages = upstream_stages(run, manifest)
    filter_config = (stages.get("filter") or {}).get("config") or {}
    distance = config.phash_distance
    if distance is None:
        distance = int(filter_config.get("phash_distance", 4) or 0)

    # Pass 1: group and assign, from four small columns.
    names = run.schema().names
    cols = [c for c in ("image_id", "key", "phash", "duplicate_of") if c in names]
    index = SplitIndex()
    for batch in run.iter_batches("data", columns=cols, batch_size=65536):
        d = batch.to_pydict()
        none = [None] * batch.num_rows
        index.add(d["image_id"], d["key"], d.get("phash", none), d.get("duplicate_of", none))
    plan = index.plan(config.test_size, config.seed, distance)

    # Pass 2: stream rows into the shards of each split, in a scratch folder.
    features, convert = LAYOUTS[config.format]
    schema = features.arrow_schema
    scratch = out_path / f".tmp-export-{uuid.uuid4().hex[:8]}"
    (scratch / "data").mkdir(parents=True)
    splits = ["train", "test"] if config.test_size > 0 else ["train"]
    writers = {
        s: SplitWriter(
            scratch / "data",
            s,
            schema,
            config.max_shard_bytes,
            config.rows_per_shard,
            config.row_group_rows,
        )
        for s in splits
    }
    scores: dict[str, list[float]] = {
        "score_clip_caption": [],
        "score_clip_rationale_mean": [],
        "rationale words": [],
    }
    examples: list[dict[str, Any]] = []
    stats = ExportStats(out=out, format=config.format)
    try:
        with ProgressBar(index.n, "export", progress) as bar:
            i = 0
            for batch in run.iter_batches("data", batch_size=256):
                for row in batch.to_pylist():
                    split = "test" if plan.is_test[i] else "train"
                    i += 1
                    converted = convert(row)
                    writers[split].write(converted, _row_bytes(row))
                    for name in ("score_clip_caption", "score_clip_rationale_mean"):
                        scores[name].append(row.get(name))
                    scores["rationale words"].append(len((row.get("rationale") or "").split()))
                    if split == "train" and len(examples) < config.examples:
                        examples.append(converted)
                    bar.advance()
        for split, writer in writers.items():
            stats.shards[split] = writer.finish()
            stats.rows[split] = writer.rows
            stats.bytes += writer.bytes
        # A split with no rows (one image group only) gets no files and no config entry:
        # the Hub and `datasets` refuse a split whose pattern matches nothing.
        splits = [s for s in splits if stats.shards[s]]
        stats.groups, stats.grouped_rows = plan.groups, plan.grouped_rows

        # The card.
        n_rejected, by_check = rejection_counts(run)
        kept = index.n
        prov = provenance(stages, manifest.get("version") or __version__)
        prov["split_phash_distance"] = distance
        license_id = config.license or source_license(prov.get("source"))
        pretty = config.pretty_name or _pretty_name(prov.get("source"))
        configs = [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits],
            }
        ]
        body = card_body(
            title=pretty,
            config=config,
            stats=stats,
            kept=kept,
            rejected=n_rejected,
            by_check=by_check,
            score_q={name: quantiles(v) for name, v in scores.items()},
            prov=prov,
            license_id=license_id,
            examples=examples,
        )
        write_card(
            scratch / "README.md",
            {
                "license": license_id,
                "task_categories": ["text-to-image", "image-to-text"],
                "size_categories": [size_category(kept)],
                "pretty_name": pretty,
                "language": ["en"],
                "tags": ["rationale", "reasoning", "synthetic", "rationale-forge"],
                "configs": configs,
                "dataset_info": dataset_info(scratch, stats, splits),
            },
            body,
        )
        stats.card = str(out_path / "README.md")
        stats.seconds = time.perf_counter() - started
        state = {
            "input": filtered_dir,
            "input_fingerprint": input_fingerprint(manifest),
            "config": config.output_config(),
            "shards": stats.shards,
            "stats": stats.as_dict(),
            "tool_version": __version__,
        }
        (scratch / ".forge").mkdir()
        (scratch / STATE).write_text(json.dumps(state, indent=2, default=str) + "\n")
        _install(scratch, out_path)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return stats


def _pretty_name(source: dict[str, Any] | None) -> str:
    kind = (source or {}).get("kind")
    name = (source or {}).get("dataset") or kind or "images"
    return (
        f"Rationales for {name}"
        if kind != "sample"
        else "Rationales for the rationale-forge sample"
    )


def _install(scratch: Path, out: Path) -> None:
    """Replace the previous export's files with the new ones (the old data/ and card go
    only once the new ones are complete)."""
    for name in ("data", "README.md", ".forge"):
        old = out / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    for item in scratch.iterdir():
        item.rename(out / item.name)
