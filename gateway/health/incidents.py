"""Telling people: each change logged once, posted to the webhook, and the fallback alert.

Tier changes are logged once (WARNING/ERROR with the reason) and, when a webhook is
configured, posted to it, as is a fallback rate over threshold. Only one process tells:
the elected monitor (or each process, without Redis). Startup (unknown → up) isn't news.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from gateway.config import HealthConfig
from gateway.health.states import SERVING, State, TierHealth
from gateway.logs import get_logger
from gateway.stats import Stats

log = get_logger("scout.health")


class Incidents:
    """The last 100 changes, each logged at its level and handed to every hook."""

    def __init__(self, clock: Callable[[], float], role: Callable[[], str]) -> None:
        self.clock = clock
        self.role = role
        self.recent: list[dict[str, Any]] = []
        self.hooks: list[Callable[[dict[str, Any]], object]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        event = {"at": self.clock(), **event}
        self.recent = [*self.recent[-99:], event]
        follower = self.role() == "follower"
        if event["kind"] == "target":
            if not (event["from"] == State.UNKNOWN and event["to"] in SERVING):
                log.log(logging.INFO if event["to"] in SERVING else logging.WARNING,
                        "target_state", target=event["target"], **{"from": event["from"]},
                        to=event["to"], reason=event["reason"])
        elif follower and event["kind"] == "state":
            log.info("tier_state", tier=event["tier"], **{"from": event["from"]}, to=event["to"],
                     reason=event["reason"], seen_from="the monitor")
        else:
            bad = event.get("to") in (State.MISCONFIGURED,) or event["kind"] == "fallback_alert"
            level = logging.ERROR if bad else (
                logging.WARNING if event.get("to") not in SERVING else logging.INFO)
            if event["kind"] == "state":
                log.log(level, "tier_state", tier=event["tier"], **{"from": event["from"]},
                        to=event["to"], reason=event["reason"])
            else:
                log.log(level, event["kind"], text=event["text"])
        startup = event["kind"] in ("state", "target") and event["from"] == State.UNKNOWN \
            and event["to"] in SERVING
        if not follower and not startup:  # one process tells people; startup isn't news
            for hook in self.hooks:
                hook(event)


class FallbackAlert:
    """Raised when, over `fallback_window_s`, more than `fallback_threshold` of answers did
    not come from the primary tier (and at least `fallback_min_requests` were given);
    cleared when the rate is back under. Checked by the process that tells people."""

    def __init__(self, cfg: HealthConfig, stats: Stats, tell: Callable[[dict[str, Any]], None],
                 primary: Callable[[], tuple[str, TierHealth] | None]) -> None:
        self.cfg = cfg
        self.stats = stats
        self.tell = tell
        self.primary = primary
        self.alerting = False

    async def check(self) -> None:
        turns, rate = await self.stats.fallback_rate(self.cfg.fallback_window_s)
        over = turns >= self.cfg.fallback_min_requests and rate > self.cfg.fallback_threshold
        if over == self.alerting:
            return
        self.alerting = over
        primary = self.primary()
        why = f" ({primary[0]} {primary[1].state}: {primary[1].reason})" if primary else ""
        window = f"{self.cfg.fallback_window_s / 60:g} min"
        text = (f"fallback rate {rate:.0%} of {turns} answers over the last {window} is above "
                f"{self.cfg.fallback_threshold:.0%}{why}" if over else
                f"fallback rate back to {rate:.0%} over the last {window}")
        self.tell({"kind": "fallback_alert" if over else "fallback_clear", "text": text,
                   "rate": rate, "turns": turns})


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
