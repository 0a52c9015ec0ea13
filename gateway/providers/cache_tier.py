"""The cache tier: a kept answer (fresh or stale) once the providers have failed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.cache.store import ResponseCache
from gateway.errors import TierUnavailable
from gateway.providers.base import HEADERS, Delta, Provenance, StreamEvent, TierRequest
from gateway.tiers import TierContext, TierSpec

CACHE_MODEL = "scout-cache"
CACHE_TIER = "cache"   # also answers fresh hits before any race (ChatService)


@dataclass(slots=True)
class CacheProvider:
    cache: ResponseCache
    tier: str = CACHE_TIER
    model: str = CACHE_MODEL

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        if request.cache_key is None or request.intent.private:
            raise TierUnavailable("this question is not cacheable")
        answer = await self.cache.get(request.cache_key)
        if answer is None:
            raise TierUnavailable("no cached answer for this question")
        yield HEADERS
        yield Provenance("fresh" if answer.is_fresh(time.time()) else "stale", answer.model)
        yield Delta(answer.text, self.model, None, "stop")

    async def close(self) -> None:
        """The cache is owned by the app."""


def _provider(ctx: TierContext) -> CacheProvider:
    if ctx.cache is None:   # the app always opens its answer cache
        raise ValueError("the cache tier needs the app's answer cache")
    return CacheProvider(ctx.cache)


# A kept answer can't continue a cut one: a resume skips it.
TIER = TierSpec(name=CACHE_TIER, label="cache", color="#58a6ff", provider=_provider,
                continues=False)
