"""The app factory: `create_app(settings)` wires everything and does no I/O itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiohttp_cors
from aiohttp import web
from opentelemetry.trace import TracerProvider

from gateway import tracing
from gateway.accounting import recorder
from gateway.api import auth, chat_sse, dashboard, openai_api, ops, responses, ws
from gateway.api.auth import auth_middleware
from gateway.api.errors import error_middleware
from gateway.appkeys import (
    ANSWERING,
    API_KEYS,
    CACHE,
    CHAT,
    CLIENT_ADDRESSES,
    DRAINING,
    HEALTH,
    INVENTORY,
    METRICS,
    PROVIDERS,
    RATE_LIMITER,
    REDIS,
    SESSIONS,
    SETTINGS,
    SIGNER,
    SIGNING_SECRET,
    SOCKETS,
    STAFF_KEYS,
    STATS,
    STORE,
    TRACING,
    TURNS,
    UPSTREAM_KEYS,
    UPSTREAM_SESSION,
)
from gateway.cache.stampede import Stampede
from gateway.cache.store import AnswerCache
from gateway.chat import ChatService
from gateway.config import Settings
from gateway.health.incidents import Webhook
from gateway.health.monitor import HealthMonitor
from gateway.inventory.tier import InventoryProvider
from gateway.language.intents import IntentClassifier
from gateway.logs import get_logger, install_filters
from gateway.metrics import Metrics, multiprocess_dir
from gateway.providers.base import Provider
from gateway.providers.offsite import OffsiteGuard
from gateway.security.api_keys import ApiKeys
from gateway.security.ratelimit import RateLimiter, shared_storage
from gateway.security.remote import ClientAddresses
from gateway.security.tokens import TokenSigner
from gateway.security.upstream_keys import KeySource
from gateway.sessions import SessionIds, SessionStore
from gateway.state.kv import KV, MemoryKV, RedisKV
from gateway.state.redis_link import RedisLink
from gateway.stats import Stats
from gateway.tiers import TierContext, registry
from gateway.turns import Answering, TurnRunner

log = get_logger("scout.app")
STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: Settings, *, store: KV | None = None,
               tracer_provider: TracerProvider | None = None) -> web.Application:
    """Build the app; `store` replaces the configured shared state, `tracer_provider` the
    OTEL_*-configured one (tests)."""
    install_filters()
    if tracer_provider is None and tracing.wanted():
        tracer_provider = tracing.default_provider()
    traces = tracing.Tracing(tracer_provider, tracing.capture_content())
    # Bodies are read by the handlers themselves, up to the configured cap, so an
    # oversized body gets an error naming the limit instead of aiohttp's plain 413.
    addresses = ClientAddresses(settings.server.trusted_proxies)
    middlewares = [error_middleware, addresses.middleware, auth_middleware]
    if traces.enabled:
        middlewares.insert(0, traces.server_middleware())
    app = web.Application(middlewares=middlewares,
                          client_max_size=settings.server.max_body_bytes + 1024)
    app[SETTINGS] = settings
    app[TRACING] = traces
    app[CLIENT_ADDRESSES] = addresses
    app[DRAINING] = asyncio.Event()
    app[ANSWERING] = Answering()
    app[METRICS] = Metrics()
    app[SOCKETS] = set()
    app.on_shutdown.append(ws.drain)
    app.cleanup_ctx.append(_security)
    app.cleanup_ctx.append(lambda app: _shared_state(app, store))
    app.cleanup_ctx.append(_upstream_session)
    app.cleanup_ctx.append(_services)
    app.add_routes([   # the chat APIs: OpenAI's, SSE (and its kept answers), the WebSocket
        web.post("/v1/chat/completions", openai_api.chat_completions),
        web.post("/v1/responses", responses.responses),
        web.get("/v1/models", openai_api.list_models),
        web.get("/v1/models/{model:.+}", openai_api.retrieve_model),
        web.post("/api/chat", chat_sse.chat_sse), web.post("/api/chat/answer", chat_sse.fetch_answer),
        web.get("/ws/chat", ws.ws_chat), web.post("/api/ws-token", auth.ws_token),
        web.get("/api/demo-token", auth.demo_token), web.get("/chat", ops.chat_page),
        web.static("/static/", STATIC_DIR, append_version=False)])
    if settings.auth.demo_tokens:   # the demo: its root is the chat page
        app.router.add_get("/", auth.to_chat_page)
    app.add_routes([   # for ops and staff
        web.get("/health", ops.health), web.get("/livez", ops.livez), web.get("/readyz", ops.readyz),
        web.get("/openapi.json", ops.openapi), web.get("/metrics", ops.metrics),
        web.get("/dashboard", dashboard.page), web.post("/dashboard/login", dashboard.login),
        web.get("/dashboard/logout", dashboard.logout), web.get("/dashboard/data", dashboard.data),
        web.get("/dashboard/stream", dashboard.stream)])
    _cors(app, settings.auth.allowed_origins)
    return app


# Endpoints a browser on a configured origin may call directly, and what it may send and read.
CORS_ROUTES = ("/v1/chat/completions", "/v1/responses", "/v1/models", "/v1/models/{model}",
               "/api/chat",
               "/api/chat/answer", "/api/ws-token")
CORS_OPTIONS = aiohttp_cors.ResourceOptions(
    allow_credentials=False,  # keys travel in headers, never in cookies
    allow_headers=("Authorization", "Content-Type", "X-API-Key"),
    expose_headers=("Retry-After", "X-Scout-Intent", "X-Scout-Turn", "X-Scout-Served-By"),
    allow_methods=("GET", "POST"), max_age=600)


def _cors(app: web.Application, origins: tuple[str, ...]) -> None:
    """CORS for the configured origins only; any other origin gets no CORS headers."""
    cors = aiohttp_cors.setup(app, defaults={origin: CORS_OPTIONS for origin in origins})
    for resource in app.router.resources():
        if resource.canonical in CORS_ROUTES:
            cors.add(resource)


async def _refresh_gauges(app: web.Application) -> None:
    while True:
        ops.refresh_gauges(app)
        await asyncio.sleep(2)


async def _stop(task: asyncio.Task[None] | None, within_s: float = 10.0) -> None:
    """Cancel a background task and wait for it to finish (cleanup contexts, on exit).

    A task that had already died of an error is logged, not re-raised: the cleanup that
    called this goes on to close everything else. One that is still running `within_s`
    after the first cancel is logged by name and left: the rest of the cleanup goes on, and
    the log says which task a supervisor's kill ended."""
    if task is None:
        return
    # Cancelled again each second it outlives: a library call that swallowed the first
    # cancellation (Python 3.11's wait_for does, when its operation ends at that moment)
    # would otherwise leave it looping, and the process never exits on SIGTERM.
    deadline = asyncio.get_running_loop().time() + within_s
    while not task.done():
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            log.error("background_task_ignores_cancel", task=task.get_name(),
                      waited_s=within_s)
            return
        task.cancel()
        await asyncio.wait({task}, timeout=min(1.0, left))
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception as exc:
        log.error("background_task_failed", task=task.get_name(),
                  error=f"{exc.__class__.__name__}: {exc}"[:200])


