"""A soak: streamed turns for minutes while faults cycle, checking nothing fails or leaks.

    python -m bench.soak [--minutes 10] [--concurrency 16] [--period 30]

Real processes: two on-prem replica simulators reached directly, an "OpenAI" simulator,
Redis and one gateway. Every `--period` seconds the next fault starts and the previous
one is cleared, through the simulators' control ports or by signals:

    hang before headers · HTTP 500 · HTTP 401 · a drop mid-stream ·
    a replica SIGKILLed (restarted on its port at the period's end) ·
    Redis SIGKILLed (restarted likewise)

Each turn is a streamed chat completion; it counts as failed when it is not a 200, and as
truncated when the stream does not end with a finish_reason and `[DONE]`.

Goals: 0 failed or truncated turns; the gateway's RSS grows ≤ 5 % from the end of the
first minute to the end; its open file descriptors return to their baseline after each
fault. Measured at the end of each period, a few seconds after the fault is cleared, fds
include the keep-alive pools' upstream connections (a fault moves traffic to the backup,
whose pool stays warm for its 30 s idle timeout), so they are counted apart (from
/proc/net/tcp) and left out; and once the load stops and the pools have idled out, the
total must be back to what it was before the load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench import procs, report
from bench.failover import set_fault
from bench.load import QUESTION

FAST = {"ttft": 0.05, "interval": 0.005, "tokens": 20}
DEADLINES = {"headers_s": 1.0, "first_token_s": 2.0, "gap_s": 2.0}


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def upstream_sockets(pid: int, ports: set[int]) -> int:
    """The process's TCP connections to these (upstream) ports: its keep-alive pools."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[9] in inodes and int(cols[2].rsplit(":", 1)[1], 16) in ports:
                count += 1
    return count


