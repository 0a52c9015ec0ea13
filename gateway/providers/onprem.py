"""The on-prem tier: vLLM / llama.cpp behind the GPU box's nginx, over the tailnet."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from dataclasses import replace
from typing import Annotated, Any, ClassVar

import aiohttp
from pydantic import Field, field_validator, model_validator

from gateway.config.base import Count, Flag, HealthConfig, Replica, TierConfig
from gateway.errors import (
    TierBusy,
    TierError,
    TierMisconfigured,
    TierRejectedInput,
    TierUnavailable,
    TierUnreachable,
)
from gateway.health.probes import Verdict, probe_path, probe_replica
from gateway.logs import get_logger
from gateway.providers.base import Delta, StreamEvent, TierRequest, Usage
from gateway.providers.completions import CompletionsClient
from gateway.providers.homes import Homes, SharedHomes, rendezvous
from gateway.security.upstream_keys import KeySource
from gateway.state.kv import KV
from gateway.tiers import ProbeTarget, TargetHealth, Targets, TierContext, TierSpec

log = get_logger("scout.onprem")


class OnpremConfig(TierConfig):
    """`onprem:` — the GPU box's nginx (one URL), or replicas reached directly (several
    URLs, balanced here by least in flight, as the demo runs them)."""

    section: ClassVar[str] = "onprem"

    url: str | list[str] = "http://127.0.0.1:8000"
    model: str = "llama-3.1-70b-instruct"    # vLLM's --served-model-name
    supports_tools: Flag = False
    supports_response_format: Flag = True   # vLLM's guided decoding, llama.cpp's grammars
    max_connections: Count = 200
    # Names behind nginx (/replicas/NAME), or {name, url} for replicas reached directly.
    replica_entries: list[str | dict[str, str]] = Field(default=[], alias="replicas")
    # Each conversation's turns go to one replica, whose prefix cache holds its history:
    # rendezvous hashing on the conversation over the replicas above, so every gateway
    # (and a restarted one) picks the same one. A replica carrying
    # more than `affinity_load_bound` × the mean load passes the turn to the conversation's
    # next replica; an ejected one's conversations move to their next, and come back.
    # Off, or with no replicas listed: least in flight (behind nginx, nginx's least_conn).
    affinity: Flag = True
    affinity_load_bound: Annotated[float, Field(ge=1.0, le=10.0)] = 1.25
    # Turns a replica may carry above the bound before a turn moves: on a server that
    # batches, one or two more than the others is no queue, and moving costs the history.
    affinity_slack: Annotated[int, Field(ge=0, le=1000)] = 2
    # New conversations go to a replica holding no more than this × the mean number of
    # conversations (those seen in the last `affinity_idle_s`), and stay there, their
    # homes shared through Redis where there is one; 0: hashing alone decides.
    affinity_conversation_bound: Annotated[float, Field(ge=0.0, le=10.0)] = 1.25
    affinity_idle_s: Annotated[float, Field(gt=0, le=86_400)] = 600
    # A replica whose KV cache is at least this full (vLLM's kv_cache_usage_perc, llama.cpp's
    # kv_cache_usage_ratio, where its /metrics say) takes no new conversation while another
    # has room: a new history there pushes out the histories it holds. 1: only one in full use.
    affinity_cache_full: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    path_health: str = "/health"   # answered by nginx itself: is the GPU box reachable?

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str | list[str]) -> str | list[str]:
        for u in [value] if isinstance(value, str) else value:
            if not re.match(r"^https?://[^/\s]+", u):
                raise ValueError(f"{u!r} is not an http(s) URL")
        if not value:
            raise ValueError("the GPU box's URL is required when onprem is enabled")
        return value

    @field_validator("replica_entries")
    @classmethod
    def _replicas(cls, value: list[Any]) -> list[Any]:
        names = []
        for i, item in enumerate(value):
            ok = (isinstance(item, str) and re.match(r"^[A-Za-z0-9_.-]+$", item)) or (
                isinstance(item, Mapping) and set(item) == {"name", "url"}
                and re.match(r"^https?://", item["url"]))
            if not ok:
                raise ValueError(f"[{i}]: a name (behind nginx) or {{name, url}}, got {item!r}")
            names.append(item if isinstance(item, str) else item["name"])
        if len(set(names)) != len(names):
            raise ValueError("names must be unique")
        return value

    @model_validator(mode="before")
    @classmethod
    def _null_replicas(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("replicas", ()) is None:
            data = {k: v for k, v in data.items() if k != "replicas"}
        return data

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(u.rstrip("/") for u in ([self.url] if isinstance(self.url, str)
                                             else self.url))

    @property
    def replicas(self) -> tuple[Replica, ...]:
        return tuple(Replica(r, f"{self.urls[0]}/replicas/{r}") if isinstance(r, str)
                     else Replica(r["name"], r["url"].rstrip("/"))
                     for r in self.replica_entries)


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
                 health: TargetHealth | None = None, keys: KeySource | None = None,
                 store: KV | None = None) -> None:
        self.config = config
        self.model = config.model
        self.health = health
        # Told of every part of an answer, so a probe held behind it reads busy, not down.
        self._moved: Callable[[str], None] = health.turn_moved if health is not None \
            else _nowhere
        if keys is None and config.api_key:
            keys = KeySource("onprem", config.api_key.get())
        self._client = CompletionsClient(
            session, "on-prem", config.model, keys,
            aiohttp.ClientTimeout(total=None, sock_read=None))
        self._in_flight = dict.fromkeys(config.urls, 0)
        self._order = itertools.count()
        # Conversation affinity: each replica's chat URL, by the name every gateway hashes.
        self._ring: dict[str, str] = {}
        if config.affinity and config.replicas:
            self._ring = {r.name: r.base_url for r in config.replicas}
        elif config.affinity and len(config.urls) > 1:
            self._ring = {u: u for u in config.urls}
        for url in self._ring.values():
            self._in_flight.setdefault(url, 0)
        self._homes = Homes(config.affinity_conversation_bound, config.affinity_idle_s) \
            if config.affinity_conversation_bound else None
        # Homes every gateway shares, where there is a store they share (Redis).
        self._shared = SharedHomes(self._homes, store, self._ring) \
            if self._homes is not None and self._ring and store is not None \
            and store.backend == "redis" else None
        # Whose answer a Usage is (the replica's name), wherever the URL says it.
        self._names = {url: name for name, url in self._ring.items()} | {
            r.base_url: r.name for r in config.replicas}

    def _pick_url(self, tried: set[str], conversation: str | None = None,
                  fresh: bool = False) -> str | None:
        """The target for an attempt; `fresh`: the conversation's first turn."""
        if conversation and self._ring:
            url = self._by_conversation(tried, conversation, fresh)
            if url is not None:
                return url
            # Every replica out of reach: behind nginx, its own balancing may still find one.
            if self.config.urls[0] in self._ring.values():
                return None
        # Least in flight, round-robin among equals, among the targets that may take it.
        tick = next(self._order)
        urls = list(self.config.urls)
        ok = [u for u in urls if u not in tried
              and (self.health is None or self.health.usable(u))]
        if not ok:
            return None
        return min(ok, key=lambda u: (self._in_flight[u], (urls.index(u) - tick) % len(urls)))

    def _by_conversation(self, tried: set[str], conversation: str, fresh: bool) -> str | None:
        """The conversation's replica: the first in its rendezvous order that may take it
        and carries no more than the load bound (consistent hashing with bounded loads).
        A first turn, with no history to find, is placed on the least busy one in bound."""
        ranked = rendezvous(conversation, self._ring)
        ok = [(name, url) for name, url in ranked
              if url not in tried and (self.health is None or self.health.usable(url))]
        if not ok:
            return None
        if self._homes is not None and not tried:
            # Its home first, then the rest in its order: the turn bound below may still
            # pass this one turn on, without moving the conversation.
            urls = [u for _, u in ok]
            home = self._homes.place(conversation, urls, ranked[0][1], time.monotonic(),
                                     self._full(urls), self._busy(urls) if fresh else None)
            ok = sorted(ok, key=lambda item: item[1] != home)
        loads = [self._load(url) for _, url in ok]
        cap = self.config.affinity_load_bound * (sum(loads) + 1) / len(ok) \
            + self.config.affinity_slack
        for (_, url), load in zip(ok, loads, strict=True):
            if load + 1 <= cap:
                return url
        return ok[loads.index(min(loads))][1]   # all above it: the least loaded

    async def _share_home(self, conversation: str | None, fresh: bool) -> None:
        """This conversation's home agreed with the other gateways before it is picked."""
        now = time.monotonic()
        if not conversation or self._shared is None or not self._shared.due(conversation, now):
            return   # most turns: a home known and shared, nothing asked of Redis or hashed
        ranked = [url for _, url in rendezvous(conversation, self._ring)]
        usable = [u for u in ranked if self.health is None or self.health.usable(u)]
        if usable:
            await self._shared.settle(conversation, usable, ranked[0], now, self._full(usable),
                                      self._busy(usable) if fresh else None)

    def _full(self, urls: list[str]) -> frozenset[str]:
        """The replicas among `urls` whose probes say their KV cache is full."""
        if self.health is None:
            return frozenset()
        return frozenset(u for u in urls if (used := self.health.cache_usage(u)) is not None
                         and used >= self.config.affinity_cache_full)

    def _busy(self, urls: list[str]) -> dict[str, float]:
        return {u: self._load(u) for u in urls}

    def _load(self, url: str) -> float:
        """Turns on the replica: this gateway's in flight, and what its probes saw queued."""
        return self._in_flight[url] + (self.health.waiting(url) if self.health else 0.0)

    def _any_left(self, tried: set[str]) -> bool:
        return any(u not in tried and (self.health is None or self.health.usable(u))
                   for u in self._in_flight)

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
        retried = False   # one retry of a failure before the first token, where it fits
        loop = asyncio.get_running_loop()
        started = loop.time()
        # A first turn: no answer of the conversation's yet, so no history on any replica.
        fresh = not any(m.get("role") == "assistant" for m in request.messages)
        await self._share_home(request.conversation, fresh)
        while (url := self._pick_url(tried, request.conversation, fresh)) is not None:
            tried.add(url)
            self._begin(url)
            answered = False
            try:
                events = self._client.stream(f"{url}/v1/chat/completions", request,
                                             request.upstream_messages())
                async with aclosing(events) as evs:
                    async for ev in evs:
                        self._moved(url)
                        if not answered and isinstance(ev, Delta) and (ev.text or ev.tool_calls):
                            answered = True
                        elif isinstance(ev, Usage) and url in self._names:
                            ev = replace(ev, target=self._names[url])
                        yield ev
                # A target succeeds with a whole answer: one that stalls or drops every answer
                # part-way fails each time, in a row, and is ejected like one that hangs.
                if answered:
                    self._report_success(url)
                else:
                    self._report_failure(url, "answered with no text")
                return
            except TierUnreachable as exc:   # never connected: the next target, at once
                self._report_failure(url, exc.reason)
                last = exc
                continue
            except TierMisconfigured:
                raise                        # a key or model problem: the tier's, not a target's
            except TierRejectedInput:
                raise                        # the request's own fault: no replica takes it
            except TierError as exc:
                self._report_failure(url, exc.reason)
                wait = self._retry_wait(exc, answered, retried, loop.time() - started,
                                        request)
                if wait is None:
                    raise
                retried, last = True, exc
                log.info("onprem_retry", target=url, reason=exc.reason, wait_s=wait)
                if wait:
                    await asyncio.sleep(wait)
                if len(self._in_flight) == 1 or not self._any_left(tried):
                    tried.discard(url)   # the only one left: the same replica, once more
                continue
            except (asyncio.CancelledError, GeneratorExit):   # cancelled, or closed by the race
                note = request.note
                if note is not None and note.missed:
                    self._report_failure(url, note.missed)
                raise
            finally:
                self._end(url)
        raise self._none_left(tried, last)

    @staticmethod
    def _retry_wait(exc: TierError, answered: bool, retried: bool, elapsed_s: float,
                    request: TierRequest) -> float | None:
        """Seconds to wait before trying once more, or None to hand over now. Only before
        the first token (nothing said can be said twice), only once, and only inside the
        first-token deadline: a 5xx or a dropped connection at once, a 429 after its
        Retry-After when that fits."""
        if answered or retried:
            return None
        left = request.intent.deadlines.first_token_s - elapsed_s
        if isinstance(exc, TierBusy):
            return exc.retry_after_s if exc.told and exc.retry_after_s < left else None
        return 0.0 if left > 0 else None

    def _begin(self, url: str) -> None:
        """A turn goes to `url`: counted for the load bound, and told to the monitor (a
        probe held behind the answer then reads as busy)."""
        self._in_flight[url] += 1
        if self.health is not None:
            self.health.turn_started(url)

    def _end(self, url: str) -> None:
        self._in_flight[url] -= 1
        if self.health is not None:
            self.health.turn_ended(url)

    def _report_success(self, url: str) -> None:
        if self.health is not None:
            self.health.observe_target_success(url)

    def _report_failure(self, url: str, reason: str) -> None:
        if self.health is not None:
            self.health.observe_target_failure(url, reason)

    async def close(self) -> None:
        """The shared ClientSession is closed by the app's cleanup context."""


