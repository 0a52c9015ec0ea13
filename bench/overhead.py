"""Scenario 1: what the gateway adds, next to what nginx adds, against the upstream alone.

    python -m bench.overhead [--levels 1,32,128,512] [--scale 1.0]

The replica simulator (50 ms to first token, 20 chunks 5 ms apart) and this load tool
run on core 1; the proxy under test (nginx with one worker, or one gateway process)
runs alone on core 0. Each level sends the same load four ways in one run: straight to
the simulator, through the on-prem nginx config, through bench.relay (a bare aiohttp
byte relay: the floor for any Python gateway), and through the gateway (unique
questions, so no answer comes from the cache). Reported: TTFT p50/p99 and what each
proxy adds to it, throughput, and the proxy's CPU per request read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from bench import procs, report
from bench.load import run_load
from onprem.nginx_conf import render_onprem

MODEL = "llama-3.1-70b-instruct"


def relay_proc(sim_url: str) -> procs.Proc:
    port = procs.free_port()
    return procs.Proc([sys.executable, "-m", "bench.relay", "--upstream", sim_url,
                       "--port", str(port)], port, core=0)


def nginx_proc(sim_port: int) -> procs.Proc:
    port = procs.free_port()
    work = Path(tempfile.mkdtemp(prefix="scout-bench-nginx-"))
    conf = render_onprem([("r1", f"127.0.0.1:{sim_port}")], f"127.0.0.1:{port}")
    conf = conf.replace("worker_processes auto;", "worker_processes 1;")
    (work / "nginx.conf").write_text(conf)
    return procs.Proc(["/usr/sbin/nginx", "-p", str(work), "-c", str(work / "nginx.conf"),
                       "-e", "stderr", "-g", "daemon off;"], port, core=0)


async def measure(url: str, proxy: procs.Proc | None, conc: int, n: int, model: str,
                  headers: dict[str, str], vary: bool) -> dict:
    await run_load(url, min(conc, 8), min(n, 40), model, headers, vary=vary)  # warm up
    before = proxy.cpu_by_process() if proxy else {}
    res = await run_load(url, conc, n, model, headers, vary=vary)
    after = proxy.cpu_by_process() if proxy else {}
    out = res.summary()
    per = {pid: (after[pid] - before.get(pid, 0.0)) * 1000 / max(1, out["ok"])
           for pid in after}
    out["cpu_ms_per_request"] = sum(per.values())
    # Each process's share (serve --workers N: the supervisor and each worker).
    out["cpu_ms_per_request_by_process"] = sorted(per.values(), reverse=True)
    return out


def goals(results: dict[str, dict]) -> list[list[object]]:
    """Each goal of the streaming path, from this run's own figures, met or missed."""
    out: list[list[object]] = []

    def row(what: str, value: float, goal: str, met: bool) -> None:
        out.append([what, round(value, 2), goal, "met" if met else "missed"])

    for conc in ("32", "128"):
        if conc in results:
            r = results[conc]
            ratio = r["gateway"]["cpu_ms_per_request"] / max(1e-9, r["relay"]["cpu_ms_per_request"])
            row(f"CPU per request ÷ relay, {conc} streams", ratio, "≤ 1.3", ratio <= 1.3)
    if "128" in results:
        r = results["128"]
        tput = r["gateway"]["rps"] / max(1e-9, r["direct"]["rps"])
        row("throughput ÷ direct, 128 streams", tput, "≥ 0.95", tput >= 0.95)
        p99 = r["gateway"]["ttft_ms"]["p99"] - r["nginx"]["ttft_ms"]["p99"]
        row("TTFT p99 − nginx's, 128 streams (ms)", p99, "≤ +20", p99 <= 20)
    if "1" in results:
        r = results["1"]
        added = r["gateway"]["ttft_ms"]["p50"] - r["direct"]["ttft_ms"]["p50"]
        row("added TTFT p50, 1 stream (ms)", added, "≤ 1.0", added <= 1.0)
    return out


