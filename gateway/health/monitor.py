"""The background health monitor: probes, hysteresis, live-traffic ejection, sharing, alerts.

Targets: the GPU box's nginx over the tailnet (`onprem.path`), each replica
(`onprem.<name>`), and OpenAI (`openai`). Every probe is one attempt with a
short timeout, all run concurrently, on an interval with jitter; a target
that is down is probed with backoff up to a cap.

Hysteresis: a target turns bad on the first bad probe (a dead replica is out
of the route within one interval) but is trusted again only after `rise`
good probes in a row, so a flapping target does not flip the route each time.

Live traffic counts too: one 401/403 turns a tier misconfigured, `eject_after`
failures in a row eject it, until a probe (or a live success) sees it work. A tier that
keeps losing hedges because its first token never comes (hung generation: probes still
pass) is ejected for `health.eject_ttl_s` instead, then live traffic tries it again.

With Redis, one process is elected to probe and publishes what it sees under a
key that expires after 2 × interval: the others read it, and a dead monitor
cannot leave stale green (its record expires and another process takes
over). Without Redis each process probes for itself.

Tier changes are logged once (WARNING/ERROR with the reason) and, when a
webhook is configured, posted to it, as is a fallback rate over threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson

from gateway.config import Settings
from gateway.health.outliers import Outliers
from gateway.health.probes import Verdict, probe_openai, probe_path, probe_replica
from gateway.health.states import FAILING, SERVING, TierHealth
from gateway.logs import get_logger
from gateway.providers.openai_tier import base_url
from gateway.security.upstream_keys import KeySource
from gateway.state import keys
from gateway.state.kv import KV
from gateway.stats import Stats

log = get_logger("scout.health")
LEADER = keys.HEALTH + "leader"
SNAPSHOT = keys.HEALTH + "snapshot"
NO_CREDIT_HOLD_S = 300.0   # an out-of-credit backup is retried this often, not every probe


@dataclass
class Target:
    name: str
    kind: str  # path | replica | openai
    tier: str
    state: str = "unknown"
    reason: str = "not probed yet"
    latency_ms: float | None = None
    since: float = field(default_factory=time.time)
    good: int = 0       # good probes in a row while still counted bad
    failures: int = 0   # bad probes in a row (for backoff)
    next_at: float = 0.0


def apply_verdict(t: Target, v: Verdict, rise: int, now: float) -> bool:
    """Fold one probe into a target, with hysteresis. Pure; True if the state changed."""
    t.latency_ms = v.latency_ms
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


def tier_verdict(tier: str, targets: list[Target]) -> TierHealth:
    """A tier's state from its targets: path down beats replicas; any good replica serves."""
    path = next((t for t in targets if t.kind == "path"), None)
    replicas = [t for t in targets if t.kind == "replica"]
    if path is not None and path.state == "down":
        return TierHealth("down", path.reason)
    if replicas:
        good = [r for r in replicas if r.state in SERVING]
        n = len(replicas)
        if good:
            if all(r.state == "busy" for r in good):
                return TierHealth("busy", f"all {len(good)} serving replicas are busy")
            return TierHealth("up", f"{len(good)}/{n} replicas serving" + (
                "" if len(good) == n else ": " + "; ".join(
                    f"{_short(r)} {r.state} ({r.reason})" for r in replicas if r not in good)))
        for state in ("misconfigured", "loading", "down"):
            bad = [r for r in replicas if r.state == state]
            if bad:
                return TierHealth(state, "; ".join(f"{_short(r)}: {r.reason}" for r in bad))
        return TierHealth("unknown", "replicas not probed yet")
    others = [t for t in targets if t.kind != "path"] or ([path] if path else [])
    if not others:
        return TierHealth("unknown", "")
    return TierHealth(others[0].state, others[0].reason)


