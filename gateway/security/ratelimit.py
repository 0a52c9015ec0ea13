"""Rate limits: requests per minute (moving windows, by the `limits` library's rule) and
streams at once.

Per API key (by label), per client address and, when a key trusted to name them sends one,
per end user (the frontend's customer, scoped to the key that named them). With Redis the
windows are shared by every gateway process (limits' RedisStorage, under `scout:rate:`);
each call is bounded by the Redis timeout, and when Redis is down or slow the process
falls back to its own in-memory windows (LocalWindows; /health says so) rather than
refusing or failing anyone. Concurrent streams are counted per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from limits import RateLimitItem, parse
from limits.aio.storage import RedisSentinelStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from gateway.errors import RequestRejected
from gateway.logs import get_logger
from gateway.state import keys
from gateway.state.redis_link import RedisLink

if TYPE_CHECKING:   # the section's shape only: security sits below config
    from gateway.config import RedisConfig

log = get_logger("scout.ratelimit")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request counts against: the API key's label, the client's address and, when a
    key trusted to name them says so, the end user (the frontend's customer)."""

    label: str
    ip: str
    user: str | None = None
    _buckets: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:   # read four times a request: named once
        object.__setattr__(self, "_buckets", (
            f"key:{self.label}", f"ip:{self.ip}",
            *((f"user:{self.label}:{self.user}",) if self.user is not None else ())))

    def buckets(self) -> tuple[str, ...]:
        return self._buckets


class RateLimited(RequestRejected):
    """Over a limit: 429 with Retry-After (HTTP), or an `error` event (WebSocket)."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, scope: str, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.scope = scope            # key, ip, user (+ _streams for concurrency)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


def shared_storage(cfg: RedisConfig) -> Storage | None:
    """limits' storage on the same Redis as everything else: one URL, or the primary the
    sentinels name (read and written there: a moving window read from a lagging replica
    would let a burst through)."""
    opts: dict[str, Any] = {"implementation": "redispy", "key_prefix": keys.RATE.rstrip(":"),
                            "socket_timeout": cfg.timeout_s,
                            "socket_connect_timeout": cfg.timeout_s}
    if cfg.url is not None:
        return RedisStorage(cfg.url.get().replace("redis://", "async+redis://", 1)
                            .replace("rediss://", "async+rediss://", 1), **opts)
    if cfg.sentinels:
        hosts = ",".join(f"{h}:{p}" for h, p in cfg.sentinels)
        password = f":{quote(cfg.password.get(), safe='')}@" if cfg.password else ""
        sentinel_kwargs: dict[str, Any] = {"socket_timeout": cfg.timeout_s * 4}
        if cfg.sentinel_password:
            sentinel_kwargs["password"] = cfg.sentinel_password.get()
        return RedisSentinelStorage(
            f"async+redis+sentinel://{password}{hosts}/{cfg.sentinel_master}", use_replicas=False,
            sentinel_kwargs=sentinel_kwargs, db=cfg.db, **opts)
    return None


class LocalWindows:
    """Moving windows in this process, by limits' own rule: a hit is admitted while fewer
    than the limit's amount were admitted in the window before it, and a refused hit does
    not count. limits' in-memory storages expire old hits behind every hit, in a task
    that hops to a thread per window (asyncio) or in a timer thread that contends for the
    GIL (sync); here each window drops its own expired hits when it is hit, and windows
    idle for a whole period are swept once a period. Memory: one float per admitted hit
    still in its window, as with limits."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, int, int], deque[float]] = {}
        self._swept = clock()

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, item: RateLimitItem, ident: str) -> tuple[bool, int]:
        """(admitted, seconds until a hit would be: 0 when admitted)."""
        now = self._clock()
        span = item.get_expiry()
        key = (ident, item.amount, span)
        hits = self._windows.get(key)
        if hits is None:
            hits = self._windows[key] = deque()
        while hits and hits[0] <= now - span:
            hits.popleft()
        if len(hits) >= item.amount:   # "0/minute" admits nothing: a whole window to wait
            return False, max(1, int((hits[0] if hits else now) + span - now) + 1)
        hits.append(now)
        if now - self._swept > span:
            self._sweep(now)
        return True, 0

    def _sweep(self, now: float) -> None:
        self._swept = now
        for key in [k for k, hits in self._windows.items() if hits[-1] <= now - k[2]]:
            del self._windows[key]


