"""POST /api/chat: Scout's own events (start, delta, switch, done, error) as SSE."""

from __future__ import annotations

import re
from contextlib import aclosing
from typing import Any

from aiohttp import web

from gateway.api.openai_api import SSE_HEADERS
from gateway.api.requests import read_json_body, validate_messages
from gateway.appkeys import CHAT, SETTINGS
from gateway.chat import Started, TurnEvent, TurnOutcome
from gateway.errors import RequestRejected
from gateway.routing.driver import SwitchOut, TextOut
from gateway.sse import encode_event

MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def event_payload(turn_id: str, ev: TurnEvent) -> tuple[str, dict[str, Any]]:
    """One turn event as (name, body): the protocol shared by SSE and WebSocket."""
    if isinstance(ev, TextOut):
        return "delta", {"id": turn_id, "text": ev.text, "tier": ev.tier}
    if isinstance(ev, Started):
        return "start", {"id": turn_id, "intent": ev.intent, "tier": ev.tier,
                         "skipped": [{"tier": t, "reason": r} for t, r in ev.skipped]}
    if isinstance(ev, SwitchOut):
        return "switch", {"id": turn_id, "from": ev.from_tier, "to": ev.to_tier,
                          "reason": ev.reason}
    if ev.complete:
        return "done", ev.done_event()
    return "error", {"id": turn_id, "code": "all_tiers_failed",
                     "message": f"no tier could answer: {ev.error}"}


def parse_chat_body(body: Any, request: web.Request) -> tuple[str | None, list[dict[str, Any]]]:
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object", code="invalid_json")
    server = request.app[SETTINGS].server
    message = body.get("message")
    if not isinstance(message, str):
        raise RequestRejected("message must be a string", param="message", code="invalid_value")
    msg_id = body.get("id")
    if msg_id is not None and (not isinstance(msg_id, str) or not MESSAGE_ID.match(msg_id)):
        raise RequestRejected("id must be 1-64 letters, digits or _.:-", param="id",
                              code="invalid_value")
    history = body.get("history") or []
    if not isinstance(history, list):
        raise RequestRejected("history must be an array of messages", param="history",
                              code="invalid_value")
    messages = validate_messages([*history, {"role": "user", "content": message}], server,
                                 param="history")
    return msg_id, messages


async def chat_sse(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    body = await read_json_body(request, settings.server.max_body_bytes)
    msg_id, messages = parse_chat_body(body, request)
    chat = request.app[CHAT]
    turn = chat.prepare(messages, turn_id=msg_id)
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    async with aclosing(chat.run(turn)) as events:
        async for ev in events:
            name, payload = event_payload(turn.id, ev)
            await resp.write(encode_event(name, payload))
            if isinstance(ev, TurnOutcome):
                break
    await resp.write_eof()
    return resp
