"""The app factory: `create_app(settings)` wires everything and does no I/O itself."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.api import chat_sse, openai_api, ops
from gateway.api.errors import error_middleware
from gateway.appkeys import CACHE, CHAT, HEALTH, PROVIDERS, SETTINGS, UPSTREAM_SESSION
from gateway.cache.store import MemoryCache, ResponseCache
from gateway.chat import ChatService
from gateway.config import Settings
from gateway.health.local import LocalHealth
from gateway.providers.base import Provider
from gateway.providers.cache_tier import CacheProvider
from gateway.providers.onprem import OnpremProvider
from gateway.providers.openai_tier import OpenAIProvider
from gateway.providers.static import StaticProvider


def create_app(settings: Settings, *, cache: ResponseCache | None = None) -> web.Application:
    # Bodies are read by the handlers themselves, up to the configured cap, so an
    # oversized body gets an error naming the limit instead of aiohttp's plain 413.
    app = web.Application(middlewares=[error_middleware],
                          client_max_size=settings.server.max_body_bytes + 1024)
    app[SETTINGS] = settings
    app[HEALTH] = LocalHealth(ttl_s=settings.server.passive_health_ttl_s)
    app[CACHE] = cache if cache is not None else MemoryCache(settings.cache.max_entries)
    app.cleanup_ctx.append(_upstream_session)
    app.cleanup_ctx.append(_providers)
    app.router.add_post("/v1/chat/completions", openai_api.chat_completions)
    app.router.add_get("/v1/models", openai_api.list_models)
    app.router.add_post("/api/chat", chat_sse.chat_sse)
    app.router.add_get("/health", ops.health)
    return app


async def _upstream_session(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(limit=settings.onprem.max_connections,
                                     keepalive_timeout=30, enable_cleanup_closed=True)
    # No total timeout: each stream is bounded by its plan's deadlines instead.
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=None)) as session:
        app[UPSTREAM_SESSION] = session
        yield


async def _providers(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    providers: dict[str, Provider] = {"static": StaticProvider(),
                                      "cache": CacheProvider(app[CACHE])}
    if settings.onprem.enabled:
        providers["onprem"] = OnpremProvider(settings.onprem, app[UPSTREAM_SESSION])
    if settings.openai.enabled:
        providers["openai"] = OpenAIProvider(settings.openai)
    app[PROVIDERS] = providers
    app[CHAT] = ChatService(settings, providers, app[HEALTH], app[CACHE])
    try:
        yield
    finally:
        for provider in providers.values():
            await provider.close()


