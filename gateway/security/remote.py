"""Who the client really is: the peer's address, or X-Forwarded-For from a trusted proxy.

The edge nginx sets `X-Forwarded-For: $remote_addr` (overwrite, never append), and the
gateway believes that header only from peers listed in `server.trusted_proxies`
(addresses or CIDRs, e.g. the compose bridge subnet). From any other peer the header is
ignored: a client that writes its own X-Forwarded-For is still counted by its address.
This is nginx's realip module (`set_real_ip_from` + `real_ip_recursive on`).

The header itself is parsed by aiohttp-remotes (aio-libs' maintained implementation):
its `XForwardedFiltered` takes the right-most address that is not a trusted proxy, and
refuses a malformed or repeated header with a 400. It does not check who sent the header,
so it runs here only for requests whose TCP peer is trusted.

Every request's attribution (address, peer, why) is kept on the request, and the last one
on the app, so an operator can check the setup on staff `/health`.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web
from aiohttp_remotes import XForwardedFiltered

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Attribution:
    address: str   # the client's address, as rate limits count it
    peer: str      # who opened the TCP connection
    via: str       # why, in words

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "peer": self.peer, "via": self.via}


ATTRIBUTION = web.RequestKey("attribution", Attribution)


class _Filtered(XForwardedFiltered):
    async def raise_error(self, request: web.Request) -> NoReturn:
        raise web.HTTPBadRequest(text="X-Forwarded-For from the trusted proxy is malformed "
                                      "(sent more than once, or not a list of addresses)")


class ClientAddresses:
    """The middleware, plus the last attribution it made (for staff /health)."""

    def __init__(self, trusted: tuple[str, ...]) -> None:
        self.trusted = trusted
        self._networks = [ipaddress.ip_network(t, strict=False) for t in trusted]
        self._filtered = _Filtered(set(self._networks)) if trusted else None
        self.last: Attribution | None = None
        # Peers repeat (the edge proxy, a frontend's servers): each address parsed once.
        self._trusted = functools.lru_cache(maxsize=4096)(self._check)

    def is_trusted(self, peer: str | None) -> bool:
        if not self._networks:
            return False
        return self._trusted(peer or "")

    def _check(self, peer: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote or "unknown"
        if self._filtered is None or not self.is_trusted(peer) \
                or "X-Forwarded-For" not in request.headers:
            why = ("the peer itself (not a trusted proxy; any X-Forwarded-For is ignored)"
                   if not self.is_trusted(peer) else
                   "the peer itself (a trusted proxy that sent no X-Forwarded-For)")
            return await self._attributed(request, handler, Attribution(peer, peer, why))

        async def forwarded(req: web.Request) -> web.StreamResponse:
            address = req.remote or peer
            return await self._attributed(req, handler, Attribution(
                address, peer, f"X-Forwarded-For from trusted proxy {peer}"))

        return await self._filtered.middleware(request, forwarded)

    async def _attributed(self, request: web.Request, handler: Handler,
                          who: Attribution) -> web.StreamResponse:
        request[ATTRIBUTION] = who
        self.last = who
        return await handler(request)


def client_address(request: web.Request) -> str:
    """The address rate limits count this request by."""
    who = request.get(ATTRIBUTION)
    return who.address if who is not None else (request.remote or "unknown")
