"""A local vision-language model through ``transformers``: the embedded default when no
endpoint is configured. Concurrent requests are gathered into batches; decoding is
schema-constrained (:mod:`.constrained`), so every answer is a valid object."""

from __future__ import annotations

import io
import logging
import time
from typing import Any

from .base import MicroBatching, VLMRequest, VLMResult
from .constrained import SkeletonLogitsProcessor, max_new_tokens, skeleton
from .errors import ModelUnavailableError
from .local import DEFAULT_LOCAL_MODEL, resolve_model

log = logging.getLogger(__name__)


class TransformersBackend(MicroBatching):
    name = "transformers"

    def __init__(
        self,
        model: str = DEFAULT_LOCAL_MODEL,
        batch_size: int = 4,
        device: str | None = None,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 1500,
        n_variants: int = 3,
        seed: int = 0,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model = model
        self.batch_size = max(1, batch_size)
        self.max_in_flight = self.batch_size * 2
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.n_variants, self.seed = n_variants, seed
        path = resolve_model(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            self.processor = AutoProcessor.from_pretrained(path)
            self.net = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot load model '{model}' from {path}: {exc}") from exc
        self.net.to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.segments = skeleton(max_tokens, n_variants)
        self.new_tokens = max_new_tokens(self.segments, self.tokenizer)

    @classmethod
    def from_config(cls, config) -> TransformersBackend:
        return cls(
            model=config.model or DEFAULT_LOCAL_MODEL,
            batch_size=config.batch_size,
            device=config.device,
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            n_variants=config.n_variants,
        )

    def params(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "constrained": "skeleton-v1",
        }

    # -- batching ------------------------------------------------------------------------
    def _generate(self, requests: list[VLMRequest]) -> list[VLMResult]:
        import torch
        from PIL import Image
        from transformers import LogitsProcessorList

        started = time.perf_counter()
        texts, pictures = [], []
        for req in requests:
            messages = [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": req.prompt}],
                }
            ]
            texts.append(
                self.processor.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False
                )
            )
            pictures.append([Image.open(io.BytesIO(req.image)).convert("RGB")])
        inputs = self.processor(text=texts, images=pictures, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device)
        vocab = self.net.get_output_embeddings().weight.shape[0]
        constraint = SkeletonLogitsProcessor(self.tokenizer, self.segments, vocab)
        sampling = self.temperature > 0
        # Seeded by the batch's content: reruns reproduce, different batches differ.
        torch.manual_seed(self.seed + int(requests[0].key[:8], 16))
        with torch.inference_mode():
            output = self.net.generate(
                **inputs,
                max_new_tokens=self.new_tokens,
                logits_processor=LogitsProcessorList([constraint]),
                do_sample=sampling,
                temperature=self.temperature if sampling else None,
                top_p=self.top_p if sampling else None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        prompt_len = inputs["input_ids"].shape[1]
        seconds = (time.perf_counter() - started) / len(requests)
        results = []
        for i, req in enumerate(requests):
            new = output[i, prompt_len:]
            n_new = int((new != (self.tokenizer.pad_token_id or -1)).sum())
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            finished = constraint.rows[i].finished if constraint.rows else False
            results.append(
                VLMResult(
                    key=req.key,
                    text=text,
                    finish_reason="stop" if finished else "length",
                    prompt_tokens=int(inputs["attention_mask"][i].sum()),
                    completion_tokens=n_new,
                    seconds=seconds,
                    error_kind=None if finished else "length",
                    error=None if finished else "the constrained answer did not finish",
                )
            )
        return results
