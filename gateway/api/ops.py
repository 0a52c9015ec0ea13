"""Operations endpoints: /health (coarse in public, full for staff) and the demo chat page."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from gateway import __version__
from gateway.api.auth import presented_key
from gateway.api.errors import error_response
from gateway.appkeys import (
    CHAT,
    CLIENT_ADDRESSES,
    DRAINING,
    HEALTH,
    METRICS,
    PROVIDERS,
    RATE_LIMITER,
    REDIS,
    SETTINGS,
    SOCKETS,
    STAFF_KEYS,
    STORE,
    TURNS,
    UPSTREAM_KEYS,
)
from gateway.health.states import SERVING, SKIPPED
from gateway.tiers import registry

CHAT_PAGE = Path(__file__).resolve().parents[1] / "static" / "chat.html"
OPENAPI = Path(__file__).resolve().parents[1] / "data" / "openapi.yaml"


@functools.cache
def openapi_json() -> bytes:
    return orjson.dumps(yaml.safe_load(OPENAPI.read_text()))


async def openapi(request: web.Request) -> web.Response:
    """GET /openapi.json: the HTTP API's OpenAPI description (what the fuzzer reads)."""
    return web.Response(body=openapi_json(), content_type="application/json")


async def chat_page(request: web.Request) -> web.FileResponse:
    """The demo chat page (built on static/scout-client.js)."""
    return web.FileResponse(CHAT_PAGE, headers={"Cache-Control": "no-cache"})


def is_staff(request: web.Request) -> bool:
    return request.app[STAFF_KEYS].check(presented_key(request)) is not None


def health_picture(app: web.Application) -> dict[str, Any]:
    """The whole picture: overall status, each tier, each probed target, the store, alerts."""
    settings = app[SETTINGS]
    chat = app[CHAT]
    monitor = app[HEALTH]
    tiers: dict[str, dict[str, Any]] = {}
    generative = [t for t in settings.enabled_tiers() if t in registry().generative_names()]
    for tier in settings.enabled_tiers():
        if tier in generative:
            h = chat.tier_health(tier)
            tiers[tier] = {"state": h.state, "reason": h.reason}
        else:   # answered here: a provider with health of its own reports it (a database)
            own = getattr(app[PROVIDERS].get(tier), "health", None)
            state, reason = own() if own is not None else ("up", "")
            tiers[tier] = {"state": state, "reason": reason}
    bad = [t for t in generative if tiers[t]["state"] in SKIPPED]
    status = "ok" if not bad else ("degraded" if len(bad) < len(generative) else "down")
    link = app.get(REDIS)
    if link is not None:
        store = {"backend": "redis", **link.snapshot()}
        if not link.up and status == "ok":
            status = "degraded"  # answering, but without shared cache and sessions
    else:
        store = {"backend": app[STORE].backend, "state": "up",
                 "reason": "in-process store: cache and sessions are this process's own"}
    replicas = {n.split(".", 1)[1]: t for n, t in monitor.snapshot()["targets"].items()
                if t["kind"] == "replica"}
    serving = sum(1 for r in replicas.values() if r["state"] in SERVING)
    store["rate_limits"] = app[RATE_LIMITER].mode
    addresses = app[CLIENT_ADDRESSES]
    return {"status": status, "version": __version__, "draining": app[DRAINING].is_set(),
            "tiers": tiers,
            "client_addresses": {"trusted_proxies": list(addresses.trusted),
                                 "last_request": addresses.last.as_dict()
                                 if addresses.last else None},
            "capacity": {"replicas_serving": serving, "replicas": len(replicas)},
            "targets": monitor.snapshot()["targets"], "monitor": monitor.role,
            "fallback_alert": monitor.alerting, "store": store,
            "keys": {name: keys.describe(settings.auth.key_max_age_days * 86400)
                     for name, keys in app[UPSTREAM_KEYS].items()},
            "hedging": {"budget_used": round(chat.hedging.budget_used(), 3),
                        "tiers": {t: {"hedge_after_s": round(hedge_after(app, t), 3),
                                      "ttft_p95_s": chat.hedging.p95(t)}
                                  for t in generative}},
            "incidents": monitor.incidents[-20:]}


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text, for staff (a scraper sends the staff token as a bearer token)."""
    if not is_staff(request):
        return staff_only()
    refresh_gauges(request.app)
    m = request.app[METRICS]
    return web.Response(body=m.exposition(), headers={"Content-Type": m.content_type})


def refresh_gauges(app: web.Application) -> None:
    """Gauges read from live state: at each scrape, and every few seconds with workers."""
    m = app[METRICS]
    m.websockets.set(len(app[SOCKETS]))
    m.sessions.set(app[TURNS].active_sessions())
    chat = app[CHAT]
    for tier in registry().generative_names():
        if tier in app[SETTINGS].enabled_tiers():
            m.set_state(m.tier_state, tier, chat.tier_health(tier).state)
            m.hedge_delay.labels(tier).set(hedge_after(app, tier))
    m.hedge_budget.set(chat.hedging.budget_used())
    link = app.get(REDIS)
    m.store_up.set(1 if link is None or link.up else 0)
    max_age_s = app[SETTINGS].auth.key_max_age_days * 86400
    for name, keys in app[UPSTREAM_KEYS].items():
        if (age := keys.age_s()) is not None:
            m.key_age.labels(name).set(age)
            m.key_rotation_due.labels(name).set(max_age_s - age)
    for name, t in app[HEALTH].snapshot()["targets"].items():
        m.set_state(m.target_state, name, t["state"])


def hedge_after(app: web.Application, tier: str) -> float:
    """When a turn of the slowest intent starting now would hedge `tier`."""
    first_token_s = max(i.deadlines.first_token_s for i in app[SETTINGS].intents.values())
    return app[CHAT].hedging.delay(tier, first_token_s)


def staff_only() -> web.Response:
    return error_response(401, "staff credentials required: send 'Authorization: Bearer <staff "
                          "token>' (SCOUT_STAFF_KEYS), not a frontend API key", "staff_only",
                          headers={"WWW-Authenticate": 'Bearer realm="scout-staff"'})


async def livez(request: web.Request) -> web.Response:
    """GET /livez: 200 while the event loop turns. For a restart policy: nothing upstream
    (a down GPU box, OpenAI, Redis) makes it fail, so an outage never restarts a gateway
    that is still answering from cache and static replies."""
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: 200 while this gateway should get traffic — it can always answer (static
    replies need nothing) — and 503 from the moment it starts draining (SIGTERM), so a load
    balancer stops sending new customers while answers in flight finish."""
    if request.app[DRAINING].is_set():
        return web.json_response({"status": "draining"}, status=503,
                                 headers={"Retry-After": "1"})
    return web.json_response({"status": "ready"})


async def health(request: web.Request) -> web.Response:
    """200 while any model can answer (ok/degraded), 503 when only cache and static are left:
    for humans and alerts. Orchestrators use /livez and /readyz instead.

    Without staff credentials only the status and each tier's state are shown.
    """
    picture = health_picture(request.app)
    code = 503 if picture["status"] == "down" else 200
    if not is_staff(request):
        picture = {"status": picture["status"], "version": __version__,
                   "tiers": {t: {"state": v["state"]} for t, v in picture["tiers"].items()},
                   "store": {"state": picture["store"]["state"]}}
    return web.json_response(picture, status=code)
