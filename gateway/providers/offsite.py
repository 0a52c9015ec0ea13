"""Every off-site tier is wrapped here: privacy by construction, not by each provider.

`OffsiteGuard` sits between the race and a provider outside the dealership (OpenAI). On
every attempt, over the exact messages about to leave:

1. it refuses a turn whose policy is `never`, or whose messages hold a turn that matches a
   private intent (`TierRefused`: the race moves on, and the tier's health is untouched);
2. for `redacted` turns it replaces personal data with typed placeholders (the kinds on in
   `privacy.redact`) and restores the values in the streamed answer;
3. it tells the audit what left: one off-site turn for the intent, and how many values of
   each kind were redacted — counts only, never text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace

from gateway.errors import TierRefused
from gateway.language.intents import IntentClassifier
from gateway.logs import get_logger
from gateway.providers.base import (
    GROUNDING_HEADER,
    HELD_STOCK,
    RESUME_INSTRUCTIONS,
    Delta,
    Provider,
    StreamEvent,
    TierRequest,
)
from gateway.security.pii import Redactor, Restorer, phone_digits, redact_messages
from gateway.tracing import current_event

log = get_logger("scout.privacy")

# (intent, {kind: values redacted}) for each turn that left the building.
Audit = Callable[[str, dict[str, int]], None]


@asynccontextmanager
async def _closing(events: AsyncIterator[StreamEvent]) -> AsyncIterator[AsyncIterator[StreamEvent]]:
    """The inner stream, closed (its upstream socket released) however this one ends."""
    try:
        yield events
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


class OffsiteGuard:
    def __init__(self, inner: Provider, classifier: IntentClassifier, kinds: frozenset[str],
                 audit: Audit = lambda intent, counts: None, system_prompt: str = "",
                 keep_phones: Iterable[str] = ()) -> None:
        self.inner = inner
        self.tier = inner.tier
        self.model = inner.model
        self.classifier = classifier
        self.kinds = frozenset(k.upper() for k in kinds)
        self.audit = audit
        self._ours = frozenset({system_prompt} if system_prompt else ())
        self.keep_phones = frozenset(phone_digits(p) for p in keep_phones)

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        if request.offsite == "never":
            raise TierRefused(f"intent {request.intent.name} never leaves the building")
        private = self.classifier.private_turn(request.upstream_messages(),
                                               RESUME_INSTRUCTIONS)
        if private is not None:
            raise TierRefused(f"the conversation has a {private.name} turn: private")
        if request.offsite == "allowed":
            self.audit(request.intent.name, {})
            async with _closing(self.inner.stream(request)) as events:
                async for ev in events:
                    yield ev
            return
        redactor = Redactor(self.kinds, self.keep_phones)
        messages = redact_messages(request.upstream_messages(), redactor, self._ours,
                                   (GROUNDING_HEADER, HELD_STOCK))
        counts = redactor.counts()
        self.audit(request.intent.name, counts)
        if counts:
            log.info("pii_redacted", tier=self.tier, count=sum(counts.values()),
                     kinds=",".join(sorted(counts)))
            current_event("scout.pii_redacted", {f"scout.redacted.{k.lower()}": n
                                                 for k, n in counts.items()})
        redacted = replace(request, messages=messages, prefix="")
        restorer = Restorer(redactor.values)
        last_model = self.model
        async with _closing(self.inner.stream(redacted)) as events:
            async for ev in events:
                if not isinstance(ev, Delta) or not redactor.values:
                    yield ev
                    continue
                last_model = ev.model
                text = restorer.feed(ev.text) if ev.text else ""
                if ev.finish_reason:
                    text += restorer.flush()
                if text or ev.tool_calls or ev.finish_reason:
                    yield Delta(text, ev.model, ev.tool_calls, ev.finish_reason)
        if tail := restorer.flush():  # a stream that ended without a finish_reason
            yield Delta(tail, last_model)

    async def close(self) -> None:
        await self.inner.close()
