"""Scenario 2: a fresh cache hit with real Redis, and a static reply, through the gateway.

    python -m bench.cache [--requests 2000]

One gateway process (pinned to core 0) with a real redis-server; the client
on the other core sends the same question one request at a time, so each
figure is the gateway's own latency for that path, end to end on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from bench import procs, report
from bench.overhead import relay_proc

QUESTION = "Which hybrid SUV would you recommend for a family of five?"


async def measure(url: str, model: str, n: int,
                  path: str = "/v1/chat/completions") -> list[float]:
    body = {"model": model, "messages": [{"role": "user", "content": QUESTION}]}
    out: list[float] = []
    async with aiohttp.ClientSession(headers=procs.API_HEADERS) as s:
        for i in range(n + 50):
            t0 = time.perf_counter()
            async with s.post(f"{url}{path}", json=body) as r:
                data = await r.json()
                assert r.status == 200, data
            if i >= 50:  # warm-up excluded
                out.append(time.perf_counter() - t0)
            if i == 0:
                served = data["served_by"]
        print(f"{model}: served_by={served}")
    return out


async def run(n: int) -> None:
    red = procs.redis(core=1)
    sim = procs.simulator(core=1, api_key=procs.KEYS["ONPREM_API_KEY"])
    gw = procs.gateway([sim.url], None, redis_url=f"redis://127.0.0.1:{red.port}/0", core=0)
    floor = relay_proc(sim.url)
    try:
        async with aiohttp.ClientSession(headers=procs.API_HEADERS) as s:  # first ask: cached
            await (await s.post(f"{gw.url}/v1/chat/completions", json={
                "model": "scout", "messages": [{"role": "user", "content": QUESTION}]})).read()
        hit = await measure(gw.url, "scout", n)
        static = await measure(gw.url, "scout/static", n)
        canned = await measure(floor.url, "canned", n, "/constant")
    finally:
        for p in (gw, floor, sim, red):
            p.stop()
    h, st, c = report.summary_ms(hit), report.summary_ms(static), report.summary_ms(canned)
    report.write("cache", {"fresh_hit_ms": h, "static_ms": st, "floor_ms": c, "requests": n},
                 [["fresh cache hit (Redis)", h["p50"], h["p90"], h["p99"], h["max"], "≤ 2 ms p99"],
                  ["static reply", st["p50"], st["p90"], st["p99"], st["max"], "≤ 1 ms p99"],
                  ["floor: bare aiohttp, canned answer", c["p50"], c["p90"], c["p99"], c["max"],
                   ""]],
                 ["path", "p50 ms", "p90 ms", "p99 ms", "max ms", "goal"],
                 note=f"{n} sequential non-streaming requests per path through the OpenAI API; "
                      "client and gateway on separate cores; loopback. The floor row is "
                      "bench.relay's POST /constant on the same core: an aiohttp handler that "
                      "reads the body and answers a canned completion.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    asyncio.run(run(ap.parse_args().requests))


if __name__ == "__main__":
    main()
