"""What this process knows of every target and tier: pure state, no I/O, no clock of its own.

Probe verdicts go in with hysteresis: a target turns bad on the first bad probe (a dead
replica is out of the route within one interval) but is trusted again only after `rise`
good probes in a row, so a flapping target does not flip the route each time.

Live traffic counts too: one 401/403 turns a tier misconfigured, `eject_after` failures in
a row eject it, until a probe (or a live success) sees it work. A tier that keeps losing
hedges because its first token never comes (hung generation: probes still pass) is
ejected for `health.eject_ttl_s` instead, then live traffic tries it again. Per target
(each URL chats go to), live failures eject the target on its own (`Outliers`); the tier
is down only when all of its targets are.

Every change is told to `tell` as an incident (`gateway.health.incidents`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.config import HealthConfig
from gateway.errors import FailureKind
from gateway.health.outliers import Outliers
from gateway.health.probes import Verdict
from gateway.health.states import FAILING, SERVING, State, TierHealth
from gateway.tiers import ProbeTarget

NO_CREDIT_HOLD_S = 300.0   # an out-of-credit backup is retried this often, not every probe
# Live-traffic failures that eject a tier after `eject_after` in a row. Only "unavailable"
# can be cleared by a probe: a stall or an overload happens while its probes still pass.
HELD_OUT = (FailureKind.UNAVAILABLE, FailureKind.STALLED, FailureKind.OVERLOADED)


@dataclass
class Target:
    name: str
    kind: str  # path | replica | api
    tier: str
    state: str = State.UNKNOWN
    reason: str = "not probed yet"
    latency_ms: float | None = None
    since: float = field(default_factory=time.time)
    waiting: float | None = None   # requests queued on it, as its last probe read them
    cache_usage: float | None = None   # its KV cache in use (0–1), as its last probe read it
    timed_out: bool = False   # its last probe said down only for want of an answer in time
    good: int = 0       # good probes in a row while still counted bad
    failures: int = 0   # bad probes in a row (for backoff)
    next_at: float = 0.0


def apply_verdict(t: Target, v: Verdict, rise: int, now: float) -> bool:
    """Fold one probe into a target, with hysteresis. Pure; True if the state changed."""
    t.latency_ms, t.waiting, t.cache_usage = v.latency_ms, v.waiting, v.cache_usage
    t.timed_out = v.timed_out
    if v.state in SERVING:
        t.failures = 0
        if t.state in FAILING:
            t.good += 1
            if t.good < rise:
                t.reason = f"recovering ({t.good}/{rise} good probes): {v.reason}"
                return False
        t.good = 0
        changed = t.state != v.state
        t.state, t.reason = v.state, v.reason
    else:
        t.good = 0
        t.failures += 1
        changed = t.state != v.state
        t.state, t.reason = v.state, v.reason
    if changed:
        t.since = now
    return changed


def next_probe_in(t: Target, interval: float, jitter: float, cap: float,
                  rand: Callable[[], float] = random.random) -> float:
    base = interval if t.state not in FAILING else min(cap, interval * 2 ** max(0, t.failures - 1))
    return base * (1 + jitter * (2 * rand() - 1))


def _short(t: Target) -> str:
    return t.name.split(".", 1)[-1]


NOT_WATCHED = TierHealth(State.UNKNOWN, "")
# Live failures that are a missed deadline (the race's words for them), and how close in
# time every replica must have missed one for the box to count as wedged.
DEADLINE_MISSES = ("no first token", "no response headers", "stalled")
WEDGED_WINDOW_S = 30.0
_NO_TARGET = Target("", "", "")


def tier_verdict(tier: str, targets: list[Target]) -> TierHealth:
    """A tier's state from its targets: path down beats replicas; any good replica serves."""
    path = next((t for t in targets if t.kind == "path"), None)
    replicas = [t for t in targets if t.kind == "replica"]
    if path is not None and path.state == State.DOWN:
        return TierHealth(State.DOWN, path.reason)
    if replicas:
        good = [r for r in replicas if r.state in SERVING]
        n = len(replicas)
        if good:
            if all(r.state == State.BUSY for r in good):
                return TierHealth(State.BUSY, f"all {len(good)} serving replicas are busy")
            return TierHealth(State.UP, f"{len(good)}/{n} replicas serving" + (
                "" if len(good) == n else ": " + "; ".join(
                    f"{_short(r)} {r.state} ({r.reason})" for r in replicas if r not in good)))
        for state in (State.MISCONFIGURED, State.LOADING, State.DOWN):
            bad = [r for r in replicas if r.state == state]
            if bad:
                return TierHealth(state, "; ".join(f"{_short(r)}: {r.reason}" for r in bad))
        return TierHealth(State.UNKNOWN, "replicas not probed yet")
    others = [t for t in targets if t.kind != "path"] or ([path] if path else [])
    if not others:
        return NOT_WATCHED
    return TierHealth(others[0].state, others[0].reason)


