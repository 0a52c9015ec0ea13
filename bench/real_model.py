"""Scenario 5: a real model. SmolLM2-135M on llama.cpp (llama-cpp-python), straight and
through the gateway, so simulated figures sit next to real tokens per second.

    python -m bench.real_model [--requests 8] [--max-tokens 64]

One client at a time (llama-cpp-python serves one request at a time). The replica runs on
core 1 with the load tool, the gateway alone on core 0. Reported per path: TTFT, total
time, and completion tokens per second (usage as the server counts it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import aiohttp
import orjson

from bench import procs, report
from onprem import llamacpp

ALIAS = "llama-3.1-70b-instruct"  # the model id the gateway's config expects from on-prem


async def one(session: aiohttp.ClientSession, url: str, model: str, question: str,
              max_tokens: int) -> dict[str, Any]:
    body = {"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": question}]}
    t0 = time.perf_counter()
    first = None
    tokens = 0
    served = None
    async with session.post(url, data=orjson.dumps(body)) as r:
        r.raise_for_status()
        async for line in r.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = orjson.loads(line[6:])
            served = chunk.get("served_by", served)   # the gateway's, on its last chunk
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    tokens += 1  # llama.cpp streams one token per chunk; the gateway keeps them
                    if first is None:
                        first = time.perf_counter()
    total = time.perf_counter() - t0
    return {"ttft_s": (first or time.perf_counter()) - t0, "total_s": total, "tokens": tokens,
            "served_by": served}


async def measure(url: str, model: str, headers: dict[str, str], n: int,
                  max_tokens: int) -> dict[str, Any]:
    runs = []
    async with aiohttp.ClientSession(headers={"Content-Type": "application/json", **headers},
                                     timeout=aiohttp.ClientTimeout(total=300)) as s:
        await one(s, url, model, "Say hello.", 8)  # warm up
        for i in range(n):
            q = ("Recommend a family car for a dealership customer, in a few sentences. "
                 f"({uuid.uuid4().hex[:6]} {i})")
            runs.append(await one(s, url, model, q, max_tokens))
    # Through the gateway every answer must be the replica's: one from the backup or the
    # static reply would be timed as if it were the model.
    others = [r["served_by"] for r in runs if r["served_by"] not in (None, ["onprem"])]
    if others:
        raise SystemExit(f"bench.real_model: {len(others)} of {n} answers through the gateway "
                         f"were not the replica's (served by {others[0]})")
    gen_s = [r["total_s"] - r["ttft_s"] for r in runs]
    toks = sum(r["tokens"] for r in runs)
    return {"ttft_ms": report.summary_ms([r["ttft_s"] for r in runs]),
            "total_ms": report.summary_ms([r["total_s"] for r in runs]),
            "completion_tokens": toks,
            "tokens_per_s": toks / sum(r["total_s"] for r in runs),
            "decode_tokens_per_s": sum(max(0, r["tokens"] - 1) for r in runs) / sum(gen_s)}


async def onprem_up(gateway_url: str, within_s: float = 60.0) -> None:
    """Until the gateway's monitor says on-prem is up: the direct run just before held the
    replica's probes behind answers that were not the gateway's, so it may be down there."""
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as s:
        while True:
            async with s.get(f"{gateway_url}/health") as r:
                state = (await r.json())["tiers"]["onprem"]["state"]
            if state == "up":
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"bench.real_model: on-prem still {state} after {within_s:g} s")
            await asyncio.sleep(0.2)


async def run(n: int, max_tokens: int) -> None:
    why = llamacpp.available()
    if why:
        raise SystemExit(f"bench.real_model: {why}")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    key = procs.KEYS["ONPREM_API_KEY"]
    port = procs.free_port()
    replica = procs.Proc(llamacpp.command(port, key, ALIAS), port, core=1, timeout=180)
    gw = None
    try:
        if not await llamacpp.wait_ready(replica.url, key, lambda: replica.popen.poll() is None):
            raise SystemExit(f"bench.real_model: the replica did not load; see {replica.log.name}")
        gw = procs.gateway([replica.url], None, core=0,
                           deadlines={"headers_s": 60, "first_token_s": 120, "gap_s": 60})
        direct = await measure(f"{replica.url}/v1/chat/completions", ALIAS,
                               {"Authorization": f"Bearer {key}"}, n, max_tokens)
        await onprem_up(gw.url)
        through = await measure(f"{gw.url}/v1/chat/completions", "scout/onprem",
                                procs.API_HEADERS, n, max_tokens)
    finally:
        for p in (gw, replica):
            if p is not None:
                p.stop()
    rows = [[name, r["ttft_ms"]["p50"], r["total_ms"]["p50"], r["completion_tokens"],
             r["tokens_per_s"], r["decode_tokens_per_s"]]
            for name, r in (("llama.cpp direct", direct), ("through the gateway", through))]
    report.write("real_model", {"model": "SmolLM2-135M-Instruct (GGUF) on llama-cpp-python",
                                "requests": n, "max_tokens": max_tokens, "direct": direct,
                                "gateway": through}, rows,
                 ["path", "TTFT p50 ms", "total p50 ms", "completion tokens",
                  "tokens/s (whole request)", "tokens/s (after first token)"],
                 note=f"SmolLM2-135M on llama-cpp-python (CPU), {n} sequential requests of up to "
                      f"{max_tokens} tokens each, temperature 0. Replica and load tool on core 1, "
                      "gateway on core 0. Tokens = streamed content chunks (one per token from llama.cpp). "
                      "Through the gateway the prompt also carries the configured system prompt, so "
                      "answers (and their lengths) differ: compare tokens per second, not totals.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    asyncio.run(run(args.requests, args.max_tokens))


if __name__ == "__main__":
    main()
