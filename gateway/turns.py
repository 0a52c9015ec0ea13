"""Session turns that finish even when their client leaves, so the answer can be fetched later.

The OpenAI API is stateless: there a client that goes away cancels the
upstream at once. A session turn (SSE or WebSocket, with a session id)
instead runs in its own task; the handler only listens. When the turn ends,
the conversation is extended and the answer kept under its message id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from typing import Any

from gateway.chat import ChatService, Turn, TurnEvent, TurnOutcome
from gateway.sessions import SessionStore

log = logging.getLogger("scout.turns")

END = None


class TurnRunner:
    def __init__(self, chat: ChatService, sessions: SessionStore) -> None:
        self.chat = chat
        self.sessions = sessions
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, turn: Turn, sid: str, user_message: dict[str, Any]
              ) -> asyncio.Queue[TurnEvent | None]:
        queue: asyncio.Queue[TurnEvent | None] = asyncio.Queue()
        task = asyncio.get_running_loop().create_task(self._run(turn, sid, user_message, queue))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return queue

    async def _run(self, turn: Turn, sid: str, user_message: dict[str, Any],
                   queue: asyncio.Queue[TurnEvent | None]) -> None:
        outcome: TurnOutcome | None = None
        parts: list[str] = []
        try:
            async with aclosing(self.chat.run(turn)) as events:
                async for ev in events:
                    queue.put_nowait(ev)
                    if isinstance(ev, TurnOutcome):
                        outcome = ev
        finally:
            queue.put_nowait(END)
            record: dict[str, Any] = {"id": turn.id, "stored_at": time.time()}
            if outcome is not None and outcome.complete:
                record.update(status="done", text=outcome.text, done=outcome.done_event())
                await self.sessions.append(sid, [
                    user_message, {"role": "assistant", "content": outcome.text}])
            else:
                record.update(status="interrupted", text="".join(parts),
                              reason=outcome.error if outcome else "cancelled")
            await self.sessions.save_answer(sid, turn.id, record)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
