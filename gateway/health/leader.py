"""Leader election for the health monitor, as arq does it: one key with an expiry.

With Redis, one process holds `health:leader` (SET NX with a TTL of 2 × the probe
interval, refreshed every tick while it holds it): it probes and publishes what it sees.
A process that dies stops refreshing, and the key expires so another takes over; one that
stops cleanly deletes the key (only if it still holds it), so the next takes over at its
next tick instead of after the TTL. Without Redis, or while Redis is down, every process
watches for itself ("local").
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable

from gateway.state import keys
from gateway.state.kv import KV

LEADER = keys.HEALTH + "leader"


class Leadership:
    def __init__(self, kv: KV, ttl_s: float, redis_up: Callable[[], bool] | None) -> None:
        self.kv = kv
        self.ttl_s = ttl_s
        self.redis_up = redis_up
        self.me = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.role = "local" if redis_up is None else "follower"

    async def elect(self) -> str:
        if self.redis_up is None:
            return self.role
        if not self.redis_up():
            self.role = "local"  # Redis gone: every process watches for itself
            return self.role
        got = await self.kv.set_nx(LEADER, self.me.encode(), self.ttl_s)
        if got is None:
            self.role = "local"
        elif got or await self.kv.get(LEADER) == self.me.encode():
            if not got:
                await self.kv.set(LEADER, self.me.encode(), self.ttl_s)
            self.role = "leader"
        else:
            self.role = "follower"
        return self.role

    async def release(self) -> None:
        """On a clean shutdown: hand over now, not when the key expires."""
        if self.role == "leader":
            await self.kv.delete_if_equals(LEADER, self.me.encode())
            self.role = "follower"