class Soak:
    def __init__(self, concurrency: int) -> None:
        key = procs.KEYS["ONPREM_API_KEY"]
        self.replicas = [procs.simulator(core=1, api_key=key, **FAST) for _ in range(2)]
        self.backup = procs.simulator(core=1, api_key=procs.KEYS["OPENAI_API_KEY"],
                                      model="gpt-4o-mini", **FAST)
        self.redis = procs.redis(core=1)
        self.gw = procs.gateway([r.url for r in self.replicas], f"{self.backup.url}/v1",
                                redis_url=f"redis://127.0.0.1:{self.redis.port}/0", core=0,
                                deadlines=DEADLINES)
        self.concurrency = concurrency
        self.ok = self.failed = self.truncated = 0
        self.errors: dict[str, int] = {}
        self.served: dict[str, int] = {}
        self.samples: list[dict[str, float]] = []
        self.stop = asyncio.Event()

    async def turn(self, s: aiohttp.ClientSession, i: int) -> None:
        body = {"model": "scout", "stream": True, "messages": [
            {"role": "user", "content": f"{QUESTION} (soak {uuid.uuid4().hex[:8]} #{i})"}]}
        try:
            async with s.post(f"{self.gw.url}/v1/chat/completions", json=body,
                              headers=procs.API_HEADERS) as r:
                text = (await r.read()).decode()
                if r.status != 200:
                    self._fail(f"HTTP {r.status}")
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._fail(type(exc).__name__)
            return
        if '"finish_reason":"' not in text or not text.rstrip().endswith("data: [DONE]"):
            self.truncated += 1
            self.errors["truncated"] = self.errors.get("truncated", 0) + 1
            return
        self.ok += 1
        served = text.rsplit('"served_by":', 1)[-1].split("]", 1)[0] + "]"
        self.served[served] = self.served.get(served, 0) + 1

    def _fail(self, why: str) -> None:
        self.failed += 1
        self.errors[why] = self.errors.get(why, 0) + 1

    async def customer(self, n: int) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            i = 0
            while not self.stop.is_set():
                await self.turn(s, n * 1_000_000 + i)
                i += 1

    def sample(self, label: str, t0: float) -> None:
        pid = self.gw.popen.pid
        ports = {r.port for r in self.replicas} | {self.backup.port, self.redis.port}
        self.samples.append({"t": round(time.monotonic() - t0, 1), "label": label,
                             "rss_mb": round(self.gw.rss_bytes() / 2**20, 2), "fds": fds(pid),
                             "pooled": upstream_sockets(pid, ports),
                             "ok": self.ok, "failed": self.failed,
                             "truncated": self.truncated})

    def faults(self) -> list[tuple[str, Callable[[], Awaitable[None]],
                                   Callable[[], Awaitable[None]]]]:
        r1, r2 = self.replicas

        def fault(sim: procs.Proc, name: str) -> Callable[[], Awaitable[None]]:
            return lambda: set_fault(sim, name)

        async def kill(p: procs.Proc) -> None:
            p.popen.send_signal(signal.SIGKILL)
            p.popen.wait()

        async def restart(p: procs.Proc) -> None:
            p.restart()
        return [
            ("hang before headers", fault(r1, "hang_before_headers"), fault(r1, "none")),
            ("HTTP 500", fault(r1, "http_500"), fault(r1, "none")),
            ("HTTP 401", fault(r2, "http_401"), fault(r2, "none")),
            ("drop mid-stream", fault(r1, "drop"), fault(r1, "none")),
            ("replica SIGKILLed", lambda: kill(r2), lambda: restart(r2)),
            ("Redis SIGKILLed", lambda: kill(self.redis), lambda: restart(self.redis)),
        ]

    async def run(self, minutes: float, period: float, idle_s: float = 75.0) -> dict[str, Any]:
        t0 = time.monotonic()
        self.sample("before the load", t0)
        load = [asyncio.ensure_future(self.customer(n)) for n in range(self.concurrency)]
        await asyncio.sleep(min(60.0, minutes * 60 / 4))
        self.sample("after the first minute", t0)
        baseline_fds = self.samples[-1]["fds"]
        cycle = self.faults()
        end = t0 + minutes * 60
        k = 0
        while time.monotonic() + period <= end:
            name, start, clear = cycle[k % len(cycle)]
            await start()
            await asyncio.sleep(period * 0.7)
            await clear()
            await asyncio.sleep(period * 0.3)   # time to recover before measuring
            self.sample(f"after {name}", t0)
            k += 1
        self.stop.set()
        await asyncio.gather(*load)
        self.sample("end of the load", t0)
        # Idle past the upstream pools' 30 s keep-alive: every connection a fault opened is
        # closed by now, so what is left over the start is a leak.
        await asyncio.sleep(idle_s)
        self.sample(f"idle {idle_s:g} s", t0)
        first = self.samples[1]
        last = self.samples[-2]
        growth = (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"]
        fd_excess = max(s["fds"] - s["pooled"] - (baseline_fds - first["pooled"])
                        for s in self.samples[1:])
        idle_excess = self.samples[-1]["fds"] - self.samples[0]["fds"]
        return {"minutes": minutes, "concurrency": self.concurrency, "period_s": period,
                "turns": self.ok + self.failed + self.truncated, "failed": self.failed,
                "truncated": self.truncated, "errors": self.errors, "served": self.served,
                "rss_growth": growth, "fd_baseline": baseline_fds, "fd_max_excess": fd_excess,
                "fd_idle_excess": idle_excess, "samples": self.samples,
                "goals": {"no failed or truncated turn": self.failed + self.truncated == 0,
                          "RSS growth ≤ 5 % after the first minute": growth <= 0.05,
                          "fds, less pooled upstream connections, back to the baseline "
                          "after each fault": fd_excess <= 0,
                          "fds back to the start once idle": idle_excess <= 0}}

    def close(self) -> None:
        for p in (self.gw, self.redis, self.backup, *self.replicas):
            p.stop()


async def main_async(minutes: float, concurrency: int, period: float) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    soak = Soak(concurrency)
    try:
        result = await soak.run(minutes, period)
    finally:
        soak.close()
    rows = [[s["t"], s["label"], s["rss_mb"], s["fds"], s["pooled"], s["ok"], s["failed"],
             s["truncated"]] for s in result["samples"]]
    goals = "; ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in result["goals"].items())
    report.write("soak", result, rows, ["t s", "moment", "gateway RSS MiB", "open fds",
                                        "of them pooled upstream connections", "turns ok",
                                        "failed", "truncated"],
                 note=f"{result['turns']} streamed turns at concurrency {concurrency} over "
                      f"{minutes:g} min, a fault every {period:g} s. RSS growth "
                      f"{result['rss_growth']:+.1%}; fds less pooled upstream connections at most "
                      f"{result['fd_max_excess']:+d} over the baseline; once idle "
                      f"{result['fd_idle_excess']:+d} against the start. Goals: {goals}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--period", type=float, default=30.0)
    args = ap.parse_args()
    asyncio.run(main_async(args.minutes, args.concurrency, args.period))


if __name__ == "__main__":
    main()
