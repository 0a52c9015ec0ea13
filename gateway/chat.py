"""One chat turn, independent of the wire: plan, fresh cache, race, cost, store.

The API modules (OpenAI, SSE, WebSocket) turn these events into their own
formats; the decisions are made here once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from gateway.cache.keys import cache_key
from gateway.cache.stampede import Lease, Stampede
from gateway.cache.store import CachedAnswer, ResponseCache
from gateway.config import IntentConfig, Settings
from gateway.cost import cost_usd, estimate_tokens, prompt_text
from gateway.errors import RequestRejected
from gateway.health.states import TierHealth
from gateway.inventory.tier import TIER as INVENTORY_TIER
from gateway.inventory.tier import Inventory, stock_table
from gateway.language.intents import IntentClassifier
from gateway.logs import get_logger
from gateway.providers.base import Provider, TierRequest
from gateway.providers.cache_tier import CACHE_MODEL, CACHE_TIER
from gateway.routing.driver import HealthObserver, RaceResult, SwitchOut, TextOut, run_race
from gateway.routing.hedging import Hedging
from gateway.routing.plan import RoutePlan, plan_route
from gateway.tiers import registry
from gateway.tracing import Tracing

log = get_logger("scout.chat")


def new_message_id() -> str:
    """A message's id when the client gave none: 96 random bits from the OS, as uuid4
    draws them, without building a UUID."""
    return f"msg_{os.urandom(12).hex()}"


@dataclass(frozen=True, slots=True)
class Started:
    id: str
    intent: str
    tier: str
    skipped: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class TurnOutcome:
    id: str
    intent: str
    served_by: list[str]
    models: list[str]
    text: str
    ttft_ms: float | None
    total_ms: float
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: str | None           # "fresh", "stale" or None
    finish_reason: str
    complete: bool
    resumed: int = 0
    hedged: bool = False
    error: str = ""
    hedge_winner: str | None = None
    race_ttft_ms: float | None = None  # from the race's start: the serving tier's own share
    parts: list[tuple[str, int, int, float]] = field(default_factory=list)  # tier, in, out, USD
    switches: list[SwitchOut] = field(default_factory=list)
    grounded: int = 0   # inventory rows put in the models' prompt
    malformed: dict[str, int] = field(default_factory=dict)   # tier → bad events skipped
    # (tier, replica, prompt tokens, of them read from its prefix cache) per served part
    prefix: list[tuple[str, str, int, int | None]] = field(default_factory=list)
    # An upstream's content-policy refusal, as it gave it: (HTTP status, error object).
    rejection: tuple[int, dict[str, Any]] | None = None

    @property
    def cached_prompt_tokens(self) -> int | None:
        """Of the prompt, what the upstreams read from their prefix caches, if they said."""
        said = [c for _, _, _, c in self.prefix if c is not None]
        return sum(said) if said else None

    def done_event(self) -> dict[str, Any]:
        """The `done` event's body, the same on SSE and WebSocket."""
        return {
            "id": self.id,
            "intent": self.intent,
            "served_by": self.served_by,
            "models": self.models,
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "total_ms": round(self.total_ms, 1),
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "cost_usd": round(self.cost_usd, 8),
            "cached": self.cached or False,
            "finish_reason": self.finish_reason,
            **({"grounded": f"{self.grounded} rows"} if self.grounded else {}),
        }


TurnEvent = Started | TextOut | SwitchOut | TurnOutcome


def _must_call(tool_choice: Any) -> bool:
    """OpenAI's tool_choice asks for a tool call: "required", or one named function."""
    return tool_choice == "required" or (isinstance(tool_choice, dict)
                                         and tool_choice.get("type") == "function")


def conversation_key(key_label: str, messages: list[dict[str, Any]]) -> str | None:
    """A conversation the OpenAI API names no session for: its caller's key and its first
    user turn, which every later turn of it carries again. None without a user turn."""
    first = next((m for m in messages if m.get("role") == "user"), None)
    if first is None:
        return None
    digest = hashlib.blake2b(f"{key_label}\0{prompt_text([first])}".encode(), digest_size=12)
    return digest.hexdigest()


