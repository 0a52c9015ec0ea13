"""The on-prem tier: an OpenAI-compatible streaming client to the GPU box's nginx."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gateway.config import OnpremConfig
from gateway.errors import TierMisconfigured, TierRejectedInput, TierUnavailable
from gateway.providers.base import HEADERS, Delta, StreamEvent, TierRequest, Usage
from gateway.sse import SSEDecoder


def classify_status(status: int, body: str, where: str) -> Exception:
    """Map an upstream HTTP error status to the tier error the race acts on."""
    detail = body.strip().replace("\n", " ")[:200]
    if status in (401, 403):
        return TierMisconfigured(f"{where} refused our API key ({status})")
    if status == 404:
        return TierMisconfigured(f"{where} does not serve the configured model (404: {detail})")
    if status in (400, 413, 422):
        return TierRejectedInput(f"{where} rejected the request ({status}: {detail})")
    return TierUnavailable(f"{where} answered {status}")


class OnpremProvider:
    """Streams from vLLM / llama.cpp behind nginx over pooled keep-alive connections.

    aiohttp's 300 s total timeout is switched off: the race enforces the plan's
    deadlines and cancels this stream, which closes its connection so the GPU
    stops generating.
    """

    tier = "onprem"

    def __init__(self, config: OnpremConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.model = config.model
        self._session = session
        self._in_flight = dict.fromkeys(config.urls, 0)
        self._order = itertools.count()
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key.get()}"
        self._headers = headers

    def _pick_url(self) -> str:
        # Least in flight, round-robin among equals; with nginx there is one URL.
        tick = next(self._order)
        urls = list(self._in_flight)
        return min(urls, key=lambda u: (self._in_flight[u], (urls.index(u) - tick) % len(urls)))

    def _body(self, request: TierRequest) -> bytes:
        body: dict[str, Any] = {
            **request.params,
            "model": self.model,
            "messages": request.upstream_messages(),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = request.tools
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        return orjson.dumps(body)

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        url = self._pick_url()
        self._in_flight[url] += 1
        resp: aiohttp.ClientResponse | None = None
        complete = False
        try:
            try:
                resp = await self._session.post(
                    f"{url}/v1/chat/completions", data=self._body(request), headers=self._headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
            except aiohttp.ClientConnectionError as exc:
                raise TierUnavailable(f"on-prem unreachable: {exc.__class__.__name__}") from None
            if resp.status != 200:
                body = await _read_some(resp)
                raise classify_status(resp.status, body, "on-prem")
            yield HEADERS
            decoder = SSEDecoder()
            try:
                async for chunk in resp.content.iter_any():
                    for ev in decoder.feed(chunk):
                        if ev.data == "[DONE]":
                            complete = True
                            return
                        for out in _parse_chunk(ev.data, self.model):
                            yield out
            except aiohttp.ClientPayloadError as exc:
                raise TierUnavailable(f"on-prem stream broke: {exc.__class__.__name__}") from None
            except aiohttp.ClientConnectionError as exc:
                raise TierUnavailable(f"on-prem connection lost: {exc.__class__.__name__}") from None
            raise TierUnavailable("on-prem stream ended without [DONE]")
        finally:
            self._in_flight[url] -= 1
            if resp is not None:
                if complete:
                    resp.release()  # back to the keep-alive pool
                else:
                    resp.close()    # close the socket so the replica stops generating

    async def close(self) -> None:
        """The shared ClientSession is closed by the app's cleanup context."""


async def _read_some(resp: aiohttp.ClientResponse) -> str:
    try:
        return (await asyncio.wait_for(resp.content.read(2048), 1.0)).decode("utf-8", "replace")
    except (TimeoutError, aiohttp.ClientError):
        return ""


def _parse_chunk(data: str, default_model: str) -> list[StreamEvent]:
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise TierUnavailable("on-prem sent a chunk that is not JSON") from None
    if not isinstance(chunk, dict):
        raise TierUnavailable("on-prem sent a chunk that is not a JSON object")
    if "error" in chunk:
        err = chunk["error"]
        msg = err.get("message", "") if isinstance(err, dict) else str(err)
        raise TierUnavailable(f"on-prem reported an error mid-stream: {str(msg)[:200]}")
    out: list[StreamEvent] = []
    model = chunk.get("model") or default_model
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        tool_calls = delta.get("tool_calls")
        finish = choice.get("finish_reason")
        if text or tool_calls or finish:
            out.append(Delta(text, model, tool_calls, finish))
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        out.append(Usage(int(usage.get("prompt_tokens") or 0),
                         int(usage.get("completion_tokens") or 0)))
    return out
