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
from gateway.providers.base import StreamEvent, TierRequest
from gateway.providers.completions import CompletionsClient
from gateway.security.upstream_keys import KeySource

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def base_url(config: OpenAIConfig) -> str:
    return (config.base_url or DEFAULT_BASE_URL).rstrip("/")


class OpenAIProvider:
    tier = "openai"

    def __init__(self, config: OpenAIConfig, keys: KeySource | None = None,
                 trace_configs: list[aiohttp.TraceConfig] | None = None) -> None:
        self.config = config
        self.model = config.model
        self._url = f"{base_url(config)}/chat/completions"
        # Its own pool: OpenAI's connections must not queue behind the GPU box's limit.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30,
                                           enable_cleanup_closed=True),
            trace_configs=trace_configs or None)
        # The race owns the deadlines; this only bounds a connection nobody is racing.
        if keys is None and config.api_key:
            keys = KeySource("openai", config.api_key.get())
        self._client = CompletionsClient(
            self._session, "OpenAI", config.model, keys,
            aiohttp.ClientTimeout(total=None, sock_connect=config.timeout_s,
                                  sock_read=config.timeout_s))

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        # Privacy (refusal, redaction, restoring) is OffsiteGuard's, around every off-site tier.
        async with aclosing(self._client.stream(self._url, request,
                                                request.upstream_messages())) as events:
            async for ev in events:
                yield ev

    async def close(self) -> None:
        await self._session.close()