def grounded_messages(messages: list[dict[str, Any]], tables: Mapping[int, str]
                      ) -> list[dict[str, Any]]:
    """The conversation with each grounded user turn's stock table just before it
    (`tables`: message index → table).

    A replica's prefix cache (vLLM's automatic prefix caching, llama.cpp's slots) skips
    what it has already read, up to the first token that differs. So what repeats from
    turn to turn comes first, unchanged: the system prompt, then the history as it was
    sent before, each earlier question still after the table it was asked with. What
    changes every turn, this turn's table and question, comes last: put after the system
    prompt, the table would make every turn's history new again, and an earlier turn's
    table left out would make the history new from that turn on."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if tables.get(i):
            out.append({"role": "system", "content": tables[i]})
        out.append(m)
    return out


@dataclass(frozen=True, slots=True)
class Turn:
    id: str
    plan: RoutePlan
    request: TierRequest
    cacheable: bool      # a whole answer may be stored
    fresh_cache: bool    # a fresh stored answer may be served before any tier
    private: str | None = None  # the private intent this conversation touched, if any
    key_label: str = ""         # the frontend API key's label (spend per key)


class HealthSource(HealthObserver, Protocol):
    def state(self, tier: str) -> TierHealth: ...


TurnObserver = Callable[["Turn", TurnOutcome], None]


class ChatService:
    def __init__(self, settings: Settings, providers: Mapping[str, Provider],
                 health: HealthSource, cache: ResponseCache, stampede: Stampede,
                 tracing: Tracing | None = None, inventory: Inventory | None = None) -> None:
        self.settings = settings
        self.tracing = tracing or Tracing()
        self.inventory = inventory   # grounds intents with `ground: true` in real stock
        self.providers = providers
        self.health = health
        self.cache = cache
        self.stampede = stampede
        self.observers: list[TurnObserver] = []  # metrics and stats: told of every answer
        self.classifier = IntentClassifier.for_settings(settings)
        self.hedging = Hedging(settings.hedging)
        self._enabled = settings.enabled_tiers()
        self._tool_tiers = frozenset(t for t in settings.tiers
                                     if registry().supports(settings, t, "supports_tools"))
        self._format_tiers = frozenset(
            t for t in settings.tiers
            if registry().supports(settings, t, "supports_response_format"))
        self._generative = registry().generative_names()

    def _stock_tier(self, messages: list[dict[str, Any]]) -> str | None:
        """The inventory tier, for a stock question, whatever intent it landed in: a
        customer asking for "a white pickup" hears what is on the lot even when no model
        can answer."""
        name = INVENTORY_TIER.name
        if self.inventory is None or name not in self._enabled \
                or not self.inventory.is_stock_question(messages):
            return None
        return name

    def tier_health(self, tier: str) -> TierHealth:
        return self.health.state(tier)

    def prepare(self, messages: list[dict[str, Any]], *, pin: str | None = None,
                params: dict[str, Any] | None = None, tools: list[Any] | None = None,
                tool_choice: Any = None, turn_id: str | None = None,
                private_before: IntentConfig | None = None, key_label: str = "",
                response_format: dict[str, Any] | None = None,
                end_user: str | None = None, conversation: str | None = None) -> Turn:
        """Classify and plan; raises PrivacyViolation before anything is sent.

        The intent comes from the last user message; privacy from every user message the
        request carries (and `private_before`, a private turn the session saw earlier even
        if it is no longer in the window sent upstream)."""
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        intent = self.classifier.classify(prompt_text([last_user]) if last_user else "")
        private_turn = None if intent.private else \
            (self.classifier.private_turn(messages) or private_before)
        json_wanted = response_format is not None and response_format.get("type") != "text"
        plan = plan_route(intent, enabled=self._enabled, health=self.tier_health, pin=pin,
                          tool_tiers=self._tool_tiers if tools else None,
                          format_tiers=self._format_tiers if json_wanted else None,
                          private_turn=private_turn, stock_tier=self._stock_tier(messages))
        if tools and _must_call(tool_choice) and self._generative.isdisjoint(plan.ladder):
            # A canned reply is no answer to "call a tool": say which tiers could not.
            why = "; ".join(f"{t}: {r}" for t, r in plan.skipped) or \
                "no tier of this intent's ladder can call tools"
            # Down for now (503, ask again) or never for this request (400).
            now_only = any(t in self._tool_tiers and not r.startswith(("private", "cannot"))
                           for t, r in plan.skipped)
            raise RequestRejected(f"tool_choice requires a tool call, and no tier able to call "
                                  f"tools can serve this request{' now' if now_only else ''} "
                                  f"({why})", param="tool_choice",
                                  status=503 if now_only else 400, code="no_tool_tier")
        if tools and _must_call(tool_choice):
            # Only a tier that calls tools may answer: if they all fail, a clear error.
            plan = replace(plan, ladder=tuple(t for t in plan.ladder if t in self._generative))
        system_prompt = self.settings.server.system_prompt
        if system_prompt and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": system_prompt}, *messages]
        # A private conversation's answers are never shared through the cache either.
        cacheable = intent.cacheable and plan.policy != "never" and not tools \
            and not json_wanted
        key = cache_key(intent.name, messages, "") if cacheable else None
        request = TierRequest(messages=messages, intent=intent, params=params or {},
                              tools=tools, tool_choice=tool_choice, cache_key=key,
                              offsite=plan.policy,
                              response_format=response_format if json_wanted else None,
                              end_user=end_user,
                              conversation=conversation or conversation_key(key_label, messages))
        touched = intent if intent.private else private_turn
        return Turn(turn_id or new_message_id(), plan, request, cacheable,
                    fresh_cache=cacheable and pin is None,
                    private=touched.name if touched is not None else None,
                    key_label=key_label)

    async def run(self, turn: Turn) -> AsyncGenerator[TurnEvent, None]:
        """The turn's events; traced as one span when tracing is on. One generator from the
        cache to the race: every layer between the race and the client costs each chunk."""
        tracing = self.tracing
        span = tracing.start_turn(turn.plan.intent.name, turn.plan.ladder, turn.id,
                                  self._question(turn)) if tracing.enabled else None
        outcome: TurnOutcome | None = None
        started = time.perf_counter()
        key = turn.request.cache_key
        lease: Lease | None = None
        try:
            if turn.fresh_cache and key is not None:
                hit = await self.cache.get(key)
                if hit is None or not hit.is_fresh(time.time()):
                    lease = await self.stampede.lead(key)
                    if lease is None:  # the same question is already on its way upstream
                        hit = await self.stampede.wait(key)
                if hit is not None and hit.is_fresh(time.time()):
                    self.tracing.event(span, "scout.cache_hit", {"scout.cache": "fresh"})
                    for ev in self._fresh_hit(turn, hit, started):
                        if isinstance(ev, TurnOutcome):
                            outcome = ev
                        yield ev
                    return
            grounded = 0
            # The stock table is for a model to read: a ladder with none (a pinned static
            # reply, the inventory tier) has nothing to ground.
            if self.inventory is not None and not self._generative.isdisjoint(turn.plan.ladder):
                tables, grounded = await self._tables(turn)
                if tables:
                    turn = replace(turn, request=replace(
                        turn.request, messages=grounded_messages(turn.request.messages, tables)))
            plan, request = turn.plan, turn.request
            yield Started(turn.id, plan.intent.name, plan.ladder[0], plan.skipped)
            result: RaceResult | None = None
            first_text: float | None = None
            switches: list[SwitchOut] = []
            async with aclosing(run_race(plan, request, self.providers, self.health,
                                         self.hedging, self.tracing, span)) as race:
                async for out in race:
                    if isinstance(out, TextOut):
                        if first_text is None:
                            first_text = time.perf_counter()
                    elif isinstance(out, RaceResult):
                        result = out
                        continue
                    elif isinstance(out, SwitchOut):
                        switches.append(out)
                    yield out
            assert result is not None
            outcome = await self._finish(turn, result, started, first_text, switches)
            outcome.grounded = grounded
            yield outcome
        finally:
            if lease is not None:
                await self.stampede.release(lease)
            if span is not None:
                tracing.end_turn(span, {} if outcome is None else {
                    "scout.served_by": outcome.served_by, "scout.cached": outcome.cached,
                    "scout.ttft_ms": outcome.ttft_ms, "scout.cost_usd": outcome.cost_usd,
                    "gen_ai.usage.input_tokens": outcome.prompt_tokens,
                    "gen_ai.usage.output_tokens": outcome.completion_tokens},
                    error="" if outcome is not None and outcome.complete else
                    (outcome.error if outcome is not None else "cancelled"),
                    answer=outcome.text if outcome is not None else "")

    @staticmethod
    def _question(turn: Turn) -> str:
        last = next((m for m in reversed(turn.request.messages) if m.get("role") == "user"), None)
        return prompt_text([last]) if last else ""

    def _fresh_hit(self, turn: Turn, hit: CachedAnswer, started: float) -> list[TurnEvent]:
        elapsed = (time.perf_counter() - started) * 1000
        name = turn.plan.intent.name
        outcome = TurnOutcome(turn.id, name, [CACHE_TIER], [CACHE_MODEL], hit.text, elapsed, elapsed,
                              0, 0, 0.0, "fresh", "stop", True, race_ttft_ms=0.0,
                              parts=[(CACHE_TIER, 0, 0, 0.0)])
        self._tell(turn, outcome)
        return [Started(turn.id, name, CACHE_TIER, turn.plan.skipped),
                TextOut(hit.text, CACHE_TIER, CACHE_MODEL), outcome]

    def _tell(self, turn: Turn, outcome: TurnOutcome) -> None:
        for observe in self.observers:
            try:
                observe(turn, outcome)
            except Exception:  # accounting must never cost the customer an answer
                log.exception("observer_failed")

    async def _tables(self, turn: Turn) -> tuple[dict[int, str], int]:
        """Each user turn's stock table (message index → table), and this turn's row count.

        Earlier turns are grounded again as they were when asked (the same filters, read
        from the conversation up to that turn, give the same table while the stock stays
        the same), so the history reaches the replica as it was sent before and its prefix
        cache still holds it. No state: any gateway rebuilds the same prompt."""
        assert self.inventory is not None
        messages = turn.request.messages
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        if not users:
            return {}, 0
        last = users[-1]
        wanted = [i for i in users[:-1]
                  if self.classifier.classify(prompt_text([messages[i]])).ground]
        if turn.plan.intent.ground:
            wanted.append(last)
        found = await asyncio.gather(*(self.inventory.grounding(messages[:i + 1])
                                       for i in wanted))
        # A row the conversation already holds is not sent again, only its stock number:
        # the replica would read the same rows twice, and the prompt grow by them with
        # every question asked of the same cars.
        held: set[str] = set()
        tables: dict[int, str] = {}
        for i, rows in zip(wanted, found, strict=True):   # in the conversation's order
            if rows:
                tables[i] = stock_table(rows, held)
                held.update(r.line for r in rows)
        return tables, len(found[-1]) if turn.plan.intent.ground else 0   # this turn's: last

    async def _finish(self, turn: Turn, result: RaceResult, started: float,
                      first_text: float | None, switches: list[SwitchOut]) -> TurnOutcome:
        """The race is over: its outcome, told to the observers, stored, logged."""
        ttft_ms = (first_text - started) * 1000 if first_text is not None else None
        outcome = self._outcome(turn, result, ttft_ms, (time.perf_counter() - started) * 1000)
        outcome.switches = switches
        self._tell(turn, outcome)
        if self._should_store(turn, result):
            await self._store(turn, result, outcome)
        # INFO carries ids, sizes, intents and timings; the words themselves only at DEBUG.
        question = self._question(turn)
        log.info("turn", id=turn.id, intent=outcome.intent,
                 served_by="+".join(outcome.served_by) or "-",
                 ttft_ms=outcome.ttft_ms and round(outcome.ttft_ms, 1),
                 question_chars=len(question), answer_chars=len(result.text),
                 tokens=outcome.completion_tokens, cost_usd=round(outcome.cost_usd, 6))
        if log.isEnabledFor(logging.DEBUG):   # a dropped event still costs its processors
            log.debug("turn_text", id=turn.id, question=question, answer=result.text)
        return outcome

    def _outcome(self, turn: Turn, r: RaceResult, ttft_ms: float | None,
                 total_ms: float) -> TurnOutcome:
        prompt_estimate = estimate_tokens(prompt_text(turn.request.messages))
        prompt = completion = 0
        cost = 0.0
        parts = []
        for tier, p, c, part in r.parts:
            p = p if p is not None else (prompt_estimate if tier in self._generative else 0)
            c = c if c is not None else estimate_tokens(part)
            prompt += p
            completion += c
            part_cost = cost_usd(self.settings.prices, self.settings.tier_model(tier), p, c)
            cost += part_cost
            parts.append((tier, p, c, part_cost))
        return TurnOutcome(
            id=turn.id, intent=turn.plan.intent.name, served_by=r.served_by, models=r.models,
            text=r.text, ttft_ms=ttft_ms, total_ms=total_ms, prompt_tokens=prompt,
            completion_tokens=completion, cost_usd=cost, cached=r.cached,
            finish_reason=r.finish_reason or ("stop" if r.complete else "error"),
            complete=r.complete, resumed=r.stats.resumes, hedged=bool(r.stats.hedges),
            error=r.error, hedge_winner=r.stats.hedge_winner, parts=parts,
            malformed=r.stats.malformed, prefix=r.prefix, rejection=r.rejection,
            race_ttft_ms=r.ttft_s * 1000 if r.ttft_s is not None else None)

    def _should_store(self, turn: Turn, r: RaceResult) -> bool:
        """Only whole answers from one generative tier, of cacheable, non-private intents."""
        return (turn.cacheable and r.complete and not r.stats.resumes and not r.tool_calls
                and len(r.served_by) == 1 and r.served_by[0] in self._generative
                and (r.finish_reason or "stop") == "stop" and bool(r.text))

    async def _store(self, turn: Turn, r: RaceResult, outcome: TurnOutcome) -> None:
        assert turn.request.cache_key is not None
        now = time.time()
        intent: IntentConfig = turn.plan.intent
        answer = CachedAnswer(r.text, r.models[0], now, now + intent.cache_ttl_s,
                              outcome.prompt_tokens, outcome.completion_tokens)
        await self.cache.put(turn.request.cache_key, answer,
                             intent.cache_ttl_s + self.settings.cache.stale_ttl_s)

