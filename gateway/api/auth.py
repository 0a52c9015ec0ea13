"""Who may call: API keys on every chat endpoint, short-lived tokens for browsers' WebSockets."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from gateway.api.errors import error_response
from gateway.api.requests import end_user_id, read_json_body
from gateway.appkeys import (
    ANSWERING,
    API_KEYS,
    DEMO_NOTICE,
    DRAINING,
    METRICS,
    RATE_LIMITER,
    SETTINGS,
    SIGNER,
    SIGNING_SECRET,
)
from gateway.errors import RequestRejected, ShuttingDown
from gateway.security.ratelimit import Caller
from gateway.security.remote import client_address

# Reachable without a frontend API key: coarse health, the demo page and its assets, the
# WebSocket (it checks its own credentials: a browser can't send headers on it), and the
# staff endpoints, which check staff credentials instead.
PUBLIC_PATHS = frozenset({"/", "/health", "/livez", "/readyz", "/chat", "/api/demo-token",
                          "/ws/chat", "/metrics", "/openapi.json"})
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
    # A CORS preflight never carries credentials; its handler checks only the origin. An
    # unknown path or method is a 404/405 for anyone: there is nothing there to protect.
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or request.method == "OPTIONS" \
            or request.match_info.http_exception is not None:
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


END_USER_HEADER = "X-Scout-User"
def caller(request: web.Request, body_user: str | None = None,
           label: str | None = None) -> Caller:
    """Who this request counts against. The end user (X-Scout-User, else the body's `user`)
    counts only for keys listed in auth.end_user_keys: the frontend's server, which knows
    its customers. For other keys the header is refused and `user` is OpenAI's optional
    abuse-monitoring id, not a limit key."""
    label = label or request.get(KEY_LABEL, "anonymous")
    allowed = label in request.app[SETTINGS].auth.end_user_keys
    header = end_user_id(request.headers.get(END_USER_HEADER), END_USER_HEADER)
    if header is not None and not allowed:
        raise RequestRejected(f"this API key ({label}) may not name end users with "
                              f"{END_USER_HEADER}: list its label in auth.end_user_keys",
                              status=403, code="end_user_not_allowed")
    user = header if header is not None else body_user
    return Caller(label, client_address(request), user if allowed else None)


def upstream_user(request: web.Request, who: Caller, body_user: str | None) -> str | None:
    """The end user as an off-site tier sees it (OpenAI's `user`, Anthropic's
    `metadata.user_id`, for their abuse monitoring): a keyed hash, stable per API key and
    user, that cannot be turned back into the id the frontend sent."""
    user = who.user or body_user
    if not user:
        return None
    mac = hmac.new(request.app[SIGNING_SECRET], f"{who.label}\0{user}".encode(), hashlib.sha256)
    return f"scout-{mac.hexdigest()[:24]}"


@asynccontextmanager
async def admitted(app: web.Application, who: Caller) -> AsyncIterator[None]:
    """Every chat path (OpenAI API, SSE, each WebSocket chat) runs its answer inside this:
    refused while draining, checked against the per-key, per-address and per-user windows,
    and counted as one stream while it lasts (and as one answer a drain waits for)."""
    if app[DRAINING].is_set():
        raise ShuttingDown()
    async with app[RATE_LIMITER].admitted(
            who, lambda refusal: app[METRICS].rate_limited.labels(refusal.scope).inc()):
        with app[ANSWERING]:
            yield


async def ws_token(request: web.Request) -> web.Response:
    """POST /api/ws-token: the frontend's server side trades its API key for a browser token.

    A key in auth.end_user_keys may name the customer the token is for (`{"user": ...}` or
    X-Scout-User): that customer's per-user limits then follow the socket."""
    user = None
    if request.can_read_body:
        body = await read_json_body(request)
        if not isinstance(body, dict):
            raise RequestRejected("request body must be a JSON object or empty",
                                  code="invalid_json")
        user = end_user_id(body.get("user"), "user")
    who = caller(request, user)
    if user is not None and who.user is None:
        raise RequestRejected(f"this API key ({who.label}) may not name end users: list its "
                              "label in auth.end_user_keys", param="user", status=403,
                              code="end_user_not_allowed")
    ttl = request.app[SETTINGS].auth.ws_token_ttl_s
    token = request.app[SIGNER].issue(request[KEY_LABEL], ttl, user=who.user)
    return web.json_response({"token": token, "expires_in": int(ttl),
                              "subprotocols": ["scout.v1", f"bearer.{token}"]})


async def demo_token(request: web.Request) -> web.Response:
    """GET /api/demo-token: a token for the demo chat page; off unless auth.demo_tokens."""
    settings = request.app[SETTINGS]
    if not settings.auth.demo_tokens:
        return error_response(404, "demo tokens are off (auth.demo_tokens)", "not_found")
    token = request.app[SIGNER].issue("demo-page", settings.auth.ws_token_ttl_s)
    body = {"token": token, "expires_in": int(settings.auth.ws_token_ttl_s)}
    if DEMO_NOTICE in request.app:
        body["notice"] = request.app[DEMO_NOTICE]
    return web.json_response(body)


async def to_chat_page(request: web.Request) -> web.StreamResponse:
    """GET / in the demo: the chat page."""
    raise web.HTTPFound("/chat")
