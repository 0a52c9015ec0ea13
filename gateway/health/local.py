"""What this process knows of each tier's health, from live traffic.

The background monitor (probes, Redis sharing) builds on the same
`state()` interface; until a probe says otherwise, live traffic decides:
one 401/403 turns a tier misconfigured, `eject_after` consecutive failures
eject it as down, and either verdict lapses after `ttl_s` so traffic tries
the tier again. Each change of state is logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.routing.plan import TierHealth

log = logging.getLogger("scout.health")


@dataclass(slots=True)
class _Record:
    state: str = "unknown"
    reason: str = ""
    since: float = 0.0
    until: float | None = None  # when a passive verdict lapses
    failures: int = 0


class LocalHealth:
    def __init__(self, ttl_s: float = 10.0, eject_after: int = 3,
                 clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.eject_after = eject_after
        self._clock = clock
        self._tiers: dict[str, _Record] = {}

    def state(self, tier: str) -> TierHealth:
        rec = self._tiers.get(tier)
        if rec is None:
            return TierHealth("unknown")
        if rec.until is not None and self._clock() >= rec.until:
            self._change(tier, rec, "unknown", "passive verdict lapsed; trying traffic again", None)
        return TierHealth(rec.state, rec.reason)

    def observe_failure(self, tier: str, kind: str, reason: str) -> None:
        rec = self._tiers.setdefault(tier, _Record(since=self._clock()))
        rec.failures += 1
        until = self._clock() + self.ttl_s
        if kind == "misconfigured":
            self._change(tier, rec, "misconfigured", reason, until)
        elif kind == "unavailable" and rec.failures >= self.eject_after:
            self._change(tier, rec, "down", f"{rec.failures} failures in a row: {reason}", until)

    def observe_success(self, tier: str) -> None:
        rec = self._tiers.setdefault(tier, _Record(since=self._clock()))
        rec.failures = 0
        if rec.state != "up":
            self._change(tier, rec, "up", "answered live traffic", None)

    def snapshot(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for tier in list(self._tiers):
            h = self.state(tier)
            out[tier] = {"state": h.state, "reason": h.reason, "since": self._tiers[tier].since}
        return out

    def _change(self, tier: str, rec: _Record, state: str, reason: str,
                until: float | None) -> None:
        rec.until = until
        if rec.state == state:
            rec.reason = reason
            return
        level = logging.ERROR if state == "misconfigured" else (
            logging.WARNING if state == "down" else logging.INFO)
        log.log(level, "event=tier_state tier=%s from=%s to=%s reason=%r",
                tier, rec.state, state, reason)
        rec.state, rec.reason, rec.since = state, reason, self._clock()
