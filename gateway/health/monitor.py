"""The health monitor's scheduler: what is probed when, and who probes.

Targets come from the tier registry: each enabled generative tier's spec names what to
probe (the GPU box's nginx over the tailnet and each replica; a cloud API's model list).
Every probe is one attempt with a short timeout, all run concurrently, on an interval with
jitter; a target that is down is probed with backoff up to a cap.

The parts, each in its own module:
- `targets.TierBook`: what is known of every target and tier (probe verdicts with
  hysteresis, live-traffic ejection). Pure.
- `leader.Leadership`: with Redis, one process (elected through an expiring key) probes
  and publishes what it sees under a key that expires after 2 × interval; the others read
  it, and a dead monitor cannot leave stale green (its record expires and another process
  takes over). Without Redis each process probes for itself.
- `incidents`: changes logged once and posted to the webhook; the fallback alert.

The stats flush and the fallback alert run as tasks of their own (`background`), so a
slow Redis write never delays a probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import aiohttp
import orjson

from gateway.config import Settings
from gateway.errors import FailureKind
from gateway.health.incidents import FallbackAlert, Incidents
from gateway.health.leader import Leadership
from gateway.health.probes import Verdict
from gateway.health.states import SERVING, State, TierHealth
from gateway.health.targets import Target, TierBook
from gateway.security.upstream_keys import KeySource
from gateway.state import keys
from gateway.state.kv import KV
from gateway.stats import Stats
from gateway.tiers import registry

SNAPSHOT = keys.HEALTH + "snapshot"


class HealthMonitor:
    """What this process knows of every tier; the `HealthSource` the router asks."""

    def __init__(self, settings: Settings, kv: KV, stats: Stats,
                 redis_up: Callable[[], bool] | None = None,
                 clock: Callable[[], float] | None = None,
                 keys: Mapping[str, KeySource] | None = None) -> None:
        clock = clock or time.time
        self.settings = settings
        self.keys = dict(keys or {})   # the keys in use now (they rotate)
        self.cfg = settings.health
        self.kv = kv
        self.stats = stats
        self.clock = clock
        self.leadership = Leadership(kv, 2 * self.cfg.interval_s, redis_up)
        self.incidents_log = Incidents(clock, lambda: self.leadership.role)
        # How long a replica answering our turns may stay silent and still count as alive:
        # the longest silence any turn is allowed.
        hold_s = max(max(d.first_token_s, d.gap_s) for d in
                     (settings.deadlines, *(i.deadlines for i in settings.intents.values())))
        self.book = TierBook(self.cfg, clock, self.incidents_log, hold_s)
        for spec in registry().generative():
            cfg = settings.tiers[spec.name]
            if cfg.enabled:
                found = spec.targets(cfg)
                self.book.add(spec.name, found.probes, dict(found.routes))
        self.primary = registry().primary()
        self.fallback = FallbackAlert(self.cfg, stats, self.incidents_log, self._primary_state)

    # -- what the router and the providers ask and tell: the book's ----------------------

    def state(self, tier: str) -> TierHealth:
        return self.book.state(tier)

    def usable(self, url: str) -> bool:
        return self.book.usable(url)

    def why_not(self, url: str) -> str:
        return self.book.why_not(url)

    def waiting(self, url: str) -> float:
        return self.book.waiting(url)

    def cache_usage(self, url: str) -> float | None:
        return self.book.cache_usage(url)

    def observe_target_failure(self, url: str, reason: str) -> None:
        self.book.observe_target_failure(url, reason)

    def observe_target_success(self, url: str) -> None:
        self.book.observe_target_success(url)

    def turn_started(self, url: str) -> None:
        self.book.turn_started(url)

    def turn_ended(self, url: str) -> None:
        self.book.turn_ended(url)

    def turn_moved(self, url: str) -> None:
        self.book.turn_moved(url)

    def observe_failure(self, tier: str, kind: FailureKind, reason: str,
                        retry_after_s: float | None = None) -> None:
        self.book.observe_failure(tier, kind, reason, retry_after_s)

    def observe_success(self, tier: str) -> None:
        self.book.observe_success(tier)

    @property
    def role(self) -> str:
        return self.leadership.role

    @property
    def targets(self) -> dict[str, Target]:
        return self.book.targets

    @property
    def incidents(self) -> list[dict[str, Any]]:
        return self.incidents_log.recent

    @property
    def on_change(self) -> list[Callable[[dict[str, Any]], object]]:
        return self.incidents_log.hooks

    @property
    def alerting(self) -> bool:
        return self.fallback.alerting

    def _primary_state(self) -> tuple[str, TierHealth] | None:
        p = self.primary
        return (p, self.state(p)) if p is not None and p in self.book.tier_states else None

    # -- the loop -----------------------------------------------------------------

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Probe until cancelled by the app's cleanup context; then hand leadership over."""
        try:
            while True:
                await self.tick(session)
                await asyncio.sleep(self._sleep_for())
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.leadership.release())

    def _sleep_for(self) -> float:
        if self.role == "follower":
            return self.cfg.interval_s / 2
        now = self.clock()
        due = min((t.next_at for t in self.targets.values()), default=now + self.cfg.interval_s)
        return max(0.05, min(due - now, self.cfg.interval_s))

    async def tick(self, session: aiohttp.ClientSession) -> None:
        role = await self.leadership.elect()
        if role == "follower":
            raw = await self.kv.get(SNAPSHOT)
            self.book.adopt({t["name"]: t for t in orjson.loads(raw)["targets"]}
                            if raw else None)
        else:
            await self._probe_due(session)
            if role == "leader":
                await self.kv.set(SNAPSHOT, orjson.dumps(
                    {"by": self.leadership.me,
                     "targets": [asdict(t) for t in self.targets.values()]}),
                    2 * self.cfg.interval_s)
        self.book.refresh()
        p = self._primary_state()
        if role != "follower" and p is not None:   # availability, sampled once a tick
            self.stats.add({"avail:n": 1, "avail:up": int(p[1].state in SERVING)})

    async def background(self) -> None:
        """The stats flush and the fallback alert, on their own clock (one per interval)."""
        while True:
            await asyncio.sleep(self.cfg.interval_s)
            await self.stats.flush()
            if self.role != "follower":
                await self.fallback.check()

    async def _probe_due(self, session: aiohttp.ClientSession) -> None:
        started = now = self.clock()
        # A tier's targets are probed together, so one round tells "the GPU box is
        # unreachable" (path) apart from "replica 2 is down" (replicas) at once.
        due_tiers = {t.tier for t in self.targets.values() if t.next_at <= now}
        due = [t for t in self.targets.values() if t.tier in due_tiers]
        if not due:
            return
        verdicts = await asyncio.gather(*(self._probe(t, session) for t in due))
        for t, v in zip(due, verdicts, strict=True):
            self.book.fold(t, v, started)

    async def _probe(self, t: Target, session: aiohttp.ClientSession) -> Verdict:
        probe = self.book.probes[t.name].probe
        verdict = await probe(session, self._key(t.tier), self.cfg)
        old = self.keys[t.tier].fallback() if t.tier in self.keys else None
        if verdict.state == State.MISCONFIGURED and old is not None:   # mid-rotation
            verdict = await probe(session, old, self.cfg)
        return verdict

    def _key(self, tier: str) -> str | None:
        if tier in self.keys:
            return self.keys[tier].current()
        cfg = self.settings.tiers[tier]
        return cfg.api_key.get() if cfg.api_key else None

    def snapshot(self) -> dict[str, Any]:
        return {"role": self.role,
                "targets": {n: {k: v for k, v in asdict(self.book.effective(t)).items()
                                if k in ("state", "reason", "latency_ms", "since", "kind")}
                            for n, t in self.targets.items()},
                "alerting": self.alerting}
