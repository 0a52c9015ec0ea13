"""Faults that used to fool the failover, on real processes over loopback.

- A GPU box that accepts connections and never sends a status line (a wedged vLLM, a
  half-dead nginx) is ejected by live traffic, whatever its probes say.
- With several on-prem URLs, a replica killed with SIGKILL is ejected on its own: the
  survivors keep answering, and the restarted one gets traffic back.
- Hedging starts at the tier's own tail, within its budget.
- OpenAI out of credit is misconfigured at once; rate-limited is skipped until Retry-After.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from gateway.app import create_app
from tests.conftest import ONPREM_KEY, STAFF, make_settings
from tests.servers import free_port
from tests.sse_client import read_events

_asked = iter(range(1_000_000))


async def ask(client, text: str = "recommend a family SUV") -> list[tuple[str, Any]]:
    """One turn; every question is new, so the cache never answers it."""
    text = f"{text} (#{next(_asked)})"
    return await read_events(await client.post("/api/chat", json={"message": text}))


async def staff_health(client) -> dict[str, Any]:
    return await (await client.get("/health", headers=STAFF)).json()


async def until(client, check: Callable[[dict[str, Any]], bool], within: float = 20) -> None:
    """Poll staff /health until `check` holds (the monitor's probes run on their own)."""
    async with asyncio.timeout(within):
        while True:
            if check(await staff_health(client)):
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("urls", [1, 2], ids=["behind-nginx", "two-replicas"])
async def test_a_gpu_box_that_never_sends_headers_is_ejected(gw_client, make_replicas,
                                                             openai_sim, urls):
    replicas = await make_replicas(urls)
    for sim in replicas:
        await sim.set_fault("hang_before_headers")   # /health and /v1/models still answer
    settings = make_settings([s.url for s in replicas], f"{openai_sim.url}/v1",
                             deadlines={"headers_s": 0.3, "first_token_s": 2.0, "gap_s": 2.0})
    client = await gw_client(create_app(settings))
    await until(client, lambda h: h["tiers"]["onprem"]["state"] == "up")  # probes still pass
    eject_after = settings.health.eject_after
    # One replica is out after eject_after misses of its own. Two are out as a box once
    # each has missed a deadline: at most eject_after + 1 turns wait (one replica may take
    # eject_after of them before the other's first), never eject_after for each.
    most = eject_after if urls == 1 else eject_after + urls - 1
    waited = 0
    for _ in range(most):
        events = await ask(client)
        assert events[-1][1]["served_by"] == ["openai"]
        waited += any(e[0] == "switch" for e in events)
        if (await staff_health(client))["tiers"]["onprem"]["state"] == "down":
            break
    assert waited <= most
    health = await staff_health(client)
    onprem = health["tiers"]["onprem"]
    assert onprem["state"] == "down"
    assert ("no response headers within 0.3 s, 3 times in a row" if urls == 1
            else "the box is wedged") in onprem["reason"]
    # From now on no turn waits for the box: it is skipped before the race starts.
    for _ in range(5):
        events = await ask(client)
        start, done = events[0][1], events[-1][1]
        assert done["served_by"] == ["openai"]
        assert start["skipped"][0]["tier"] == "onprem"
        assert not any(e[0] == "switch" for e in events), "nothing waited for a deadline"
    assert sum(s.stats.requests for s in replicas) == waited


@pytest.mark.parametrize("urls", [1, 2], ids=["behind-nginx", "two-replicas"])
async def test_a_replica_that_stalls_mid_answer_is_ejected(gw_client, make_replicas, openai_sim,
                                                           urls):
    """Silent after some tokens, while the gateway reads the answer on its fast path: each
    answer is resumed by OpenAI, and the stalls eject the target as hangs would."""
    replicas = await make_replicas(urls, tokens=30)
    for sim in replicas:
        await sim.set_fault("stall", fault_after=12)   # probes still pass
    settings = make_settings([s.url for s in replicas], f"{openai_sim.url}/v1",
                             deadlines={"headers_s": 2.0, "first_token_s": 2.0, "gap_s": 0.3})
    client = await gw_client(create_app(settings))
    await until(client, lambda h: h["tiers"]["onprem"]["state"] == "up")
    eject_after = settings.health.eject_after
    most = eject_after if urls == 1 else eject_after + urls - 1   # as for hangs, above
    for _ in range(most):
        events = await ask(client)
        assert events[-1][1]["served_by"] == ["onprem", "openai"]
        assert "stalled" in next(e[1]["reason"] for e in events if e[0] == "switch")
        if (await staff_health(client))["tiers"]["onprem"]["state"] == "down":
            break
    onprem = (await staff_health(client))["tiers"]["onprem"]
    assert onprem["state"] == "down"
    assert ("stalled: no token for 0.3 s" if urls == 1 else "the box is wedged") \
        in onprem["reason"]
    events = await ask(client)
    assert events[-1][1]["served_by"] == ["openai"] and events[0][1]["skipped"]


class Replica:
    """A replica simulator in its own process, so it can really be SIGKILLed."""

    def __init__(self, port: int, control: int) -> None:
        self.port, self.control = port, control
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Replica:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "onprem.simulator", "--port", str(self.port),
            "--control-port", str(self.control), "--api-key", ONPREM_KEY, "--ttft", "0.02",
            "--interval", "0.01", "--tokens", "20",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 15
            while True:
                try:
                    async with s.get(f"{self.url}/health") as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the replica did not start"
                await asyncio.sleep(0.05)

    async def requests(self) -> int:
        async with aiohttp.ClientSession() as s, \
                s.get(f"http://127.0.0.1:{self.control}/") as r:
            return int((await r.json())["stats"]["requests"])

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def test_a_killed_replica_is_ejected_alone_and_gets_traffic_back(gw_client, openai_sim):
    replicas = [await Replica(free_port(), free_port()).start() for _ in range(3)]
    try:
        long_deadlines = {"headers_s": 3.0, "first_token_s": 6.0, "gap_s": 6.0}
        settings = make_settings([r.url for r in replicas], f"{openai_sim.url}/v1",
                                 deadlines=long_deadlines)
        client = await gw_client(create_app(settings))
        await until(client, lambda h: h["capacity"]["replicas_serving"] == 3)
        turns: list[tuple[int, list[str] | None]] = []
        killed = asyncio.Event()

        async def customer(n: int) -> None:
            for i in range(10):
                events = await ask(client, f"which hybrid SUV would you recommend? {n}-{i}")
                done = events[-1][1] if events[-1][0] == "done" else None
                turns.append((int(killed.is_set()), done["served_by"] if done else None))
                if len(turns) == 40:
                    warmed.set()

        warmed = asyncio.Event()
        load = [asyncio.ensure_future(customer(n)) for n in range(32)]
        await warmed.wait()   # 40 turns answered by all three: now one dies
        await replicas[0].kill()
        killed.set()
        await asyncio.gather(*load)
        after = [served for k, served in turns if k]
        assert all(served is not None for _, served in turns), "no turn failed"
        onprem_share = sum(s == ["onprem"] for s in after) / len(after)
        print(f"after the kill: {len(after)} turns, {onprem_share:.0%} answered on-prem")
        assert onprem_share >= 0.9
        health = await staff_health(client)
        dead = health["targets"]["onprem.r1"]
        assert dead["state"] == "down" and dead["reason"], dead
        assert health["tiers"]["onprem"]["state"] == "up"
        # Back on its port: the probes see it (after `rise` good ones) and traffic returns.
        await replicas[0].start()
        await until(client, lambda h: h["targets"]["onprem.r1"]["state"] == "up")
        await asyncio.gather(*(ask(client, f"any hybrid SUVs? {i}") for i in range(12)))
        assert await replicas[0].requests() > 0, "the restarted replica gets traffic again"
    finally:
        for r in replicas:
            await r.stop()


async def test_hedging_follows_the_tiers_own_tail_and_stays_in_budget(gw_client, onprem_sim,
                                                                      openai_sim):
    onprem_sim.knobs.ttft_s = 0.05
    openai_sim.knobs.ttft_s = 0.02
    deadlines = {"headers_s": 5.0, "first_token_s": 5.0, "gap_s": 5.0}
    client = await gw_client(create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1",
                                                      deadlines=deadlines)))
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> list[tuple[str, Any]]:
        async with sem:
            return await ask(client, f"recommend a hybrid {i}")

    healthy = await asyncio.gather(*(one(i) for i in range(500)))
    assert all(e[-1][1]["served_by"] for e in healthy)
    # Hedges as the turns saw them. Not every OpenAI request: if this busy box stalls
    # past the hedge delay three turns in a row, live traffic ejects the replica (as it
    # should) and the next turns go to OpenAI first, which is not hedging.
    hedges = sum(any(e[0] == "switch" and e[1]["kind"] == "hedge" for e in events)
                 for events in healthy)
    print(f"healthy run: {hedges} hedges over 500 turns "
          f"({openai_sim.stats.requests} OpenAI requests)")
    assert hedges <= 25, "hedges stay within 5 % of upstream requests"
    # (Not every hedge reaches the backup: one whose on-prem token comes while its request
    # is still being sent is cancelled before the backup sees it.)
    hedge = (await staff_health(client))["hedging"]["tiers"]["onprem"]["hedge_after_s"]
    assert hedge < 5.0, "hedging at the tier's own tail, not the fixed 5 s"
    # The GPU box slows from ~50 ms to 4 s to the first token.
    onprem_sim.knobs.ttft_s = 4.0
    timed: list[float] = []

    async def timed_turn(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            r = await client.post("/api/chat", json={"message": f"suggest an SUV {i}"})
            async for line in r.content:
                if line.startswith(b"event: delta"):
                    timed.append(time.perf_counter() - t0)
                    break
            await r.read()

    await asyncio.gather(*(timed_turn(i) for i in range(40)))
    timed.sort()
    p95 = timed[int(0.95 * len(timed)) - 1]
    print(f"after the slowdown: TTFT p95 {p95:.2f} s (the fixed deadline would be 5 s)")
    assert p95 <= 1.5


async def test_openai_out_of_credit_is_misconfigured_and_a_rate_limit_is_waited_out(
        gw_client, onprem_sim, aiohttp_server):
    from aiohttp import web

    calls = {"n": 0}
    mode = {"body": {"error": {"message": "You exceeded your current quota",
                               "type": "insufficient_quota", "code": "insufficient_quota"}}}

    async def chat(request: web.Request) -> web.Response:
        calls["n"] += 1
        return web.json_response(mode["body"], status=429,
                                 headers={"Retry-After": "30"})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "gpt-4o-mini"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    fake_openai = await aiohttp_server(app)
    await onprem_sim.set_fault("http_500")
    client = await gw_client(create_app(make_settings(
        [onprem_sim.url], str(fake_openai.make_url("/v1")))))
    events = await ask(client)
    assert events[-1][1]["served_by"] == ["inventory"]
    openai = (await staff_health(client))["tiers"]["openai"]
    assert openai["state"] == "misconfigured" and "out of credit" in openai["reason"]
    await asyncio.sleep(1.2)   # two probe intervals: a model list can't clear it
    assert (await staff_health(client))["tiers"]["openai"]["state"] == "misconfigured"
    incidents = (await staff_health(client))["incidents"]
    assert any(i.get("to") == "misconfigured" and i.get("tier") == "openai" for i in incidents)

    # An ordinary rate limit: busy, and skipped until Retry-After instead of hammered.
    mode["body"] = {"error": {"message": "Rate limit reached", "type": "requests",
                              "code": "rate_limit_exceeded"}}
    client = await gw_client(create_app(make_settings(
        [onprem_sim.url], str(fake_openai.make_url("/v1")))))
    calls["n"] = 0
    await ask(client)
    openai = (await staff_health(client))["tiers"]["openai"]
    assert openai["state"] == "busy" and "trying again in 30 s" in openai["reason"]
    for _ in range(3):
        events = await ask(client)
        assert {"tier": "openai", "reason": f"busy: {openai['reason']}"} in \
            events[0][1]["skipped"]
    assert calls["n"] == 1, "one 429, then no request until Retry-After"

