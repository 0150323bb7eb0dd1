"""In-process vLLM (``pip install rationale-forge[vllm]``) for GPU boxes: batched chat with
structured (JSON-Schema) outputs."""

from __future__ import annotations

import base64
import time
from typing import Any

from ..rationale import json_schema
from .base import MicroBatching, VLMRequest, VLMResult
from .errors import ModelUnavailableError


def _structured_params(schema: dict[str, Any]) -> dict[str, Any]:
    """SamplingParams keyword for JSON-Schema output, across vLLM versions."""
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}


class VLLMBackend(MicroBatching):
    name = "vllm"

    def __init__(
        self,
        model: str,
        batch_size: int = 64,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 1500,
        **engine_args: Any,
    ):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise ModelUnavailableError(
                "the vllm backend needs vLLM: pip install 'rationale-forge[vllm]' (GPU), or "
                "serve the model with `vllm serve` and use --backend openai --base-url URL"
            ) from exc
        self.model = model
        self.batch_size = batch_size
        self.max_in_flight = batch_size * 2
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.llm = LLM(model=model, limit_mm_per_prompt={"image": 1}, **engine_args)
        self.sampling = SamplingParams(
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            **_structured_params(json_schema(bounded=True)),
        )

    @classmethod
    def from_config(cls, config) -> VLLMBackend:
        if not config.model:
            raise ValueError("--backend vllm needs --model (a Hub id or a local path)")
        return cls(
            config.model,
            batch_size=max(config.batch_size, 8),
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
        )

    def params(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "structured": "json_schema",
        }

    def _generate(self, requests: list[VLMRequest]) -> list[VLMResult]:
        started = time.perf_counter()
        conversations = [
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": r.prompt},
                        {
                            "type": "image_url",
                            "image_url": {"url": _data_uri(r)},
                        },
                    ],
                }
            ]
            for r in requests
        ]
        outputs = self.llm.chat(conversations, self.sampling, use_tqdm=False)
        seconds = (time.perf_counter() - started) / len(requests)
        results = []
        for req, out in zip(requests, outputs, strict=True):
            completion = out.outputs[0]
            result = VLMResult(
                key=req.key,
                text=completion.text,
                finish_reason=completion.finish_reason,
                prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=len(completion.token_ids),
                seconds=seconds,
            )
            if completion.finish_reason == "length":
                result.error_kind = "length"
                result.error = f"the answer was cut off at {self.max_tokens} tokens"
            results.append(result)
        return results


def _data_uri(request: VLMRequest) -> str:
    return f"data:{request.image_mime};base64,{base64.b64encode(request.image).decode()}"
