"""How the driver reads its attempts' streams: a pump task per attempt feeding one inbox,
the hand-back that lets the driver read a lone winner itself (the fast path), and that
path's deadline, which cuts a read as asyncio.timeout would.

Where this sits in a turn: docs/design.md, "One turn".
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway.errors import TierError, TierUnavailable
from gateway.logs import get_logger
from gateway.routing.race import Race

log = get_logger("scout.race")


class Finished:
    """The provider's stream ended normally."""


FINISHED = Finished()
TICK = object()
HANDED = object()   # the pump stopped and left its stream to the driver (the fast path)


class Inbox:
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


class Pumped:
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


class Deadline:
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

    def before_read(self) -> None:
        """A read is about to start: arm the deadline, or cut the read if it passed."""
        if self.due:
            self.passed_while_away()
        else:
            self.arm()
        self.reading = True

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


async def pump(aid: int, pumped: Pumped, tier: str,
                queue: Inbox) -> None:
    try:
        async for ev in pumped.stream:
            queue.put_nowait((aid, ev))
            if pumped.hand_back:   # the driver reads the rest itself: no close, no aclose
                queue.put_nowait((aid, HANDED))
                return
        queue.put_nowait((aid, FINISHED))
    except TierError as exc:
        queue.put_nowait((aid, exc))
    except Exception as exc:  # a bug in a provider must cost one tier, not the turn
        queue.put_nowait((aid, bug(tier, exc)))


def bug(tier: str, exc: Exception) -> TierError:
    log.exception("provider_bug", tier=tier)
    return TierUnavailable(f"internal error ({exc.__class__.__name__})")
