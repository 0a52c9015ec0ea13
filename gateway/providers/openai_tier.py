"""The OpenAI tier: the paid backup, over the same streaming client as on-prem.

The openai SDK was the first client here; bench.tiers measured it at about three
times the gateway CPU per streamed request of the aiohttp path (httpx plus a
pydantic model per chunk), which made every failover slower than the backup
itself. The wire protocol is the same as vLLM's, so the same code serves both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import aiohttp

from gateway.config import OpenAIConfig
from gateway.logs import get_logger
from gateway.providers.base import Delta, StreamEvent, TierRequest
from gateway.providers.completions import CompletionsClient
from gateway.security.pii import Redactor, Restorer, redact_messages

log = get_logger("scout.openai")

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def base_url(config: OpenAIConfig) -> str:
    return (config.base_url or DEFAULT_BASE_URL).rstrip("/")


class OpenAIProvider:
    tier = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        self.config = config
        self.model = config.model
        self._url = f"{base_url(config)}/chat/completions"
        # Its own pool: OpenAI's connections must not queue behind the GPU box's limit.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30,
                                           enable_cleanup_closed=True))
        # The race owns the deadlines; this only bounds a connection nobody is racing.
        self._client = CompletionsClient(
            self._session, "OpenAI", config.model,
            config.api_key.get() if config.api_key else None,
            aiohttp.ClientTimeout(total=None, sock_connect=config.timeout_s,
                                  sock_read=config.timeout_s))

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        # Personal data never leaves the building: typed placeholders go out, and the
        # values are put back into the answer where it quotes them.
        redactor = Redactor()
        messages = redact_messages(request.upstream_messages(), redactor)
        events = self._client.stream(self._url, request, messages)
        if not redactor.values:
            async with aclosing(events):
                async for ev in events:
                    yield ev
            return
        log.info("pii_redacted", count=len(redactor.values),
                 kinds=",".join(sorted({p[1:].split("_")[0] for p in redactor.values})))
        restorer = Restorer(redactor.values)
        last_model = self.model
        async with aclosing(events):
            async for ev in events:
                if not isinstance(ev, Delta):
                    yield ev
                    continue
                last_model = ev.model
                text = restorer.feed(ev.text) if ev.text else ""
                if ev.finish_reason:
                    text += restorer.flush()
                if text or ev.tool_calls or ev.finish_reason:
                    yield Delta(text, ev.model, ev.tool_calls, ev.finish_reason)
        if tail := restorer.flush():  # a stream that ended without a finish_reason
            yield Delta(tail, last_model)

    async def close(self) -> None:
        await self._session.close()
