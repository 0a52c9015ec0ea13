"""One interface for every tier: stream text deltas, raise classified errors.

Adding a tier: docs/design.md, "Adding a tier".
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.config.base import IntentConfig

# How a grounding message starts: the gateway's own text, stock only, never redacted
# (the inventory tier writes it; the off-site guard leaves it as it is).
GROUNDING_HEADER = ("Vehicles on our lot right now that match the customer's question (from the "
                    "dealership's live inventory; name only these, with their prices):")
# In place of a table whose every row the conversation already holds, from earlier
# questions: those rows' stock numbers follow.
HELD_STOCK = ("Vehicles on our lot right now that match the customer's question, all in the "
              "stock tables above: stock")
# After a table's new rows, the matching ones an earlier table already listed.
ALSO_HELD = "Also matching, in the stock tables above: stock"

RESUME_INSTRUCTION = (
    "Your previous answer was cut off. Continue it from exactly where it stopped, "
    "without repeating anything you already wrote."
)
# The same, for a conversation in Spanish: a model asked in another language than the
# customer's tends to switch to it.
RESUME_INSTRUCTION_ES = (
    "Tu respuesta anterior se cortó. Continúala exactamente desde donde se detuvo, "
    "sin repetir nada de lo que ya escribiste."
)
RESUME_INSTRUCTIONS = frozenset({RESUME_INSTRUCTION, RESUME_INSTRUCTION_ES})

_WORD = re.compile(r"\w+")
# Words each language uses all the time and the other hardly ever.
_ES = frozenset("el la los las de del que y en un una por para con es está están hay "
                "tiene tienen quiero busco cuánto cuál qué cómo mi mis su yo usted pero "
                "también muy más algo este esta ese esa".split())
_EN = frozenset("the and of to in is are a an for with what how do does have has i you "
                "my your it this that any can want looking".split())


def conversation_language(messages: list[dict[str, Any]]) -> str:
    """"es" when the customer's own words are mostly Spanish, else "en"."""
    es = en = 0
    for m in messages:
        content = m.get("content")
        if m.get("role") != "user" or not isinstance(content, str):
            continue
        for w in _WORD.findall(content.casefold()):
            es += w in _ES
            en += w in _EN
    return "es" if es > en else "en"


@dataclass(slots=True)
class AttemptNote:
    """Written by the race driver before it cancels an attempt for missing a deadline, so
    the provider can count it against the target it used (a cancelled stream can't tell
    a deadline from a lost hedge on its own)."""

    missed: str | None = None


@dataclass(frozen=True, slots=True)
class TierRequest:
    messages: list[dict[str, Any]]
    intent: IntentConfig
    params: dict[str, Any] = field(default_factory=dict)  # sampling params passed upstream
    tools: list[Any] | None = None
    tool_choice: Any = None
    prefix: str = ""          # partial answer to continue (mid-stream resume)
    cache_key: str | None = None
    offsite: str = "redacted"  # where this turn may go (RoutePlan.offsite)
    note: AttemptNote | None = None  # per attempt: why the race cancelled it, if it did
    # OpenAI's response_format ({"type": "json_schema", "json_schema": {...}} or json_object),
    # sent only to tiers that honour it (the plan skips the others).
    response_format: dict[str, Any] | None = None
    # The end user, as a keyed hash: off-site tiers get it for their abuse monitoring,
    # never the id the frontend sent.
    end_user: str | None = None
    # Which conversation this turn belongs to (a session id, or a hash of its first user
    # turn and the caller's key): the replica holding its history answers it.
    conversation: str | None = None

    def upstream_messages(self) -> list[dict[str, Any]]:
        """The conversation as sent upstream; a resume asks to continue the partial answer."""
        if not self.prefix:
            return self.messages
        instruction = RESUME_INSTRUCTION_ES if conversation_language(self.messages) == "es" \
            else RESUME_INSTRUCTION
        return [*self.messages,
                {"role": "assistant", "content": self.prefix},
                {"role": "user", "content": instruction}]


@dataclass(frozen=True, slots=True)
class Headers:
    """The upstream answered with a success status; tokens may follow."""


# Not frozen: one is made per chunk, and a frozen dataclass's __init__ sets each field
# through object.__setattr__ (measured 510 vs 148 ns for four fields). Never changed once made.
@dataclass(slots=True)
class Delta:
    text: str
    model: str
    tool_calls: list[Any] | None = None
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # Of the prompt, what the upstream read from its prefix cache (vLLM's and OpenAI's
    # usage.prompt_tokens_details.cached_tokens), when it says.
    cached_tokens: int | None = None
    target: str = ""   # the replica that answered, when the tier knows (on-prem)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a non-generated answer came from (the cache tier says fresh or stale)."""

    cached: str
    origin_model: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """One malformed event the stream skipped (counted; the stream goes on)."""

    reason: str


StreamEvent = Headers | Delta | Usage | Provenance | Skipped

HEADERS = Headers()


class Provider(Protocol):
    tier: str
    model: str

    def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        """Yield Headers, then Deltas (and Usage); raise a TierError on failure."""
        ...

    async def close(self) -> None: ...
