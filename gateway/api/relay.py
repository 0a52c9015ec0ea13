"""One relay for Scout's own chat events, over SSE (`POST /api/chat`) and the WebSocket.

A turn runs on its own (`gateway.turns`); a transport only listens. Both transports hand
`relay` a `send(name, payload)` and get the same events, in the same order, with the
same error bodies: `start` (with the session id), `delta`, `switch`, then `done` or
`error`. A listener that falls too far behind gets `slow_consumer`; a turn cancelled by a
shutdown gets `interrupted` — never a silent end.

Where this sits in a turn: docs/design.md, "One turn".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.chat import Started, TurnEvent, TurnOutcome
from gateway.routing.driver import SwitchOut, TextOut
from gateway.turns import Listener, Overflow, TurnEnd

Send = Callable[[str, dict[str, Any]], Awaitable[None]]


def all_tiers_failed(reason: str) -> dict[str, Any]:
    """The error body when no tier could answer: OpenAI's error shape, Scout's code."""
    return {"message": f"no tier could answer: {reason}", "type": "server_error",
            "param": None, "code": "all_tiers_failed"}


def turn_failed(outcome: TurnOutcome | None) -> tuple[int, dict[str, Any]]:
    """Why a turn has no answer, as (HTTP status, OpenAI-shaped error): an upstream's
    content-policy refusal as the upstream gave it, else no tier could answer (502)."""
    if outcome is not None and outcome.rejection is not None:
        return outcome.rejection
    return 502, all_tiers_failed(outcome.error if outcome is not None else "no answer")


def slow_consumer(turn_id: str, limit: int) -> dict[str, Any]:
    return {"id": turn_id, "code": "slow_consumer",
            "message": f"this client fell more than {limit} bytes behind the answer; it is "
                       "still being written — resume it"}


def answer_restarted() -> dict[str, Any]:
    """The error body when a tier's fresh answer would replace text a client of the OpenAI
    API already has: that API can't take text back, and gluing two answers is wrong."""
    return {"message": "the answer was cut off and the tier that took over answered anew; "
                       "text already sent can't be taken back on this API: ask again",
            "type": "server_error", "param": None, "code": "answer_restarted"}


def interrupted(turn_id: str) -> dict[str, Any]:
    return {"id": turn_id, "code": "interrupted",
            "message": "the answer was cut off before it finished (the server is shutting "
                       "down); what was written is kept: resume it or ask again"}


def event_payload(turn_id: str, ev: TurnEvent) -> tuple[str, dict[str, Any]]:
    """One turn event as (name, body): the protocol shared by SSE and WebSocket."""
    if isinstance(ev, TextOut):
        return "delta", {"id": turn_id, "text": ev.text, "tier": ev.tier}
    if isinstance(ev, Started):
        return "start", {"id": turn_id, "intent": ev.intent, "tier": ev.tier,
                         "skipped": [{"tier": t, "reason": r} for t, r in ev.skipped]}
    if isinstance(ev, SwitchOut):
        body = {"id": turn_id, "from": ev.from_tier, "to": ev.to_tier, "kind": ev.kind,
                "reason": ev.reason}
        if ev.replace is not None:   # a restart: the answer so far is this text now
            body["replace"] = ev.replace
        return "switch", body
    if ev.complete:
        return "done", ev.done_event()
    _, failed = turn_failed(ev)
    return "error", {"id": turn_id, "code": failed["code"], "message": failed["message"]}


async def relay(listener: Listener, turn_id: str, sid: str, send: Send, *,
                resumed: bool = False) -> None:
    """Forward one turn's events until it ends, whatever the transport."""
    ended = False
    while not isinstance(ev := await listener.get(), TurnEnd):
        if isinstance(ev, Overflow):
            await send("error", slow_consumer(turn_id, listener.limit))
            return
        name, payload = event_payload(turn_id, ev)
        if name == "start":
            payload["session"] = sid
            if resumed:
                payload["resumed"] = True
        ended = name in ("done", "error")
        await send(name, payload)
    if not ended:  # cancelled (shutdown drain)
        await send("error", interrupted(turn_id))
