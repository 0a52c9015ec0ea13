"""Health states, in one place: what each state means to the race, to serving counts and to alerts.

Probes produce them, the monitor folds them per tier, routing skips on them, ops and
metrics report them. A `StrEnum`, so a state is still its plain word on the wire
(`/health`, the dashboard, Redis snapshots) and compares equal to it.

Adding a state: docs/design.md, "Adding a health state".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    UP = "up"
    BUSY = "busy"                    # answering, but queued or rate-limited
    LOADING = "loading"              # a replica still loading its model
    DOWN = "down"
    MISCONFIGURED = "misconfigured"  # a key, a model name or credit: waiting cannot fix it
    STALE = "stale"                  # the snapshot this state came from is too old to trust
    UNKNOWN = "unknown"              # not probed yet


# What each state means, for the code that acts on it.
SERVING = frozenset({State.UP, State.BUSY})   # answers: counts as serving
FAILING = frozenset({State.DOWN, State.MISCONFIGURED, State.LOADING})  # probes back off
SKIPPED = frozenset({State.DOWN, State.MISCONFIGURED})  # the race leaves it out at once


@dataclass(frozen=True, slots=True)
class TierHealth:
    """One tier's folded health, as routing and `/health` see it."""

    state: str  # a State's word
    reason: str = ""
    skip: bool = False  # busy and asked us to wait (429 Retry-After): leave it out till then
