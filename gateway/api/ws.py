"""WebSocket `/ws/chat`: the frontend's main path (protocol `scout.v1`).

Client → server: `chat` {id, message, session?, history?}, `resume` {id, session},
`ping`. Server → client: `hello` on connect, then per chat `start`, `delta`,
`switch`, `done` or `error` (each carrying the chat's `id`), `pong`, and
`going_away` before a shutdown closes the socket with 1001.

Several chats may be in flight on one socket (ids keep them apart). Each
chat's turn runs on its own (`gateway.turns`), so a socket that closes loses
nothing: the answer is finished and kept for `resume`. A peer that stops
answering pings is closed and its turns cancelled (their partial text kept).
Bad frames get an `error` event; floods and oversized frames close the socket
with a reason; no frame can affect another connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from gateway import __version__
from gateway.api.auth import admitted, caller, presented_key, unauthorized
from gateway.api.chat_sse import (
    MESSAGE_ID,
    ChatBody,
    checked_message_id,
    checked_session,
    parse_chat_body,
    session_turn,
)
from gateway.api.errors import error_response
from gateway.api.relay import relay
from gateway.appkeys import (
    API_KEYS,
    DRAINING,
    SESSIONS,
    SETTINGS,
    SIGNER,
    SOCKETS,
    TURNS,
)
from gateway.chat import new_message_id
from gateway.errors import RequestRejected, ShuttingDown
from gateway.logs import get_logger
from gateway.security.ratelimit import Caller, RateLimited
from gateway.security.remote import client_address
from gateway.turns import Listener, LiveTurn

log = get_logger("scout.ws")

SUBPROTOCOL = "scout.v1"
PROTOCOL_VERSION = 1
RESUME_BLOCK_S = 5.0   # one XREAD BLOCK at a time, up to RESUME_WAIT_S in all
RESUME_WAIT_S = 60.0


def authenticate(request: web.Request) -> Caller | None:
    """Who the socket counts against: a label from an API key header (servers, which may
    name the end user with X-Scout-User) or from a `bearer.<token>` subprotocol (browsers:
    the token carries the end user it was minted for)."""
    app = request.app
    if app[SETTINGS].auth.allow_anonymous:
        return caller(request, label="anonymous")
    key = presented_key(request)
    if key:
        label = app[API_KEYS].check(key)
        return caller(request, label=label) if label is not None else None
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    for proto in (p.strip() for p in offered.split(",")):
        if proto.startswith("bearer."):
            claims = app[SIGNER].claims(proto[7:])
            if claims is None:
                return None
            return Caller(claims[0], client_address(request), claims[1])
    return None


async def ws_chat(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") not in settings.auth.allowed_origins:
        return error_response(403, f"origin {origin[:200]} may not open this WebSocket",
                              "origin_not_allowed")
    try:
        who = authenticate(request)
    except RequestRejected as exc:
        return error_response(exc.status, exc.message, exc.code, exc.param)
    if who is None:
        return unauthorized("send an API key header, or a token from POST /api/ws-token as "
                            "the subprotocol 'bearer.<token>'")
    if request.app[DRAINING].is_set():
        return error_response(503, "this gateway is shutting down; reconnect", "shutting_down",
                              headers={"Retry-After": "1"})
    ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=settings.ws.heartbeat_s,
                               max_msg_size=settings.ws.max_frame_bytes)
    await ws.prepare(request)
    conn = Connection(request.app, ws, who)
    request.app[SOCKETS].add(conn)
    try:
        await conn.serve()
    finally:
        request.app[SOCKETS].discard(conn)
    return ws


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Connection:
    def __init__(self, app: web.Application, ws: web.WebSocketResponse, who: Caller) -> None:
        self.app = app
        self.ws = ws
        self.who = who
        self.label = who.label
        self.cfg = app[SETTINGS].ws
        self.max_buffered = app[SETTINGS].server.max_buffered_bytes  # per chat
        self.bucket = TokenBucket(self.cfg.messages_per_s, self.cfg.burst)
        self.strikes = 0
        self.pumps: dict[str, asyncio.Task[None]] = {}
        self.turns: dict[str, LiveTurn] = {}

    @property
    def busy(self) -> bool:
        return bool(self.pumps)

    async def send(self, payload: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(orjson.dumps(payload).decode())

    async def error(self, chat_id: str | None, code: str, message: str) -> None:
        await self.send({"type": "error", "id": chat_id, "code": code, "message": message})

    async def serve(self) -> None:
        await self.send({"type": "hello", "protocol": PROTOCOL_VERSION, "subprotocol": SUBPROTOCOL,
                         "server": f"scout-gateway/{__version__}",
                         "max_in_flight": self.cfg.max_in_flight,
                         "heartbeat_s": self.cfg.heartbeat_s,
                         "max_frame_bytes": self.cfg.max_frame_bytes})
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self.on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.error(None, "binary_frame",
                                     "binary frames are not supported: send JSON text frames")
        finally:
            dead = isinstance(self.ws.exception(), asyncio.TimeoutError)
            if dead:  # no pong: nobody is listening, so stop the upstream work too
                log.info("ws_peer_dead", label=self.label, cancelling=len(self.turns))
                for live in self.turns.values():
                    self.app[TURNS].cancel(live)
            for task in self.pumps.values():
                task.cancel()
            if self.pumps:
                await asyncio.gather(*self.pumps.values(), return_exceptions=True)

    async def on_text(self, data: str) -> None:
        if not self.bucket.take():
            self.strikes += 1
            if self.strikes > self.cfg.burst * 2:
                await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"message flood")
                return
            await self.error(None, "rate_limited",
                             f"more than {self.cfg.messages_per_s:g} messages a second; slow down")
            return
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            await self.error(None, "invalid_json", f"frame is not valid JSON: {exc}")
            return
        chat_id = body.get("id") if isinstance(body, dict) else None
        chat_id = chat_id if isinstance(chat_id, str) and MESSAGE_ID.match(chat_id) else None
        try:
            kind = body.get("type") if isinstance(body, dict) else None
            if kind == "chat":
                await self.on_chat(body)
            elif kind == "resume":
                await self.on_resume(body)
            elif kind == "ping":
                await self.send({"type": "pong"})
            else:
                await self.error(chat_id, "unknown_type",
                                 "type must be one of chat, resume, ping")
        except RequestRejected as exc:
            await self.rejected(chat_id, exc)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("ws_unhandled", label=self.label)
            await self.error(chat_id, "internal_error", "internal error; it has been logged")

    async def rejected(self, chat_id: str | None, exc: RequestRejected) -> None:
        await self.error(chat_id, "rate_limited" if isinstance(exc, RateLimited) else exc.code,
                         exc.message)

    def _admit(self, chat_id: str) -> None:
        if self.app[DRAINING].is_set():
            raise ShuttingDown()
        if chat_id in self.pumps:
            raise RequestRejected(f"a chat with id {chat_id} is already in flight",
                                  code="duplicate_id")
        if len(self.pumps) >= self.cfg.max_in_flight:
            raise RequestRejected(f"{self.cfg.max_in_flight} chats already in flight on this "
                                  "socket; wait for one to finish", code="too_many_in_flight")

    async def on_chat(self, body: dict[str, Any]) -> None:
        body = dict(body)
        body["id"] = body.get("id") or new_message_id()
        parsed = parse_chat_body({k: v for k, v in body.items() if k != "type"}, self.app)
        chat_id = parsed.msg_id or body["id"]
        self._admit(chat_id)
        self._spawn(chat_id, self._chat(chat_id, parsed))

    async def _chat(self, chat_id: str, parsed: ChatBody) -> None:
        """One chat: admitted by the same limits as HTTP, and counted as a stream while it
        relays."""
        try:
            async with admitted(self.app, self.who):
                sid, turn, user = await session_turn(self.app, parsed, self.label)
                live, listener = self.app[TURNS].start(turn, sid, user, self.max_buffered)
                self.turns[chat_id] = live
                await self._forward(chat_id, listener, sid, resumed=False)
        except RequestRejected as exc:
            with contextlib.suppress(ConnectionResetError):
                await self.rejected(chat_id, exc)

    async def on_resume(self, body: dict[str, Any]) -> None:
        sid = checked_session(self.app, body.get("session"))
        chat_id = checked_message_id(body.get("id"))
        self._admit(chat_id)
        attached = self.app[TURNS].attach(sid, chat_id, self.max_buffered)
        if attached is not None:  # still streaming in this process
            self.turns[chat_id] = attached[0]
            self._spawn(chat_id, self._forward(chat_id, attached[1], sid, resumed=True))
            return
        self._spawn(chat_id, self._replay(sid, chat_id))

    def _spawn(self, chat_id: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.pumps[chat_id] = task

        def forget(_: asyncio.Task[None]) -> None:
            self.pumps.pop(chat_id, None)
            self.turns.pop(chat_id, None)
        task.add_done_callback(forget)

    async def _forward(self, chat_id: str, listener: Listener, sid: str, resumed: bool) -> None:
        async def send(name: str, payload: dict[str, Any]) -> None:
            await self.send({"type": name, **payload})

        with contextlib.suppress(ConnectionResetError):
            await relay(listener, chat_id, sid, send, resumed=resumed)

    async def _replay(self, sid: str, chat_id: str) -> None:
        """Resume from the store: a finished answer, or one still streaming in another
        process, followed live through its stream (XREAD BLOCK: each piece as it is written)."""
        sessions = self.app[SESSIONS]
        deadline = time.monotonic() + RESUME_WAIT_S
        with contextlib.suppress(ConnectionResetError):
            record = await sessions.raw_answer(sid, chat_id)
            if record is None:
                await self.error(chat_id, "unknown_message",
                                 f"no answer for message {chat_id} in this session")
                return
            await self.send({"type": "start", "id": chat_id, "session": sid, "resumed": True})
            after = "0-0"
            while record.get("status") == "streaming":
                entries = await sessions.follow(sid, chat_id, after,
                                                min(RESUME_BLOCK_S, deadline - time.monotonic()))
                if entries is None:    # the store is away: what it last said is all we have
                    record = {**record, "status": "interrupted", "reason": "the store is down"}
                    break
                for entry_id, entry in entries:
                    after = entry_id
                    if "t" in entry:
                        await self.send({"type": "delta", "id": chat_id, "text": entry["t"]})
                    elif "r" in entry:   # a restart: what was sent is replaced
                        await self.send({"type": "switch", "id": chat_id, "from": entry["tier"],
                                         "to": entry["tier"], "kind": "restart",
                                         "reason": entry["reason"], "replace": entry["r"]})
                    elif "end" in entry:
                        record = {**entry["end"], "text": ""}   # its text was streamed
                if record.get("status") == "streaming" and time.monotonic() > deadline:
                    record = {**record, "status": "interrupted", "reason": "timeout"}
            if text := str(record.get("text", "")):   # an answer that was already finished
                await self.send({"type": "delta", "id": chat_id, "text": text})
            if record.get("status") == "done":
                await self.send({"type": "done", **record.get("done", {}), "id": chat_id})
                return
            await self.error(chat_id, "interrupted",
                             f"the answer was cut off: {record.get('reason', 'timeout')}; "
                             "ask again")


async def drain(app: web.Application) -> None:
    """On SIGTERM (while still listening: /readyz says 503) and again at on_shutdown: refuse
    new chats, let in-flight answers finish, then close with 1001."""
    app[DRAINING].set()
    settings = app[SETTINGS]
    live: set[Connection] = app[SOCKETS]
    for conn in list(live):
        with contextlib.suppress(ConnectionResetError):
            await conn.send({"type": "going_away", "reason": "server shutting down",
                             "drain_s": settings.ws.drain_s})
            if not conn.busy:
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
    finished = await app[TURNS].wait_idle(settings.ws.drain_s)
    if not finished:
        log.warning("drain_timeout", cancelling=len(app[TURNS].live),
                    note="their text is kept for resume")
        await app[TURNS].close()
    for conn in list(live):
        if conn.pumps:
            await asyncio.gather(*conn.pumps.values(), return_exceptions=True)
        with contextlib.suppress(ConnectionResetError):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
