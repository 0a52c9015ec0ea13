"""The response cache: fresh hits answer before any provider; stale ones are the cache tier.

Stored through the shared KV (Redis, or in-process without it). redis-py is
used directly rather than through aiocache: the gateway needs per-call
timeouts that turn into misses, SET NX locks for stampede control and one
outage policy shared with sessions and health, none of which aiocache's
Redis backend exposes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import orjson

from gateway.state import keys
from gateway.state.kv import KV


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    text: str
    model: str
    stored_at: float
    fresh_until: float
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def is_fresh(self, now: float) -> bool:
        return now < self.fresh_until


class ResponseCache(Protocol):
    async def get(self, key: str) -> CachedAnswer | None: ...
    async def put(self, key: str, answer: CachedAnswer, keep_s: float) -> None: ...


class AnswerCache:
    """Cached answers in the shared KV under `scout:cache:`; a Redis failure is a miss."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv

    async def get(self, key: str) -> CachedAnswer | None:
        raw = await self.kv.get(keys.CACHE + key)
        if raw is None:
            return None
        try:
            return CachedAnswer(**orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError):
            return None  # written by another version: treat as a miss

    async def put(self, key: str, answer: CachedAnswer, keep_s: float) -> None:
        await self.kv.set(keys.CACHE + key, orjson.dumps(answer), keep_s)  # orjson: dataclasses
