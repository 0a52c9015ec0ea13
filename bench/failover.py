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

With `--answers`, what a customer is told instead of how fast: each scenario below sends a
few chats over the OpenAI API (streamed and not) and Scout's SSE, and grades each answer
complete-and-correct (the whole answer, once), clean-error (an error, no stitched text)
or wrong (anything else: duplicated, glued or cut text presented as an answer):

- cut-40:          on-prem drops after 40 of 60 words; the backup starts again from the top
- stall-20:        on-prem goes silent after 20 words; the backup starts again
- continue-40:     on-prem drops after 40 words; the backup continues, as asked
- reword-40:       on-prem drops after 40 words; the backup answers anew in other words
- no-done:         on-prem sends the whole answer and its finish_reason, then no [DONE]
- finish-silent:   the whole answer and its finish_reason, then silence, socket open
- bad-chunk-10:    one malformed event at word 10, then the rest of the answer

Reported: TTFT before and after the fault, the backup's own TTFT (measured directly in
the same run), how many requests waited for a deadline, when the gateway stopped sending
to the broken tier (time to detection), errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


# --answers: (on-prem fault, fault_after, the backup's resume style or "reword").
ANSWER_SCENARIOS: dict[str, tuple[str, int, str]] = {
    "cut-40": ("drop", 40, "restart"), "stall-20": ("stall", 20, "restart"),
    "continue-40": ("drop", 40, "continue"), "reword-40": ("drop", 40, "reword"),
    "no-done": ("no_done", 0, "restart"), "finish-silent": ("finish_hang", 0, "restart"),
    "bad-chunk-10": ("bad_chunk", 10, "restart"),
}
ANSWER = " ".join(f"word{i}" for i in range(1, 61))   # 60 words, each one countable
# The same answer again in other words, as a model asked to continue may give it: a preamble,
# then what the cut answer said, in another order.
REWORDED = "Sure, to put it another way: " + " ".join(
    f"word{i + 1 - 2 * (i % 2)}" for i in range(2, 42))


def grade(text: str, error: bool, answers: tuple[str, ...]) -> str:
    """`answers`: the texts that are each a whole, correct answer."""
    if not error and text in answers:
        return "complete-and-correct"
    if error and any(a.startswith(text) for a in answers):
        return "clean-error"   # only a true beginning of an answer, then an error
    return "wrong"


async def _ask(session: aiohttp.ClientSession, base: str, api: str, n: int) -> tuple[str, bool]:
    """One chat; the text a client would show, and whether it ended in an error."""
    q = f"Which hybrid SUV would you recommend for a family? ({api} {n})"
    if api == "sse":
        async with session.post(f"{base}/api/chat", json={"message": q},
                                headers=procs.API_HEADERS) as r:
            shown, error, event = "", False, ""
            async for raw in r.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    body = json.loads(line[6:])
                    if event == "delta":
                        shown += body["text"]
                    elif event == "switch" and "replace" in body:
                        shown = body["replace"]
                    error |= event == "error"
            return shown, error
    body = {"model": "scout", "messages": [{"role": "user", "content": q}],
            "stream": api == "stream"}
    async with session.post(f"{base}/v1/chat/completions", json=body,
                            headers=procs.API_HEADERS) as r:
        if api == "whole":
            got = await r.json()
            return (got["choices"][0]["message"]["content"] or "", False) if r.status == 200 \
                else ("", True)
        shown, error = "", r.status != 200
        async for raw in r.content:
            line = raw.decode().strip()
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            error |= "error" in chunk
            for c in chunk.get("choices") or []:
                shown += (c.get("delta") or {}).get("content") or ""
        return shown, error


async def answers_scenario(name: str, asks: int) -> dict[str, Any]:
    fault, after, style = ANSWER_SCENARIOS[name]
    key = procs.KEYS["ONPREM_API_KEY"]
    backup = procs.simulator(core=1, api_key=procs.KEYS["OPENAI_API_KEY"], model=BACKUP_MODEL,
                             **FAST)
    onprem = procs.simulator(core=1, api_key=key, **FAST)
    try:
        await set_fault(backup, "none", answer=ANSWER, fault_after=0,
                        resume_style="marker" if style == "reword" else style,
                        resume_text=REWORDED if style == "reword" else "")
        await set_fault(onprem, fault, answer=ANSWER, fault_after=after)
        grades: dict[str, dict[str, int]] = {}
        for api in ("sse", "stream", "whole"):
            # A fresh gateway per API: each meets on-prem failing, not already ejected.
            gw = procs.gateway([onprem.url], f"{backup.url}/v1", core=0, deadlines={
                "headers_s": DEADLINE_S, "first_token_s": DEADLINE_S, "gap_s": DEADLINE_S})
            # Either whole answer is right: on-prem's (or the backup's, answering afresh
            # once on-prem is ejected) or, where text can be replaced (Scout's protocol,
            # a not-streamed answer), the backup's own in other words.
            right = (ANSWER, REWORDED) if style == "reword" and api != "stream" \
                else (ANSWER,)
            try:
                async with aiohttp.ClientSession() as session:
                    for n in range(asks):
                        text, error = await _ask(session, gw.url, api, n)
                        g = grade(text, error, right)
                        grades.setdefault(api, {}).setdefault(g, 0)
                        grades[api][g] += 1
            finally:
                gw.stop()
        return {"scenario": name, "grades": grades}
    finally:
        for p in (onprem, backup):
            p.stop()


async def run_answers(only: list[str], asks: int) -> None:
    results = []
    for name in only:
        r = await answers_scenario(name, asks)
        results.append(r)
        print(name, r["grades"], flush=True)
    header = ["scenario", "Scout SSE", "OpenAI API, streamed", "OpenAI API, whole"]
    table = [[r["scenario"], *(", ".join(f"{k} {v}" for k, v in r["grades"][api].items())
                               for api in ("sse", "stream", "whole"))] for r in results]
    report.write("failover-answers", {"asks": asks, "scenarios": results}, table, header,
                 note=f"{asks} chats per API per scenario; on-prem (a simulator) breaks as "
                      "named, the backup (a simulator) answers the resume as named. Graded "
                      "complete-and-correct, clean-error or wrong.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--answers", action="store_true",
                    help="grade what customers are told under faults, not timings")
    ap.add_argument("--asks", type=int, default=2,
                    help="--answers: chats per API (fewer than eject_after: on-prem stays in)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--kill-concurrency", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--only", default="hang,500,401,kill,hang-before-headers,"
                                      "replica-kill-multi-url,slow-then-fast,drop-mid,"
                                      "stall-mid")
    args = ap.parse_args()
    if args.answers:
        only = list(ANSWER_SCENARIOS) if args.only == ap.get_default("only") \
            else args.only.split(",")
        asyncio.run(run_answers(only, args.asks))
        return
    asyncio.run(run(args.concurrency, args.kill_concurrency, args.seconds,
                    args.only.split(",")))


if __name__ == "__main__":
    main()
