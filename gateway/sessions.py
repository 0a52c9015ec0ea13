"""Conversation sessions: history per session in the shared store, and answers kept for resume.

Session ids are issued by the gateway: 144 random bits plus an HMAC tag, so
an id can't be guessed or chosen by a client (no fixation), and a malformed or
forged one is rejected before any lookup. Without a working store the turn
still runs on the request's own history.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from gateway.config import SessionsConfig
from gateway.cost import estimate_tokens, prompt_text
from gateway.state import keys
from gateway.state.kv import KV

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{16}$")


class SessionIds:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _tag(self, nonce: str) -> str:
        mac = hmac.new(self._secret, nonce.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode()[:16]

    def new(self) -> str:
        nonce = secrets.token_urlsafe(18)  # 24 characters
        return f"{nonce}.{self._tag(nonce)}"

    def valid(self, sid: object) -> bool:
        if not isinstance(sid, str) or not _SESSION_ID.match(sid):
            return False
        nonce, tag = sid.split(".")
        return hmac.compare_digest(tag, self._tag(nonce))


def trim_history(messages: Sequence[dict[str, Any]], max_turns: int,
                 max_tokens: int) -> list[dict[str, Any]]:
    """Keep the newest messages within the turn and token budgets. Pure.

    System messages are kept; the newest message is always kept, whatever its size.
    """
    system = [m for m in messages if m.get("role") == "system"]
    rest = [m for m in messages if m.get("role") != "system"]
    kept: list[dict[str, Any]] = []
    budget = max_tokens - estimate_tokens(prompt_text(system))
    for m in reversed(rest[-max_turns * 2 - 1:]):
        cost = estimate_tokens(prompt_text([m]))
        if kept and cost > budget:
            break
        kept.append(m)
        budget -= cost
    return system + kept[::-1]


class SessionStore:
    def __init__(self, kv: KV, config: SessionsConfig, ids: SessionIds) -> None:
        self.kv = kv
        self.config = config
        self.ids = ids

    async def history(self, sid: str) -> list[dict[str, Any]] | None:
        """The stored conversation ([] if new or expired), or None if the store is unreachable."""
        raw = await self.kv.list_all(keys.SESSION + sid)
        if raw is None:
            return None
        out = []
        for item in raw:
            try:
                msg = orjson.loads(item)
            except orjson.JSONDecodeError:
                continue
            if isinstance(msg, dict):
                out.append(msg)
        return out

    async def append(self, sid: str, messages: list[dict[str, Any]]) -> bool:
        return await self.kv.list_append(
            keys.SESSION + sid, [orjson.dumps(m) for m in messages],
            self.config.max_turns * 2, self.config.ttl_s)

    def trim(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return trim_history(messages, self.config.max_turns, self.config.max_prompt_tokens)

    async def mark_private(self, sid: str, intent: str) -> None:
        """Remember that this conversation touched a private intent: every later turn of it
        stays on-site, even once that turn has left the window sent upstream."""
        await self.kv.set(f"{keys.SESSION}{sid}:private", intent.encode(), self.config.ttl_s)

    async def private_intent(self, sid: str) -> str | None:
        raw = await self.kv.get(f"{keys.SESSION}{sid}:private")
        return raw.decode() if isinstance(raw, bytes) else raw

    async def save_answer(self, sid: str, msg_id: str, record: dict[str, Any]) -> bool:
        return await self.kv.set(f"{keys.ANSWER}{sid}:{msg_id}", orjson.dumps(record),
                                 self.config.answer_ttl_s)

    async def raw_answer(self, sid: str, msg_id: str) -> dict[str, Any] | None:
        """The answer's record as stored: while it streams, only its status."""
        raw = await self.kv.get(f"{keys.ANSWER}{sid}:{msg_id}")
        return orjson.loads(raw) if raw else None

    async def answer(self, sid: str, msg_id: str) -> dict[str, Any] | None:
        """The answer's record; one still streaming has its text so far, from its stream."""
        record = await self.raw_answer(sid, msg_id)
        if record is not None and record.get("status") == "streaming":
            entries = await self.follow(sid, msg_id, "0-0", 0) or []
            record["text"] = streamed_text(e for _, e in entries)
        return record

    # A streaming answer's deltas, as a Redis stream: the gateway answering XADDs them as
    # they come (batched only while a write is in flight); a client that resumes on another
    # gateway follows them with XREAD BLOCK. The stream ends with the answer's record.

    async def stream_text(self, sid: str, msg_id: str, texts: list[str]) -> bool:
        return await self.kv.stream_add(f"{keys.STREAM}{sid}:{msg_id}",
                                        [orjson.dumps({"t": t}) for t in texts],
                                        self.config.answer_ttl_s)

    async def stream_replace(self, sid: str, msg_id: str, text: str, tier: str,
                             reason: str) -> bool:
        """A restart: the answer so far becomes `text` (entries before it are replaced)."""
        return await self.kv.stream_add(f"{keys.STREAM}{sid}:{msg_id}",
                                        [orjson.dumps({"r": text, "tier": tier,
                                                       "reason": reason})],
                                        self.config.answer_ttl_s)

    async def stream_end(self, sid: str, msg_id: str, record: dict[str, Any]) -> bool:
        return await self.kv.stream_add(f"{keys.STREAM}{sid}:{msg_id}",
                                        [orjson.dumps({"end": record})],
                                        self.config.answer_ttl_s)

    async def follow(self, sid: str, msg_id: str, after: str,
                     block_s: float) -> list[tuple[str, dict[str, Any]]] | None:
        """Stream entries after `after` ({"t": text}, {"r": text, ...} or {"end": record}),
        waiting up to
        `block_s` for the first; None when the store can't say."""
        got = await self.kv.stream_read(f"{keys.STREAM}{sid}:{msg_id}", after, block_s)
        return None if got is None else [(i, orjson.loads(p)) for i, p in got]


def streamed_text(entries: Iterable[dict[str, Any]]) -> str:
    """The answer a stream's entries spell: text appended, a restart's text replacing."""
    parts: list[str] = []
    for e in entries:
        if "r" in e:
            parts = [e["r"]]
        elif "t" in e:
            parts.append(e["t"])
    return "".join(parts)
