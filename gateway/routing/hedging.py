"""When to hedge: at a tier's own tail, not at a fixed deadline (Dean & Barroso, "The Tail
at Scale"). Pure apart from its clock, which tests replace.

Per tier, the time to first token of its recent successful answers is kept in a ring
buffer. A turn hedges a tier (starts the next one beside it) after

    min(first_token_s, max(floor_s, p95 × factor))

so a GPU box that usually answers in 300 ms is hedged at ~0.5 s when it suddenly takes
4 s, instead of making every customer wait the intent's 5 s `first_token_s`. Hedges are
extra upstream requests, so they are rationed: over a sliding window at most `budget`
(5 %) of the requests started may be hedges (and at least `min_hedges`, so a quiet
dealership can still hedge); past that the fixed deadline applies again. Until a tier
has `min_samples` answers its deadline is the fixed one.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from gateway.config import HedgingKnobs

SAMPLES = 256


class Hedging:
    """Each tier's hedge delay, from its own recent answers; the config's `hedging`
    section (floor_s, factor, budget, window_s, min_hedges, min_samples) as it is."""

    def __init__(self, config: HedgingKnobs, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.cfg = config
        self.clock = clock
        self._ttft: dict[str, deque[float]] = {}
        self._p95: dict[str, float] = {}
        self._fresh: dict[str, int] = {}
        self._requests: deque[float] = deque()
        self._hedges: deque[float] = deque()

    # -- what the race tells it ----------------------------------------------------

    def observe_ttft(self, tier: str, seconds: float) -> None:
        ring = self._ttft.setdefault(tier, deque(maxlen=SAMPLES))
        ring.append(seconds)
        self._fresh[tier] = self._fresh.get(tier, 0) + 1
        if self._fresh[tier] >= 8 or tier not in self._p95:  # re-sort now and then, not always
            self._fresh[tier] = 0
            ordered = sorted(ring)
            self._p95[tier] = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def request_started(self) -> None:
        self._requests.append(self.clock())

    def hedged(self) -> None:
        self._hedges.append(self.clock())

    # -- what the race asks ------------------------------------------------------------

    def p95(self, tier: str) -> float | None:
        ring = self._ttft.get(tier)
        if ring is None or len(ring) < self.cfg.min_samples:
            return None
        return self._p95[tier]

    def budget_used(self) -> float:
        """Hedges in the window as a share of what the budget allows (≥ 1: exhausted)."""
        self._expire()
        allowed = max(self.cfg.min_hedges, self.cfg.budget * len(self._requests))
        return len(self._hedges) / allowed

    def delay(self, tier: str, first_token_s: float) -> float:
        """When to hedge this tier in a turn starting now."""
        p95 = self.p95(tier)
        if p95 is None or self.budget_used() >= 1:
            return first_token_s
        return min(first_token_s, max(self.cfg.floor_s, p95 * self.cfg.factor))

    def _expire(self) -> None:
        cutoff = self.clock() - self.cfg.window_s
        for q in (self._requests, self._hedges):
            while q and q[0] < cutoff:
                q.popleft()
