"""Any OpenAI-compatible chat-completions server: OpenAI, vLLM, SGLang, ...

Retries 429, 5xx, timeouts and connection errors with exponential backoff and full jitter,
honouring ``Retry-After``; optional client-side requests/min and tokens/min limits;
structured output through ``response_format`` (JSON Schema) where the server supports it,
otherwise the answer is parsed and repaired downstream.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter

from ..rationale import json_schema
from .base import VLMRequest, VLMResult
from .errors import MissingAPIKeyError

log = logging.getLogger(__name__)

#: Rough token cost of one image for the client-side --tpm limiter (servers differ).
IMAGE_TOKEN_ESTIMATE = 800


@dataclass
class OpenAIConfig:
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    timeout: float = 120.0
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    rpm: int | None = None
    tpm: int | None = None
    limit_window_s: float = 60.0  # the window of rpm/tpm (a minute; shorter in tests)
    temperature: float = 0.7
    top_p: float = 1.0
    sampling_seed: int | None = None  # sent as `seed` (honoured by vLLM, best effort by OpenAI)
    extra_body: dict[str, Any] | None = None  # merged into every request (top_k, logit_bias...)
    max_tokens: int = 1500
    structured: str = "auto"  # auto: try response_format, fall back if the server refuses it


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait: ``Retry-After`` (seconds or an HTTP date) or
    ``retry-after-ms``."""
    if not headers:
        return None
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class OpenAIBackend:
    name = "openai"

    def __init__(self, config: OpenAIConfig):
        self.config = config
        self.model = config.model
        key = os.environ.get(config.api_key_env)
        if not key:
            if config.base_url is None:
                raise MissingAPIKeyError(
                    f"no API key: set the environment variable {config.api_key_env} "
                    f"(or name another with --api-key-env), or pass --base-url for a server "
                    f"that needs none"
                )
            key = "EMPTY"  # local servers (vLLM, SGLang) accept any key
        self._key = key
        base = (config.base_url or "https://api.openai.com/v1").rstrip("/")
        self._url = f"{base}/chat/completions"
        self._session = None  # an aiohttp session, made inside the running event loop
        self.structured = config.structured != "off"
        self._response_format = {
            "type": "json_schema",
            "json_schema": {"name": "rationale", "schema": json_schema(), "strict": True},
        }
        window = config.limit_window_s
        self._rpm = AsyncLimiter(config.rpm, window) if config.rpm else None
        self._tpm = AsyncLimiter(config.tpm, window) if config.tpm else None

    def params(self) -> dict[str, Any]:
        c = self.config
        return {
            "temperature": c.temperature,
            "top_p": c.top_p,
            "max_tokens": c.max_tokens,
            "structured": c.structured,
            "seed": c.sampling_seed,
            "extra_body": c.extra_body,
        }

    def _messages(self, request: VLMRequest) -> list[dict[str, Any]]:
        data = base64.b64encode(request.image).decode()
        return [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": request.prompt},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:{request.image_mime};base64,{data}"},
                    },
                ],
            }
        ]

    def _backoff(self, attempt: int, server_wait: float | None) -> float:
        if server_wait is not None:
            return min(server_wait, self.config.backoff_max) + random.uniform(0, 0.1)
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # exponential backoff with jitter

    async def _throttle(self, request: VLMRequest) -> None:
        if self._rpm:
            await self._rpm.acquire()
        if self._tpm:
            estimate = len(request.prompt) // 4 + IMAGE_TOKEN_ESTIMATE + self.config.max_tokens
            await self._tpm.acquire(min(estimate, self.config.tpm))

    async def complete(self, request: VLMRequest) -> VLMResult:
        started = time.perf_counter()
        messages = self._messages(request)  # encoded once, reused by every attempt
        attempt = 0
        last_error = "no attempt made"
        while True:
            attempt += 1
            await self._throttle(request)
            body: dict[str, Any] = {
                "model": self.model,
                "messages": messages,
                "temperature": self.config.temperature,
                "top_p": self.config.top_p,
                "max_tokens": self.config.max_tokens,
            }
            if self.config.sampling_seed is not None:
                body["seed"] = self.config.sampling_seed
            if self.config.extra_body:
                body.update(self.config.extra_body)
            if self.structured:
                body["response_format"] = self._response_format
            try:
                answer = await self._post(body)
            except _HTTPError as exc:
                if (
                    exc.status == 400
                    and self.structured
                    and self.config.structured == "auto"
                    and _mentions_response_format(exc)
                ):
                    log.warning("server refused response_format; parsing plain answers instead")
                    self.structured = False
                    attempt -= 1  # not the request's fault
                    continue
                retriable = exc.status in (408, 429) or exc.status >= 500
                last_error = f"HTTP {exc.status}: {_short(exc)}"
                if not retriable or attempt > self.config.max_retries:
                    return self._failed(request, attempt, started, last_error)
                await asyncio.sleep(self._backoff(attempt - 1, retry_after_seconds(exc.headers)))
                continue
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                # connection refused or reset, a timeout, or a 200 whose body is not JSON
                last_error = _describe(exc)
                if attempt > self.config.max_retries:
                    return self._failed(request, attempt, started, last_error)
                await asyncio.sleep(self._backoff(attempt - 1, None))
                continue
            return self._result(request, answer, attempt, started)

    def _failed(self, request: VLMRequest, attempts: int, started: float, error: str) -> VLMResult:
        return VLMResult(
            key=request.key,
            error_kind="request_failed",
            error=f"after {attempts} attempt(s): {error}",
            attempts=attempts,
            seconds=time.perf_counter() - started,
        )

    def _result(
        self, request: VLMRequest, answer: dict[str, Any], attempts: int, started: float
    ) -> VLMResult:
        """A result from a chat-completion answer (the JSON body)."""
        result = VLMResult(
            key=request.key, attempts=attempts, seconds=time.perf_counter() - started
        )
        usage = answer.get("usage") or {}
        result.prompt_tokens = usage.get("prompt_tokens") or 0
        result.completion_tokens = usage.get("completion_tokens") or 0
        choices = answer.get("choices") or []
        if not choices:
            result.error_kind, result.error = "request_failed", "the server returned no choice"
            return result
        choice = choices[0]
        message = choice.get("message") or {}
        result.finish_reason = choice.get("finish_reason")
        result.text = message.get("content")
        result.refusal = message.get("refusal")
        if result.refusal:
            result.error_kind, result.error = "refusal", f"refused: {result.refusal[:200]}"
        elif result.finish_reason == "length":
            result.error_kind = "length"
            result.error = (
                f"the answer was cut off at {result.completion_tokens} tokens (raise --max-tokens)"
            )
        elif result.finish_reason == "content_filter":
            result.error_kind = "content_filter"
            result.error = "the server's content filter withheld the answer"
        return result

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a chat completion; the parsed JSON answer, or :class:`_HTTPError`.

        Plain aiohttp rather than the openai client: at 64 requests in flight the client's
        request building and response models cost ~3x the CPU of the HTTP exchange itself,
        and this loop is what limits throughput against fast servers."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.config.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                headers={"Authorization": f"Bearer {self._key}"},
            )
        async with self._session.post(self._url, json=body) as response:
            payload = await response.read()
            if response.status != 200:
                raise _HTTPError(response.status, response.headers, _error_message(payload))
        return json.loads(payload)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _HTTPError(Exception):
    def __init__(self, status: int, headers, message: str):
        super().__init__(message)
        self.status, self.headers = status, headers


def _error_message(payload: bytes) -> str:
    """The server's error message (OpenAI-style ``{"error": {"message": ...}}`` or text)."""
    try:
        error = json.loads(payload).get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if error:
            return str(error)
    except (ValueError, AttributeError):
        pass
    return payload.decode("utf-8", "replace")[:300]


def _describe(exc: BaseException) -> str:
    """The error and its underlying cause: the client reports a refused connection as
    a timeout, and the cause is what tells the user the server is not there."""
    text = f"{type(exc).__name__}: {_short(exc)}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" (caused by {type(cause).__name__}: {_short(cause)})"
    return text


def _mentions_response_format(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("response_format", "json_schema", "structured", "guided"))


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."
