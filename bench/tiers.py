"""What each generative tier costs the gateway: the same load pinned to scout/onprem and
to scout/openai (both upstreams are the same simulator speed), alternating rounds.

    python -m bench.tiers [--concurrency 32] [--requests 600] [--rounds 2]

Gateway alone on core 0; both simulators and the load tool on core 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from bench import procs, report
from bench.overhead import measure

FAST = {"ttft": 0.05, "interval": 0.005, "tokens": 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    onprem = procs.simulator(core=1, api_key=procs.KEYS["ONPREM_API_KEY"], **FAST)
    openai = procs.simulator(core=1, api_key=procs.KEYS["OPENAI_API_KEY"], model="gpt-4o-mini",
                             **FAST)
    gw = procs.gateway([onprem.url], f"{openai.url}/v1", core=0,
                       deadlines={"headers_s": 10, "first_token_s": 20, "gap_s": 10})
    url = f"{gw.url}/v1/chat/completions"
    rows, runs = [], []
    try:
        for rnd in range(args.rounds):
            for model in ("scout/onprem", "scout/openai"):
                s = asyncio.run(measure(url, gw, args.concurrency, args.requests, model,
                                        procs.API_HEADERS, vary=True))
                cpu_ms = s["cpu_ms_per_request"]
                runs.append({"round": rnd, "model": model, **s})
                rows.append([rnd, model, s["ttft_ms"]["p50"], s["ttft_ms"]["p99"], s["rps"],
                             cpu_ms, s["errors"]])
                print(rows[-1], flush=True)
    finally:
        for p in (gw, openai, onprem):
            p.stop()
    report.write("tiers", {"concurrency": args.concurrency, "runs": runs}, rows,
                 ["round", "model", "TTFT p50 ms", "TTFT p99 ms", "req/s", "gateway CPU ms/req",
                  "errors"],
                 note=f"{args.concurrency} streams pinned to one tier; both upstreams are simulators "
                      "with 50 ms to first token, 20 chunks 5 ms apart.")


if __name__ == "__main__":
    main()
