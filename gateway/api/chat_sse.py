"""POST /api/chat: Scout's own events (start, delta, switch, done, error) as SSE."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.api.auth import KEY_LABEL, admitted, caller
from gateway.api.openai_api import SSE_HEADERS
from gateway.api.relay import relay
from gateway.api.requests import end_user_id, read_json_body, validate_messages
from gateway.appkeys import CHAT, SESSIONS, SETTINGS, TURNS
from gateway.chat import Turn
from gateway.errors import RequestRejected
from gateway.sse import encode_event

MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def checked_message_id(value: Any) -> str:
    if not isinstance(value, str) or not MESSAGE_ID.match(value):
        raise RequestRejected("id must be 1-64 letters, digits or _.:-", param="id",
                              code="invalid_value")
    return value


def checked_session(app: web.Application, value: Any) -> str:
    """A session id this gateway issued (signed), or a 400 that says so."""
    if not app[SESSIONS].ids.valid(value):
        raise RequestRejected("session is not a session id this gateway issued; omit it to "
                              "start a new conversation", param="session", code="invalid_session")
    assert isinstance(value, str)
    return value


@dataclass(frozen=True, slots=True)
class ChatBody:
    message: str
    msg_id: str | None
    session: str | None
    history: list[dict[str, Any]]
    user: str | None = None     # the end user, from a key trusted to name them


def parse_chat_body(body: Any, app: web.Application) -> ChatBody:
    """Validate Scout's chat body (SSE or WebSocket): message, optional id, session, history."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object", code="invalid_json")
    server = app[SETTINGS].server
    message = body.get("message")
    if not isinstance(message, str):
        raise RequestRejected("message must be a string", param="message", code="invalid_value")
    msg_id = body.get("id")
    if msg_id is not None:
        checked_message_id(msg_id)
    session = body.get("session")
    if session is not None:
        checked_session(app, session)
    history = body.get("history")
    if history is None:
        history = []
    elif not isinstance(history, list):
        raise RequestRejected("history must be an array of messages", param="history",
                              code="invalid_value")
    messages = validate_messages([*history, {"role": "user", "content": message}], server,
                                 param="history")
    return ChatBody(message, msg_id, session, messages[:-1], end_user_id(body.get("user"), "user"))


async def session_turn(app: web.Application, body: ChatBody,
                       key_label: str = "") -> tuple[str, Turn, dict[str, Any]]:
    """Load (or start) the conversation and plan the turn; the store being down is not an error."""
    sessions, chat = app[SESSIONS], app[CHAT]
    sid = body.session or sessions.ids.new()
    stored = await sessions.history(sid) if body.session else []
    # The store unreachable (None) or a new session: the request's own history stands in.
    history = stored if stored else body.history
    user = {"role": "user", "content": body.message}
    messages = sessions.trim([*history, user])
    before = await sessions.private_intent(sid) if body.session else None
    turn = chat.prepare(messages, turn_id=body.msg_id, key_label=key_label, conversation=sid,
                        private_before=chat.classifier.get(before)
                        if before in chat.settings.intents else None)
    if turn.private is not None and turn.private != before:
        await sessions.mark_private(sid, turn.private)
    return sid, turn, user


async def chat_sse(request: web.Request) -> web.StreamResponse:
    app = request.app
    body = parse_chat_body(await read_json_body(request), app)
    async with admitted(app, caller(request, body.user)):
        sid, turn, user = await session_turn(app, body, request.get(KEY_LABEL, "anonymous"))
        _, listener = app[TURNS].start(turn, sid, user, app[SETTINGS].server.max_buffered_bytes)
        resp = web.StreamResponse(headers=SSE_HEADERS)
        await resp.prepare(request)

        async def send(name: str, payload: dict[str, Any]) -> None:
            await resp.write(encode_event(name, payload))

        await relay(listener, turn.id, sid, send)
        await resp.write_eof()
        return resp


async def fetch_answer(request: web.Request) -> web.Response:
    """A finished answer by session and message id, for a client that went away mid-answer."""
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object", code="invalid_json")
    sid = checked_session(request.app, body.get("session"))
    msg_id = checked_message_id(body.get("id"))
    record = await request.app[SESSIONS].answer(sid, msg_id)
    if record is None:
        raise RequestRejected(f"no stored answer for message {msg_id} in this session",
                              status=404, code="answer_not_found")
    return web.json_response(record)
