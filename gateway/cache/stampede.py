"""Stampede control: many identical questions that miss together make one upstream call.

The first asker leads: it holds an in-process event and, with Redis, a lock
key (SET NX with a TTL) that other gateway processes see. The others wait a
bounded time for the leader's answer to land in the cache, then go upstream
themselves, so a leader that dies or fails costs them only the wait.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time

from gateway.cache.store import CachedAnswer, ResponseCache
from gateway.state import keys
from gateway.state.kv import KV


class Lease:
    """Held by the leader until its answer is stored (or it gave up)."""

    __slots__ = ("event", "key", "remote", "token")

    def __init__(self, key: str, token: bytes) -> None:
        self.key = key
        self.token = token
        self.event = asyncio.Event()
        self.remote = False  # another process turned out to lead: wait on Redis instead


class Stampede:
    def __init__(self, kv: KV, cache: ResponseCache, wait_s: float, poll_s: float = 0.02) -> None:
        # A lease's token only has to differ from every other holder's: this process's
        # random prefix and a count (no system call per lease, as random bytes were).
        self._prefix = os.urandom(8)
        self._count = itertools.count()
        self.kv = kv
        self.cache = cache
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._local: dict[str, Lease] = {}

    async def lead(self, key: str) -> Lease | None:
        """A lease if this caller should go upstream; None if another caller already is."""
        if key in self._local:
            return None
        lease = Lease(key, self._prefix + next(self._count).to_bytes(8, "big"))
        self._local[key] = lease
        # The lock outlives the wait so followers never start while a leader streams.
        got = await self.kv.set_nx(keys.LOCK + key, lease.token, self.wait_s + 1)
        if got is False:  # another process leads; None (Redis unreachable) → lead ourselves
            self._local.pop(key, None)
            lease.remote = True
            lease.event.set()  # local askers that queued behind us now wait on Redis too
            return None
        return lease

    async def release(self, lease: Lease) -> None:
        lease.event.set()
        if self._local.get(lease.key) is lease:
            del self._local[lease.key]
        await self.kv.delete_if_equals(keys.LOCK + lease.key, lease.token)

    async def wait(self, key: str) -> CachedAnswer | None:
        """Wait (bounded) for the leader's answer; None means go upstream yourself."""
        deadline = time.monotonic() + self.wait_s
        local = self._local.get(key)
        if local is not None:
            try:
                async with asyncio.timeout(self.wait_s):
                    await local.event.wait()
            except TimeoutError:
                return None
            if not local.remote:
                return await self.cache.get(key)
        while time.monotonic() < deadline:  # another process leads: poll the cache
            answer = await self.cache.get(key)
            if answer is not None and answer.is_fresh(time.time()):
                return answer
            if await self.kv.get(keys.LOCK + key) is None:
                return await self.cache.get(key)  # the leader finished (or gave up)
            await asyncio.sleep(self.poll_s)
        return None