def _nowhere(url: str) -> None:
    """No monitor to tell."""


def _targets(cfg: TierConfig) -> Targets:
    """The path (the GPU box's nginx over the tailnet) and each replica, probed together so
    one round tells "the box is unreachable" from "replica 2 is down"."""
    assert isinstance(cfg, OnpremConfig)
    probes: list[ProbeTarget] = []
    if cfg.replicas or len(cfg.urls) == 1:
        async def path(session: aiohttp.ClientSession, key: str | None,
                       h: HealthConfig) -> Verdict:
            results = await asyncio.gather(*(probe_path(session, f"{u}{cfg.path_health}",
                                                        h.timeout_s) for u in cfg.urls))
            return next((r for r in results if r.state == "up"), results[0])
        probes.append(ProbeTarget("onprem.path", "path", path))
    for r in cfg.replicas:
        async def replica(session: aiohttp.ClientSession, key: str | None, h: HealthConfig,
                          url: str = r.base_url) -> Verdict:
            return await probe_replica(session, url, cfg.model, key, h.timeout_s,
                                       h.busy_waiting)
        probes.append(ProbeTarget(f"onprem.{r.name}", "replica", replica))
    by_url = {r.base_url: f"onprem.{r.name}" for r in cfg.replicas}
    # Chats go to the GPU box's URL (nginx balances) and, for conversation affinity, to
    # each replica's own path: each is counted against the target it reaches.
    return Targets(tuple(probes), {**{u: by_url.get(u, "onprem.path") for u in cfg.urls},
                                   **by_url})


def _provider(ctx: TierContext) -> OnpremProvider:
    cfg = ctx.settings.tiers["onprem"]
    assert isinstance(cfg, OnpremConfig)
    return OnpremProvider(cfg, ctx.session, ctx.health, ctx.keys, ctx.store)


TIER = TierSpec(
    name="onprem", label="on-prem", color="#3fb950", generative=True, primary=True,
    config=OnpremConfig, provider=_provider, targets=_targets, gen_ai_system="vllm",
    hints={"misconfigured": "check ONPREM_API_KEY and onprem.model (vLLM --served-model-name)",
           "unavailable": "is the GPU box up and this host on the tailnet?"})
