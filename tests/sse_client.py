"""Reading SSE responses in tests."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from gateway.sse import SSEDecoder


async def read_events(resp: aiohttp.ClientResponse) -> list[tuple[str, Any]]:
    decoder = SSEDecoder()
    events: list[tuple[str, Any]] = []
    async for chunk in resp.content.iter_any():
        for ev in decoder.feed(chunk):
            events.append((ev.event, orjson.loads(ev.data) if ev.data != "[DONE]" else "[DONE]"))
    return events
