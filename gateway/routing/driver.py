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
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace

from gateway.errors import TierBusy, TierContentPolicy, TierError, TierUnavailable
from gateway.logs import get_logger
from gateway.providers.base import (
    AttemptNote,
    Delta,
    Headers,
    Provenance,
    Provider,
    Skipped,
    TierRequest,
    Usage,
)
from gateway.routing.hedging import Hedging
from gateway.routing.plan import RoutePlan, check_offsite
from gateway.routing.race import (
    CancelTier,
    EmitRestart,
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


# Not frozen: one is made per chunk (why: providers/base.py, Delta).
@dataclass(slots=True)
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
    # A restart: the answer so far is replaced by this text (the protocols' `replace`).
    replace: str | None = None


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
    # Per served part whose upstream said: (tier, replica, prompt tokens, of them cached).
    prefix: list[tuple[str, str, int, int | None]] = field(default_factory=list)
    # An upstream's content-policy refusal, passed on as it was given: (status, error).
    rejection: tuple[int, dict[str, Any]] | None = None


class _Finished:
    """The provider's stream ended normally."""


_FINISHED = _Finished()
_TICK = object()
_HANDED = object()   # the pump stopped and left its stream to the driver (the fast path)


class _Inbox:
    """What the pumps and the timer tell the driver: a queue with one reader, which is all
    asyncio.Queue's machinery (loop look-ups, waiter lists, a join event) is used for here."""

    __slots__ = ("_items", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._items: deque[tuple[int, Any]] = deque()
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: tuple[int, Any]) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> tuple[int, Any]:
        while not self._items:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class _Pumped:
    """One attempt's stream, read by a pump task until the driver asks for it back."""

    __slots__ = ("hand_back", "stream")

    def __init__(self, stream: AsyncIterator[Any]) -> None:
        self.stream = stream
        self.hand_back = False

    async def close(self) -> None:
        """Close the stream (and so its connection); nothing if it already ended."""
        aclose = getattr(self.stream, "aclose", None)
        if aclose is not None:
            await aclose()


class _Deadline:
    """The race's next deadline while the driver reads one stream itself.

    A timer per chunk would cost more than the task switch the fast path saves, so there
    is one timer, re-armed only when it fires early (tokens moved the deadline on). When
    the deadline is really due it cancels the read in progress, as asyncio.timeout does;
    if it passes while the reader is away, the next read is cut only if it has to wait."""

    __slots__ = ("_base", "_handle", "_loop", "_on_stall", "_race", "_soon", "_task", "at",
                 "due", "due_at", "reading")

    def __init__(self, loop: asyncio.AbstractEventLoop, race: Race,
                 on_stall: Callable[[], None]) -> None:
        self._loop, self._race, self._on_stall = loop, race, on_stall
        self._task: asyncio.Task[Any] | None = None   # the reader: known when first armed
        self._handle: asyncio.TimerHandle | None = None
        self._soon: asyncio.Handle | None = None   # cuts a read that has to wait (see below)
        self._base = -1          # the task's cancel count before ours; -1: we did not cancel
        self.at = math.inf
        self.due = False         # the deadline passed: on_tick before reading on
        self.due_at = 0.0        # the deadline that passed (a timer may fire a little early)
        self.reading = False

    def arm(self) -> None:
        if self._handle is not None:   # tokens only move the deadline later: it re-arms
            return
        if self._task is None:
            self._task = asyncio.current_task()
        when = self._race.next_deadline()
        if when is not None and when < self.at:
            self.stop()
            self.at = when
            self._handle = self._loop.call_at(when, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.at = math.inf

    def _fire(self) -> None:
        self._handle, fired_for, self.at = None, self.at, math.inf
        when = self._race.next_deadline()
        if when is None:   # nothing is due any more (the answer gave its finish_reason)
            return
        if when > fired_for:   # a token moved it on: wait for that
            self.arm()
            return
        self.due, self.due_at = True, fired_for
        if self.reading:
            self._cut()

    def _cut(self) -> None:
        self._soon = None
        if self.reading and self._task is not None:
            # The stream learns why it is cut before the cancellation reaches it (the on-prem
            # provider tells its target's health), as a pumped attempt's note says.
            self.due = False
            self._on_stall()
            self._base = self._task.cancelling()
            self._task.cancel()

    def passed_while_away(self) -> None:
        """The deadline passed while the reader was not reading (its client was slow to
        take what it wrote): the upstream may have sent plenty meanwhile. What is already
        buffered is read on; the next read is cut only if it has to wait."""
        self.due = False
        self._soon = self._loop.call_soon(self._cut)

    def read_done(self) -> None:
        self.reading = False
        if self._soon is not None:   # the read did not wait: the upstream had sent on
            self._soon.cancel()
            self._soon = None

    def take(self) -> float:
        """The passed deadline, as the time to tell the race; no longer due."""
        self.due = False
        return max(self._loop.time(), self.due_at)

    def cancelled_read(self) -> bool:
        """A CancelledError is ours (the deadline) and not the caller's."""
        if self._base < 0 or self._task is None:
            return False
        base, self._base = self._base, -1
        return self._task.uncancel() <= base


async def _pump(aid: int, pumped: _Pumped, tier: str,
                queue: _Inbox) -> None:
    try:
        async for ev in pumped.stream:
            queue.put_nowait((aid, ev))
            if pumped.hand_back:   # the driver reads the rest itself: no close, no aclose
                queue.put_nowait((aid, _HANDED))
                return
        queue.put_nowait((aid, _FINISHED))
    except TierError as exc:
        queue.put_nowait((aid, exc))
    except Exception as exc:  # a bug in a provider must cost one tier, not the turn
        queue.put_nowait((aid, _bug(tier, exc)))


def _bug(tier: str, exc: Exception) -> TierError:
    log.exception("provider_bug", tier=tier)
    return TierUnavailable(f"internal error ({exc.__class__.__name__})")


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
    queue = _Inbox(loop)
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
    pumped: dict[int, _Pumped] = {}
    rejection: tuple[int, dict[str, Any]] | None = None

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
            prefix=[(tier_of[a], usage_of[a].target, usage_of[a].prompt_tokens,
                     usage_of[a].cached_tokens) for a in served if a in usage_of],
            error=error,
            tool_calls=saw_tool_calls,
            rejection=rejection,
        )

    def on_event(aid: int, ev: Any, now: float) -> None:
        """What an attempt's stream (or the clock, aid 0) said, told to the race."""
        nonlocal provenance, rejection
        if ev is _TICK:
            actions.extend(race.on_tick(now))
        elif isinstance(ev, Delta):
            model_of[aid] = ev.model
            if ev.finish_reason:
                finish_of[aid] = ev.finish_reason
            if ev.text or ev.tool_calls:
                actions.extend(race.on_token(aid, ev.text, now, ev))
            if ev.finish_reason:
                race.on_finish_reason(aid)
        elif isinstance(ev, Headers):
            race.on_headers(aid, now)
        elif isinstance(ev, Usage):
            usage_of[aid] = ev
        elif isinstance(ev, Provenance):
            provenance = ev
        elif isinstance(ev, Skipped):   # one malformed event; the stream went on
            tier = tier_of[aid]
            race.stats.malformed[tier] = race.stats.malformed.get(tier, 0) + 1
            log.warning("malformed_event_skipped", tier=tier, reason=ev.reason)
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
            if isinstance(ev, TierContentPolicy):   # the upstream is well; the input is not
                log.info("tier_refused_input", tier=tier, reason=ev.reason)
                rejection = (ev.status, ev.error)
                actions.extend(race.on_refusal(aid, f"{ev.kind}: {ev.reason}"))
                return
            if tier in generative and race.attempts[aid].active and ev.kind != "refused":
                if isinstance(ev, TierBusy):   # rate-limited: skip it until Retry-After
                    health.observe_failure(tier, ev.kind, ev.reason, ev.retry_after_s)
                else:
                    health.observe_failure(tier, ev.kind, ev.reason)
            log.info("tier_failed", tier=tier, kind=ev.kind, reason=ev.reason)
            actions.extend(race.on_failure(aid, f"{ev.kind}: {ev.reason}", now))

    def launch(aid: int, tier: str, req: TierRequest) -> None:
        pumped[aid] = _Pumped(providers[tier].stream(req))
        tasks[aid] = loop.create_task(_pump(aid, pumped[aid], tier, queue))

    # The fast path: once one attempt is answering alone, its pump hands the stream back
    # and this task reads it itself, with the race's next deadline as a timeout: no task
    # switch and no queue per chunk. Anything that needs a second attempt (a stall or a
    # drop, handed over to the next tier) starts pumps again.
    direct: _Pumped | None = None
    direct_aid = 0
    def stalled() -> None:
        notes[direct_aid].missed = race.stalled()

    deadline = _Deadline(loop, race, stalled)
    actions: deque[Any] = deque()
    try:
        actions.extend(race.start(loop.time()))
        while True:
            while actions:
                act = actions.popleft()
                if isinstance(act, EmitText | EmitRestart):
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
                    if delta is not None and delta.tool_calls:
                        saw_tool_calls = True
                    model = delta.model if delta is not None \
                        else model_of.get(act.attempt, providers[act.tier].model)
                    if isinstance(act, EmitRestart):
                        log.info("answer_restarted", tier=act.tier, reason=act.reason)
                        if turn_span is not None:
                            Tracing.event(turn_span, "scout.restart", {"scout.tier": act.tier})
                        yield SwitchOut(act.tier, act.tier, act.reason, SwitchKind.RESTART,
                                        act.text)
                        if delta is None or not delta.tool_calls:
                            continue
                        act = EmitText(act.attempt, act.tier, "", delta)   # its tool calls
                    yield TextOut(act.text, act.tier, model,
                                  delta.tool_calls if delta is not None else None)
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
                    if tracing is not None and tracing.enabled:
                        # The attempt's span is current in its task: the HTTP client span
                        # (and the traceparent sent upstream) hang under it.
                        spans[act.attempt] = tracing.start_attempt(
                            turn_span, act.tier, providers[act.tier].model, bool(act.prefix))
                        token = otel_context.attach(
                            trace.set_span_in_context(spans[act.attempt]))
                        try:
                            launch(act.attempt, act.tier, req)
                        finally:
                            otel_context.detach(token)
                    else:
                        launch(act.attempt, act.tier, req)
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
                    if direct is not None and direct_aid == act.attempt:
                        direct = None
                        deadline.stop()
                        await pumped[act.attempt].close()  # and so its connection
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
            if direct is not None:
                if deadline.due:
                    deadline.passed_while_away()
                else:
                    deadline.arm()
                deadline.reading = True
                try:
                    ev = await anext(direct.stream)
                except StopAsyncIteration:
                    ev = _FINISHED
                except TierError as exc:
                    ev = exc
                except asyncio.CancelledError:
                    if not deadline.cancelled_read():
                        raise
                    # The read was cancelled, which closed the stream: the race cuts it off.
                    on_event(0, _TICK, deadline.take())
                    continue
                except Exception as exc:  # a bug in a provider must cost one tier, not the turn
                    ev = _bug(tier_of[direct_aid], exc)
                finally:
                    deadline.read_done()
                # The steady state: plain text from the attempt answering, taken by the race
                # (Race.on_text) and passed on with no action list in between.
                if type(ev) is Delta and ev.tool_calls is None and ev.finish_reason is None \
                        and not actions and race.on_text(direct_aid, ev.text, loop.time()):
                    model_of[direct_aid] = ev.model
                    text_of[direct_aid].append(ev.text)
                    yield TextOut(ev.text, tier_of[direct_aid], ev.model)
                    continue
                if ev is _FINISHED or isinstance(ev, TierError):
                    direct = None
                    deadline.stop()
                on_event(direct_aid, ev, loop.time())
                continue
            due = race.next_deadline()
            winner = race.winner
            if winner is not None and len(tasks) == 1 and winner.id in tasks:
                pumped[winner.id].hand_back = True
            if due is not None and due < timer_at:
                if timer is not None:
                    timer.cancel()
                timer_at = due
                timer = loop.call_at(due, queue.put_nowait, (0, _TICK))
            aid, ev = await queue.get()
            if ev is _HANDED:
                tasks.pop(aid, None)
                if race.attempts[aid].active and not race.done:
                    direct, direct_aid = pumped[aid], aid
                    if timer is not None:
                        timer.cancel()
                        timer, timer_at = None, math.inf
                else:
                    await pumped[aid].close()
                continue
            if ev is _TICK:
                timer, timer_at = None, math.inf
            on_event(aid, ev, loop.time())
    finally:
        for span in spans.values():
            Tracing.end_attempt(span, "abandoned")
        if timer is not None:
            timer.cancel()
        deadline.stop()
        for task in tasks.values():
            task.cancel()
        pending = [*tasks.values(), *cancelled]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for p in pumped.values():   # done or suspended now: closing is safe and idempotent
            try:
                await p.close()
            except Exception:
                log.exception("provider_close_failed")
