"""Runs the race for real: provider streams as tasks, deadlines on the event loop.

The decisions are `Race`'s; this module only carries them out (`_Driver`, one per turn,
with one `_Attempt` record per attempt). Each attempt pumps its provider's events into one
inbox (`gateway.routing.streams`); a single timer, re-armed to the race's next deadline,
turns time into `on_tick`. Once one attempt answers alone, the driver reads its stream
itself (the fast path). Whatever way the caller stops (finished, client gone, cancelled),
every upstream task is cancelled and awaited, which closes its connection.

Where this sits in a turn: docs/design.md, "One turn".
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace

from gateway.errors import FailureKind, TierBusy, TierContentPolicy, TierError
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
from gateway.routing.streams import (
    FINISHED,
    HANDED,
    TICK,
    Deadline,
    Inbox,
    Pumped,
    bug,
    pump,
)
from gateway.tiers import registry
from gateway.tracing import Tracing

log = get_logger("scout.race")


class HealthObserver(Protocol):
    def observe_failure(self, tier: str, kind: FailureKind, reason: str,
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


@dataclass(slots=True)
class _Attempt:
    """What the driver holds for one attempt at a tier."""

    tier: str
    note: AttemptNote = field(default_factory=AttemptNote)   # what it tells its provider
    pumped: Pumped | None = None
    task: asyncio.Task[None] | None = None   # its pump, while one reads for it
    span: Any = None                         # its trace span, while open
    model: str | None = None                 # the model its upstream named
    usage: Usage | None = None
    finish: str | None = None                # its finish_reason
    text: list[str] | None = None            # what it said, once it was served


class _Driver:
    """Carries out one race: applies the race's actions, tells it what the streams say,
    and reads a lone winner's stream itself."""

    # Set when `run` starts, on the loop that runs the turn.
    loop: asyncio.AbstractEventLoop
    queue: Inbox
    deadline: Deadline

    def __init__(self, plan: RoutePlan, request: TierRequest, providers: Mapping[str, Provider],
                 health: HealthObserver, hedging: Hedging | None, tracing: Tracing | None,
                 turn_span: Any) -> None:
        self.plan, self.request, self.providers, self.health = plan, request, providers, health
        self.hedging, self.tracing, self.turn_span = hedging, tracing, turn_span
        self.generative = registry().generative_names()   # hedged, and their health observed
        hedge_after = {t: hedging.delay(t, plan.deadlines.first_token_s)
                       for t in plan.ladder if t in self.generative} \
            if hedging is not None else None
        self.race = Race(plan.ladder, plan.deadlines, hedge_after)
        self.hedges_seen = 0
        self.attempts: dict[int, _Attempt] = {}
        self.served: list[int] = []   # the attempts whose text was passed on, in order
        self.provenance: Provenance | None = None
        self.rejection: tuple[int, dict[str, Any]] | None = None
        self.saw_tool_calls = False
        self.cancelled: list[asyncio.Task[None]] = []  # awaited before the end: sockets closed
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.actions: deque[Any] = deque()
        # The fast path: the stream the driver reads itself, and whose it is.
        self.direct: Pumped | None = None
        self.direct_aid = 0

    async def run(self) -> AsyncGenerator[TextOut | SwitchOut | RaceResult, None]:
        loop = self.loop = asyncio.get_running_loop()
        self.queue = Inbox(loop)
        race = self.race
        deadline = self.deadline = Deadline(loop, race, self._stalled)
        try:
            self.actions.extend(race.start(loop.time()))
            while True:
                while self.actions:
                    for out in await self._apply(self.actions.popleft()):
                        yield out
                        if type(out) is RaceResult:
                            return
                if self.direct is None:
                    await self._wait()
                    continue
                # The fast path: once one attempt is answering alone, its pump handed the
                # stream back and this task reads it, with the race's next deadline as a
                # timeout: no task switch and no queue per chunk. Anything that needs a
                # second attempt (a stall or a drop handed to the next tier) starts pumps.
                aid = self.direct_aid
                a = self.attempts[aid]
                stream, said = self.direct.stream, a.text
                while True:
                    deadline.before_read()
                    try:
                        ev = await anext(stream)
                    except StopAsyncIteration:
                        ev = FINISHED
                    except TierError as exc:
                        ev = exc
                    except asyncio.CancelledError:
                        if not deadline.cancelled_read():
                            raise
                        ev = TICK   # the deadline cut the read (and closed the stream)
                    except Exception as exc:  # a bug in a provider costs one tier, not the turn
                        ev = bug(a.tier, exc)
                    finally:
                        deadline.read_done()
                    # The steady state: plain text from the attempt answering, taken by the
                    # race (Race.on_text) and passed on with no action list in between.
                    if type(ev) is Delta and ev.tool_calls is None and ev.finish_reason is None \
                            and not self.actions and race.on_text(aid, ev.text, loop.time()):
                        a.model = ev.model
                        said.append(ev.text)   # type: ignore[union-attr]  # served: has text
                        yield TextOut(ev.text, a.tier, ev.model)
                        continue
                    break
                if ev is TICK:   # the race cuts the attempt off
                    self._on_event(0, TICK, deadline.take())
                else:
                    self._on_event(aid, ev, loop.time())
        finally:
            await self._close()

    # -- reading ---------------------------------------------------------------------------

    async def _wait(self) -> None:
        """The next event from the pumps or the timer, told to the race."""
        race = self.race
        due = race.next_deadline()
        winner = race.winner
        if winner is not None and (w := self.attempts.get(winner.id)) is not None \
                and w.task is not None and w.pumped is not None \
                and sum(a.task is not None for a in self.attempts.values()) == 1:
            w.pumped.hand_back = True   # answering alone: its stream comes to the driver
        if due is not None and due < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = due
            self.timer = self.loop.call_at(due, self.queue.put_nowait, (0, TICK))
        aid, ev = await self.queue.get()
        if ev is HANDED:
            await self._take_over(aid)
            return
        if ev is TICK:
            self.timer, self.timer_at = None, math.inf
        self._on_event(aid, ev, self.loop.time())

    async def _take_over(self, aid: int) -> None:
        """A pump handed its stream back: read it directly, if it still matters."""
        a = self.attempts[aid]
        a.task = None
        if self.race.attempts[aid].active and not self.race.done:
            self.direct, self.direct_aid = a.pumped, aid
            if self.timer is not None:
                self.timer.cancel()
                self.timer, self.timer_at = None, math.inf
        elif a.pumped is not None:
            await a.pumped.close()

    def _stalled(self) -> None:
        self.attempts[self.direct_aid].note.missed = self.race.stalled()

    # -- what the streams said ----------------------------------------------------------

    def _on_event(self, aid: int, ev: Any, now: float) -> None:
        """What an attempt's stream (or the clock, aid 0) said, told to the race."""
        if ev is TICK:
            self.actions.extend(self.race.on_tick(now))
        elif isinstance(ev, Delta):
            self._on_delta(aid, ev, now)
        elif isinstance(ev, Headers):
            self.race.on_headers(aid, now)
        elif isinstance(ev, Usage):
            self.attempts[aid].usage = ev
        elif isinstance(ev, Provenance):
            self.provenance = ev
        elif isinstance(ev, Skipped):   # one malformed event; the stream went on
            tier = self.attempts[aid].tier
            malformed = self.race.stats.malformed
            malformed[tier] = malformed.get(tier, 0) + 1
            log.warning("malformed_event_skipped", tier=tier, reason=ev.reason)
        elif ev is FINISHED:
            self._on_finished(aid, now)
        elif isinstance(ev, TierError):
            self._on_failure(aid, ev, now)

    def _on_delta(self, aid: int, ev: Delta, now: float) -> None:
        a = self.attempts[aid]
        a.model = ev.model
        if ev.finish_reason:
            a.finish = ev.finish_reason
        if ev.text or ev.tool_calls:
            self.actions.extend(self.race.on_token(aid, ev.text, now, ev))
        if ev.finish_reason:
            self.race.on_finish_reason(aid)

    def _ended(self, aid: int) -> _Attempt:
        """An attempt's stream ended (finished or failed): no pump or direct read is left."""
        a = self.attempts[aid]
        a.task = None
        if self.direct is not None and self.direct_aid == aid:
            self.direct = None
            self.deadline.stop()
        return a

    def _on_finished(self, aid: int, now: float) -> None:
        a = self._ended(aid)
        if a.span is not None:
            use = a.usage
            Tracing.end_attempt(a.span, "finished", response_model=a.model,
                                usage=(use.prompt_tokens, use.completion_tokens) if use else None)
            a.span = None
        self.actions.extend(self.race.on_finish(aid, now))

    def _on_failure(self, aid: int, ev: TierError, now: float) -> None:
        a = self._ended(aid)
        Tracing.end_attempt(a.span, f"failed: {ev.kind}", error=ev.reason)
        a.span = None
        tier = a.tier
        if isinstance(ev, TierContentPolicy):   # the upstream is well; the input is not
            log.info("tier_refused_input", tier=tier, reason=ev.reason)
            self.rejection = (ev.status, ev.error)
            self.actions.extend(self.race.on_refusal(aid, f"{ev.kind}: {ev.reason}"))
            return
        if tier in self.generative and self.race.attempts[aid].active and ev.kind != FailureKind.REFUSED:
            if isinstance(ev, TierBusy):   # rate-limited: skip it until Retry-After
                self.health.observe_failure(tier, ev.kind, ev.reason, ev.retry_after_s)
            else:
                self.health.observe_failure(tier, ev.kind, ev.reason)
        log.info("tier_failed", tier=tier, kind=ev.kind, reason=ev.reason)
        self.actions.extend(self.race.on_failure(aid, f"{ev.kind}: {ev.reason}", now))

    # -- the race's actions -------------------------------------------------------------

    async def _apply(self, act: Any) -> tuple[TextOut | SwitchOut | RaceResult, ...]:
        """Carry out one action; what it passes on to the caller."""
        if isinstance(act, EmitText | EmitRestart):
            return self._emit(act)
        if isinstance(act, StartTier):
            self._start(act)
        elif isinstance(act, CancelTier):
            await self._cancel(act)
        elif isinstance(act, EmitSwitch):
            if self.turn_span is not None:
                Tracing.event(self.turn_span, "scout.hedge" if act.kind is SwitchKind.HEDGE
                              else "scout.switch", {"scout.from": act.from_tier,
                                                    "scout.to": act.to_tier,
                                                    "scout.kind": str(act.kind),
                                                    "scout.reason": act.reason})
            return (SwitchOut(act.from_tier, act.to_tier, act.reason, act.kind),)
        elif isinstance(act, Finish):
            return (self._result(True),)
        elif isinstance(act, GiveUp):
            return (self._result(False, act.reason),)
        return ()

    def _emit(self, act: EmitText | EmitRestart) -> tuple[TextOut | SwitchOut, ...]:
        a = self.attempts[act.attempt]
        if not self.served or self.served[-1] != act.attempt:
            self.served.append(act.attempt)
            a.text = []
            if act.tier in self.generative:
                self._first_served(act.attempt, a)
        a.text.append(act.text)   # type: ignore[union-attr]  # just set
        delta: Delta = act.payload
        if delta is not None and delta.tool_calls:
            self.saw_tool_calls = True
        model = delta.model if delta is not None else \
            (a.model if a.model is not None else self.providers[act.tier].model)
        if isinstance(act, EmitRestart):
            log.info("answer_restarted", tier=act.tier, reason=act.reason)
            if self.turn_span is not None:
                Tracing.event(self.turn_span, "scout.restart", {"scout.tier": act.tier})
            switch = SwitchOut(act.tier, act.tier, act.reason, SwitchKind.RESTART, act.text)
            if delta is None or not delta.tool_calls:
                return (switch,)
            return (switch, TextOut("", act.tier, model, delta.tool_calls))   # its tool calls
        return (TextOut(act.text, act.tier, model,
                        delta.tool_calls if delta is not None else None),)

    def _first_served(self, aid: int, a: _Attempt) -> None:
        """A generative tier's first text passed on: it is well, and this was its TTFT."""
        self.health.observe_success(a.tier)
        attempt = self.race.attempts[aid]
        ttft = self.loop.time() - attempt.started_at
        if self.hedging is not None and not attempt.resume:
            self.hedging.observe_ttft(a.tier, ttft)
        if a.span is not None:
            a.span.set_attribute("gen_ai.response.time_to_first_token", ttft)

    def _start(self, act: StartTier) -> None:
        check_offsite(self.plan.intent.name, self.plan.policy, (act.tier,))  # again at dispatch
        a = self.attempts[act.attempt] = _Attempt(act.tier)
        req = replace(self.request, prefix=act.prefix, note=a.note)
        hedging = self.hedging
        if hedging is not None and act.tier in self.generative:
            if len(self.race.stats.hedges) > self.hedges_seen:
                self.hedges_seen = len(self.race.stats.hedges)
                hedging.hedged()
            else:
                hedging.request_started()
        if self.tracing is None or not self.tracing.enabled:
            self._launch(act.attempt, a, req)
            return
        # The attempt's span is current in its task: the HTTP client span (and the
        # traceparent sent upstream) hang under it.
        a.span = self.tracing.start_attempt(self.turn_span, act.tier,
                                            self.providers[act.tier].model, bool(act.prefix))
        token = otel_context.attach(trace.set_span_in_context(a.span))
        try:
            self._launch(act.attempt, a, req)
        finally:
            otel_context.detach(token)

    def _launch(self, aid: int, a: _Attempt, req: TierRequest) -> None:
        a.pumped = Pumped(self.providers[a.tier].stream(req))
        a.task = self.loop.create_task(pump(aid, a.pumped, a.tier, self.queue))

    async def _cancel(self, act: CancelTier) -> None:
        a = self.attempts[act.attempt]
        if act.missed:
            # A missed deadline is a live failure of the target the attempt used (told
            # through its note) and, for tiers without targets, of the tier.
            a.note.missed = act.missed
            if act.tier in self.generative:
                self.health.observe_failure(act.tier, FailureKind.STALLED, act.missed)
        task, a.task = a.task, None
        if task is not None:
            task.cancel()
            self.cancelled.append(task)
        if self.direct is not None and self.direct_aid == act.attempt:
            self.direct = None
            self.deadline.stop()
            await a.pumped.close()   # type: ignore[union-attr]  # and so its connection
        Tracing.end_attempt(a.span, f"cancelled: {act.reason}", error=act.missed or None)
        a.span = None

    # -- the end --------------------------------------------------------------------------

    def _result(self, complete: bool, error: str = "") -> RaceResult:
        served = [self.attempts[aid] for aid in self.served]
        last = served[-1] if served else None
        race = self.race
        return RaceResult(
            complete=complete,
            served_by=[a.tier for a in served],
            models=[a.model if a.model is not None else self.providers[a.tier].model
                    for a in served],
            text="".join(race.text),
            ttft_s=(race.first_token_at - race.started_at)
            if race.first_token_at is not None and race.started_at is not None else None,
            finish_reason=last.finish if last is not None else None,
            parts=[(a.tier, a.usage.prompt_tokens if a.usage else None,
                    a.usage.completion_tokens if a.usage else None, "".join(a.text or ()))
                   for a in served],
            cached=self.provenance.cached if self.provenance else None,
            stats=race.stats,
            prefix=[(a.tier, a.usage.target, a.usage.prompt_tokens, a.usage.cached_tokens)
                    for a in served if a.usage is not None],
            error=error,
            tool_calls=self.saw_tool_calls,
            rejection=self.rejection,
        )

    async def _close(self) -> None:
        """Every upstream task cancelled and awaited, every stream closed."""
        for a in self.attempts.values():
            if a.span is not None:
                Tracing.end_attempt(a.span, "abandoned")
        if self.timer is not None:
            self.timer.cancel()
        self.deadline.stop()
        tasks = [a.task for a in self.attempts.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        pending = [*tasks, *self.cancelled]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for a in self.attempts.values():   # done or suspended now: closing is idempotent
            if a.pumped is None:
                continue
            try:
                await a.pumped.close()
            except Exception:
                log.exception("provider_close_failed")


def run_race(plan: RoutePlan, request: TierRequest, providers: Mapping[str, Provider],
             health: HealthObserver, hedging: Hedging | None = None,
             tracing: Tracing | None = None, turn_span: Any = None
             ) -> AsyncGenerator[TextOut | SwitchOut | RaceResult, None]:
    """Yield text and switches as they happen, then one RaceResult."""
    return _Driver(plan, request, providers, health, hedging, tracing, turn_span).run()
