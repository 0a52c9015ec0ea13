"""Session turns that outlive their connection, so an answer is never lost.

The OpenAI API is stateless: there a client that goes away cancels the
upstream at once. A session turn (SSE or WebSocket) instead runs in a task of
its own; connections only *listen* to it. A listener buffers at most a set
number of bytes: a client that reads too slowly is cut off from that turn
(it can resume later) instead of making the gateway buffer without bound.

While a turn streams, its deltas go to a Redis stream under its message id as they come
(one XADD per batch: text that arrives while a write is in flight goes in the next), and
the whole answer is saved when it ends, so a client that reconnects — to this process or
another — gets the rest (`resume`): another gateway follows the stream with XREAD BLOCK,
so it sees each new piece as soon as it is written, with no polling and no rewrite of the
whole text. A turn cancelled by a dead peer or by shutdown is saved as `interrupted` with
what it had.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from gateway.chat import ChatService, Started, Turn, TurnEvent, TurnOutcome
from gateway.logs import get_logger
from gateway.routing.driver import SwitchOut, TextOut
from gateway.sessions import SessionStore

log = get_logger("scout.turns")

class Answering:
    """Chats being answered in this process, on every path (OpenAI API, SSE, WebSocket):
    what a drain waits for before it stops listening."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self._idle.clear()

    def __exit__(self, *_: object) -> None:
        self.count -= 1
        if not self.count:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until none is being answered, up to the timeout; True if none is left."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


class TurnEnd:
    """The turn is over: no more events."""


class Overflow:
    """The listener fell more than its byte budget behind."""


END = TurnEnd()
OVERFLOW = Overflow()


class Listener:
    """One connection's view of a turn: a queue bounded in bytes, not in events."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.buffered = 0
        self.overflowed = False
        self._queue: asyncio.Queue[TurnEvent | TurnEnd | Overflow] = asyncio.Queue()

    def push(self, ev: TurnEvent | TurnEnd) -> None:
        if self.overflowed:
            return
        if isinstance(ev, TextOut):
            if self.buffered + len(ev.text) > self.limit:
                self.overflowed = True
                self._queue.put_nowait(OVERFLOW)
                return
            self.buffered += len(ev.text)
        self._queue.put_nowait(ev)

    async def get(self) -> TurnEvent | TurnEnd | Overflow:
        ev = await self._queue.get()
        if isinstance(ev, TextOut):
            self.buffered -= len(ev.text)
        return ev


@dataclass
class LiveTurn:
    turn: Turn
    sid: str
    started: Started | None = None
    parts: list[str] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    unwritten: list[str] = field(default_factory=list)   # deltas not yet in the stream
    replaced: SwitchOut | None = None   # a restart not yet in the stream (before unwritten)
    writer: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


class TurnRunner:
    def __init__(self, chat: ChatService, sessions: SessionStore) -> None:
        self.chat = chat
        self.sessions = sessions
        self.live: dict[tuple[str, str], LiveTurn] = {}
        self._seen: dict[str, float] = {}  # session → its last turn

    def active_sessions(self, window_s: float = 600.0) -> int:
        """Sessions with a turn in the last `window_s` (this process)."""
        horizon = time.monotonic() - window_s
        for sid in [s for s, at in self._seen.items() if at < horizon]:
            del self._seen[sid]
        return len(self._seen)

    def start(self, turn: Turn, sid: str, user_message: dict[str, Any],
              limit_bytes: int) -> tuple[LiveTurn, Listener]:
        live = LiveTurn(turn, sid)
        self._seen[sid] = time.monotonic()
        listener = Listener(limit_bytes)
        live.listeners.append(listener)
        self.live[(sid, turn.id)] = live
        live.task = asyncio.get_running_loop().create_task(self._run(live, user_message))
        return live, listener

    def attach(self, sid: str, msg_id: str, limit_bytes: int) -> tuple[LiveTurn, Listener] | None:
        """Listen to a turn still running here, starting with everything said so far."""
        live = self.live.get((sid, msg_id))
        if live is None:
            return None
        listener = Listener(max(limit_bytes, len(live.text) + 1))
        if live.started is not None:
            listener.push(live.started)
        if live.parts:
            listener.push(TextOut(live.text, "replay", ""))
        live.listeners.append(listener)
        return live, listener

    def cancel(self, live: LiveTurn) -> None:
        if live.task is not None:
            live.task.cancel()

    async def _run(self, live: LiveTurn, user_message: dict[str, Any]) -> None:
        outcome: TurnOutcome | None = None
        turn = live.turn
        try:
            await self.sessions.save_answer(live.sid, turn.id, {"id": turn.id,
                                                                "status": "streaming"})
            async with aclosing(self.chat.run(turn)) as events:
                async for ev in events:
                    if isinstance(ev, Started):
                        live.started = ev
                    elif isinstance(ev, TextOut):
                        live.parts.append(ev.text)
                        self._write(live, ev.text)
                    elif isinstance(ev, SwitchOut) and ev.replace is not None:
                        live.parts = [ev.replace]   # the new answer replaces the partial one
                        live.unwritten, live.replaced = [], ev
                        self._write(live, "")
                    elif isinstance(ev, TurnOutcome):
                        outcome = ev
                    for listener in live.listeners:
                        listener.push(ev)
        finally:
            for listener in live.listeners:
                listener.push(END)
            self.live.pop((live.sid, turn.id), None)
            # Shielded: a cancelled turn (dead peer, shutdown) still records what it had.
            await asyncio.shield(self._record(live, user_message, outcome))

    def _write(self, live: LiveTurn, text: str) -> None:
        """Queue a delta for the stream; one writer per turn, never awaited by the turn."""
        if text:
            live.unwritten.append(text)
        elif live.replaced is None:
            return
        if live.writer is None or live.writer.done():
            live.writer = asyncio.get_running_loop().create_task(self._drain(live))

    async def _drain(self, live: LiveTurn) -> None:
        while live.unwritten or live.replaced is not None:
            batch, live.unwritten, replaced = live.unwritten, [], live.replaced
            live.replaced = None
            if replaced is not None:
                await self.sessions.stream_replace(live.sid, live.turn.id, replaced.replace or "",
                                                   replaced.to_tier, replaced.reason)
            if batch:
                await self.sessions.stream_text(live.sid, live.turn.id, ["".join(batch)])

    async def _record(self, live: LiveTurn, user_message: dict[str, Any],
                      outcome: TurnOutcome | None) -> None:
        record: dict[str, Any] = {"id": live.turn.id, "text": live.text}
        if outcome is not None and outcome.complete:
            record.update(status="done", done=outcome.done_event())
            await self.sessions.append(live.sid, [
                user_message, {"role": "assistant", "content": outcome.text}])
        else:
            record.update(status="interrupted",
                          reason=outcome.error if outcome else "cancelled before it finished")
        if live.writer is not None:
            await live.writer          # every delta is in the stream before its end
        await self._drain(live)
        await self.sessions.stream_end(live.sid, live.turn.id, record)
        await self.sessions.save_answer(live.sid, live.turn.id, record)

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no turn is running, up to the timeout; True if none is left."""
        tasks = [live.task for live in self.live.values() if live.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        return not self.live

    async def close(self) -> None:
        tasks = [live.task for live in self.live.values() if live.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
