"""Helpers for driving /ws/chat in tests."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp


async def token(client) -> str:
    return (await (await client.post("/api/ws-token")).json())["token"]


async def connect(client, tok: str | None = None, **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
    """Open /ws/chat the way a browser does: the token as a subprotocol."""
    tok = tok or await token(client)
    ws = await client.session.ws_connect(client.make_url("/ws/chat"),
                                         protocols=("scout.v1", f"bearer.{tok}"), **kwargs)
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello"
    return ws


async def until(ws, chat_id: str, within: float = 10.0) -> list[dict[str, Any]]:
    """Events for one chat until its done or error (others' events are skipped)."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            ev = await ws.receive_json()
            if ev.get("id") != chat_id:
                continue
            events.append(ev)
            if ev["type"] in ("done", "error"):
                return events


async def until_all(ws, ids: list[str], within: float = 10.0) -> dict[str, list[dict[str, Any]]]:
    """Events of several chats on one socket, until each has its done or error."""
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    open_ids = set(ids)
    async with asyncio.timeout(within):
        while open_ids:
            ev = await ws.receive_json()
            if ev.get("id") in out:
                out[ev["id"]].append(ev)
                if ev["type"] in ("done", "error"):
                    open_ids.discard(ev["id"])
    return out


def text(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")
