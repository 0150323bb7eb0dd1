"""CLIP image-text scores with open_clip: image <-> captions and image <-> rationale.

Rationales are longer than CLIP's 77-token context, so a rationale is split at sentence
boundaries into chunks that fit, each chunk is scored, and the mean and the minimum are
recorded. Scores are cosine similarities in [-1, 1]. Work is batched under
``torch.inference_mode``; identical texts in a batch are encoded once; images are decoded
and preprocessed by the caller's prefetching loader (:meth:`ClipScorer.preprocess` runs in
worker threads) while the model runs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import images

#: ViT-B-32 with the LAION-2B weights: the best-known open CLIP that still runs at
#: ~20 images/s on two CPU cores (ViT-L-14 is ~10x slower), good enough to rank alignment.
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"

_SENTENCE = re.compile(r"(?<=[.!?;])\s+")


class ClipUnavailableError(RuntimeError):
    """The CLIP weights cannot be loaded (offline and not cached, bad path, ...)."""


@dataclass
class ClipConfig:
    model: str = DEFAULT_CLIP_MODEL  # an open_clip name, or a model-config .json file
    pretrained: str | None = DEFAULT_CLIP_PRETRAINED  # a tag, a weights file, local-dir:PATH
    device: str | None = None
    batch_size: int = 32


class ClipScorer:
    def __init__(self, config: ClipConfig):
        import open_clip
        import torch

        self.config = config
        self.torch = torch
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        name, pretrained = config.model, config.pretrained
        if name.endswith(".json"):  # a custom architecture, registered under its file stem
            if not Path(name).is_file():
                raise ClipUnavailableError(f"{name}: no such CLIP model config file")
            open_clip.add_model_config(name)
            name = Path(name).stem
        if pretrained and pretrained.startswith("local-dir:"):
            name, pretrained = pretrained, None  # open_clip reads config + weights from there
        elif pretrained and not Path(pretrained).exists():  # a tag: weights from the Hub
            from ..vlm.local import go_offline_if_unreachable

            go_offline_if_unreachable()
        try:
            # open_clip also logs the failure it raises; the error below says it once
            logging.disable(logging.ERROR)
            self.model, _, self._preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=self.device
            )
            self.tokenizer = open_clip.get_tokenizer(name)
        except Exception as exc:  # open_clip raises RuntimeError/OSError/hub errors
            cause = str(exc).splitlines()[0] if str(exc) else ""
            cause = cause if len(cause) <= 400 else cause[:400] + "..."
            raise ClipUnavailableError(
                f"cannot load CLIP model '{config.model}' with weights '{config.pretrained}' "
                f"({type(exc).__name__}: {cause}). Offline? Pass "
                f"--clip-pretrained /path/to/weights.bin (or local-dir:/path/to/model), or "
                f"turn CLIP scoring off with --no-clip"
            ) from exc
        finally:
            logging.disable(logging.NOTSET)
        self.model.eval()
        self.context = getattr(self.tokenizer, "context_length", 77) or 77

    # -- inputs --------------------------------------------------------------------------
    def preprocess(self, image):
        """One image (encoded bytes or an RGB PIL image) to the model's input tensor;
        thread-safe, so the caller's loader runs it in worker threads."""
        if isinstance(image, (bytes, bytearray)):
            image = images.open_rgb(bytes(image))
        return self._preprocess(image)

    def _n_tokens(self, text: str) -> int:
        encode = getattr(self.tokenizer, "encode", None)
        return len(encode(text)) if encode else int(len(text.split()) * 1.4)

    def chunks(self, text: str) -> list[str]:
        """``text`` split at sentence ends into pieces that fit the context (start and end
        tokens included); a sentence longer than the context is cut at word boundaries."""
        budget = self.context - 2
        pieces: list[str] = []
        current = ""
        for sentence in _SENTENCE.split(text.strip()):
            if not sentence:
                continue
            candidate = f"{current} {sentence}".strip()
            if self._n_tokens(candidate) <= budget:
                current = candidate
                continue
            if current:
                pieces.append(current)
            current = ""
            words = sentence.split()
            for word in words:  # an over-long sentence: pack word by word
                candidate = f"{current} {word}".strip()
                if self._n_tokens(candidate) <= budget or not current:
                    current = candidate
                else:
                    pieces.append(current)
                    current = word
        if current:
            pieces.append(current)
        return pieces

    # -- scoring -------------------------------------------------------------------------
    def _encode_texts(self, texts: list[str]) -> dict[str, Any]:
        """Unit-norm embeddings of the distinct ``texts``, encoded once each."""
        distinct = list(dict.fromkeys(texts))
        out: dict[str, Any] = {}
        for start in range(0, len(distinct), self.config.batch_size * 4):
            part = distinct[start : start + self.config.batch_size * 4]
            tokens = self.tokenizer(part).to(self.device)
            emb = self.model.encode_text(tokens)
            emb = emb / emb.norm(dim=-1, keepdim=True)
            out.update(zip(part, emb, strict=True))
        return out

    def score(
        self, pixel_batch: list[Any], captions: list[list[str]], rationales: list[str | None]
    ) -> list[dict[str, float | None]]:
        """Scores for a batch: ``pixel_batch`` from :meth:`preprocess` (None for rows
        without a usable image), each row's captions and rationale."""
        torch = self.torch
        rows = len(pixel_batch)
        chunked = [self.chunks(r) if r else [] for r in rationales]
        texts = [t for caps in captions for t in caps] + [c for ch in chunked for c in ch]
        with torch.inference_mode():
            present = [i for i, p in enumerate(pixel_batch) if p is not None]
            image_emb: dict[int, Any] = {}
            if present:
                stacked = torch.stack([pixel_batch[i] for i in present]).to(self.device)
                emb = self.model.encode_image(stacked)
                emb = emb / emb.norm(dim=-1, keepdim=True)
                image_emb = dict(zip(present, emb, strict=True))
            text_emb = self._encode_texts(texts) if texts else {}
            results = []
            for i in range(rows):
                result: dict[str, float | None] = {
                    "clip_caption": None,
                    "clip_rationale_mean": None,
                    "clip_rationale_min": None,
                }
                if i in image_emb:
                    img = image_emb[i]
                    if captions[i]:
                        sims = torch.stack([text_emb[c] @ img for c in captions[i]])
                        result["clip_caption"] = float(sims.mean())
                    if chunked[i]:
                        sims = torch.stack([text_emb[c] @ img for c in chunked[i]])
                        result["clip_rationale_mean"] = float(sims.mean())
                        result["clip_rationale_min"] = float(sims.min())
                results.append(result)
        return results