async def run(levels: list[int], scale: float, workers: int = 1) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the load tool shares core 1 with the simulator
    key = procs.KEYS["ONPREM_API_KEY"]
    sim = procs.simulator(core=1, api_key=key, ttft=0.05, interval=0.005, tokens=20)
    nginx = nginx_proc(sim.port)
    relay = relay_proc(sim.url)
    # --workers N: the gateway's N processes may use every core (so they share core 1
    # with the simulator and the load tool): compare its throughput, not its latency.
    gw = procs.gateway([sim.url], None, core=0 if workers == 1 else None,
                       deadlines={"headers_s": 10, "first_token_s": 20, "gap_s": 10},
                       extra_args=["--workers", str(workers)])
    direct_h = {"Authorization": f"Bearer {key}"}
    results: dict[str, dict] = {}
    rows = []
    try:
        for conc in levels:
            n = max(int(conc * 10 * scale), int(100 * scale), conc)
            d = await measure(f"{sim.url}/v1/chat/completions", None, conc, n, MODEL, direct_h,
                              False)
            x = await measure(f"{nginx.url}/v1/chat/completions", nginx, conc, n, MODEL,
                              direct_h, False)
            b = await measure(f"{relay.url}/v1/chat/completions", relay, conc, n, MODEL,
                              direct_h, False)
            g = await measure(f"{gw.url}/v1/chat/completions", gw, conc, n, "scout",
                              procs.API_HEADERS, True)
            results[str(conc)] = {"direct": d, "nginx": x, "relay": b, "gateway": g}
            for name, r in (("direct", d), ("nginx", x), ("relay", b), ("gateway", g)):
                added50 = r["ttft_ms"]["p50"] - d["ttft_ms"]["p50"]
                added99 = r["ttft_ms"]["p99"] - d["ttft_ms"]["p99"]
                rows.append([conc, name, r["ttft_ms"]["p50"], r["ttft_ms"]["p99"],
                             "" if name == "direct" else f"{added50:+.2f}",
                             "" if name == "direct" else f"{added99:+.2f}",
                             r["rps"], r["rps"] / d["rps"] if d["rps"] else 0.0,
                             "" if name == "direct" else f"{r['cpu_ms_per_request']:.2f}",
                             r["errors"]])
                print(rows[-1], flush=True)
    finally:
        for p in (gw, relay, nginx, sim):
            p.stop()
    name = "overhead" if workers == 1 else f"overhead_workers{workers}"
    note = ""
    if workers > 1:
        shares = "; ".join(
            f"{conc} streams: " + ", ".join(f"{ms:.2f}" for ms in r["gateway"][
                "cpu_ms_per_request_by_process"]) for conc, r in results.items())
        cores = os.cpu_count() or 1
        note = (f" Gateway CPU ms per request by process, busiest first (workers, then the "
                f"supervisor): {shares}." + (
                    f" This machine has {cores} cores and the simulator and load tool need "
                    f"one: {workers} workers share it, so this run cannot show how throughput "
                    "scales with workers, only what each worker costs." if cores <= workers
                    else ""))
    report.write(name, {"levels": results, "scale": scale, "workers": workers}, rows,
                 ["concurrency", "path", "TTFT p50 ms", "TTFT p99 ms", "added p50 ms",
                  "added p99 ms", "req/s", "req/s ÷ direct", "proxy CPU ms/req", "errors"],
                 note="Simulator: 50 ms to first token, 20 chunks 5 ms apart. Proxy alone on "
                      "core 0 (nginx: 1 worker; relay and gateway: 1 process); simulator and load "
                      "tool on core 1. relay = bench.relay, a bare aiohttp byte relay on uvloop "
                      "(the floor for a Python gateway). Added = this path minus direct, same "
                      "run." + note)
    if workers == 1:
        report.write("overhead_goals", {"goals": goals(results)}, goals(results),
                     ["goal", "this run", "target", ""],
                     note="The streaming path's goals, from the same run as overhead.md.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1,32,128,512")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full request count")
    ap.add_argument("--workers", type=int, default=1, help="gateway processes (serve --workers)")
    args = ap.parse_args()
    asyncio.run(run([int(x) for x in args.levels.split(",")], args.scale, args.workers))


if __name__ == "__main__":
    main()
