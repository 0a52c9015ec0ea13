"""The on-prem tier: vLLM / llama.cpp behind the GPU box's nginx, over the tailnet."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import aclosing

import aiohttp

from gateway.config import OnpremConfig
from gateway.providers.base import StreamEvent, TierRequest
from gateway.providers.completions import CompletionsClient


class OnpremProvider:
    """Streams over the app's pooled upstream session.

    aiohttp's 300 s total timeout is switched off: the race enforces the plan's
    deadlines and cancels this stream, which closes its connection so the GPU
    stops generating.
    """

    tier = "onprem"

    def __init__(self, config: OnpremConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.model = config.model
        self._client = CompletionsClient(
            session, "on-prem", config.model,
            config.api_key.get() if config.api_key else None,
            aiohttp.ClientTimeout(total=None, sock_read=None))
        self._in_flight = dict.fromkeys(config.urls, 0)
        self._order = itertools.count()

    def _pick_url(self) -> str:
        # Least in flight, round-robin among equals; with nginx there is one URL.
        tick = next(self._order)
        urls = list(self._in_flight)
        return min(urls, key=lambda u: (self._in_flight[u], (urls.index(u) - tick) % len(urls)))

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        url = self._pick_url()
        self._in_flight[url] += 1
        try:
            events = self._client.stream(f"{url}/v1/chat/completions", request,
                                         request.upstream_messages())
            async with aclosing(events) as evs:
                async for ev in evs:
                    yield ev
        finally:
            self._in_flight[url] -= 1

    async def close(self) -> None:
        """The shared ClientSession is closed by the app's cleanup context."""
