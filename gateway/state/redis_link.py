"""The gateway's link to Redis: short timeouts, no retries, and a state people can read.

redis-py's own retries are off (a slow Redis must cost a request at most one
timeout, default 50 ms); every call goes through `run`, which turns any error
into the caller's fallback value and marks the link down. While down, calls
return at once; the monitor pings on an interval and marks it up again, so
the gateway uses Redis again with no restart. Each change is logged once.

With Redis Sentinel (`RedisLink.sentinel`) the client asks the sentinels where the primary
is whenever it opens a connection. When the primary dies, calls fail (the link goes down,
and requests carry on without shared state); once the sentinels have promoted a replica,
the next ping reaches it, the link is up again and `where` names the new primary. No
restart, no configuration change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry  # an asyncio client takes the asyncio Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.logs import get_logger

log = get_logger("scout.redis")
T = TypeVar("T")


def redis_where(url: str) -> str:
    """host:port/db of a Redis URL, without its credentials (safe to log and show)."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/") or "0"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{db}"


def describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {timeout_s * 1000:.0f} ms"
    text = str(exc).split("\n")[0][:160]
    if "redis://" in text or "@" in text:  # never echo a URL that may hold a password
        text = exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


class RedisLink:
    def __init__(self, url: str, timeout_s: float = 0.05, ping_interval_s: float = 1.0,
                 client: aioredis.Redis | None = None) -> None:
        self.where = redis_where(url)
        self.timeout_s = timeout_s
        self.ping_interval_s = ping_interval_s
        self.client = client if client is not None else aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self.state = "unknown"
        self.reason = ""
        self.since = time.time()
        self.sentinel: Sentinel | None = None
        self.master = ""
        # Blocking reads (XREAD BLOCK) get connections of their own, with no socket timeout:
        # the call is bounded by its own wait instead.
        self._url = url
        self._blocking: aioredis.Redis | None = None

    @classmethod
    def sentinel_master(cls, sentinels: list[tuple[str, int]], master: str,
                        password: str | None = None, sentinel_password: str | None = None,
                        db: int = 0, timeout_s: float = 0.05,
                        ping_interval_s: float = 1.0) -> RedisLink:
        """The primary that `sentinels` name for `master`, found again after a failover."""
        # The sentinels are asked only when a connection opens: a longer timeout for them.
        sentinel = Sentinel(sentinels, socket_timeout=timeout_s * 4,
                            socket_connect_timeout=timeout_s * 4,
                            sentinel_kwargs={"socket_timeout": timeout_s * 4,
                                             "socket_connect_timeout": timeout_s * 4,
                                             **({"password": sentinel_password}
                                                if sentinel_password else {})})
        client = sentinel.master_for(master, socket_timeout=timeout_s,
                                     socket_connect_timeout=timeout_s, password=password,
                                     db=db, retry=Retry(NoBackoff(), 0), health_check_interval=0)
        link = cls(f"redis://sentinel/{db}", timeout_s, ping_interval_s, client=client)
        link.sentinel, link.master = sentinel, master
        link._blocking = sentinel.master_for(master, socket_timeout=None,
                                             socket_connect_timeout=timeout_s, password=password,
                                             db=db, retry=Retry(NoBackoff(), 0))
        link.where = f"sentinel master {master} (not found yet)"
        return link

    @property
    def up(self) -> bool:
        return self.state == "up"

    async def run(self, op: Callable[[aioredis.Redis], Awaitable[Any]], default: T) -> Any | T:
        """Run one Redis operation; on any failure or timeout, the fallback value."""
        if self.state == "down":
            return default
        try:
            async with asyncio.timeout(self.timeout_s):
                return await op(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._set("down", describe(exc, self.timeout_s))
            return default

    async def run_blocking(self, op: Callable[[aioredis.Redis], Awaitable[Any]], default: T,
                           block_s: float) -> Any | T:
        """Run one blocking read for up to `block_s`; any failure is the fallback value (the
        link's state is the short calls' and the monitor's business)."""
        if self.state == "down":
            return default
        if self._blocking is None:
            self._blocking = aioredis.Redis.from_url(
                self._url, socket_timeout=None, socket_connect_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 0))
        try:
            async with asyncio.timeout(block_s + self.timeout_s * 4):
                return await op(self._blocking)
        except (RedisError, OSError, TimeoutError):
            return default

    async def ping(self) -> bool:
        if self.state == "down":
            # Pooled sockets to a Redis that went away are dead: start the recovery on fresh
            # ones, or the first commands after it would fail and flap the state.
            with contextlib.suppress(RedisError, OSError):
                await self.client.connection_pool.disconnect()
        try:
            async with asyncio.timeout(self.timeout_s * 4):
                await self.client.ping()
            if self.sentinel is not None:
                await self._find_primary()
        except (RedisError, OSError, TimeoutError) as exc:
            self._set("down", describe(exc, self.timeout_s * 4))
            return False
        self._set("up", "")
        return True

    async def _find_primary(self) -> None:
        assert self.sentinel is not None
        async with asyncio.timeout(self.timeout_s * 4):
            host, port = await self.sentinel.discover_master(self.master)
        where = f"{host}:{port} (sentinel master {self.master})"
        if where != self.where and not self.where.endswith("(not found yet)"):
            log.warning("redis_primary_changed", master=self.master, before=self.where,
                        now=where)
        self.where = where

    async def monitor(self) -> None:
        """Ping forever; the app's cleanup context cancels this."""
        while True:
            await self.ping()
            await asyncio.sleep(self.ping_interval_s)

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "since": self.since,
                "where": self.where}

    def _set(self, state: str, reason: str) -> None:
        if state == self.state:
            return
        if state == "down":
            log.error("redis_state", to="down", where=self.where, reason=reason,
                      note="serving without cache and sessions until it returns")
        else:
            log.info("redis_state", to=state, where=self.where)
        self.state, self.reason, self.since = state, reason, time.time()

    async def close(self) -> None:
        await self.client.aclose()
        if self._blocking is not None:
            await self._blocking.aclose()
        for sentinel in self.sentinel.sentinels if self.sentinel is not None else ():
            await sentinel.aclose()