async def _security(app: web.Application) -> AsyncIterator[None]:
    auth_cfg = app[SETTINGS].auth
    app[API_KEYS] = ApiKeys(auth_cfg.api_keys.get() if auth_cfg.api_keys else None,
                            auth_cfg.api_keys_file)
    app[STAFF_KEYS] = ApiKeys(auth_cfg.staff_keys.get() if auth_cfg.staff_keys else None)
    secret = auth_cfg.signing_secret.get().encode() if auth_cfg.signing_secret else \
        secrets.token_bytes(32)
    app[SIGNER] = TokenSigner(secret)
    app[SIGNING_SECRET] = secret
    settings = app[SETTINGS]
    app[UPSTREAM_KEYS] = {
        tier: KeySource(tier, cfg.api_key.get(), cfg.watch_file, cfg.rotated_at)
        for tier, cfg in settings.tiers.items() if cfg.enabled and cfg.api_key}
    max_age_s = auth_cfg.key_max_age_days * 86400

    async def watch_key_files() -> None:
        while True:
            app[API_KEYS].reload_if_changed()
            for keys in app[UPSTREAM_KEYS].values():
                keys.reload_if_changed()
                keys.check_age(max_age_s)
            await asyncio.sleep(2)

    watcher = asyncio.get_running_loop().create_task(watch_key_files())
    try:
        yield
    finally:
        await _stop(watcher)


