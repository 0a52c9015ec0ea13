"""Runs the race for real: provider streams as tasks, deadlines on the event loop.

The decisions are `Race`'s; this module only carries them out. Each attempt
pumps its provider's events into one queue; a single timer, re-armed to the
race's next deadline, turns time into `on_tick`. Whatever way the caller
stops (finished, client gone, cancelled), every upstream task is cancelled
and awaited, which closes its connection.

Where this sits in a turn: docs/design.md, "One turn".
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace

from gateway.errors import TierBusy, TierError, TierUnavailable
from gateway.logs import get_logger
from gateway.providers.base import (
    AttemptNote,
    Delta,
    Headers,
    Provenance,
    Provider,
    TierRequest,
    Usage,
)
from gateway.routing.hedging import Hedging
from gateway.routing.plan import RoutePlan, check_offsite
from gateway.routing.race import (
    CancelTier,
    EmitSwitch,
    EmitText,
    Finish,
    GiveUp,
    Race,
    RaceStats,
    StartTier,
    SwitchKind,
)
from gateway.tiers import registry
from gateway.tracing import Tracing

log = get_logger("scout.race")


class HealthObserver(Protocol):
    def observe_failure(self, tier: str, kind: str, reason: str,
                        retry_after_s: float | None = None) -> None: ...
    def observe_success(self, tier: str) -> None: ...


@dataclass(frozen=True, slots=True)
class TextOut:
    text: str
    tier: str
    model: str
    tool_calls: list[Any] | None = None


@dataclass(frozen=True, slots=True)
class SwitchOut:
    from_tier: str
    to_tier: str
    reason: str        # in words, for people
    kind: SwitchKind   # the label metrics and traces use


@dataclass(slots=True)
class RaceResult:
    complete: bool
    served_by: list[str]
    models: list[str]
    text: str
    ttft_s: float | None
    finish_reason: str | None
    parts: list[tuple[str, int | None, int | None, str]]  # (tier, prompt, completion, text) per served part
    cached: str | None
    stats: RaceStats
    error: str = ""
    tool_calls: bool = False


class _Finished:
    """The provider's stream ended normally."""


_FINISHED = _Finished()
_TICK = object()


async def _pump(aid: int, provider: Provider, request: TierRequest,
                queue: asyncio.Queue[tuple[int, Any]]) -> None:
    try:
        async for ev in provider.stream(request):
            queue.put_nowait((aid, ev))
        queue.put_nowait((aid, _FINISHED))
    except TierError as exc:
        queue.put_nowait((aid, exc))
    except Exception as exc:  # a bug in a provider must cost one tier, not the turn
        log.exception("provider_bug", tier=provider.tier)
        queue.put_nowait((aid, TierUnavailable(f"internal error ({exc.__class__.__name__})")))


