"""Several OpenAI-compatible endpoints serving the same model, used as one backend.

``--base-url http://a:8000/v1,http://b:8000/v1`` spreads requests over the servers: each
request goes to the endpoint with the fewest requests in flight (ties in turn), so a slow
or busy server gets less work. Every endpoint must serve the same model with the same
settings: the request key (and so the cache) does not depend on which one answered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..vlm.base import Backend, VLMRequest, VLMResult


class BalancedBackend:
    def __init__(self, backends: list[Backend]):
        if not backends:
            raise ValueError("no endpoint given")
        self.backends = backends
        self.name = backends[0].name
        self.model = backends[0].model
        self.in_flight = [0] * len(backends)
        self.sent = [0] * len(backends)  # per endpoint, for tests and logs
        self._turn = 0

    def params(self) -> dict[str, Any]:
        return self.backends[0].params()

    def _pick(self) -> int:
        n = len(self.backends)
        order = [(self._turn + i) % n for i in range(n)]
        self._turn = (self._turn + 1) % n
        return min(order, key=lambda i: self.in_flight[i])

    async def complete(self, request: VLMRequest) -> VLMResult:
        i = self._pick()
        self.in_flight[i] += 1
        self.sent[i] += 1
        try:
            return await self.backends[i].complete(request)
        finally:
            self.in_flight[i] -= 1

    async def aclose(self) -> None:
        await asyncio.gather(*(b.aclose() for b in self.backends))
