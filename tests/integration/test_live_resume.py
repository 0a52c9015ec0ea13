"""Live resume across gateways, without polling: a chat streaming on gateway A is followed
from gateway B through its Redis stream (XREAD BLOCK), each piece as A writes it, with
real Redis. The delay from A's client seeing a piece to B's client seeing it is printed
(the goal, 50 ms, is measured by `python -m bench.resume`, not asserted here)."""

from __future__ import annotations

import asyncio
import statistics
import time

from gateway.app import create_app
from tests.conftest import make_settings
from tests.ws_client import connect


async def test_a_resume_on_another_gateway_streams_each_piece_as_it_is_written(
        aiohttp_client, slow_sim, redis_server):
    from tests.conftest import AUTH
    settings = make_settings([slow_sim.url], None, redis_url=redis_server.url)
    a = await aiohttp_client(create_app(settings), headers=AUTH)
    b = await aiohttp_client(create_app(settings), headers=AUTH)
    ws_a = await connect(a)
    await ws_a.send_json({"type": "chat", "id": "m1",
                          "message": "Which hybrid SUV would you recommend? (live)"})
    seen_a: dict[int, float] = {}     # text length → when A's client had that much
    text_a = ""
    session = None
    while len(text_a) < 40:           # a few pieces in: then the customer switches gateway
        ev = await ws_a.receive_json(timeout=10)
        if ev["type"] == "start":
            session = ev["session"]
        if ev["type"] == "delta":
            text_a += ev["text"]
            seen_a[len(text_a)] = time.monotonic()
    assert session is not None
    ws_b = await connect(b)
    await ws_b.send_json({"type": "resume", "id": "m1", "session": session})

    async def follow(ws, seen: dict[int, float], text: str) -> list[dict]:
        """Events until done, noting when each text length arrived."""
        events = []
        while True:
            ev = await ws.receive_json(timeout=15)
            events.append(ev)
            if ev["type"] == "delta":
                text += ev["text"]
                seen[len(text)] = time.monotonic()
            if ev["type"] in ("done", "error"):
                return events

    seen_b: dict[int, float] = {}
    b_events, a_events = await asyncio.gather(follow(ws_b, seen_b, ""),
                                              follow(ws_a, seen_a, text_a))
    text_a += "".join(e["text"] for e in a_events if e["type"] == "delta")
    assert a_events[-1]["type"] == "done" and b_events[-1]["type"] == "done"
    assert b_events[0] == {"type": "start", "id": "m1", "session": session, "resumed": True}
    text_b = "".join(e["text"] for e in b_events if e["type"] == "delta")
    assert text_b == text_a, "B has the whole answer, from its start"
    assert b_events[-1]["served_by"] == ["onprem"]
    # Live, not replayed at the end: B got the answer in many pieces while A streamed.
    live = [n for n in seen_b if n > 40]
    assert len(live) >= 10, f"only {len(live)} pieces reached B live: {sorted(seen_b)}"
    delays = [(seen_b[n] - seen_a[n]) * 1000 for n in live if n in seen_a]
    assert delays, "no piece lengths in common"
    print(f"\nlive resume on another gateway: {len(delays)} pieces, delay after the origin's "
          f"client p50 {statistics.median(delays):.1f} ms, max {max(delays):.1f} ms")
    # The pieces travel in a Redis stream (nothing rewrites the whole text as it grows).
    keys = redis_server.command("KEYS", "scout:stream:*")
    assert b"scout:stream:" in keys