async def run_race(plan: RoutePlan, request: TierRequest, providers: Mapping[str, Provider],
                   health: HealthObserver, hedging: Hedging | None = None,
                   tracing: Tracing | None = None, turn_span: Any = None
                   ) -> AsyncGenerator[TextOut | SwitchOut | RaceResult, None]:
    """Yield text and switches as they happen, then one RaceResult."""
    loop = asyncio.get_running_loop()
    spans: dict[int, Any] = {}   # per attempt, when tracing is on
    generative = registry().generative_names()   # hedged, and their health observed
    hedge_after = {t: hedging.delay(t, plan.deadlines.first_token_s)
                   for t in plan.ladder if t in generative} if hedging is not None else None
    race = Race(plan.ladder, plan.deadlines, hedge_after)
    hedges_seen = 0
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    tasks: dict[int, asyncio.Task[None]] = {}
    tier_of: dict[int, str] = {}
    model_of: dict[int, str] = {}
    usage_of: dict[int, Usage] = {}
    finish_of: dict[int, str | None] = {}
    provenance: Provenance | None = None
    served: list[int] = []
    text_of: dict[int, list[str]] = {}
    saw_tool_calls = False
    cancelled: list[asyncio.Task[None]] = []  # awaited before we return, so sockets are closed
    timer: asyncio.TimerHandle | None = None
    timer_at = math.inf
    notes: dict[int, AttemptNote] = {}

    def result(complete: bool, error: str = "") -> RaceResult:
        last = served[-1] if served else None
        return RaceResult(
            complete=complete,
            served_by=[tier_of[a] for a in served],
            models=[model_of.get(a, providers[tier_of[a]].model) for a in served],
            text="".join(race.text),
            ttft_s=(race.first_token_at - race.started_at)
            if race.first_token_at is not None and race.started_at is not None else None,
            finish_reason=finish_of.get(last) if last is not None else None,
            parts=[(tier_of[a],
                    usage_of[a].prompt_tokens if a in usage_of else None,
                    usage_of[a].completion_tokens if a in usage_of else None,
                    "".join(text_of[a])) for a in served],
            cached=provenance.cached if provenance else None,
            stats=race.stats,
            error=error,
            tool_calls=saw_tool_calls,
        )

    try:
        actions = deque(race.start(loop.time()))
        while True:
            while actions:
                act = actions.popleft()
                if isinstance(act, EmitText):
                    if not served or served[-1] != act.attempt:
                        served.append(act.attempt)
                        text_of[act.attempt] = []
                        if act.tier in generative:
                            health.observe_success(act.tier)
                            attempt = race.attempts[act.attempt]
                            if hedging is not None and not attempt.resume:
                                hedging.observe_ttft(act.tier, loop.time() - attempt.started_at)
                            if act.attempt in spans:
                                spans[act.attempt].set_attribute(
                                    "gen_ai.response.time_to_first_token",
                                    loop.time() - attempt.started_at)
                    text_of[act.attempt].append(act.text)
                    delta: Delta = act.payload
                    if delta.tool_calls:
                        saw_tool_calls = True
                    yield TextOut(act.text, act.tier, delta.model, delta.tool_calls)
                elif isinstance(act, StartTier):
                    check_offsite(plan.intent.name, plan.policy, (act.tier,))  # again at dispatch
                    notes[act.attempt] = AttemptNote()
                    req = replace(request, prefix=act.prefix, note=notes[act.attempt])
                    if hedging is not None and act.tier in generative:
                        if len(race.stats.hedges) > hedges_seen:
                            hedges_seen = len(race.stats.hedges)
                            hedging.hedged()
                        else:
                            hedging.request_started()
                    tier_of[act.attempt] = act.tier
                    pump = _pump(act.attempt, providers[act.tier], req, queue)
                    if tracing is not None and tracing.enabled:
                        # The attempt's span is current in its task: the HTTP client span
                        # (and the traceparent sent upstream) hang under it.
                        spans[act.attempt] = tracing.start_attempt(
                            turn_span, act.tier, providers[act.tier].model, bool(act.prefix))
                        token = otel_context.attach(
                            trace.set_span_in_context(spans[act.attempt]))
                        try:
                            tasks[act.attempt] = loop.create_task(pump)
                        finally:
                            otel_context.detach(token)
                    else:
                        tasks[act.attempt] = loop.create_task(pump)
                elif isinstance(act, CancelTier):
                    if act.missed:
                        # A missed deadline is a live failure of the target the attempt used
                        # (told through its note) and, for tiers without targets, of the tier.
                        notes[act.attempt].missed = act.missed
                        if act.tier in generative:
                            health.observe_failure(act.tier, "stalled", act.missed)
                    task = tasks.pop(act.attempt, None)
                    if task is not None:
                        task.cancel()
                        cancelled.append(task)
                    Tracing.end_attempt(spans.pop(act.attempt, None), f"cancelled: {act.reason}",
                                        error=act.missed or None)
                elif isinstance(act, EmitSwitch):
                    if turn_span is not None:
                        Tracing.event(turn_span, "scout.hedge" if act.kind is SwitchKind.HEDGE
                                      else "scout.switch", {"scout.from": act.from_tier,
                                                            "scout.to": act.to_tier,
                                                            "scout.kind": str(act.kind),
                                                            "scout.reason": act.reason})
                    yield SwitchOut(act.from_tier, act.to_tier, act.reason, act.kind)
                elif isinstance(act, Finish):
                    yield result(True)
                    return
                elif isinstance(act, GiveUp):
                    yield result(False, act.reason)
                    return
            due = race.next_deadline()
            if due is not None and due < timer_at:
                if timer is not None:
                    timer.cancel()
                timer_at = due
                timer = loop.call_at(due, queue.put_nowait, (0, _TICK))
            aid, ev = await queue.get()
            now = loop.time()
            if ev is _TICK:
                timer, timer_at = None, math.inf
                actions.extend(race.on_tick(now))
            elif isinstance(ev, Delta):
                model_of[aid] = ev.model
                if ev.finish_reason:
                    finish_of[aid] = ev.finish_reason
                if ev.text or ev.tool_calls:
                    actions.extend(race.on_token(aid, ev.text, now, ev))
            elif isinstance(ev, Headers):
                race.on_headers(aid, now)
            elif isinstance(ev, Usage):
                usage_of[aid] = ev
            elif isinstance(ev, Provenance):
                provenance = ev
            elif ev is _FINISHED:
                tasks.pop(aid, None)
                if aid in spans:
                    use = usage_of.get(aid)
                    Tracing.end_attempt(spans.pop(aid), "finished", response_model=model_of.get(
                        aid), usage=(use.prompt_tokens, use.completion_tokens) if use else None)
                actions.extend(race.on_finish(aid, now))
            elif isinstance(ev, TierError):
                tasks.pop(aid, None)
                Tracing.end_attempt(spans.pop(aid, None), f"failed: {ev.kind}", error=ev.reason)
                tier = tier_of[aid]
                if tier in generative and race.attempts[aid].active and ev.kind != "refused":
                    if isinstance(ev, TierBusy):   # rate-limited: skip it until Retry-After
                        health.observe_failure(tier, ev.kind, ev.reason, ev.retry_after_s)
                    else:
                        health.observe_failure(tier, ev.kind, ev.reason)
                log.info("tier_failed", tier=tier, kind=ev.kind, reason=ev.reason)
                actions.extend(race.on_failure(aid, f"{ev.kind}: {ev.reason}", now))
    finally:
        for span in spans.values():
            Tracing.end_attempt(span, "abandoned")
        if timer is not None:
            timer.cancel()
        for task in tasks.values():
            task.cancel()
        pending = [*tasks.values(), *cancelled]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