async def _shared_state(app: web.Application, store: KV | None) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    link: RedisLink | None = None
    r = settings.redis
    if store is None and r.sentinels:
        link = RedisLink.sentinel_master(
            list(r.sentinels), r.sentinel_master, r.password.get() if r.password else None,
            r.sentinel_password.get() if r.sentinel_password else None, r.db, r.timeout_s)
    elif store is None and r.url is not None:
        link = RedisLink(r.url.get(), r.timeout_s)
    if link is not None:
        app[REDIS] = link
        store = RedisKV(link)
        await link.ping()  # one bounded attempt: a missing Redis never delays startup
        log.info("store", backend="redis", where=link.where, state=link.state)
    elif store is None:
        store = MemoryKV(max_keys=settings.cache.max_entries * 4)
        log.info("store", backend="memory",
                 note="no Redis configured: state is this process's own")
    app[STORE] = store
    app[CACHE] = AnswerCache(store)
    app[STATS] = Stats(store, process_id=f"{os.getpid()}-{secrets.token_hex(3)}")
    app[HEALTH] = HealthMonitor(settings, store, app[STATS], (lambda: link.up) if link else None,
                                keys=app[UPSTREAM_KEYS])
    app[SESSIONS] = SessionStore(store, settings.sessions, SessionIds(app[SIGNING_SECRET]))
    rl = settings.rate_limits
    app[RATE_LIMITER] = RateLimiter(rl.per_key, rl.per_ip, rl.streams_per_key, rl.streams_per_ip,
                                    link, shared_storage(r) if link is not None else None,
                                    per_user=rl.per_user, streams_per_user=rl.streams_per_user)
    monitor = asyncio.get_running_loop().create_task(link.monitor()) if link else None
    try:
        yield
    finally:
        await _stop(monitor)
        await app[RATE_LIMITER].aclose()
        if link is not None:
            await link.close()


async def _upstream_session(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Sized by the tiers that use the shared pool (on-prem's max_connections).
    limit = max((getattr(c, "max_connections", 0) for c in settings.tiers.values()), default=0)
    connector = aiohttp.TCPConnector(limit=limit or 100,
                                     keepalive_timeout=30, enable_cleanup_closed=True)
    # No total timeout: each stream is bounded by its plan's deadlines instead.
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=None),
                                     trace_configs=app[TRACING].client_trace_configs()
                                     ) as session:
        app[UPSTREAM_SESSION] = session
        yield


async def _services(app: web.Application) -> AsyncIterator[None]:
    # Everything opened here is closed on the way out, in reverse order, each step even
    # when an earlier one raised: one exit stack, not a `finally` that stops at the first
    # error.
    async with contextlib.AsyncExitStack() as stack:
        await _open_services(app, stack)
        yield


async def _open_services(app: web.Application, stack: contextlib.AsyncExitStack) -> None:
    settings = app[SETTINGS]
    providers: dict[str, Provider] = {}
    for spec in registry().all():   # each enabled tier, built (or opened) from its spec
        if spec.name not in settings.enabled_tiers() or not spec.builds:
            continue
        providers[spec.name] = provider = await spec.build(TierContext(
            settings, app[UPSTREAM_SESSION], keys=app[UPSTREAM_KEYS].get(spec.name),
            health=app[HEALTH], trace_configs=app[TRACING].client_trace_configs(),
            cache=app[CACHE], store=app[STORE]))
        stack.push_async_callback(provider.close)
    # The inventory tier's stock also grounds the models' turns in what is on the lot.
    inventory = next((p.inventory for p in providers.values()
                      if isinstance(p, InventoryProvider)), None)
    if inventory is not None:
        app[INVENTORY] = inventory
    classifier = IntentClassifier.for_settings(settings)
    metrics, stats = app[METRICS], app[STATS]

    def audit(intent: str, redacted: dict[str, int]) -> None:
        metrics.offsite_turns.labels(intent).inc()
        stats.add_day({f"offsite:{intent}": 1, **{f"pii:{k}": n for k, n in redacted.items()}})
        for kind, n in redacted.items():
            metrics.pii_redacted.labels(kind).inc(n)

    for tier in registry().offsite() & providers.keys():  # privacy by construction, for each
        providers[tier] = OffsiteGuard(providers[tier], classifier, settings.privacy.redact,
                                       audit, settings.server.system_prompt,
                                       settings.privacy.business_phones)
    app[PROVIDERS] = providers
    stampede = Stampede(app[STORE], app[CACHE], settings.cache.stampede_wait_s)
    monitor = app[HEALTH]
    app[CHAT] = ChatService(settings, providers, monitor, app[CACHE], stampede, app[TRACING],
                            inventory)
    app[TURNS] = TurnRunner(app[CHAT], app[SESSIONS])
    stack.push_async_callback(app[TURNS].close)
    app[CHAT].observers.append(recorder(settings, app[METRICS], app[STATS]))
    app[STATS].gauge_sources.update(ws=lambda: len(app[SOCKETS]),
                                    sessions=app[TURNS].active_sessions)
    if settings.health.webhook_url is not None:
        webhook = Webhook(settings.health.webhook_url.get(), app[UPSTREAM_SESSION])
        stack.push_async_callback(webhook.close)
        monitor.on_change.append(webhook)
    loop = asyncio.get_running_loop()
    for background in (monitor.run(app[UPSTREAM_SESSION]), monitor.background()):
        stack.push_async_callback(_stop, loop.create_task(background))

    # With several workers a scrape reaches one of them: the others keep their gauges fresh.
    if multiprocess_dir():
        stack.push_async_callback(_stop, loop.create_task(_refresh_gauges(app)))
