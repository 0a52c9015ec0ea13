"""The inventory tier answering alone: both models down, SQLite, 200 different stock questions.

    python -m bench.inventory [--requests 200]

One gateway process on core 0 (its on-prem URL refuses connections, OpenAI is off), the
load tool on core 1, streamed OpenAI-API requests one at a time, each question new (no
cache hit). Goal: time to first token ≤ 20 ms at p99. A bare aiohttp floor for the same
path is `bench.cache`'s static reply.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from bench import procs, report
from bench.load import run_load

QUESTION = "Do you have a blue RAV4 hybrid under $45k?"


async def run(requests: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    dead = f"http://127.0.0.1:{procs.free_port()}"   # on-prem: nothing listens there
    gw = procs.gateway([dead], None, core=0)
    try:
        await run_load(f"{gw.url}/v1/chat/completions", 1, 20, "scout", procs.API_HEADERS,
                       question=QUESTION, vary=True)   # warm up; probes see on-prem down
        res = await run_load(f"{gw.url}/v1/chat/completions", 1, requests, "scout",
                             procs.API_HEADERS, question=QUESTION, vary=True)
    finally:
        gw.stop()
    ttft = report.summary_ms(res.ttft)
    served = {}
    for _, _, model in res.records:
        served[model] = served.get(model, 0) + 1
    met = "met" if ttft["p99"] <= 20 else f"missed by {ttft['p99'] - 20:.2f} ms"
    report.write("inventory", {"requests": requests, "errors": res.errors, "ttft_ms": ttft,
                               "served": served},
                 [[requests, res.errors, ttft["p50"], ttft["p90"], ttft["p99"], ttft["max"],
                   served]],
                 ["requests", "errors", "TTFT p50 ms", "p90 ms", "p99 ms", "max ms",
                  "answered by (first model)"],
                 note=f"Stock questions with on-prem refusing connections and OpenAI off, on "
                      f"SQLite (the shipped sample lot). Goal TTFT p99 ≤ 20 ms: {met}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    asyncio.run(run(ap.parse_args().requests))


if __name__ == "__main__":
    main()
