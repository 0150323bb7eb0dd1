"""The Source protocol: what every corpus reader yields, and the shared selection logic.

A source enumerates :class:`SourceItem` objects in a deterministic natural order. Items are
light: image bytes are read lazily (``read``) unless the corpus stores them inline. Sharding,
seeded sampling and ``--limit`` are applied here, once, for every source kind.
"""

from __future__ import annotations

import hashlib
import heapq
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar


class SourceError(Exception):
    """A source that cannot be read at all (bad flags, missing annotation file, offline)."""


@dataclass
class SourceOptions:
    """Flags shared by all source kinds; each kind reads the ones it documents."""

    kind: str
    data_dir: str | None = None
    split: str | None = None
    dataset: str | None = None
    image_column: str | None = None
    caption_column: str | None = None
    streaming: bool = False
    limit: int | None = None
    seed: int | None = None
    num_shards: int = 1
    shard_index: int = 0

    def validate(self) -> None:
        if self.num_shards < 1:
            raise SourceError(f"--num-shards must be >= 1, got {self.num_shards}")
        if not 0 <= self.shard_index < self.num_shards:
            raise SourceError(
                f"--shard-index must be in [0, {self.num_shards}), got {self.shard_index}"
            )
        if self.limit is not None and self.limit < 0:
            raise SourceError(f"--limit must be >= 0, got {self.limit}")


@dataclass
class SourceItem:
    """One image of a corpus, before its bytes are read and checked."""

    key: str  # identity inside the source; stable across runs
    read: Callable[[], bytes] | None = None  # fetches the bytes (file, URL, archive member)
    data: bytes | None = None  # bytes already in hand (tables, tar members)
    path: str | None = None  # where the image came from, kept in image.path
    captions: list[str] = field(default_factory=list)
    error_kind: str | None = None  # set when the record itself is bad (e.g. "caption_encoding")
    error: str | None = None  # names the file and the cause
    objects: list[dict[str, Any]] = field(default_factory=list)
    url: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: optional work done in the worker thread before ``load`` (e.g. reading caption files),
    #: so the enumerating thread stays cheap
    resolve: Callable[[SourceItem], None] | None = None

    def load(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.read is None:
            raise FileNotFoundError(f"{self.path or self.key}: no image in this record")
        return self.read()


@dataclass(frozen=True)
class Flag:
    name: str  # the SourceOptions field
    help: str
    required: bool = False

    @property
    def cli(self) -> str:
        return "--" + self.name.replace("_", "-")


class Source(ABC):
    """A corpus reader. Subclasses set ``kind``, ``description`` and ``flags``."""

    kind: ClassVar[str]
    description: ClassVar[str]
    flags: ClassVar[tuple[Flag, ...]] = ()

    def __init__(self, options: SourceOptions):
        options.validate()
        for flag in self.flags:
            if flag.required and getattr(options, flag.name) in (None, ""):
                raise SourceError(f"source '{self.kind}' needs {flag.cli}: {flag.help}")
        self.options = options

    @abstractmethod
    def items(self) -> Iterator[SourceItem]:
        """Every item of the corpus, in a deterministic order."""

    def count(self) -> int | None:
        """Number of items before selection, when known without reading the corpus."""
        return None

    def describe(self) -> dict[str, Any]:
        """What to record in the manifest about this source (no secrets)."""
        opts = {k: v for k, v in vars(self.options).items() if v is not None and v is not False}
        return {"kind": self.kind, **opts}

    def selected(self) -> Iterator[SourceItem]:
        """``items()`` after sharding, seeded sampling and ``--limit``."""
        return select(self.items(), self.options)

    def expected(self) -> int | None:
        """Best guess of how many items ``selected()`` yields, for progress bars."""
        o, n = self.options, self.count()
        if n is not None and o.num_shards > 1:
            n = -(-n // o.num_shards)  # approximate: shards are assigned by key hash
        if o.limit is not None:
            n = o.limit if n is None else min(n, o.limit)
        return n


def stable_hash(text: str, salt: str = "") -> int:
    """A 64-bit hash that is the same on every machine and Python run."""
    return int.from_bytes(hashlib.blake2b(f"{salt}\x00{text}".encode(), digest_size=8).digest())


def in_shard(key: str, num_shards: int, shard_index: int) -> bool:
    return num_shards == 1 or stable_hash(key, "shard") % num_shards == shard_index


def select(items: Iterable[SourceItem], options: SourceOptions) -> Iterator[SourceItem]:
    """Apply sharding, then sampling: without ``seed`` the first ``limit`` items in natural
    order; with ``seed`` a uniform sample of ``limit`` items chosen by a seeded hash of the key
    (bottom-k, so memory stays O(limit) and the choice does not depend on the reading order),
    yielded in natural order."""
    shard = (it for it in items if in_shard(it.key, options.num_shards, options.shard_index))
    limit = options.limit
    if limit is None:
        yield from shard
        return
    if options.seed is None:
        for i, item in enumerate(shard):
            if i >= limit:
                return
            yield item
        return
    if limit == 0:
        return
    heap: list[tuple[int, int, SourceItem]] = []  # (-hash, position, item): a max-heap
    salt = f"seed={options.seed}"
    for pos, item in enumerate(shard):
        entry = (-stable_hash(item.key, salt), pos, item)
        if len(heap) < limit:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)
    for _, _, item in sorted(heap, key=lambda e: e[1]):
        yield item