@dataclass
class Passive:
    state: str = ""          # "", State.DOWN (ejected) or State.MISCONFIGURED
    reason: str = ""
    failures: int = 0
    until: float | None = None  # lapses (no probe covers this tier) or None (a probe clears it)
    at: float = 0.0             # when the verdict was given
    # A tier that answers probes but not chats in time (hung generation) is ejected for
    # health.eject_ttl_s: a probe that never generates can't clear it.
    probe_clears: bool = True


class TierBook:
    """Targets, live-traffic verdicts and the folded state of every tier."""

    def __init__(self, cfg: HealthConfig, clock: Callable[[], float],
                 tell: Callable[[dict[str, Any]], None], hold_s: float = 5.0) -> None:
        self.cfg = cfg
        self.hold_s = hold_s   # the longest silence a turn is allowed (its deadlines)
        self.clock = clock
        self.tell = tell
        self.targets: dict[str, Target] = {}
        self.probes: dict[str, ProbeTarget] = {}
        self.passive: dict[str, Passive] = {}
        self.outliers = Outliers(cfg.eject_after, cfg.eject_ttl_s, clock)
        self.url_targets: dict[str, str] = {}   # a URL chats go to → the target for it
        self._target_urls: dict[str, str] = {}
        self._url_tier: dict[str, str] = {}
        self.tracked: set[str] = set()          # tiers whose failures count per target
        self.tier_states: dict[str, TierHealth] = {}
        self._ejection_ends: float | None = None   # when the verdicts next change by time
        self._target_tiers: set[str] = set()       # tiers with probed targets
        self._deadline_misses: dict[str, float] = {}   # URL → when it last missed a deadline
        # This process's turns in flight on each URL, when the last of them ended, and when
        # the replica last showed it was alive (a probe answered, a turn's stream moved): a
        # probe that times out while the replica answers one of them was held by the answer.
        self._turns: dict[str, int] = {}
        self._turn_ended: dict[str, float] = {}
        self._alive: dict[str, float] = {}

    def add(self, tier: str, probes: tuple[ProbeTarget, ...], routes: dict[str, str]) -> None:
        for p in probes:
            self.targets[p.name] = Target(p.name, p.kind, tier)
            self.probes[p.name] = p
        self.url_targets.update(routes)
        self._url_tier.update(dict.fromkeys(routes, tier))
        self._target_urls.update({name: url for url, name in routes.items()})
        self._target_tiers.add(tier)
        if routes:
            self.tracked.add(tier)

    # -- what the router asks ---------------------------------------------------

    def state(self, tier: str) -> TierHealth:
        """Asked for every tier of every chat turn: the verdict stored at the last change.

        Targets and live-traffic verdicts change only in `fold` and `observe_*`, which
        refresh the stored verdicts; the one thing that changes with time alone, a
        live-traffic verdict lapsing, is noticed here.
        """
        p = self.passive.get(tier)
        if p is not None and p.state and p.until is not None and self.clock() >= p.until:
            p.state = ""
            self.refresh()
        if self._ejection_ends is not None and self.clock() >= self._ejection_ends:
            self.refresh()   # an ejected target's time is up: it is on probation now
        known = self.tier_states.get(tier)
        if known is not None:
            return known
        # Nothing watches it (the cache, a static reply) and nothing has failed on it yet.
        return self._compute(tier) if tier in self._target_tiers or tier in self.passive \
            else NOT_WATCHED

    def _compute(self, tier: str) -> TierHealth:
        p = self.passive.get(tier)
        if p is not None and p.state:
            return TierHealth(p.state, p.reason, skip=p.state == State.BUSY)
        return tier_verdict(tier, [self.effective(t) for t in self.targets.values()
                                   if t.tier == tier])

    def effective(self, t: Target) -> Target:
        """The target as routing sees it: its probes, overruled by a live-traffic ejection."""
        url = self._target_urls.get(t.name)
        why = self.outliers.ejected(url) if url is not None else None
        if why is None:
            return t
        return Target(t.name, t.kind, t.tier, State.DOWN, why, t.latency_ms, t.since)

    # -- targets, as a provider reports them ----------------------------------------

    def usable(self, url: str) -> bool:
        """May a chat go to this URL now? Not ejected, and its probes don't say it's down."""
        if self.outliers.ejected(url) is not None:
            return False
        t = self.targets.get(self.url_targets.get(url, ""))
        return t is None or t.kind == "path" or t.state not in FAILING

    def waiting(self, url: str) -> float:
        """Requests queued on the replica behind this URL, as its last probe read them."""
        t = self.targets.get(self.url_targets.get(url, ""))
        return (t.waiting or 0.0) if t is not None else 0.0

    def cache_usage(self, url: str) -> float | None:
        """How full the KV cache of the replica behind this URL is (0–1), if it says."""
        t = self.targets.get(self.url_targets.get(url, ""))
        return t.cache_usage if t is not None else None

    def why_not(self, url: str) -> str:
        t = self.targets.get(self.url_targets.get(url, ""))
        return self.outliers.ejected(url) or (f"{t.state}: {t.reason}" if t else State.UNKNOWN)

    def turn_started(self, url: str) -> None:
        self._turns[url] = self._turns.get(url, 0) + 1

    def turn_ended(self, url: str) -> None:
        self._turns[url] = max(0, self._turns.get(url, 0) - 1)
        self._turn_ended[url] = self.clock()

    def turn_moved(self, url: str) -> None:
        """The replica behind `url` sent part of a turn's answer: it is alive."""
        self._alive[url] = self.clock()

    def _answering(self, name: str, since: float) -> int:
        """How many of this process's turns the target's replica has been answering since
        `since` (those in flight now, or 1 if the last of them ended after it), if it has
        shown it is alive within `hold_s`; else 0."""
        url = self._target_urls.get(name)
        if url is None or self.clock() - self._alive.get(url, -math.inf) > self.hold_s:
            return 0
        return self._turns.get(url, 0) or int(self._turn_ended.get(url, -math.inf) >= since)

    def _held(self, t: Target, state: str, reason: str, timed_out: bool,
              since: float) -> tuple[str, str]:
        """A replica whose probe timed out while it was answering our turns is busy, not
        down: a server that answers one request at a time (llama-cpp-python) holds its
        probes behind the answer. Only while it shows it is alive, though: a probe that
        answered or a turn's stream that moved within `hold_s` (the turns' own deadlines).
        A frozen replica shows nothing, so new turns sent to it can't keep it "busy"."""
        if state != State.DOWN or not timed_out or t.kind != "replica":
            return state, reason
        n = self._answering(t.name, since)
        if not n:
            return state, reason
        return State.BUSY, (f"answering {n} turn{'s' if n > 1 else ''} of ours, and its probe "
                            f"waited behind {'them' if n > 1 else 'it'} ({reason})")

    def observe_target_failure(self, url: str, reason: str) -> None:
        name = self.url_targets.get(url)
        target = self.targets.get(name or "")
        before = self.effective(target).state if target is not None else State.UP
        why = self.outliers.failure(url, reason)
        if why is not None and name is not None:
            self.tell({"kind": "target", "target": name, "tier": self._url_tier[url],
                       "from": before, "to": State.DOWN, "reason": why})
            self.refresh()
        if reason.startswith(DEADLINE_MISSES) and url in self._url_tier:
            self._deadline_missed(url)

    def _deadline_missed(self, url: str) -> None:
        """A wedged box is seen as a box: when every replica of the tier has missed a
        deadline within WEDGED_WINDOW_S, all of them are out at once, and no further turn
        waits for a deadline each replica would miss in its turn."""
        now = self.clock()
        self._deadline_misses[url] = now
        tier = self._url_tier[url]
        urls = [u for u, t in self._url_tier.items() if t == tier]
        replicas = [u for u in urls
                    if self.targets.get(self.url_targets.get(u, ""), _NO_TARGET).kind == "replica"]
        members = replicas or urls
        if len(members) < 2 or url not in members or any(
                now - self._deadline_misses.get(u, -math.inf) > WEDGED_WINDOW_S for u in members):
            return
        why = f"every one of its {len(members)} replicas missed a deadline within " \
              f"{WEDGED_WINDOW_S:g} s: the box is wedged"
        changed = False
        for u in members:
            ejected = self.outliers.eject_now(u, why)
            if ejected is not None and (name := self.url_targets.get(u)) is not None:
                self.tell({"kind": "target", "target": name, "tier": tier, "from": State.UP,
                           "to": State.DOWN, "reason": ejected})
                changed = True
        if changed:
            self.refresh()

    def observe_target_success(self, url: str) -> None:
        if self.outliers.success(url):
            name = self.url_targets.get(url)
            if name in self.targets:
                t = self.targets[name]
                self.tell({"kind": "target", "target": name, "tier": t.tier,
                           "from": State.DOWN, "to": t.state,
                           "reason": f"answering live traffic again; {t.reason}"})
            self.refresh()

    def observe_failure(self, tier: str, kind: FailureKind, reason: str,
                        retry_after_s: float | None = None) -> None:
        if kind == FailureKind.BUSY:   # rate-limited: skipped until Retry-After, then tried again
            p = self.passive.setdefault(tier, Passive())
            p.state, p.reason, p.at = State.BUSY, f"live traffic: {reason}", self.clock()
            p.until = self.clock() + (retry_after_s or 5.0)
            self.refresh()
            return
        if tier in self.tracked and kind in HELD_OUT:
            return   # counted per target (observe_target_failure): one bad replica is not the tier
        p = self.passive.setdefault(tier, Passive())
        p.failures += 1
        probed = any(t.tier == tier for t in self.targets.values())
        until = None if probed else self.clock() + self.cfg.eject_ttl_s
        if kind == FailureKind.MISCONFIGURED:
            p.state, p.reason, p.until = State.MISCONFIGURED, f"live traffic: {reason}", until
            p.at, p.probe_clears = self.clock(), True
        elif kind == FailureKind.NO_CREDIT:   # probes still pass: hold it for minutes, then try again
            p.state, p.reason, p.at = State.MISCONFIGURED, f"live traffic: {reason}", self.clock()
            p.until, p.probe_clears = self.clock() + NO_CREDIT_HOLD_S, False
        elif kind in HELD_OUT and p.failures >= self.cfg.eject_after:
            p.state, p.at, p.probe_clears = State.DOWN, self.clock(), kind == FailureKind.UNAVAILABLE
            p.until = until if kind == FailureKind.UNAVAILABLE else self.clock() + self.cfg.eject_ttl_s
            p.reason = f"ejected after {p.failures} failures in a row: {reason}"
        self.refresh()

    def observe_success(self, tier: str) -> None:
        p = self.passive.get(tier)
        if p is not None and (p.failures or p.state):
            p.failures, p.state = 0, ""
            self.refresh()

    # -- probes ------------------------------------------------------------------------

    def fold(self, t: Target, v: Verdict, started: float) -> None:
        """One probe's verdict for `t`, sent at `started`."""
        now = self.clock()
        before = t.state
        state, reason = self._held(t, v.state, v.reason, v.timed_out, started)
        if state != v.state:
            v = replace(v, state=state, reason=reason)
        elif v.state in SERVING and (url := self._target_urls.get(t.name)) is not None:
            self._alive[url] = now
        if apply_verdict(t, v, self.cfg.rise, now):
            self.tell({"kind": "target", "target": t.name, "tier": t.tier,
                       "from": before, "to": t.state, "reason": t.reason})
            url = self._target_urls.get(t.name)
            if before in FAILING and t.state in SERVING and url is not None \
                    and self.outliers.probation(url):
                self.refresh()   # back from a failure its probes saw: traffic returns now
        p = self.passive.get(t.tier)
        if p and p.state and p.probe_clears and t.kind != "path" and t.state in SERVING \
                and started >= p.at:
            # A probe sent after the live-traffic verdict saw the model answer: lift it.
            # (nginx answering on the path says nothing about keys or models.)
            p.state, p.failures = "", 0
        t.next_at = now + next_probe_in(t, self.cfg.interval_s, self.cfg.jitter,
                                        self.cfg.backoff_max_s)

    def adopt(self, shared: dict[str, dict[str, Any]] | None) -> None:
        """Targets as the elected monitor published them; none: never keep green on faith."""
        for name, t in self.targets.items():
            rec = (shared or {}).get(name)
            if rec is None:
                t.state, t.reason = State.UNKNOWN, "no fresh probe from the monitor"
            else:
                t.state, t.reason = self._held(t, rec["state"], rec["reason"],
                                               rec.get("timed_out", False), math.inf)
                t.latency_ms, t.since = rec["latency_ms"], rec["since"]
                # A monitor of an older release publishes neither: nothing is queued then.
                t.waiting, t.cache_usage = rec.get("waiting"), rec.get("cache_usage")

    def refresh(self) -> None:
        self._ejection_ends = self.outliers.next_change()
        for tier in {t.tier for t in self.targets.values()} | set(self.passive):
            now_state = self._compute(tier)
            before = self.tier_states.get(tier)
            self.tier_states[tier] = now_state
            if before is None and now_state.state == State.UNKNOWN:
                continue
            if before is not None and before.state == now_state.state:
                continue
            self.tell({"kind": "state", "tier": tier,
                       "from": before.state if before else State.UNKNOWN,
                       "to": now_state.state, "reason": now_state.reason})
