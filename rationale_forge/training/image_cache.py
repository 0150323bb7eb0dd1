"""Images pre-tokenised once with the model's VQ encoder, kept on disk.

Encoding 576 codes per image costs a VQ encoder pass; doing it every epoch (or every run)
wastes GPU time. The cache lives at ``ROOT/<fingerprint>/`` where the fingerprint hashes the
VQ encoder's weights and the image size, so a different model never reads stale codes.
Shards are Parquet files (``key``, ``codes`` as int16 lists) written atomically; a run that
dies mid-way keeps every finished shard and the next run encodes only what is missing.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..ui import ProgressBar
from .janus import JanusBundle

__all__ = ["ImageTokenCache", "vq_fingerprint"]


def vq_fingerprint(bundle: JanusBundle) -> str:
    """A short hash of the VQ encoder's weights and the image size."""
    digest = hashlib.sha256(f"{bundle.image_size}:{bundle.codebook}".encode())
    vq = bundle.model.model.vqmodel
    for name, tensor in sorted(vq.state_dict().items()):
        if name.startswith(("encoder.", "quant_conv.", "quantize.")):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class ImageTokenCache:
    """``key -> codes`` for one VQ model; :meth:`fill` encodes what is missing."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.dir = Path(root) / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)
        self.codes: dict[str, np.ndarray] = {}
        self.encoded = 0  # images encoded by this instance (the rest came from disk)
        for shard in sorted(self.dir.glob("part-*.parquet")):
            table = pq.read_table(shard)
            for key, codes in zip(
                table.column("key").to_pylist(), table.column("codes").to_pylist(), strict=True
            ):
                self.codes[key] = np.asarray(codes, dtype=np.int16)

    def __contains__(self, key: str) -> bool:
        return key in self.codes

    def __len__(self) -> int:
        return len(self.codes)

    def get(self, key: str) -> list[int]:
        return self.codes[key].astype(np.int64).tolist()

    def _write(self, keys: list[str], codes: list[np.ndarray]) -> None:
        table = pa.table(
            {"key": keys, "codes": pa.array([c.tolist() for c in codes], pa.list_(pa.int16()))}
        )
        name = f"part-{uuid.uuid4().hex[:12]}.parquet"
        tmp = self.dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.dir / name)
        for key, c in zip(keys, codes, strict=True):
            self.codes[key] = c

    def fill(
        self,
        bundle: JanusBundle,
        items: Iterable[tuple[str, object]],
        batch_size: int = 32,
        shard_size: int = 4096,
        total: int | None = None,
        open_image=None,
        errors: list[str] | None = None,
    ) -> int:
        """Encode the images of ``(key, image)`` items not cached yet; return how many.

        ``open_image`` turns an item's image value into a PIL image (default: identity).
        Images that cannot be decoded are reported in ``errors`` (or raise without it).
        """
        if bundle.codebook > np.iinfo(np.int16).max + 1:
            raise ValueError(f"codebook of {bundle.codebook} codes does not fit int16")
        pending_keys: list[str] = []
        pending_images: list = []
        out_keys: list[str] = []
        out_codes: list[np.ndarray] = []
        seen: set[str] = set()
        before = self.encoded

        def encode() -> None:
            if not pending_images:
                return
            codes = bundle.encode_images(pending_images).to(torch.int16).numpy()
            out_keys.extend(pending_keys)
            out_codes.extend(codes)
            self.encoded += len(pending_images)
            pending_keys.clear()
            pending_images.clear()

        with ProgressBar(total, "tokenising images") as bar:
            for key, value in items:
                bar.advance(1)
                if key in self.codes or key in seen:
                    continue
                seen.add(key)
                try:
                    image = open_image(value) if open_image else value
                    image = image.convert("RGB")
                except Exception as err:  # noqa: BLE001 - one bad image must not stop the run
                    if errors is None:
                        raise
                    errors.append(f"image {key}: cannot decode ({err})")
                    continue
                pending_keys.append(key)
                pending_images.append(image)
                if len(pending_images) >= batch_size:
                    encode()
                if len(out_keys) >= shard_size:
                    self._write(out_keys, out_codes)
                    out_keys, out_codes = [], []
            encode()
            if out_keys:
                self._write(out_keys, out_codes)
        return self.encoded - before
