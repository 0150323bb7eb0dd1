"""Near-duplicate detection: images by perceptual hash (Hamming distance), rationales by
MinHash LSH over word shingles. One row per cluster is kept; the others are rejected with
the kept twin named.

Rows are offered in priority order (rows that passed every other check first, then by key),
so the kept twin is the best available one. Image candidates come from multi-index hashing:
the 64-bit hash is cut into ``max_distance + 1`` bands, and by the pigeonhole principle two
hashes within ``max_distance`` bits share at least one band exactly.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+")


def phash_hex(image) -> str:
    """64-bit perceptual hash of a PIL image, as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(image))


@dataclass
class ImageDeduper:
    max_distance: int = 4

    def __post_init__(self) -> None:
        self.bands = self.max_distance + 1
        self._index: list[dict[int, list[tuple[int, str]]]] = [
            defaultdict(list) for _ in range(self.bands)
        ]

    def _band_values(self, value: int) -> list[int]:
        width = -(-64 // self.bands)
        mask = (1 << width) - 1
        return [(value >> (i * width)) & mask for i in range(self.bands)]

    def offer(
        self, key: str, phash: str | None, keep: bool = True
    ) -> tuple[str | None, int | None]:
        """Returns (kept twin, distance) when ``key`` is a near-duplicate of an earlier kept
        row, else (None, None) and, with ``keep``, ``key`` becomes a kept representative
        (rows rejected for other reasons are checked but never stand for a cluster)."""
        if not phash:
            return None, None
        value = int(phash, 16)
        bands = self._band_values(value)
        best: tuple[int, str] | None = None
        for i, band in enumerate(bands):
            for other, other_key in self._index[i].get(band, ()):
                distance = (value ^ other).bit_count()
                if distance <= self.max_distance and (best is None or distance < best[0]):
                    best = (distance, other_key)
        if best is not None:
            return best[1], best[0]
        if not keep:
            return None, None
        for i, band in enumerate(bands):
            self._index[i][band].append((value, key))
        return None, None


@dataclass
class TextDeduper:
    threshold: float = 0.8  # estimated Jaccard similarity of word 5-shingles
    num_perm: int = 64
    shingle: int = 5

    def __post_init__(self) -> None:
        from datasketch import MinHashLSH

        self._lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        self._hashes: dict[str, object] = {}

    def minhash(self, text: str):
        """The MinHash of ``text``'s word shingles (compute it once, offer it later)."""
        from datasketch import LeanMinHash, MinHash

        words = _WORD.findall(text.lower())
        n = self.shingle
        shingles = {" ".join(words[i : i + n]).encode() for i in range(max(1, len(words) - n + 1))}
        mh = MinHash(num_perm=self.num_perm, seed=1)
        mh.update_batch(list(shingles))
        return LeanMinHash(mh)  # hash values only: a few hundred bytes per row held

    def offer(
        self, key: str, text: str | None, keep: bool = True
    ) -> tuple[str | None, float | None]:
        """Like :meth:`ImageDeduper.offer`, for rationale texts; returns the twin and the
        estimated Jaccard similarity."""
        if not text or not text.strip():
            return None, None
        return self.offer_hash(key, self.minhash(text), keep)

    def offer_hash(self, key: str, mh, keep: bool = True) -> tuple[str | None, float | None]:
        best: tuple[float, str] | None = None
        for other in self._lsh.query(mh):
            similarity = mh.jaccard(self._hashes[other])
            if similarity >= self.threshold and (best is None or similarity > best[0]):
                best = (similarity, other)
        if best is not None:
            return best[1], best[0]
        if not keep:
            return None, None
        self._lsh.insert(key, mh)
        self._hashes[key] = mh
        return None, None
