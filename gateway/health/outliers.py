"""Outlier detection per target (a replica URL, or the GPU box's nginx): pure, fake-clock tested.

What Envoy's outlier detection does for a cluster's hosts, for the on-prem targets: every
live failure of a target — a connect error, a 5xx, no response headers or no first token
within the deadline, a reset, an empty answer — counts; `eject_after` in a row eject it
for `base_s` × the number of times it has been ejected (capped at 5×), whatever the probes
say (a wedged server answers /health and /v1/models and still never answers a chat). When
the time is up the target is on probation: one success clears it, one more failure ejects
it again at once. The tier goes down only when every one of its targets is out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_EJECTION_FACTOR = 5


@dataclass
class _Record:
    failures: int = 0           # in a row
    last_reason: str = ""
    ejections: int = 0          # times ejected since the last success
    until: float = 0.0          # ejected until then
    reason: str = ""            # why, in words, while ejected
    probation: bool = False     # back from a failure its probes saw: one more ejects it


class Outliers:
    def __init__(self, eject_after: int, base_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.eject_after = eject_after
        self.base_s = base_s
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def failure(self, key: str, reason: str) -> str | None:
        """Count one failure; the ejection reason if this one ejects the target."""
        r = self._records.setdefault(key, _Record())
        if r.until > self.clock():
            return None                      # already out: late news from the same fault
        r.failures += 1
        r.last_reason = reason
        on_probation = r.ejections > 0 or r.probation
        if r.failures < self.eject_after and not on_probation:
            return None
        return self._eject(r, f"{reason}, {r.failures} times in a row")

    def success(self, key: str) -> bool:
        """A target answered: forget its failures. True if it was ejected or on probation."""
        r = self._records.pop(key, None)
        return r is not None and r.ejections > 0

    def eject_now(self, key: str, reason: str) -> str | None:
        """Out at once, as if its failures had reached `eject_after` (the whole box missed
        its deadlines together). The reason, or None if it was already out."""
        r = self._records.setdefault(key, _Record())
        if r.until > self.clock():
            return None
        return self._eject(r, reason)

    def _eject(self, r: _Record, why: str) -> str:
        """Out for base_s × its ejections so far (capped): the reason, in words."""
        r.ejections += 1
        r.until = self.clock() + self.base_s * min(r.ejections, MAX_EJECTION_FACTOR)
        r.reason = f"ejected by live traffic: {why}"
        return r.reason

    def probation(self, key: str) -> bool:
        """Its probes saw it fail and come back (a replica restarted): it takes traffic
        again now, ejected or not, on probation (one success clears it, one failure ejects
        it again). A wedged server's probes never fail, so they can't cut its ejection
        short. True if it was ejected."""
        r = self._records.setdefault(key, _Record())
        r.probation = True
        if r.until <= self.clock():
            return False
        r.until = self.clock()
        return True

    def ejected(self, key: str) -> str | None:
        """Why the target is out, or None when it may take traffic."""
        r = self._records.get(key)
        if r is None or r.until <= self.clock():
            return None
        return r.reason

    def next_change(self) -> float | None:
        """When the earliest ejection lapses (to refresh verdicts then), or None."""
        now = self.clock()
        ends = [r.until for r in self._records.values() if r.until > now]
        return min(ends) if ends else None
