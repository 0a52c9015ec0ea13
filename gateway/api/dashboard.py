"""The staff dashboard: /dashboard (live over SSE, ~1 s), behind staff credentials.

Staff sign in once with a staff token (SCOUT_STAFF_KEYS, separate from the
frontend API keys); the page then holds a signed, HttpOnly, SameSite=Strict
cookie for 12 hours. The data (/dashboard/stream, /dashboard/data) is never
served without it (or the staff token as a bearer header, for scripts).

Adding a tile: docs/design.md, "Adding a dashboard tile".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.accounting import reference_model
from gateway.api.errors import error_response
from gateway.api.ops import health_picture, hedge_after, is_staff
from gateway.appkeys import CHAT, DRAINING, PROVIDERS, SETTINGS, SIGNER, STAFF_KEYS, STATS
from gateway.stats import NANO, percentile_ms, summarize
from gateway.tiers import registry

STATIC = Path(__file__).resolve().parents[1] / "static"
COOKIE = "scout_staff"
COOKIE_TTL_S = 12 * 3600


def staff_label(request: web.Request) -> str | None:
    token = request.cookies.get(COOKIE)
    if token:
        label = request.app[SIGNER].verify(token)
        if label is not None and label.startswith("staff:"):
            return label[6:]
    return "bearer" if is_staff(request) else None


async def page(request: web.Request) -> web.StreamResponse:
    name = "dashboard.html" if staff_label(request) else "login.html"
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = form.get("token")
    label = request.app[STAFF_KEYS].check(token if isinstance(token, str) else None)
    if label is None:
        await asyncio.sleep(0.5)  # slow down guessing
        raise web.HTTPSeeOther("/dashboard?error=1")
    resp = web.HTTPSeeOther("/dashboard")
    secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
    resp.set_cookie(COOKIE, request.app[SIGNER].issue(f"staff:{label}", COOKIE_TTL_S),
                    max_age=COOKIE_TTL_S, httponly=True, samesite="Strict", secure=secure,
                    path="/dashboard")
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    resp = web.HTTPSeeOther("/dashboard")
    resp.del_cookie(COOKIE, path="/dashboard")
    raise resp


def _tier_meta(app: web.Application) -> dict[str, Any]:
    reg = registry()
    primary = reg.primary()
    reference = next((s for s in reg.generative() if s.offsite), None)
    return {"primary": primary, "primary_label": reg[primary].label if primary else "",
            "reference_label": reference.label if reference is not None else "",
            "series": [{"name": s.name, "label": s.label, "color": s.color}
                       for s in reg.all() if s.name in app[SETTINGS].enabled_tiers()]}


def _minute_p95(row: dict[str, int]) -> float | None:
    buckets = {int(k[5:]): v for k, v in row.items() if k.startswith("ttft:")}
    return percentile_ms(buckets, 95)


async def snapshot(app: web.Application) -> dict[str, Any]:
    """Everything the page shows, from the shared stats and the health picture."""
    stats = app[STATS]
    rows = await stats.minutes(60)
    today = await stats.today()
    health = health_picture(app)
    tiles = summarize(rows, stats.clock())
    spend = today.get("spend", 0) / NANO
    tiles.update(spend_today_usd=spend,
                 saved_today_usd=max(0.0, today.get("equiv", 0) / NANO - spend),
                 answers_today=today.get("req", 0),
                 hedge_after_ms={t: round(hedge_after(app, t) * 1000)
                                 for t in registry().generative_names() & app[PROVIDERS].keys()},
                 hedge_budget_used=app[CHAT].hedging.budget_used())
    return {
        "at": time.time(),
        "status": health["status"],
        "tiles": tiles,
        "tiers": health["tiers"],
        "targets": [{"name": n, **t} for n, t in health["targets"].items()],
        "capacity": health["capacity"],
        "store": {k: health["store"].get(k) for k in ("backend", "state", "reason")},
        "fallback_alert": health["fallback_alert"],
        # How to draw each tier, from the registry: the page names none itself.
        "tier_meta": _tier_meta(app),
        "series": {"t": [m * 60 for m, _ in rows],
                   **{tier: [row.get(f"req:{tier}", 0) for _, row in rows]
                      for tier in app[SETTINGS].enabled_tiers()},
                   "ttft_p95_ms": [_minute_p95(row) for _, row in rows]},
        "incidents": list(reversed(health["incidents"]))[:20],
        # What left the building today (UTC): counts per intent and per kind, never text.
        "privacy": {"offsite_turns": {k[8:]: v for k, v in today.items()
                                      if k.startswith("offsite:")},
                    "redacted": {k[4:]: v for k, v in today.items() if k.startswith("pii:")}},
        "currency_note": "spend is UTC-day to date; saved = the same answers at the paid "
                         f"backup's prices ({reference_model(app[SETTINGS])}) minus what they "
                         "cost",
    }


def _forbidden() -> web.Response:
    return error_response(401, "staff sign-in required", "staff_only")


async def data(request: web.Request) -> web.Response:
    if staff_label(request) is None:
        return _forbidden()
    return web.json_response(await snapshot(request.app))


async def stream(request: web.Request) -> web.StreamResponse:
    """The page's live feed: one snapshot a second, as SSE."""
    if staff_label(request) is None:
        return _forbidden()
    import orjson
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    draining = request.app[DRAINING]
    with contextlib.suppress(ConnectionResetError):
        while not draining.is_set():  # shutdown ends the feed; the page's EventSource retries
            await resp.write(b"data: " + orjson.dumps(await snapshot(request.app)) + b"\n\n")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await draining.wait()
    return resp
