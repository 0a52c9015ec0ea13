"""Short-lived signed tokens: how a browser authenticates its WebSocket.

A browser can't set headers on a WebSocket, and an API key must never ship
to one. So the frontend's server side (holding the API key) asks
POST /api/ws-token for a token valid for a minute and hands it to the
browser, which offers it as a subprotocol: `new WebSocket(url, ["scout.v1",
"bearer." + token])`. The token names the key's label and its expiry, and is
HMAC-signed with the signing secret shared by every gateway process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import orjson


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sig(self, body: str) -> str:
        return _b64(hmac.new(self._secret, b"ws." + body.encode(), hashlib.sha256).digest()[:18])

    def issue(self, label: str, ttl_s: float, now: float | None = None,
              user: str | None = None) -> str:
        """A token for `label`; `user` names the end user it was minted for (their limits
        follow the socket)."""
        exp = int((now if now is not None else time.time()) + ttl_s)
        claims: dict[str, object] = {"l": label, "e": exp}
        if user is not None:
            claims["u"] = user
        body = _b64(orjson.dumps(claims))
        return f"{body}.{self._sig(body)}"

    def verify(self, token: str, now: float | None = None) -> str | None:
        """The label the token was issued to, or None if forged, malformed or expired."""
        claims = self.claims(token, now)
        return claims[0] if claims else None

    def claims(self, token: str, now: float | None = None) -> tuple[str, str | None] | None:
        """(label, end user or None) of a valid token, or None if forged, malformed or
        expired."""
        if not isinstance(token, str) or len(token) > 512 or token.count(".") != 1:
            return None
        body, sig = token.split(".")
        if not hmac.compare_digest(sig, self._sig(body)):
            return None
        try:
            claims = orjson.loads(_unb64(body))
            label, exp = str(claims["l"]), int(claims["e"])
            user = claims.get("u")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if user is not None and not isinstance(user, str):
            return None
        return (label, user) if exp > (now if now is not None else time.time()) else None
