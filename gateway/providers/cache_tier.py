"""The cache tier: a kept answer (fresh or stale) once the providers have failed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from gateway.cache.store import ResponseCache
from gateway.errors import TierUnavailable
from gateway.providers.base import HEADERS, Delta, Provenance, StreamEvent, TierRequest
from gateway.tiers import TierContext, TierSpec

CACHE_MODEL = "scout-cache"


class CacheProvider:
    tier = "cache"
    model = CACHE_MODEL

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        if request.cache_key is None or request.intent.private:
            raise TierUnavailable("this question is not cacheable")
        answer = await self._cache.get(request.cache_key)
        if answer is None:
            raise TierUnavailable("no cached answer for this question")
        yield HEADERS
        yield Provenance("fresh" if answer.is_fresh(time.time()) else "stale", answer.model)
        yield Delta(answer.text, self.model, None, "stop")

    async def close(self) -> None:
        """The cache is owned by the app."""


def _provider(ctx: TierContext) -> CacheProvider:
    return CacheProvider(ctx.cache)


TIER = TierSpec(name="cache", label="cache", color="#58a6ff", provider=_provider)
