"""The backend interface: a request (prompt + one image), a result, and ``complete``.

Every backend exposes ``async complete(request) -> VLMResult`` and never raises for a
failed request: failures are results with ``error_kind``/``error``. Backends that batch
(local models) collect concurrent ``complete`` calls into batches themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
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


class MicroBatching:
    """For local backends: concurrent ``complete`` calls are gathered into batches of
    ``batch_size`` and run by the subclass's ``_generate(requests)`` in a worker thread, so
    the event loop stays free. A failed batch fails its requests, not the run."""

    name: str
    batch_size: int
    _queue: list[tuple[VLMRequest, asyncio.Future]]
    _worker: asyncio.Task | None = None

    def _generate(self, requests: list[VLMRequest]) -> list[VLMResult]:
        raise NotImplementedError

    async def complete(self, request: VLMRequest) -> VLMResult:
        if not hasattr(self, "_queue"):
            self._queue = []
        future = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(0.01)  # let concurrent callers join the batch
            batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
            try:
                results = await asyncio.to_thread(self._generate, [r for r, _ in batch])
            except Exception as exc:
                logging.getLogger(__name__).exception("%s generation failed", self.name)
                error = f"{self.name} generation failed: {type(exc).__name__}: {exc}"
                results = [
                    VLMResult(key=r.key, error_kind="request_failed", error=error) for r, _ in batch
                ]
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def aclose(self) -> None:
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)
