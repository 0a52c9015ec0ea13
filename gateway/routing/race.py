"""The race between tiers, as a pure state machine.

The driver (`gateway.routing.driver`) feeds it what happened — a tier sent
headers, a token, finished, failed, or time passed — with the current time,
and carries out the actions it returns. No I/O and no clock of its own, so
every branch is tested with plain numbers.

Rules (the README's "How a turn flows", step 4):
- A tier that fails before its first token hands over at once.
- A tier with no response headers by `headers_s` has failed.
- A tier with no token by `first_token_s` is hedged: the next tier starts
  beside it; the first to produce a token wins and every other is cancelled.
- A winner silent for `gap_s`, or dropping mid-stream, is resumed by the next
  tier, asked to continue the partial answer (the cache tier cannot continue
  an answer and is passed over then). What the resumed tier writes is judged
  before it is passed on (`gateway.routing.splice`): the rest of the answer goes
  on, the partial answer said again is trimmed, and an answer of its own replaces
  the partial one (EmitRestart) rather than being glued to it. An answer that
  had sent tool calls is never continued: the next tier starts afresh and its
  answer replaces the partial one.
- Each attempt hands over at most once, so a hedged tier that later fails
  does not start a second replacement.

Where this sits in a turn: docs/design.md, "One turn".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.config import Deadlines
from gateway.routing.splice import Splice, Spliced, Verdict
from gateway.tiers import registry


@dataclass(slots=True)
class Attempt:
    id: int
    tier: str
    started_at: float
    resume: bool
    headers: bool = False
    first_token_at: float | None = None
    last_token_at: float | None = None
    handed_over: bool = False
    active: bool = True
    splice: Splice | None = None   # a resume: its output judged against the partial answer
    restart: bool = False          # a fresh start whose answer replaces what was sent
    finishing: bool = False        # it gave its finish_reason: only usage and the end are left


@dataclass(frozen=True, slots=True)
class StartTier:
    attempt: int
    tier: str
    prefix: str  # the partial answer to continue ("" for a fresh start)


@dataclass(frozen=True, slots=True)
class CancelTier:
    attempt: int
    tier: str
    reason: str
    # It missed its first-token deadline and lost the hedge: for health, that's a failure.
    missed_first_token: bool = False
    missed: str = ""   # the deadline it missed, in words (health counts it as a failure)


# Not frozen: one is made per chunk (why: providers/base.py, Delta).
@dataclass(slots=True)
class EmitText:
    attempt: int
    tier: str
    text: str
    payload: Any = None  # what the driver attached to the token (its Delta)


class SwitchKind(StrEnum):
    """Why an answer moved to another tier, as a bounded label (metrics, traces).
    The switch's `reason` says the same in words, for people."""

    FAILED = "failed"                      # the tier failed before its first token
    HEADERS_DEADLINE = "headers_deadline"  # no response headers in time
    HEDGE = "hedge"                        # no first token in time: a second tier raced
    STALLED = "stalled"                    # the answering tier went silent mid-answer
    DROPPED = "dropped"                    # the answering tier failed mid-answer
    RESTART = "restart"                    # the next tier's answer replaces the partial one


@dataclass(frozen=True, slots=True)
class EmitSwitch:
    from_tier: str
    to_tier: str
    reason: str
    kind: SwitchKind = SwitchKind.FAILED


@dataclass(frozen=True, slots=True)
class EmitRestart:
    """What the customer has is replaced by `text`: the resumed tier answered anew."""

    attempt: int
    tier: str
    text: str
    reason: str
    payload: Any = None


@dataclass(frozen=True, slots=True)
class Finish:
    served_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


Action = StartTier | CancelTier | EmitText | EmitSwitch | EmitRestart | Finish | GiveUp


@dataclass(slots=True)
class RaceStats:
    hedges: list[tuple[str, str]] = field(default_factory=list)   # (slow tier, started tier)
    hedge_winner: str | None = None
    resumes: int = 0
    restarts: int = 0   # resumes whose answer replaced the partial one
    trimmed: int = 0    # resumes that said the partial answer (or its end) again: trimmed
    malformed: dict[str, int] = field(default_factory=dict)   # tier → events skipped


_DIVERGED = "its answer did not continue the one cut off: it replaces it"
_RESTARTED = "the answer had tool calls, which can't be continued: it began again"


