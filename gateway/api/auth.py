"""Who may call: API keys on every chat endpoint, short-lived tokens for browsers' WebSockets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.api.errors import error_response
from gateway.appkeys import API_KEYS, METRICS, RATE_LIMITER, SETTINGS, SIGNER
from gateway.security.ratelimit import client_ip

# Reachable without a frontend API key: coarse health, the demo page and its assets, the
# WebSocket (it checks its own credentials: a browser can't send headers on it), and the
# staff endpoints, which check staff credentials instead.
PUBLIC_PATHS = frozenset({"/health", "/chat", "/api/demo-token", "/ws/chat", "/metrics",
                          "/openapi.json"})
PUBLIC_PREFIXES = ("/static/", "/dashboard")
KEY_LABEL = web.RequestKey("key_label", str)


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("X-API-Key")


def unauthorized(message: str) -> web.Response:
    return error_response(401, message, "invalid_api_key",
                          headers={"WWW-Authenticate": 'Bearer realm="scout"'})


@web.middleware
async def auth_middleware(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    path = request.path
    # A CORS preflight never carries credentials; its handler checks only the origin.
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or request.method == "OPTIONS":
        return await handler(request)
    if request.app[SETTINGS].auth.allow_anonymous:
        request[KEY_LABEL] = "anonymous"
        return await handler(request)
    key = presented_key(request)
    if not key:
        return unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    label = request.app[API_KEYS].check(key)
    if label is None:
        return unauthorized("the API key is not valid (it may have been rotated out)")
    request[KEY_LABEL] = label
    return await handler(request)


async def ws_token(request: web.Request) -> web.Response:
    """POST /api/ws-token: the frontend's server side trades its API key for a browser token."""
    ttl = request.app[SETTINGS].auth.ws_token_ttl_s
    token = request.app[SIGNER].issue(request[KEY_LABEL], ttl)
    return web.json_response({"token": token, "expires_in": int(ttl),
                              "subprotocols": ["scout.v1", f"bearer.{token}"]})


async def demo_token(request: web.Request) -> web.Response:
    """GET /api/demo-token: a token for the demo chat page; off unless auth.demo_tokens."""
    settings = request.app[SETTINGS]
    if not settings.auth.demo_tokens:
        return error_response(404, "demo tokens are off (auth.demo_tokens)", "not_found")
    token = request.app[SIGNER].issue("demo-page", settings.auth.ws_token_ttl_s)
    return web.json_response({"token": token, "expires_in": int(settings.auth.ws_token_ttl_s)})


LIMITED_PATHS = frozenset({"/v1/chat/completions", "/api/chat"})


@web.middleware
async def rate_limit_middleware(request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                ) -> web.StreamResponse:
    """Requests per minute and streams at once, per key and per client address: 429 past them."""
    if request.method != "POST" or request.path not in LIMITED_PATHS:
        return await handler(request)
    limiter = request.app[RATE_LIMITER]
    label = request.get(KEY_LABEL, "anonymous")
    ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"))
    refusal = await limiter.check(label, ip)
    if refusal is not None:
        request.app[METRICS].rate_limited.labels(refusal.scope).inc()
        return error_response(429, refusal.message, "rate_limit_exceeded",
                              headers={"Retry-After": str(refusal.retry_after_s)})
    limiter.open(label, ip)
    try:
        return await handler(request)
    finally:
        limiter.close(label, ip)
