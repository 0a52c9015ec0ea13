"""The on-prem tier: vLLM / llama.cpp behind the GPU box's nginx, over the tailnet."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Protocol

import aiohttp

from gateway.config import OnpremConfig
from gateway.errors import TierError, TierMisconfigured, TierUnavailable, TierUnreachable
from gateway.providers.base import Delta, StreamEvent, TierRequest
from gateway.providers.completions import CompletionsClient
from gateway.security.upstream_keys import KeySource


class TargetHealth(Protocol):
    """What the provider asks of, and tells, the health monitor about each URL."""

    def usable(self, url: str) -> bool: ...
    def why_not(self, url: str) -> str: ...
    def observe_target_failure(self, url: str, reason: str) -> None: ...
    def observe_target_success(self, url: str) -> None: ...


class OnpremProvider:
    """Streams over the app's pooled upstream session.

    aiohttp's 300 s total timeout is switched off: the race enforces the plan's
    deadlines and cancels this stream, which closes its connection so the GPU
    stops generating.

    With several URLs (replicas reached directly) each is a target: a chat goes to the
    usable target with the fewest in flight (not ejected by live traffic, not down by
    probes). A connection that is never made is retried on the next usable target at once
    — nothing was sent — while a request that was sent is never replayed. Every outcome
    is reported per target: one dead replica is ejected on its own, and the tier is down
    only when all of them are. Behind nginx (one URL) nginx balances; the URL is still a
    target, so a GPU box that accepts connections and never answers is ejected too.
    """

    tier = "onprem"

    def __init__(self, config: OnpremConfig, session: aiohttp.ClientSession,
                 health: TargetHealth | None = None, keys: KeySource | None = None) -> None:
        self.config = config
        self.model = config.model
        self.health = health
        if keys is None and config.api_key:
            keys = KeySource("onprem", config.api_key.get())
        self._client = CompletionsClient(
            session, "on-prem", config.model, keys,
            aiohttp.ClientTimeout(total=None, sock_read=None))
        self._in_flight = dict.fromkeys(config.urls, 0)
        self._order = itertools.count()

    def _pick_url(self, tried: set[str]) -> str | None:
        # Least in flight, round-robin among equals, among the targets that may take it.
        tick = next(self._order)
        urls = list(self._in_flight)
        ok = [u for u in urls if u not in tried
              and (self.health is None or self.health.usable(u))]
        if not ok:
            return None
        return min(ok, key=lambda u: (self._in_flight[u], (urls.index(u) - tick) % len(urls)))

    def _none_left(self, tried: set[str], last: TierError | None) -> TierError:
        if last is not None and len(self._in_flight) == 1:
            return last
        out = "; ".join(f"{u}: {self.health.why_not(u)}" for u in self._in_flight
                        if u not in tried and self.health is not None) or \
            (last.reason if last is not None else "")
        return TierUnavailable(f"no on-prem target can take it ({out})")

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        tried: set[str] = set()
        last: TierError | None = None
        while (url := self._pick_url(tried)) is not None:
            tried.add(url)
            self._in_flight[url] += 1
            answered = False
            try:
                events = self._client.stream(f"{url}/v1/chat/completions", request,
                                             request.upstream_messages())
                async with aclosing(events) as evs:
                    async for ev in evs:
                        if not answered and isinstance(ev, Delta) and (ev.text or ev.tool_calls):
                            answered = True
                            self._report_success(url)
                        yield ev
                if not answered:
                    self._report_failure(url, "answered with no text")
                return
            except TierUnreachable as exc:   # never connected: the next target, at once
                self._report_failure(url, exc.reason)
                last = exc
                continue
            except TierMisconfigured:
                raise                        # a key or model problem: the tier's, not a target's
            except TierError as exc:
                self._report_failure(url, exc.reason)
                raise
            except asyncio.CancelledError:
                note = request.note
                if note is not None and note.missed:
                    self._report_failure(url, note.missed)
                raise
            finally:
                self._in_flight[url] -= 1
        raise self._none_left(tried, last)

    def _report_success(self, url: str) -> None:
        if self.health is not None:
            self.health.observe_target_success(url)

    def _report_failure(self, url: str, reason: str) -> None:
        if self.health is not None:
            self.health.observe_target_failure(url, reason)

    async def close(self) -> None:
        """The shared ClientSession is closed by the app's cleanup context."""
