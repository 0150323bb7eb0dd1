"""The backend interface: a request (prompt + one image), a result, and ``complete``.

Every backend exposes ``async complete(request) -> VLMResult`` and never raises for a
failed request: failures are results with ``error_kind``/``error``. Backends that batch
(local models) collect concurrent ``complete`` calls into batches themselves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

ERROR_KINDS = {
    "request_failed": "the server kept failing (after retries) or refused the request",
    "length": "the answer was cut off (finish_reason=length)",
    "content_filter": "the server's content filter withheld the answer",
    "refusal": "the model refused to describe the image",
    "unparseable": "the answer is not a schema-valid object, even after repair",
}


@dataclass
class VLMRequest:
    key: str  # content key: what makes two requests the same (see ``request_key``)
    prompt: str
    image: bytes  # already resized and encoded, once, before any attempt
    image_mime: str = "image/jpeg"


@dataclass
class VLMResult:
    key: str
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error_kind: str | None = None
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0
    refusal: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(Protocol):
    name: str  # "openai", "transformers", "vllm"
    model: str

    def params(self) -> dict[str, Any]:
        """Everything besides the prompt and image that shapes the answer (cache key)."""

    async def complete(self, request: VLMRequest) -> VLMResult: ...

    async def aclose(self) -> None: ...


def request_key(backend: Backend, prompt: str, image_id: str) -> str:
    """Content key of a request: backend, model, sampling parameters, the rendered prompt
    (which embeds the template and the captions) and the image's hash."""
    payload = json.dumps(
        {
            "backend": backend.name,
            "model": backend.model,
            "params": backend.params(),
            "prompt": prompt,
            "image": image_id,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()
