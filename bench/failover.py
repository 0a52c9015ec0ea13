"""Scenario 3: failover under load, as a timeline, next to the backup's own latency.

    python -m bench.failover [--concurrency 32] [--kill-concurrency 128] [--seconds 8]

Each scenario starts fresh processes: an on-prem replica simulator (the one that breaks),
an "OpenAI" simulator as the backup (same speed: 50 ms to first token, 20 chunks 5 ms
apart), and one gateway on core 0. Load runs for `--seconds`; the fault is injected a
third of the way in. Per request: when it started, its TTFT, and who answered.

- hang:   on-prem sends headers, then nothing (first-token deadline 2 s)
- 500:    on-prem answers HTTP 500
- 401:    on-prem refuses the gateway's key
- kill:   two replicas behind the on-prem nginx, one killed with SIGKILL mid-load
- hang-before-headers:    on-prem accepts the request and never sends a status line
                          (headers deadline 2 s): ejected by live traffic, probes pass
- replica-kill-multi-url: two replicas reached directly (no nginx), one SIGKILLed: the
                          gateway ejects it alone and the survivor keeps answering
- slow-then-fast:         on-prem's time to first token jumps from 300 ms to 4 s with the
                          shipped 5 s first-token deadline: hedging at its own tail
- drop-mid:               on-prem cuts each answer's connection after 10 tokens: OpenAI
                          resumes it from the text already sent
- stall-mid:              on-prem goes silent after 10 tokens (gap deadline 2 s): resumed

Reported: TTFT before and after the fault, the backup's own TTFT (measured directly in
the same run), how many requests waited for a deadline, when the gateway stopped sending
to the broken tier (time to detection), errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench import procs, report
from bench.load import Result, run_load
from onprem.nginx_conf import render_onprem

DEADLINE_S = 2.0
FAST = {"ttft": 0.05, "interval": 0.005, "tokens": 20}
FAULTS = {"hang": "hang_after_headers", "500": "http_500", "401": "http_401",
          "hang-before-headers": "hang_before_headers", "drop-mid": "drop",
          "stall-mid": "stall"}
MID = 10   # tokens sent before a mid-answer fault
# Per scenario: deadlines (headers, first token, gap) and the replica's speed.
SLOW_JUMP = {"headers_s": 2.0, "first_token_s": 5.0, "gap_s": 8.0}
BACKUP_MODEL = "gpt-4o-mini"


async def set_fault(sim: procs.Proc, fault: str, **knobs: Any) -> None:
    async with aiohttp.ClientSession() as s, s.post(
            f"http://127.0.0.1:{sim.control_port}/",  # type: ignore[attr-defined]
            json={"fault": fault, "fault_after": 0, **knobs}) as r:
        r.raise_for_status()


def two_replica_nginx(ports: list[int]) -> procs.Proc:
    port = procs.free_port()
    work = Path(tempfile.mkdtemp(prefix="scout-bench-nginx-"))
    conf = render_onprem([(f"r{i + 1}", f"127.0.0.1:{p}") for i, p in enumerate(ports)],
                         f"127.0.0.1:{port}").replace("worker_processes auto;",
                                                      "worker_processes 1;")
    (work / "nginx.conf").write_text(conf)
    return procs.Proc(["/usr/sbin/nginx", "-p", str(work), "-c", str(work / "nginx.conf"),
                       "-e", "stderr", "-g", "daemon off;"], port, core=1)


async def scenario(name: str, conc: int, seconds: float) -> dict[str, Any]:
    key = procs.KEYS["ONPREM_API_KEY"]
    backup = procs.simulator(core=1, api_key=procs.KEYS["OPENAI_API_KEY"], model=BACKUP_MODEL,
                             **FAST)
    started = [backup]
    try:
        deadlines = SLOW_JUMP if name == "slow-then-fast" else {
            "headers_s": DEADLINE_S, "first_token_s": DEADLINE_S, "gap_s": DEADLINE_S}
        if name in ("kill", "replica-kill-multi-url"):
            replicas = [procs.simulator(core=1, api_key=key, **FAST) for _ in range(2)]
            started += replicas
            if name == "kill":
                nginx = two_replica_nginx([r.port for r in replicas])
                started.append(nginx)
                onprem_urls = [nginx.url]
            else:
                onprem_urls = [r.url for r in replicas]
        else:
            speed = {**FAST, "ttft": 0.3} if name == "slow-then-fast" else FAST
            replicas = [procs.simulator(core=1, api_key=key, **speed)]
            started += replicas
            onprem_urls = [replicas[0].url]
        gw = procs.gateway(onprem_urls, f"{backup.url}/v1", core=0, deadlines=deadlines)
        started.append(gw)
        # The backup alone, same load shape: what a hand-over should cost on top of nothing.
        direct = await run_load(f"{backup.url}/v1/chat/completions", conc, conc * 20,
                                BACKUP_MODEL, {"Authorization": f"Bearer {procs.KEYS['OPENAI_API_KEY']}"},
                                seconds=seconds / 3)
        await run_load(f"{gw.url}/v1/chat/completions", 8, 80, "scout", procs.API_HEADERS,
                       vary=True)  # warm up: pooled connections, both tiers seen up, a tail
        fault_at = seconds / 3
        load = asyncio.create_task(run_load(f"{gw.url}/v1/chat/completions", conc,
                                            conc * 1000, "scout", procs.API_HEADERS,
                                            vary=True, seconds=seconds))
        await asyncio.sleep(fault_at)
        if name in ("kill", "replica-kill-multi-url"):
            replicas[0].popen.send_signal(signal.SIGKILL)
        elif name == "slow-then-fast":
            await set_fault(replicas[0], "none", ttft_s=4.0)
        elif name.endswith("-mid"):
            await set_fault(replicas[0], FAULTS[name], fault_after=MID)
        else:
            await set_fault(replicas[0], FAULTS[name])
        res = await load
        return analyse(name, conc, res, direct, fault_at,
                       deadlines["first_token_s"] if name == "slow-then-fast" else DEADLINE_S)
    finally:
        for p in reversed(started):
            p.stop()


def analyse(name: str, conc: int, res: Result, direct: Result, fault_at: float,
            deadline_s: float = DEADLINE_S) -> dict[str, Any]:
    before = [r for r in res.records if r[0] < fault_at]
    after = [r for r in res.records if r[0] >= fault_at]
    waited = [r for r in after if r[1] is not None and r[1] >= deadline_s * 0.95]
    backup_p50 = report.pct(direct.ttft, 50)
    last_waiter = max((r[0] for r in waited), default=None)
    settled = [r[1] for r in after if r[1] is not None
               and (last_waiter is None or r[0] > last_waiter)]
    served: dict[str, int] = {}
    for r in after:
        served[r[2] or "error"] = served.get(r[2] or "error", 0) + 1
    return {
        "scenario": name, "concurrency": conc, "fault_at_s": fault_at,
        "requests": len(res.records), "errors": res.errors, "error_kinds": res.error_kinds,
        "ttft_before_ms": report.summary_ms([r[1] for r in before if r[1] is not None]),
        "ttft_after_ms": report.summary_ms([r[1] for r in after if r[1] is not None]),
        "ttft_settled_ms": report.summary_ms(settled),
        "backup_direct_ms": report.summary_ms(direct.ttft),
        "settled_p50_minus_backup_ms": (report.pct(settled, 50) - backup_p50) * 1000
        if settled else None,
        "waited_for_deadline": len(waited),
        "max_wait_over_deadline_ms": (max(r[1] for r in waited) - deadline_s - backup_p50) * 1000
        if waited else None,
        "detection_s": (last_waiter - fault_at) if last_waiter is not None else 0.0,
        "served_after_fault": served,
        "records": [[round(a, 4), None if b is None else round(b, 5), c]
                    for a, b, c in res.records],
    }


def row(r: dict[str, Any]) -> list[Any]:
    def ms(v: float | None) -> str:
        return "" if v is None else f"{v:.1f}"
    return [r["scenario"], r["concurrency"], r["requests"], r["errors"],
            r["ttft_before_ms"]["p50"], r["backup_direct_ms"]["p50"], r["ttft_after_ms"]["p50"],
            r["ttft_after_ms"].get("p95"), r["ttft_after_ms"]["max"], ms(r["settled_p50_minus_backup_ms"]),
            r["waited_for_deadline"], ms(r["max_wait_over_deadline_ms"]),
            f"{r['detection_s']:.2f}", r["served_after_fault"]]


async def run(conc: int, kill_conc: int, seconds: float, only: list[str]) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    results = []
    for name in only:
        r = await scenario(name, kill_conc if "kill" in name else conc, seconds)
        results.append(r)
        print(row(r), flush=True)
    report.write("failover", {"deadline_s": DEADLINE_S, "seconds": seconds,
                              "scenarios": results}, [row(r) for r in results],
                 ["scenario", "concurrency", "requests", "errors", "TTFT p50 before ms",
                  "backup alone p50 ms", "TTFT p50 after ms", "TTFT p95 after ms",
                  "TTFT max after ms",
                  "settled p50 − backup ms", "waited for deadline", "max wait over deadline ms",
                  "detection s", "served after the fault"],
                 note=f"On-prem breaks {seconds / 3:.1f} s into a {seconds:g} s run; deadlines "
                      f"{DEADLINE_S:g} s (headers, first token, gap). Backup = an OpenAI simulator "
                      "as fast as on-prem (50 ms TTFT). 'Settled' = requests started after the "
                      "last one that waited for a deadline; 'detection' = from the fault to that "
                      "last waiter. Gateway alone on core 0; simulators, nginx, load on core 1.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--kill-concurrency", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--only", default="hang,500,401,kill,hang-before-headers,"
                                      "replica-kill-multi-url,slow-then-fast,drop-mid,"
                                      "stall-mid")
    args = ap.parse_args()
    asyncio.run(run(args.concurrency, args.kill_concurrency, args.seconds,
                    args.only.split(",")))


if __name__ == "__main__":
    main()
