"""The response cache: fresh hits answer before any provider; stale ones are the cache tier."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


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


class MemoryCache:
    """In-process LRU with expiry, for the demo and a single box without Redis."""

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self._data: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def get(self, key: str) -> CachedAnswer | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, answer = item
        if self._clock() >= expires:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return answer

    async def put(self, key: str, answer: CachedAnswer, keep_s: float) -> None:
        self._data[key] = (self._clock() + keep_s, answer)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
