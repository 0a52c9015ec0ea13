"""Scripted fake providers for driving the race without sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.providers.base import HEADERS, Delta, StreamEvent, TierRequest, Usage


class ScriptedProvider:
    """Plays a script: ("headers",), ("text", s), ("sleep", sec), ("hang",), ("raise", exc),
    ("usage", p, c). Records what it was asked and whether its stream was closed."""

    def __init__(self, tier: str, script: list[tuple[Any, ...]], model: str | None = None):
        self.tier = tier
        self.model = model or f"{tier}-model"
        self.script = script
        self.requests: list[TierRequest] = []
        self.closed = 0
        self.cancelled = 0
        self.text_read_by: list[asyncio.Task[Any] | None] = []  # the task that read each text
        self.hanging = asyncio.Event()   # set when a "hang" step starts

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        try:
            for step in self.script:
                kind = step[0]
                if kind == "headers":
                    yield HEADERS
                elif kind == "text":
                    self.text_read_by.append(asyncio.current_task())
                    yield Delta(step[1], self.model)
                elif kind == "sleep":
                    await asyncio.sleep(step[1])
                elif kind == "hang":
                    self.hanging.set()
                    await asyncio.Event().wait()
                elif kind == "raise":
                    raise step[1]
                elif kind == "usage":
                    yield Usage(step[1], step[2])
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.closed += 1

    async def close(self) -> None:
        pass


class Observer:
    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []
        self.successes: list[str] = []

    def observe_failure(self, tier: str, kind: str, reason: str) -> None:
        self.failures.append((tier, kind))

    def observe_success(self, tier: str) -> None:
        self.successes.append(tier)