class Race:
    def __init__(self, ladder: tuple[str, ...] | list[str], deadlines: Deadlines,
                 hedge_after: Mapping[str, float] | None = None,
                 cannot_continue: frozenset[str] | None = None) -> None:
        if not ladder:
            raise ValueError("a race needs at least one tier")
        self._ladder = tuple(ladder)
        # Tiers a resume skips (a kept answer can't continue a cut one): the registry's.
        self._cannot_continue = registry().cannot_continue() if cannot_continue is None \
            else cannot_continue
        # Per tier, when to hedge it (adaptive: its own tail); first_token_s otherwise.
        self._hedge_after = dict(hedge_after or {})
        self._next = 0
        self._ids = 0
        self.deadlines = deadlines
        self.attempts: dict[int, Attempt] = {}
        self.winner: Attempt | None = None
        self.served_by: list[str] = []
        self.text: list[str] = []
        self.first_token_at: float | None = None
        self.started_at: float | None = None
        self.done = False
        self.called = False   # tool calls were sent: a resume starts afresh
        self.stats = RaceStats()

    # -- inputs -------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        self.started_at = now
        return self._launch(now, None, "")

    def on_headers(self, attempt_id: int, now: float) -> list[Action]:
        a = self._live(attempt_id)
        if a is not None:
            a.headers = True
        return []

    def on_text(self, attempt_id: int, text: str, now: float) -> bool:
        """The common token: more text from the attempt already answering. True when the
        race took it (emit it as on_token's EmitText would be); False when it is anything
        else, for on_token to decide."""
        a = self.attempts.get(attempt_id)
        if a is None or self.winner is not a or not a.active or self.done or not text \
                or (a.splice is not None and not a.splice.settled):
            return False
        a.last_token_at = now
        self.text.append(text)
        return True

    def on_token(self, attempt_id: int, text: str, now: float, payload: Any = None) -> list[Action]:
        """A token arrived: `text`, or a non-text token (a tool call) carried in `payload`."""
        a = self._live(attempt_id)
        if a is None or (not text and payload is None):
            return []
        a.headers = True
        a.last_token_at = now
        calls = getattr(payload, "tool_calls", None) is not None
        if self.winner is a:
            if a.splice is not None and not a.splice.settled:
                return self._spliced(a, a.splice.feed(text), payload, calls)
            self.called |= calls
            self.text.append(text)
            return [EmitText(a.id, a.tier, text, payload)]
        if self.winner is not None:  # cannot happen: losers are cancelled on the first token
            return []
        actions: list[Action] = []
        self.winner = a
        a.first_token_at = now
        if self.first_token_at is None:
            self.first_token_at = now
        self.served_by.append(a.tier)
        if self.stats.hedges and self.stats.hedge_winner is None:
            self.stats.hedge_winner = a.tier
        for other in self.attempts.values():
            if other.active and other is not a:
                other.active = False
                lost = other.handed_over and other.first_token_at is None
                actions.append(CancelTier(
                    other.id, other.tier, f"{a.tier} answered first", lost,
                    f"no first token within {self.first_token_s(other.tier):g} s" if lost
                    else ""))
        if a.restart:
            self.text = [text]
            self.stats.restarts += 1
            actions.append(EmitRestart(a.id, a.tier, text, _RESTARTED, payload))
            self.called = calls
            return actions
        if a.splice is not None:
            return actions + self._spliced(a, a.splice.feed(text), payload, calls)
        self.called |= calls
        self.text.append(text)
        actions.append(EmitText(a.id, a.tier, text, payload))
        return actions

    def on_finish_reason(self, attempt_id: int) -> None:
        """The answering attempt said its answer is whole: silence after that is no stall
        (the provider ends the stream itself if usage and [DONE] don't follow soon)."""
        a = self._live(attempt_id)
        if a is not None and a is self.winner:
            a.finishing = True

    def on_finish(self, attempt_id: int, now: float) -> list[Action]:
        a = self._live(attempt_id)
        if a is None:
            return []
        if self.winner is a:
            a.active = False
            self.done = True
            actions: list[Action] = []
            if a.splice is not None and not a.splice.settled:
                actions = self._spliced(a, a.splice.end(), None, False)
            return [*actions, Finish(tuple(self.served_by))]
        return self.on_failure(attempt_id, "finished without producing any text", now)

    def on_failure(self, attempt_id: int, reason: str, now: float,
                   kind: SwitchKind = SwitchKind.FAILED) -> list[Action]:
        a = self._live(attempt_id)
        if a is None:
            return []
        a.active = False
        if self.winner is a:
            self.winner = None
            self.stats.resumes += 1
            a.handed_over = True
            return self._launch(now, a, f"dropped mid-answer: {reason}",
                                kind if kind is SwitchKind.STALLED else SwitchKind.DROPPED)
        if not a.handed_over:
            a.handed_over = True
            return self._launch(now, a, reason, kind)
        return self._give_up_if_idle(now)

    def on_refusal(self, attempt_id: int, reason: str) -> list[Action]:
        """The tier refused the input for good (its content policy): the turn ends with
        that answer; no other tier is asked, and any still racing are stopped."""
        a = self._live(attempt_id)
        if a is None:
            return []
        a.active = False
        self.done = True
        stop: list[Action] = []
        for o in self.attempts.values():
            if o.active:
                o.active = False
                stop.append(CancelTier(o.id, o.tier, "another tier refused the input"))
        return [*stop, GiveUp(reason)]

    def on_tick(self, now: float) -> list[Action]:
        """Time passed: fire every deadline that is due."""
        d = self.deadlines
        actions: list[Action] = []
        for a in list(self.attempts.values()):
            if not a.active:
                continue
            if not a.headers and now >= a.started_at + d.headers_s:
                actions.append(CancelTier(a.id, a.tier, "headers deadline",
                                          missed=f"no response headers within {d.headers_s:g} s"))
                actions += self.on_failure(a.id, f"no response headers within {d.headers_s:g} s",
                                           now, SwitchKind.HEADERS_DEADLINE)
            elif (a.first_token_at is None and not a.handed_over
                  and now >= a.started_at + self.first_token_s(a.tier)):
                a.handed_over = True
                before = len(self.attempts)
                launched = self._launch(
                    now, a, f"no first token within {self.first_token_s(a.tier):.3g} s; hedging",
                    SwitchKind.HEDGE)
                if len(self.attempts) > before:
                    self.stats.hedges.append((a.tier, self.attempts[self._ids].tier))
                actions += launched
            elif (a is self.winner and a.last_token_at is not None and not a.finishing
                  and now >= a.last_token_at + d.gap_s):
                actions.append(CancelTier(a.id, a.tier, "gap deadline", missed=self.stalled()))
                actions += self.on_failure(a.id, self.stalled(), now,
                                           SwitchKind.STALLED)
        return actions

    # -- queries ------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest moment `on_tick` could do something, or None."""
        d = self.deadlines
        due: list[float] = []
        for a in self.attempts.values():
            if not a.active:
                continue
            if not a.headers:
                due.append(a.started_at + d.headers_s)
            if a.first_token_at is None and not a.handed_over:
                due.append(a.started_at + self.first_token_s(a.tier))
            if a is self.winner and a.last_token_at is not None and not a.finishing:
                due.append(a.last_token_at + d.gap_s)
        return min(due) if due else None

    def stalled(self) -> str:
        """Why an answering tier silent past the gap deadline is cut off, in words."""
        return f"stalled: no token for {self.deadlines.gap_s:g} s"

    def first_token_s(self, tier: str) -> float:
        """When an attempt on `tier` without a first token is hedged."""
        return self._hedge_after.get(tier, self.deadlines.first_token_s)

    # -- internals ----------------------------------------------------------

    def _live(self, attempt_id: int) -> Attempt | None:
        a = self.attempts.get(attempt_id)
        return a if a is not None and a.active and not self.done else None

    def _spliced(self, a: Attempt, s: Spliced, payload: Any, calls: bool) -> list[Action]:
        """A resumed attempt's output, as its splice judged it (called until it settles)."""
        assert a.splice is not None
        if calls and s.verdict is Verdict.PENDING:
            s = a.splice.diverge()   # tool calls from a resume: what came before is its own
        if s.verdict is Verdict.DIVERGED:
            self.text = [s.text]
            self.stats.restarts += 1
            self.called = calls
            return [EmitRestart(a.id, a.tier, s.text, _DIVERGED, payload)]
        if s.verdict is not Verdict.PENDING and a.splice.trimmed:
            self.stats.trimmed += 1
        self.called |= calls
        if not s.text and not calls:
            return []
        self.text.append(s.text)
        return [EmitText(a.id, a.tier, s.text, payload)]

    def _launch(self, now: float, source: Attempt | None, reason: str,
                kind: SwitchKind = SwitchKind.FAILED) -> list[Action]:
        resume = bool(self.text) and not self.called
        restart = self.called   # tool calls can't be continued: start afresh, replace them
        while self._next < len(self._ladder):
            tier = self._ladder[self._next]
            self._next += 1
            if resume and tier in self._cannot_continue:
                continue
            self._ids += 1
            prefix = "".join(self.text) if resume else ""
            a = Attempt(self._ids, tier, now, resume or restart,
                        splice=Splice(prefix) if resume else None, restart=restart)
            self.attempts[a.id] = a
            actions: list[Action] = []
            if source is not None:
                actions.append(EmitSwitch(source.tier, tier, reason, kind))
            actions.append(StartTier(a.id, tier, prefix))
            return actions
        return self._give_up_if_idle(now)

    def _give_up_if_idle(self, now: float) -> list[Action]:
        if self.done or any(a.active for a in self.attempts.values()):
            return []
        if self._next < len(self._ladder):  # defensive: every hand-over already launches
            return self._launch(now, None, "")
        self.done = True
        return [GiveUp("every tier failed")]
