"""Operations endpoints: /health."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway import __version__
from gateway.appkeys import CHAT, REDIS, SETTINGS, STORE
from gateway.routing.plan import SKIP_STATES


CHAT_PAGE = Path(__file__).resolve().parents[1] / "static" / "chat.html"


async def chat_page(request: web.Request) -> web.FileResponse:
    """The demo chat page (built on static/scout-client.js)."""
    return web.FileResponse(CHAT_PAGE, headers={"Cache-Control": "no-cache"})


async def health(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    chat = request.app[CHAT]
    tiers = {}
    for tier in settings.enabled_tiers():
        if tier in ("cache", "static"):
            tiers[tier] = {"state": "up", "reason": ""}
            continue
        h = chat.tier_health(tier)
        tiers[tier] = {"state": h.state, "reason": h.reason}
    generative = [t for t in ("onprem", "openai") if t in tiers]
    bad = [t for t in generative if tiers[t]["state"] in SKIP_STATES]
    if not bad:
        status = "ok"
    elif len(bad) < len(generative):
        status = "degraded"
    else:
        status = "down"  # only cached and static replies are left
    link = request.app.get(REDIS)
    if link is not None:
        store = {"backend": "redis", **link.snapshot()}
        if not link.up and status == "ok":
            status = "degraded"  # answering, but without shared cache and sessions
    else:
        store = {"backend": request.app[STORE].backend, "state": "up",
                 "reason": "in-process store: cache and sessions are this process's own"}
    return web.json_response({"status": status, "version": __version__, "tiers": tiers,
                              "store": store})