@dataclass
class Passive:
    state: str = ""          # "", "down" (ejected) or "misconfigured"
    reason: str = ""
    failures: int = 0
    until: float | None = None  # lapses (no probe covers this tier) or None (a probe clears it)
    at: float = 0.0             # when the verdict was given
    # A tier that answers probes but not chats in time (hung generation) is ejected for
    # health.eject_ttl_s: a probe that never generates can't clear it.
    probe_clears: bool = True


class HealthMonitor:
    """What this process knows of every tier; the `HealthSource` the router asks."""

    def __init__(self, settings: Settings, kv: KV, stats: Stats,
                 redis_up: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.time,
                 keys: Mapping[str, KeySource] | None = None) -> None:
        self.settings = settings
        self.keys = dict(keys or {})   # the keys in use now (they rotate)
        self.cfg = settings.health
        self.kv = kv
        self.stats = stats
        self.redis_up = redis_up
        self.clock = clock
        self.me = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.role = "local" if redis_up is None else "follower"
        self.targets: dict[str, Target] = {}
        if settings.onprem.enabled:
            if settings.onprem.replicas or len(settings.onprem.urls) == 1:
                self.targets["onprem.path"] = Target("onprem.path", "path", "onprem")
            for r in settings.onprem.replicas:
                self.targets[f"onprem.{r.name}"] = Target(f"onprem.{r.name}", "replica", "onprem")
        if settings.openai.enabled:
            self.targets["openai"] = Target("openai", "openai", "openai")
        self.passive: dict[str, Passive] = {}
        # Per target (each on-prem URL): live failures eject it on its own (Envoy's outlier
        # detection); the on-prem tier is then down only when all of its targets are.
        self.outliers = Outliers(self.cfg.eject_after, settings.health.eject_ttl_s,
                                 clock)
        self.url_targets: dict[str, str] = {}
        if settings.onprem.enabled:
            by_url = {r.base_url: f"onprem.{r.name}" for r in settings.onprem.replicas}
            for url in settings.onprem.urls:
                self.url_targets[url] = by_url.get(url, "onprem.path")
        self._target_urls = {name: url for url, name in self.url_targets.items()}
        self.tracked: set[str] = {"onprem"} if self.url_targets else set()
        self.tier_states: dict[str, TierHealth] = {}
        self._ejection_ends: float | None = None   # when the verdicts next change by time
        self.incidents: list[dict[str, Any]] = []
        self.alerting = False
        self.on_change: list[Callable[[dict[str, Any]], object]] = []

    # -- what the router asks ---------------------------------------------------

    def state(self, tier: str) -> TierHealth:
        """Asked for every tier of every chat turn: the verdict stored at the last change.

        Targets and live-traffic verdicts change only in `tick` and `observe_*`, which
        refresh the stored verdicts; the one thing that changes with time alone, a
        live-traffic verdict lapsing, is noticed here.
        """
        p = self.passive.get(tier)
        if p is not None and p.state and p.until is not None and self.clock() >= p.until:
            p.state = ""
            self._refresh()
        if self._ejection_ends is not None and self.clock() >= self._ejection_ends:
            self._refresh()   # an ejected target's time is up: it is on probation now
        known = self.tier_states.get(tier)
        return known if known is not None else self._compute(tier)

    def _compute(self, tier: str) -> TierHealth:
        p = self.passive.get(tier)
        if p is not None and p.state:
            return TierHealth(p.state, p.reason, skip=p.state == "busy")
        return tier_verdict(tier, [self._effective(t) for t in self.targets.values()
                                   if t.tier == tier])

    def _effective(self, t: Target) -> Target:
        """The target as routing sees it: its probes, overruled by a live-traffic ejection."""
        url = self._target_urls.get(t.name)
        why = self.outliers.ejected(url) if url is not None else None
        if why is None:
            return t
        return Target(t.name, t.kind, t.tier, "down", why, t.latency_ms, t.since)

    # -- targets, as the on-prem provider reports them ---------------------------------

    def usable(self, url: str) -> bool:
        """May a chat go to this URL now? Not ejected, and its probes don't say it's down."""
        if self.outliers.ejected(url) is not None:
            return False
        t = self.targets.get(self.url_targets.get(url, ""))
        return t is None or t.kind == "path" or t.state not in FAILING

    def why_not(self, url: str) -> str:
        t = self.targets.get(self.url_targets.get(url, ""))
        return self.outliers.ejected(url) or (f"{t.state}: {t.reason}" if t else "unknown")

    def observe_target_failure(self, url: str, reason: str) -> None:
        name = self.url_targets.get(url)
        before = self._effective(self.targets[name]).state if name in self.targets else "up"
        why = self.outliers.failure(url, reason)
        if why is not None and name is not None:
            self._incident({"kind": "target", "target": name, "tier": "onprem",
                            "from": before, "to": "down", "reason": why})
            self._refresh()

    def observe_target_success(self, url: str) -> None:
        if self.outliers.success(url):
            name = self.url_targets.get(url)
            if name in self.targets:
                t = self.targets[name]
                self._incident({"kind": "target", "target": name, "tier": t.tier,
                                "from": "down", "to": t.state,
                                "reason": f"answering live traffic again; {t.reason}"})
            self._refresh()

    def observe_failure(self, tier: str, kind: str, reason: str,
                        retry_after_s: float | None = None) -> None:
        if kind == "busy":   # rate-limited: skipped until Retry-After, then tried again
            p = self.passive.setdefault(tier, Passive())
            p.state, p.reason, p.at = "busy", f"live traffic: {reason}", self.clock()
            p.until = self.clock() + (retry_after_s or 5.0)
            self._refresh()
            return
        if tier in self.tracked and kind in ("unavailable", "stalled"):
            return   # counted per target (observe_target_failure): one bad replica is not the tier
        p = self.passive.setdefault(tier, Passive())
        p.failures += 1
        probed = any(t.tier == tier for t in self.targets.values())
        until = None if probed else self.clock() + self.settings.health.eject_ttl_s
        if kind == "misconfigured":
            p.state, p.reason, p.until = "misconfigured", f"live traffic: {reason}", until
            p.at, p.probe_clears = self.clock(), True
        elif kind == "no_credit":   # probes still pass: hold it for minutes, then try again
            p.state, p.reason, p.at = "misconfigured", f"live traffic: {reason}", self.clock()
            p.until, p.probe_clears = self.clock() + NO_CREDIT_HOLD_S, False
        elif kind in ("unavailable", "stalled") and p.failures >= self.cfg.eject_after:
            p.state, p.at, p.probe_clears = "down", self.clock(), kind == "unavailable"
            p.until = until if kind == "unavailable" else \
                self.clock() + self.settings.health.eject_ttl_s
            p.reason = f"ejected after {p.failures} failures in a row: {reason}"
        self._refresh()

    def observe_success(self, tier: str) -> None:
        p = self.passive.get(tier)
        if p is not None and (p.failures or p.state):
            p.failures, p.state = 0, ""
            self._refresh()

    # -- the loop -----------------------------------------------------------------

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Probe forever; cancelled by the app's cleanup context."""
        while True:
            await self.tick(session)
            await asyncio.sleep(self._sleep_for())

    def _sleep_for(self) -> float:
        if self.role == "follower":
            return self.cfg.interval_s / 2
        now = self.clock()
        due = min((t.next_at for t in self.targets.values()), default=now + self.cfg.interval_s)
        return max(0.05, min(due - now, self.cfg.interval_s))

    async def tick(self, session: aiohttp.ClientSession) -> None:
        await self._elect()
        if self.role == "follower":
            await self._adopt_snapshot()
        else:
            await self._probe_due(session)
            if self.role == "leader":
                await self.kv.set(SNAPSHOT, orjson.dumps(
                    {"by": self.me, "targets": [asdict(t) for t in self.targets.values()]}),
                    2 * self.cfg.interval_s)
        self._refresh()
        if self.role != "follower":
            if "onprem" in self.tier_states:  # on-prem availability, sampled once a tick
                self.stats.add({"avail:n": 1,
                                "avail:up": int(self.tier_states["onprem"].state in SERVING)})
            await self.stats.flush()
            await self._check_fallback_rate()
        else:
            await self.stats.flush()

    async def _elect(self) -> None:
        if self.redis_up is None:
            return
        if not self.redis_up():
            self.role = "local"  # Redis gone: every process watches for itself
            return
        ttl = 2 * self.cfg.interval_s
        got = await self.kv.set_nx(LEADER, self.me.encode(), ttl)
        if got is None:
            self.role = "local"
        elif got or await self.kv.get(LEADER) == self.me.encode():
            if not got:
                await self.kv.set(LEADER, self.me.encode(), ttl)
            self.role = "leader"
        else:
            self.role = "follower"

    async def _adopt_snapshot(self) -> None:
        raw = await self.kv.get(SNAPSHOT)
        shared = {t["name"]: t for t in orjson.loads(raw)["targets"]} if raw else {}
        for name, t in self.targets.items():
            rec = shared.get(name)
            if rec is None:  # the monitor's record expired: never keep green on faith
                t.state, t.reason = "unknown", "no fresh probe from the monitor"
            else:
                t.state, t.reason = rec["state"], rec["reason"]
                t.latency_ms, t.since = rec["latency_ms"], rec["since"]

    async def _probe_due(self, session: aiohttp.ClientSession) -> None:
        started = now = self.clock()
        # A tier's targets are probed together, so one round tells "the GPU box is
        # unreachable" (path) apart from "replica 2 is down" (replicas) at once.
        due_tiers = {t.tier for t in self.targets.values() if t.next_at <= now}
        due = [t for t in self.targets.values() if t.tier in due_tiers]
        if not due:
            return
        verdicts = await asyncio.gather(*(self._probe(t, session) for t in due))
        now = self.clock()
        for t, v in zip(due, verdicts, strict=True):
            before = t.state
            if apply_verdict(t, v, self.cfg.rise, now):
                self._incident({"kind": "target", "target": t.name, "tier": t.tier,
                                "from": before, "to": t.state, "reason": t.reason})
            p = self.passive.get(t.tier)
            if p and p.state and p.probe_clears and t.kind != "path" and t.state in SERVING \
                    and started >= p.at:
                # A probe sent after the live-traffic verdict saw the model answer: lift it.
                # (nginx answering on the path says nothing about keys or models.)
                p.state, p.failures = "", 0
            t.next_at = now + next_probe_in(t, self.cfg.interval_s, self.cfg.jitter,
                                            self.cfg.backoff_max_s)

    async def _probe(self, t: Target, session: aiohttp.ClientSession) -> Verdict:
        o, timeout = self.settings.onprem, self.cfg.timeout_s
        if t.kind == "path":
            results = await asyncio.gather(*(probe_path(session, f"{u}{o.path_health}", timeout)
                                             for u in o.urls))
            return next((r for r in results if r.state == "up"), results[0])
        if t.kind == "replica":
            replica = next(r for r in o.replicas if f"onprem.{r.name}" == t.name)
            verdict = await probe_replica(session, replica.base_url, o.model,
                                          self._key("onprem"), timeout, self.cfg.busy_waiting)
            old = self.keys["onprem"].fallback() if "onprem" in self.keys else None
            if verdict.state == "misconfigured" and old is not None:   # mid-rotation
                verdict = await probe_replica(session, replica.base_url, o.model, old, timeout,
                                              self.cfg.busy_waiting)
            return verdict
        a = self.settings.openai
        verdict = await probe_openai(session, base_url(a), a.model, self._key("openai"), timeout)
        old = self.keys["openai"].fallback() if "openai" in self.keys else None
        if verdict.state == "misconfigured" and old is not None:   # mid-rotation
            verdict = await probe_openai(session, base_url(a), a.model, old, timeout)
        return verdict

    def _key(self, tier: str) -> str | None:
        if tier in self.keys:
            return self.keys[tier].current()
        cfg = self.settings.onprem if tier == "onprem" else self.settings.openai
        return cfg.api_key.get() if cfg.api_key else None

    # -- telling people ---------------------------------------------------------------

    def _refresh(self) -> None:
        self._ejection_ends = self.outliers.next_change()
        for tier in {t.tier for t in self.targets.values()} | set(self.passive):
            now_state = self._compute(tier)
            before = self.tier_states.get(tier)
            self.tier_states[tier] = now_state
            if before is None and now_state.state == "unknown":
                continue
            if before is not None and before.state == now_state.state:
                continue
            self._incident({"kind": "state", "tier": tier,
                            "from": before.state if before else "unknown",
                            "to": now_state.state, "reason": now_state.reason})

    def _incident(self, event: dict[str, Any]) -> None:
        event = {"at": self.clock(), **event}
        self.incidents = [*self.incidents[-99:], event]
        if event["kind"] == "target":
            if not (event["from"] == "unknown" and event["to"] in SERVING):
                log.log(logging.INFO if event["to"] in SERVING else logging.WARNING,
                        "target_state", target=event["target"], **{"from": event["from"]},
                        to=event["to"], reason=event["reason"])
        elif self.role == "follower" and event["kind"] == "state":
            log.info("tier_state", tier=event["tier"], **{"from": event["from"]}, to=event["to"],
                     reason=event["reason"], seen_from="the monitor")
        else:
            bad = event.get("to") in ("misconfigured",) or event["kind"] == "fallback_alert"
            level = logging.ERROR if bad else (
                logging.WARNING if event.get("to") not in SERVING else logging.INFO)
            if event["kind"] == "state":
                log.log(level, "tier_state", tier=event["tier"], **{"from": event["from"]},
                        to=event["to"], reason=event["reason"])
            else:
                log.log(level, event["kind"], text=event["text"])
        startup = event["kind"] in ("state", "target") and event["from"] == "unknown" \
            and event["to"] in SERVING
        if self.role != "follower" and not startup:  # one process tells people; startup isn't news
            for hook in self.on_change:
                hook(event)

    async def _check_fallback_rate(self) -> None:
        turns, rate = await self.stats.fallback_rate(self.cfg.fallback_window_s)
        over = turns >= self.cfg.fallback_min_requests and rate > self.cfg.fallback_threshold
        if over == self.alerting:
            return
        self.alerting = over
        onprem = self.state("onprem") if "onprem" in self.tier_states else None
        why = f" (onprem {onprem.state}: {onprem.reason})" if onprem else ""
        window = f"{self.cfg.fallback_window_s / 60:g} min"
        text = (f"fallback rate {rate:.0%} of {turns} answers over the last {window} is above "
                f"{self.cfg.fallback_threshold:.0%}{why}" if over else
                f"fallback rate back to {rate:.0%} over the last {window}")
        self._incident({"kind": "fallback_alert" if over else "fallback_clear", "text": text,
                        "rate": rate, "turns": turns})

    def snapshot(self) -> dict[str, Any]:
        return {"role": self.role,
                "targets": {n: {k: v for k, v in asdict(self._effective(t)).items()
                                if k in ("state", "reason", "latency_ms", "since", "kind")}
                            for n, t in self.targets.items()},
                "alerting": self.alerting}


class Webhook:
    """Posts each incident to a Slack-compatible webhook: one attempt, in the background."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, event: dict[str, Any]) -> None:
        if event["kind"] in ("state", "target"):
            what = event["target"] if event["kind"] == "target" else event["tier"]
            text = f"Scout: {what} is {event['to']} (was {event['from']}): {event['reason']}"
        else:
            text = f"Scout: {event['text']}"
        task = asyncio.get_running_loop().create_task(self._post({**event, "text": text}))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, payload: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(5):
                async with self.session.post(self.url, data=orjson.dumps(payload),
                                             headers={"Content-Type": "application/json"}) as r:
                    if r.status >= 300:
                        log.warning("webhook_failed", status=r.status)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("webhook_failed", error=exc.__class__.__name__)

    async def close(self) -> None:
        for task in list(self.tasks):
            with contextlib.suppress(Exception):
                await task
