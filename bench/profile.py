"""Where the gateway's CPU goes under streaming load: py-spy on one gateway process.

    python -m bench.profile [--concurrency 64] [--requests 1500] [--seconds 12] [--tokens 20]

Same setup as bench.overhead (simulator: 50 ms TTFT, 20 chunks 5 ms apart; gateway alone on
core 0). --tokens 1 leaves mostly what each request costs, apart from its chunks. py-spy
samples the gateway while the load runs; printed: the busiest functions by own time and by
inclusive time (idle threads and the event loop's wait excluded). The raw collapsed stacks
go to bench/results/profile.txt (flamegraph.pl or speedscope read them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from collections import Counter

from bench import procs
from bench.load import run_load
from bench.report import RESULTS

IDLE = ("thread.py:81", "select", "Runner.run")  # waiting, or uvloop's C loop itself


def top(path: str, n: int = 25) -> None:
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in open(path):
        stack, _, count = line.rstrip().rpartition(" ")
        frames = stack.split(";")
        if any(mark in frames[-1] for mark in IDLE):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for f in set(frames):
            incl[f] += int(count)
    print(f"{total} busy samples")
    for title, counter in (("own time", own), ("inclusive", incl)):
        print(f"\n-- {title}")
        for frame, c in counter.most_common(n):
            print(f"{c * 100 / total:5.1f}%  {frame[:130]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--seconds", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=20, help="chunks per answer")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    sim = procs.simulator(core=1, api_key=procs.KEYS["ONPREM_API_KEY"], ttft=0.05,
                          interval=0.005, tokens=args.tokens)
    gw = procs.gateway([sim.url], None, core=0,
                       deadlines={"headers_s": 10, "first_token_s": 20, "gap_s": 10})
    out = RESULTS / "profile.txt"
    url = f"{gw.url}/v1/chat/completions"
    try:
        asyncio.run(run_load(url, 8, 40, "scout", procs.API_HEADERS, vary=True))
        spy = subprocess.Popen(["py-spy", "record", "-p", str(gw.popen.pid), "-o", str(out),
                                "-f", "raw", "-d", str(args.seconds), "-r", "250"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        asyncio.run(run_load(url, args.concurrency, args.requests, "scout", procs.API_HEADERS,
                             vary=True))
        spy.wait()
    finally:
        gw.stop()
        sim.stop()
    top(str(out))


if __name__ == "__main__":
    main()
