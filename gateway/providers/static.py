"""The static tier: the intent's canned reply. Always available; never fails."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.providers.base import HEADERS, Delta, StreamEvent, TierRequest
from gateway.tiers import TierContext, TierSpec

STATIC_MODEL = "scout-static"


class StaticProvider:
    tier = "static"
    model = STATIC_MODEL

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        yield HEADERS
        text = request.intent.static_reply
        # Continuing a cut answer: set the canned reply apart from what was said.
        yield Delta(f"\n\n{text}" if request.prefix else text, self.model, None, "stop")

    async def close(self) -> None:
        """Nothing to release."""


def _provider(ctx: TierContext) -> StaticProvider:
    return StaticProvider()


TIER = TierSpec(name="static", label="static reply", color="#f85149", provider=_provider,
                last_resort=True)
