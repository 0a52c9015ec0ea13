"""A gateway (and its two simulators) on a background event loop, for synchronous tests.

Hypothesis drives examples synchronously; each example talks to this gateway over real TCP
from its own loop or plain sockets, so one server serves hundreds of examples.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.app import create_app
from onprem.simulator import Knobs, ReplicaSimulator
from tests.conftest import ONPREM_KEY, OPENAI_KEY, make_settings


class ThreadedGateway:
    def __init__(self, mutate: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.mutate = mutate
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._sims: list[ReplicaSimulator] = []

    def __enter__(self) -> ThreadedGateway:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        fast = {"ttft_s": 0.01, "token_interval_s": 0.002, "tokens": 8}
        self._sims = [await ReplicaSimulator(Knobs(api_key=ONPREM_KEY, **fast)).start(),
                      await ReplicaSimulator(Knobs(model="gpt-4o-mini", api_key=OPENAI_KEY,
                                                   **fast)).start()]
        settings = make_settings([self._sims[0].url], f"{self._sims[1].url}/v1",
                                 mutate=self.mutate)
        self._runner = web.AppRunner(create_app(settings))
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for sim in self._sims:
            await sim.stop()
