"""Operations endpoints: /health."""

from __future__ import annotations

from aiohttp import web

from gateway import __version__
from gateway.appkeys import CHAT, SETTINGS
from gateway.routing.plan import SKIP_STATES


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
    return web.json_response({"status": status, "version": __version__, "tiers": tiers})
