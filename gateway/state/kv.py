"""Shared key-value state: Redis for many gateway processes, or an in-process store.

Both backends answer the same small set of operations. The Redis one never
raises and never waits long: an operation that fails or takes longer than the
link's timeout returns its fallback value (a miss), and while Redis is known to
be down operations return at once, so no request fails or slows because of
Redis. The link's monitor notices when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as aioredis

from gateway.state.redis_link import RedisLink


class KV(Protocol):
    backend: str  # "redis" or "memory"

    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_s: float) -> bool: ...
    async def set_nx(self, key: str, value: bytes, ttl_s: float) -> bool | None: ...
    async def delete_if_equals(self, key: str, value: bytes) -> None: ...
    async def list_append(self, key: str, values: list[bytes], max_len: int, ttl_s: float) -> bool: ...
    async def list_all(self, key: str) -> list[bytes] | None: ...
    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int | None: ...
    async def hash_add(self, key: str, fields: dict[str, int], ttl_s: float) -> bool: ...
    async def hash_set(self, key: str, fields: dict[str, int], ttl_s: float) -> bool: ...
    async def hash_all(self, keys: list[str]) -> list[dict[str, int]] | None: ...
    async def stream_add(self, key: str, entries: list[bytes], ttl_s: float) -> bool: ...
    async def stream_read(self, key: str, after: str,
                          block_s: float) -> list[tuple[str, bytes]] | None: ...


Entry = tuple[str, bytes]   # a stream entry: its id, its payload
STREAM_MAXLEN = 20_000      # entries kept per stream (an answer is far shorter)


def _ms(ttl_s: float) -> int:
    return max(1, int(ttl_s * 1000))


class RedisKV:
    backend = "redis"

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    async def get(self, key: str) -> bytes | None:
        return await self.link.run(lambda r: r.get(key), None)

    async def set(self, key: str, value: bytes, ttl_s: float) -> bool:
        return bool(await self.link.run(lambda r: r.set(key, value, px=_ms(ttl_s)), False))

    async def set_nx(self, key: str, value: bytes, ttl_s: float) -> bool | None:
        """True if set, False if the key exists, None if Redis could not say."""
        result = await self.link.run(lambda r: r.set(key, value, px=_ms(ttl_s), nx=True), "?")
        return None if result == "?" else bool(result)

    async def delete_if_equals(self, key: str, value: bytes) -> None:
        """Release a lock only if we still hold it (WATCH/MULTI: no Lua needed)."""
        async def op(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                if await pipe.get(key) == value:
                    pipe.multi()
                    pipe.delete(key)
                    await pipe.execute()
                else:
                    await pipe.unwatch()
        await self.link.run(op, None)

    async def list_append(self, key: str, values: list[bytes], max_len: int, ttl_s: float) -> bool:
        async def op(r: aioredis.Redis) -> bool:
            pipe = r.pipeline(transaction=True)
            pipe.rpush(key, *values)
            pipe.ltrim(key, -max_len, -1)
            pipe.pexpire(key, _ms(ttl_s))
            await pipe.execute()
            return True
        return bool(await self.link.run(op, False))

    async def list_all(self, key: str) -> list[bytes] | None:
        return await self.link.run(lambda r: r.lrange(key, 0, -1), None)

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int | None:
        async def op(r: aioredis.Redis) -> int:
            pipe = r.pipeline(transaction=True)
            pipe.incrby(key, by)
            pipe.pexpire(key, _ms(ttl_s), nx=True)
            value, _ = await pipe.execute()
            return int(value)
        return await self.link.run(op, None)


    async def hash_add(self, key: str, fields: dict[str, int], ttl_s: float) -> bool:
        """HINCRBY every field at once (one round trip)."""
        async def op(r: aioredis.Redis) -> bool:
            pipe = r.pipeline(transaction=False)
            for name, value in fields.items():
                pipe.hincrby(key, name, value)
            pipe.pexpire(key, _ms(ttl_s))
            await pipe.execute()
            return True
        return bool(fields) and bool(await self.link.run(op, False))

    async def hash_set(self, key: str, fields: dict[str, int], ttl_s: float) -> bool:
        async def op(r: aioredis.Redis) -> bool:
            pipe = r.pipeline(transaction=False)
            pipe.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
            pipe.pexpire(key, _ms(ttl_s))
            await pipe.execute()
            return True
        return bool(fields) and bool(await self.link.run(op, False))

    async def hash_all(self, keys: list[str]) -> list[dict[str, int]] | None:
        """HGETALL of several keys in one round trip; None if Redis could not say."""
        async def op(r: aioredis.Redis) -> list[dict[str, int]]:
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            return [{k.decode(): int(v) for k, v in h.items()} for h in await pipe.execute()]
        return await self.link.run(op, None)


    async def stream_add(self, key: str, entries: list[bytes], ttl_s: float) -> bool:
        """XADD each entry (one round trip for all, with the key's expiry)."""
        async def op(r: aioredis.Redis) -> bool:
            async with r.pipeline(transaction=False) as pipe:
                for payload in entries:
                    pipe.xadd(key, {"d": payload}, maxlen=STREAM_MAXLEN, approximate=True)
                pipe.pexpire(key, _ms(ttl_s))
                await pipe.execute()
            return True
        return bool(await self.link.run(op, False))

    async def stream_read(self, key: str, after: str, block_s: float) -> list[Entry] | None:
        """Entries after `after`, waiting up to `block_s` for the first (XREAD BLOCK, on a
        connection of its own: a blocked read must not hold up the short-timeout ones)."""
        async def op(r: aioredis.Redis) -> list[Entry]:
            got: Any = await r.xread({key: after}, block=_ms(block_s) if block_s else None)
            return [(i.decode() if isinstance(i, bytes) else str(i), f[b"d"])
                    for _, items in got or [] for i, f in items]
        return await self.link.run_blocking(op, None, block_s)


class MemoryKV:
    """In-process, LRU-bounded, with expiry: the demo and a single box without Redis."""

    backend = "memory"

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: OrderedDict[str, tuple[float, bytes | list[bytes] | int | dict[str, int]]] = OrderedDict()
        self._max = max_keys
        self._clock = clock
        self._streams: dict[str, tuple[float, list[Entry]]] = {}
        self._grew: dict[str, asyncio.Event] = {}

    def _live(self, key: str) -> bytes | list[bytes] | int | dict[str, int] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if self._clock() >= item[0]:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[1]

    def _put(self, key: str, value: bytes | list[bytes] | int | dict[str, int], ttl_s: float) -> None:
        self._data[key] = (self._clock() + ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        if isinstance(value, int):  # counters read back as Redis returns them
            return str(value).encode()
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> bool:
        self._put(key, value, ttl_s)
        return True

    async def set_nx(self, key: str, value: bytes, ttl_s: float) -> bool | None:
        if self._live(key) is not None:
            return False
        self._put(key, value, ttl_s)
        return True

    async def delete_if_equals(self, key: str, value: bytes) -> None:
        if self._live(key) == value:
            del self._data[key]

    async def list_append(self, key: str, values: list[bytes], max_len: int, ttl_s: float) -> bool:
        current = self._live(key)
        items = (current if isinstance(current, list) else []) + list(values)
        self._put(key, items[-max_len:], ttl_s)
        return True

    async def list_all(self, key: str) -> list[bytes] | None:
        value = self._live(key)
        return list(value) if isinstance(value, list) else []

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int | None:
        item = self._data.get(key)
        current = self._live(key)
        value = (current if isinstance(current, int) else 0) + by
        expires = item[0] if item is not None and current is not None else self._clock() + ttl_s
        self._data[key] = (expires, value)
        return value

    async def hash_add(self, key: str, fields: dict[str, int], ttl_s: float) -> bool:
        current = self._live(key)
        h = dict(current) if isinstance(current, dict) else {}
        for name, value in fields.items():
            h[name] = h.get(name, 0) + value
        self._put(key, h, ttl_s)
        return True

    async def hash_set(self, key: str, fields: dict[str, int], ttl_s: float) -> bool:
        current = self._live(key)
        self._put(key, {**(current if isinstance(current, dict) else {}), **fields}, ttl_s)
        return True

    async def hash_all(self, keys: list[str]) -> list[dict[str, int]] | None:
        out = []
        for key in keys:
            value = self._live(key)
            out.append(dict(value) if isinstance(value, dict) else {})
        return out

    def _stream(self, key: str) -> list[Entry]:
        item = self._streams.get(key)
        if item is None or self._clock() >= item[0]:
            self._streams.pop(key, None)
            return []
        return item[1]

    async def stream_add(self, key: str, entries: list[bytes], ttl_s: float) -> bool:
        items = self._stream(key)
        for payload in entries:
            items.append((f"{len(items) + 1}-0", payload))
        self._streams[key] = (self._clock() + ttl_s, items[-STREAM_MAXLEN:])
        if len(self._streams) > self._max:   # oldest first, as the LRU does for keys
            self._streams.pop(next(iter(self._streams)))
        self._grew.pop(key, asyncio.Event()).set()
        return True

    async def stream_read(self, key: str, after: str, block_s: float) -> list[Entry] | None:
        seq = int(after.split("-")[0])
        newer = [e for e in self._stream(key) if int(e[0].split("-")[0]) > seq]
        if newer or not block_s:
            return newer
        grew = self._grew.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(block_s):
                await grew.wait()
        return [e for e in self._stream(key) if int(e[0].split("-")[0]) > seq]

    def __len__(self) -> int:
        return len(self._data)
