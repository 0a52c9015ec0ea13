"""Live resume across gateways: how soon a client that resumed on gateway B sees a piece
that gateway A's own client has just seen.

    python -m bench.resume [--turns 20]

Two gateway processes share a real redis-server; a simulated replica streams 60 tokens
30 ms apart. For each turn a WebSocket client on A asks, and after the first 40
characters a second client resumes the same chat on B, which follows A's Redis stream
(XREAD BLOCK). For every text length both clients reach, the delay is B's arrival minus
A's. Goal: p95 ≤ 50 ms. The clients, the replica and Redis share core 1; the gateways
share core 0.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from bench import procs, report

GOAL_MS = 50.0


async def open_ws(s: aiohttp.ClientSession, base: str) -> aiohttp.ClientWebSocketResponse:
    token = (await (await s.post(f"{base}/api/ws-token")).json())["token"]
    ws = await s.ws_connect(f"{base}/ws/chat", protocols=("scout.v1", f"bearer.{token}"))
    assert (await ws.receive_json())["type"] == "hello"
    return ws


async def one_turn(s: aiohttp.ClientSession, a: str, b: str, i: int) -> list[float]:
    ws_a, ws_b = await open_ws(s, a), await open_ws(s, b)
    await ws_a.send_json({"type": "chat", "id": f"t{i}",
                          "message": f"Which hybrid SUV would you recommend? (bench {i})"})
    seen_a: dict[int, float] = {}
    seen_b: dict[int, float] = {}
    text_a = text_b = ""
    session = None
    while len(text_a) < 40:
        ev = await ws_a.receive_json(timeout=20)
        session = ev.get("session", session)
        if ev["type"] == "delta":
            text_a += ev["text"]
            seen_a[len(text_a)] = time.perf_counter()
    await ws_b.send_json({"type": "resume", "id": f"t{i}", "session": session})

    async def follow(ws: aiohttp.ClientWebSocketResponse, seen: dict[int, float],
                     text: str) -> str:
        while True:
            ev = await ws.receive_json(timeout=20)
            if ev["type"] == "delta":
                text += ev["text"]
                seen[len(text)] = time.perf_counter()
            if ev["type"] in ("done", "error"):
                assert ev["type"] == "done", ev
                return text

    text_a, text_b = await asyncio.gather(follow(ws_a, seen_a, text_a),
                                          follow(ws_b, seen_b, text_b))
    assert text_a == text_b, "B's answer differs"
    await ws_a.close()
    await ws_b.close()
    return [(seen_b[n] - seen_a[n]) * 1000 for n in seen_b if n > 40 and n in seen_a]


async def run(turns: int) -> None:
    red = procs.redis(core=1)
    sim = procs.simulator(core=1, api_key=procs.KEYS["ONPREM_API_KEY"], tokens=60,
                          ttft=0.05, interval=0.03)
    url = f"redis://127.0.0.1:{red.port}/0"
    gw_a = procs.gateway([sim.url], None, redis_url=url, core=0)
    gw_b = procs.gateway([sim.url], None, redis_url=url, core=0)
    delays: list[float] = []
    try:
        async with aiohttp.ClientSession(headers=procs.API_HEADERS) as s:
            for i in range(turns):
                delays += await one_turn(s, gw_a.url, gw_b.url, i)
    finally:
        for p in (gw_a, gw_b, sim, red):
            p.stop()
    d = report.summary_ms([x / 1000 for x in delays])
    met = "met" if d["p95"] <= GOAL_MS else "missed"
    report.write("resume", {"delay_ms": d, "pieces": len(delays), "turns": turns,
                            "goal_p95_ms": GOAL_MS, "goal": met},
                 [["B after A, per piece", len(delays), d["p50"], d["p95"], d["p99"], d["max"],
                   f"p95 ≤ {GOAL_MS:g} ms: {met}"]],
                 ["what", "pieces", "p50 ms", "p95 ms", "p99 ms", "max ms", "goal"],
                 note=f"{turns} turns; two gateway processes and one redis-server; the resumed "
                      "client follows the answer's Redis stream with XREAD BLOCK.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=20)
    asyncio.run(run(ap.parse_args().turns))


if __name__ == "__main__":
    main()
