"""Rate limits: requests per minute (the `limits` library's moving window) and streams at once.

Per API key (by label) and per client IP. With Redis the windows are shared by every
gateway process (limits' RedisStorage, under `scout:rate:`); each call is bounded by the
Redis timeout, and when Redis is down or slow the process falls back to its own
in-memory windows (and /health says so) rather than refusing or failing anyone.
Concurrent streams are counted per process.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from gateway.state import keys
from gateway.state.redis_link import RedisLink

log = logging.getLogger("scout.ratelimit")


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: str          # "key" or "ip" (+ "_streams" for concurrency)
    message: str
    retry_after_s: int


class RateLimiter:
    def __init__(self, per_key: str, per_ip: str, streams_per_key: int, streams_per_ip: int,
                 link: RedisLink | None = None, redis_url: str | None = None) -> None:
        self.per_key: RateLimitItem = parse(per_key)
        self.per_ip: RateLimitItem = parse(per_ip)
        self.streams_per_key = streams_per_key
        self.streams_per_ip = streams_per_ip
        self.link = link
        self.local = MovingWindowRateLimiter(MemoryStorage())
        self.shared = None
        if link is not None and redis_url:
            storage = RedisStorage(redis_url.replace("redis://", "async+redis://", 1)
                                   .replace("rediss://", "async+rediss://", 1),
                                   implementation="redispy", key_prefix=keys.RATE.rstrip(":"),
                                   socket_timeout=link.timeout_s,
                                   socket_connect_timeout=link.timeout_s)
            self.shared = MovingWindowRateLimiter(storage)
        self.streams: Counter[str] = Counter()

    @property
    def mode(self) -> str:
        return "shared (Redis)" if self.shared is not None and self.link is not None \
            and self.link.up else "per process"

    async def _hit(self, item: RateLimitItem, ident: str) -> tuple[bool, int]:
        limiter = self.local
        if self.shared is not None and self.link is not None and self.link.up:
            try:
                async with asyncio.timeout(self.link.timeout_s):
                    ok = await self.shared.hit(item, ident)
                    if ok:
                        return True, 0
                    stats = await self.shared.get_window_stats(item, ident)
                    return False, max(1, int(stats.reset_time - time.time()) + 1)
            except Exception as exc:  # Redis trouble is never the customer's problem
                log.warning("event=ratelimit_fallback reason=%s", exc.__class__.__name__)
        if await limiter.hit(item, ident):
            return True, 0
        stats = await limiter.get_window_stats(item, ident)
        return False, max(1, int(stats.reset_time - time.time()) + 1)

    async def check(self, label: str, ip: str) -> Refusal | None:
        # Both windows at once: with Redis that is one round trip of latency, not two.
        (ok, retry), (ip_ok, ip_retry) = await asyncio.gather(
            self._hit(self.per_key, f"key:{label}"), self._hit(self.per_ip, f"ip:{ip}"))
        if not ok:
            return Refusal("key", f"this API key ({label}) is over {self.per_key}; retry in "
                           f"{retry} s", retry)
        ok, retry = ip_ok, ip_retry
        if not ok:
            return Refusal("ip", f"this client address is over {self.per_ip}; retry in {retry} s",
                           retry)
        if self.streams[f"key:{label}"] >= self.streams_per_key:
            return Refusal("key_streams", f"this API key already has {self.streams_per_key} "
                           "answers streaming; wait for one to finish", 1)
        if self.streams[f"ip:{ip}"] >= self.streams_per_ip:
            return Refusal("ip_streams", f"this client address already has {self.streams_per_ip} "
                           "answers streaming; wait for one to finish", 1)
        return None

    def open(self, label: str, ip: str) -> None:
        self.streams[f"key:{label}"] += 1
        self.streams[f"ip:{ip}"] += 1

    def close(self, label: str, ip: str) -> None:
        for k in (f"key:{label}", f"ip:{ip}"):
            self.streams[k] -= 1
            if self.streams[k] <= 0:
                del self.streams[k]


def client_ip(remote: str | None, forwarded_for: str | None,
              trusted: frozenset[str] = frozenset({"127.0.0.1", "::1"})) -> str:
    """The client's address: X-Forwarded-For's last untrusted hop when a trusted proxy sent it."""
    ip = remote or "unknown"
    if forwarded_for and ip in trusted:
        for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break
            ip = hop
            if hop not in trusted:
                break
    return ip