class RateLimiter:
    def __init__(self, per_key: str, per_ip: str, streams_per_key: int, streams_per_ip: int,
                 link: RedisLink | None = None, storage: Storage | None = None,
                 per_user: str = "30/minute", streams_per_user: int = 2) -> None:
        self.per_key: RateLimitItem = parse(per_key)
        self.per_ip: RateLimitItem = parse(per_ip)
        self.per_user: RateLimitItem = parse(per_user)
        self.streams_per_key = streams_per_key
        self.streams_per_ip = streams_per_ip
        self.streams_per_user = streams_per_user
        self.link = link
        self.local = LocalWindows()
        self.shared = None
        self.storage = storage
        if link is not None and storage is not None:
            self.shared = MovingWindowRateLimiter(storage)
        self.streams: Counter[str] = Counter()

    async def aclose(self) -> None:
        """Close the Redis clients limits' storage opened (limits has no close of its own:
        its redis-py clients sit on the storage's bridge)."""
        bridge = getattr(self.storage, "bridge", None)
        for name in ("storage", "storage_replica"):
            client = getattr(bridge, name, None)
            if client is not None:
                await client.aclose()
        for client in getattr(getattr(bridge, "sentinel", None), "sentinels", ()):
            await client.aclose()

    @property
    def mode(self) -> str:
        return "shared (Redis)" if self.shared is not None and self.link is not None \
            and self.link.up else "per process"

    async def _hit(self, item: RateLimitItem, ident: str) -> tuple[bool, int]:
        if self.shared is not None and self.link is not None and self.link.up:
            try:
                async with asyncio.timeout(self.link.timeout_s):
                    ok = await self.shared.hit(item, ident)
                    if ok:
                        return True, 0
                    stats = await self.shared.get_window_stats(item, ident)
                    return False, max(1, int(stats.reset_time - time.time()) + 1)
            except Exception as exc:  # Redis trouble is never the customer's problem
                log.warning("ratelimit_fallback", reason=exc.__class__.__name__)
        return self.local.hit(item, ident)

    async def check(self, who: Caller) -> RateLimited | None:
        """The first limit `who` is over, or None. With Redis the windows are hit at once:
        one round trip of latency, not three."""
        windows = [(self.per_key, "key", f"this API key ({who.label}) is over {self.per_key}"),
                   (self.per_ip, "ip", f"this client address is over {self.per_ip}")]
        if who.user is not None:
            windows.append((self.per_user, "user", f"this end user is over {self.per_user}"))
        pairs = [(item, bucket) for (item, _, _), bucket in zip(windows, who.buckets(),
                                                                 strict=True)]
        if self.shared is not None and self.link is not None and self.link.up:
            results = await asyncio.gather(*(self._hit(i, b) for i, b in pairs))
        else:   # in process: nothing to wait for, so no task per window either
            results = [await self._hit(i, b) for i, b in pairs]
        for (_, scope, message), (ok, retry) in zip(windows, results, strict=True):
            if not ok:
                return RateLimited(scope, f"{message}; retry in {retry} s", retry)
        caps = ((self.streams_per_key, "key_streams", "this API key"),
                (self.streams_per_ip, "ip_streams", "this client address"),
                (self.streams_per_user, "user_streams", "this end user"))
        for bucket, (cap, scope, whose) in zip(who.buckets(), caps, strict=False):
            if self.streams[bucket] >= cap:
                return RateLimited(scope, f"{whose} already has {cap} answers streaming; wait "
                                   "for one to finish", 1)
        return None

    def open(self, who: Caller) -> None:
        for bucket in who.buckets():
            self.streams[bucket] += 1

    def close(self, who: Caller) -> None:
        for bucket in who.buckets():
            self.streams[bucket] -= 1
            if self.streams[bucket] <= 0:
                del self.streams[bucket]

    @contextlib.asynccontextmanager
    async def admitted(self, who: Caller,
                       refused: Callable[[RateLimited], None] = lambda _: None
                       ) -> AsyncIterator[None]:
        """Checked against every window, and counted as one stream while inside; raises
        RateLimited (after telling `refused`, for metrics) when over a limit."""
        refusal = await self.check(who)
        if refusal is not None:
            refused(refusal)
            raise refusal
        self.open(who)
        try:
            yield
        finally:
            self.close(who)
