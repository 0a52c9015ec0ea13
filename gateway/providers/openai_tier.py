"""The OpenAI tier: the paid backup, over the same streaming client as on-prem.

The openai SDK was the first client here; bench.tiers measured it at about three
times the gateway CPU per streamed request of the aiohttp path (httpx plus a
pydantic model per chunk), which made every failover slower than the backup
itself. The wire protocol is the same as vLLM's, so the same code serves both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import ClassVar

import aiohttp
from pydantic import PrivateAttr, ValidationInfo, model_validator

from gateway.config.base import Flag, HealthConfig, Seconds, TierConfig, context_of
from gateway.health.probes import Verdict, probe_openai
from gateway.providers.base import StreamEvent, TierRequest
from gateway.providers.completions import CompletionsClient
from gateway.security.upstream_keys import KeySource
from gateway.tiers import ProbeTarget, Targets, TierContext, TierSpec

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIConfig(TierConfig):
    """`openai:` — the paid backup. Private intents never reach it."""

    section: ClassVar[str] = "openai"
    key_required: ClassVar[bool] = True

    model: str = "gpt-4o-mini"
    api_key_env: str | None = "OPENAI_API_KEY"
    base_url: str | None = None     # OPENAI_BASE_URL overrides
    supports_tools: Flag = True
    supports_response_format: Flag = True
    timeout_s: Seconds = 60.0
    propagate_trace: Flag = False   # send traceparent to OpenAI too (tracing on)
    _base: str = PrivateAttr(default=DEFAULT_BASE_URL)

    @model_validator(mode="after")
    def _resolve_base(self, info: ValidationInfo) -> OpenAIConfig:
        env = context_of(info).env
        self._base = (env.get("OPENAI_BASE_URL") or self.base_url or DEFAULT_BASE_URL).rstrip("/")
        return self


    @property
    def api_base(self) -> str:
        """The API's base URL: OPENAI_BASE_URL, else base_url, else OpenAI's own."""
        return self._base


class OpenAIProvider:
    tier = "openai"

    def __init__(self, config: OpenAIConfig, keys: KeySource | None = None,
                 trace_configs: list[aiohttp.TraceConfig] | None = None) -> None:
        self.config = config
        self.model = config.model
        self._url = f"{config.api_base}/chat/completions"
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
                                  sock_read=config.timeout_s),
            token_field="max_completion_tokens", send_user=True)

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        # Privacy (refusal, redaction, restoring) is OffsiteGuard's, around every off-site tier.
        async with aclosing(self._client.stream(self._url, request,
                                                request.upstream_messages())) as events:
            async for ev in events:
                yield ev

    async def close(self) -> None:
        await self._session.close()


def _targets(cfg: TierConfig) -> Targets:
    assert isinstance(cfg, OpenAIConfig)

    async def models(session: aiohttp.ClientSession, key: str | None,
                     h: HealthConfig) -> Verdict:
        return await probe_openai(session, cfg.api_base, cfg.model, key, h.timeout_s)
    return Targets((ProbeTarget("openai", "api", models),))


def _provider(ctx: TierContext) -> OpenAIProvider:
    cfg = ctx.settings.tiers["openai"]
    assert isinstance(cfg, OpenAIConfig)
    return OpenAIProvider(cfg, ctx.keys, ctx.trace_configs if cfg.propagate_trace else [])


TIER = TierSpec(
    name="openai", label="OpenAI", color="#d29922", generative=True, offsite=True,
    config=OpenAIConfig, provider=_provider, targets=_targets, gen_ai_system="openai",
    hints={"misconfigured": "set a valid OPENAI_API_KEY and check openai.model",
           "unavailable": "check outbound HTTPS to the OpenAI API"})
