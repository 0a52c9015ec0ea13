"""The health monitor against simulated replicas: states, timing, sharing, alerts."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.appkeys import UPSTREAM_SESSION
from gateway.health.probes import probe_replica
from tests.conftest import STAFF, log_fields, make_settings
from tests.sse_client import read_events


@pytest.fixture
async def replicas(make_replicas):
    return await make_replicas(2)


async def health(client) -> dict:
    return await (await client.get("/health", headers=STAFF)).json()


async def wait_for(client, check, within: float = 5.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        h = await health(client)
        if check(h):
            return h
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within} s: {h}")
        await asyncio.sleep(0.05)


def target(h: dict, name: str) -> dict:
    return h["targets"][name]


@pytest.mark.parametrize(("fault", "knobs", "state", "words"), [
    ("refuse", {}, "down", "connection failed"),
    ("loading", {}, "loading", "503"),
    ("http_401", {}, "misconfigured", "API key (401)"),
    ("none", {"model": "llama-3.1-8b"}, "misconfigured", "serves llama-3.1-8b"),
    ("none", {"waiting": 25}, "busy", "25 requests waiting"),
    ("none", {}, "up", "serving llama-3.1-70b-instruct"),
])
async def test_each_state_from_the_servers_real_behaviour(gw_client, onprem_sim, openai_sim, fault,
                                                          knobs, state, words):
    await onprem_sim.set_fault(fault, **knobs)
    client = await gw_client(create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1")))
    h = await wait_for(client, lambda h: target(h, "onprem.r1")["state"] == state)
    assert words in target(h, "onprem.r1")["reason"]
    assert target(h, "onprem.r1")["latency_ms"] is not None


async def test_a_blackholed_probe_costs_one_timeout_and_never_blocks_the_loop(gw_client, settings):
    # A listener whose accept queue is full: the kernel drops further SYNs, like a blackhole.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(hole.getsockname())
        except BlockingIOError:
            pass
        fillers.append(s)
    try:
        await _blackholed_probe(gw_client, settings, f"http://127.0.0.1:{hole.getsockname()[1]}")
    finally:  # even when it fails: a leaked socket would fail a later test instead
        for s in [*fillers, hole]:
            s.close()


async def _blackholed_probe(gw_client, settings, url: str) -> None:
    client = await gw_client(create_app(settings))
    session = client.app[UPSTREAM_SESSION]
    lags: list[float] = []
    # Earlier tests leave a big heap: collect it now, not as a pause inside the window.
    gc.collect()

    async def ticker() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t0 - 0.01)

    tick = asyncio.ensure_future(ticker())
    t0 = time.perf_counter()
    probe = asyncio.ensure_future(probe_replica(session, url, "m", None, 0.5, 8))
    # Other requests are served while the probe waits.
    resp = await client.post("/v1/chat/completions", json={
        "model": "scout", "messages": [{"role": "user", "content": "hello"}]})
    assert resp.status == 200 and not probe.done()
    verdict = await probe
    elapsed = time.perf_counter() - t0
    tick.cancel()
    assert verdict.state == "down" and "no answer within 0.5 s" in verdict.reason
    assert 0.5 <= elapsed < 0.9, f"one attempt of one timeout, not retries: {elapsed:.2f} s"
    print(f"event loop lag during the blackholed probe: max {max(lags) * 1000:.1f} ms")
    # A probe that blocked would stall the loop for its whole 0.5 s timeout; a busy CI
    # machine stalls it for tens of milliseconds now and then.
    assert max(lags) < 0.25, "the probe never blocked the event loop"


async def test_a_killed_replica_is_marked_down_within_one_interval_and_its_recovery_seen(
        gw_client, replicas, openai_sim):
    settings = make_settings([r.url for r in replicas], f"{openai_sim.url}/v1")
    interval = settings.health.interval_s
    client = await gw_client(create_app(settings))
    await wait_for(client, lambda h: h["capacity"]["replicas_serving"] == 2)
    await replicas[1].set_fault("refuse")
    t0 = time.monotonic()
    h = await wait_for(client, lambda h: target(h, "onprem.r2")["state"] == "down")
    assert time.monotonic() - t0 <= interval * 1.2 + settings.health.timeout_s
    assert h["capacity"] == {"replicas_serving": 1, "replicas": 2}
    assert h["tiers"]["onprem"]["state"] == "up" and "1/2 replicas serving" in \
        h["tiers"]["onprem"]["reason"]
    await replicas[1].set_fault("none")
    await wait_for(client, lambda h: target(h, "onprem.r2")["state"] == "up")


async def test_401_turns_misconfigured_within_one_interval_with_one_log_line(
        gw_client, settings, onprem_sim, caplog):
    client = await gw_client(create_app(settings))
    await wait_for(client, lambda h: h["tiers"]["onprem"]["state"] == "up")
    caplog.clear()
    await onprem_sim.set_fault("http_401")
    t0 = time.monotonic()

    async def ask(i: int) -> list:
        r = await client.post("/api/chat", json={"message": f"recommend a car {i}"})
        return await read_events(r)

    results = await asyncio.gather(*(ask(i) for i in range(30)))
    await wait_for(client, lambda h: h["tiers"]["onprem"]["state"] == "misconfigured")
    assert time.monotonic() - t0 < settings.health.interval_s * 1.2 + settings.health.timeout_s
    await asyncio.sleep(settings.health.interval_s * 3)  # more probes see the same 401
    assert all(r[-1][1]["served_by"] == ["openai"] for r in results)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING
             and log_fields(r).get("tier") == "onprem"
             and log_fields(r).get("to") == "misconfigured"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.ERROR and "401" in log_fields(lines[0])["reason"]


async def test_the_race_skips_a_down_tier_without_waiting_for_a_deadline(gw_client, onprem_sim,
                                                                         openai_sim):
    await onprem_sim.set_fault("hang_before_headers")  # were it tried, it would hang

    def replica_unreachable(data):  # ... but its replica is gone, as the monitor sees
        data["onprem"]["replicas"] = [{"name": "r1", "url": "http://127.0.0.1:9"}]

    settings = make_settings([onprem_sim.url], f"{openai_sim.url}/v1", mutate=replica_unreachable)
    client = await gw_client(create_app(settings))
    await wait_for(client, lambda h: h["tiers"]["onprem"]["state"] == "down")
    t0 = time.perf_counter()
    r = await client.post("/api/chat", json={"message": "recommend a family car"})
    events = await read_events(r)
    assert time.perf_counter() - t0 < settings.intents["vehicle.recommendation"].deadlines.headers_s
    assert events[-1][1]["served_by"] == ["openai"]
    assert events[0][1]["skipped"][0]["tier"] == "onprem"
    assert onprem_sim.stats.requests == 0


async def test_two_gateways_agree_through_redis_and_only_one_probes(gw_client, onprem_sim,
                                                                    openai_sim, redis_server):
    settings = make_settings([onprem_sim.url], f"{openai_sim.url}/v1",
                             redis_url=redis_server.url)
    a = await gw_client(create_app(settings))
    b = await gw_client(create_app(settings))
    await wait_for(a, lambda h: h["tiers"]["onprem"]["state"] == "up")
    await wait_for(b, lambda h: h["tiers"]["onprem"]["state"] == "up")
    roles = sorted([(await health(a))["monitor"], (await health(b))["monitor"]])
    assert roles == ["follower", "leader"]
    before = onprem_sim.stats.requests
    await onprem_sim.set_fault("loading")
    for c in (a, b):
        h = await wait_for(c, lambda h: target(h, "onprem.r1")["state"] == "loading")
        assert "503" in target(h, "onprem.r1")["reason"]
    assert onprem_sim.stats.requests == before, "probes are not chat requests"
    # Only the leader probes: per interval it sends 4 GETs (the path's /health, and the
    # replica's /health, /v1/models, /metrics), so one prober makes ~8 a second; two would
    # make ~16. Over 2 s (a window of 1 s holds one round or two, by jitter).
    await onprem_sim.set_fault("none")
    await wait_for(a, lambda h: target(h, "onprem.r1")["state"] == "up")
    start, t0 = onprem_sim.stats.probes, time.monotonic()
    await asyncio.sleep(2.0)
    rate = (onprem_sim.stats.probes - start) / (time.monotonic() - t0)
    expected = 4 / settings.health.interval_s
    assert 0.5 * expected <= rate <= 1.5 * expected, f"{rate:.1f} probe GETs/s"


async def test_the_webhook_fires_once_per_transition_and_on_fallback_rate(
        gw_client, aiohttp_server, onprem_sim, openai_sim):
    posts: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        posts.append(await request.json())
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    rs = await aiohttp_server(receiver)

    def alerting(data):
        data["health"].update(fallback_min_requests=5, fallback_threshold=0.5)

    settings = make_settings([onprem_sim.url], f"{openai_sim.url}/v1", mutate=alerting,
                             env={"SCOUT_ALERT_WEBHOOK": str(rs.make_url("/hook"))})
    client = await gw_client(create_app(settings))
    await wait_for(client, lambda h: h["tiers"]["onprem"]["state"] == "up")
    await onprem_sim.set_fault("http_401")  # the expired-key incident
    for i in range(8):
        await read_events(await client.post("/api/chat", json={"message": f"recommend car {i}"}))
    await wait_for(client, lambda h: h["fallback_alert"] is True)
    await asyncio.sleep(settings.health.interval_s * 3)
    states = [p for p in posts if p["kind"] == "state" and p["tier"] == "onprem"]
    alerts = [p for p in posts if p["kind"] == "fallback_alert"]
    assert [(p["from"], p["to"]) for p in states] == [("up", "misconfigured")]
    assert "401" in states[0]["text"] and states[0]["text"].startswith("Scout: onprem")
    assert len(alerts) == 1 and "fallback rate 100% of" in alerts[0]["text"]
    assert alerts[0]["turns"] >= 5, "not before the minimum number of answers"
    assert "misconfigured" in alerts[0]["text"]


async def test_health_status_codes_and_public_view(gw_client, settings, onprem_sim, openai_sim):
    client = await gw_client(create_app(settings))
    await wait_for(client, lambda h: h["status"] == "ok")
    async with aiohttp.ClientSession() as anonymous:
        body = await (await anonymous.get(client.make_url("/health"))).json()
    assert set(body) == {"status", "version", "tiers", "store"}
    assert "reason" not in str(body) and "targets" not in body
    await onprem_sim.set_fault("refuse")
    await openai_sim.set_fault("refuse")
    h = await wait_for(client, lambda h: h["status"] == "down")
    resp = await client.get("/health")
    assert resp.status == 503, "only cached and static answers are left"
    assert h["tiers"]["onprem"]["reason"].startswith("GPU box unreachable over the tailnet")


async def test_a_frozen_replica_with_turns_in_flight_is_taken_out_by_their_deadlines(
        gw_client, openai_sim):
    """A replica whose probe times out while it answers one of our turns reads busy (a
    one-at-a-time server holds probes behind its answer). One that froze (SIGSTOP:
    connections accepted, nothing answered) must not stay busy on that account while the
    customers' turns keep going to it: each turn misses its deadline and is answered by
    the backup, and `eject_after` misses in a row take the replica out."""
    import signal

    from bench import procs
    from tests.conftest import ONPREM_KEY

    sim = procs.simulator(api_key=ONPREM_KEY, ttft=0.01, interval=0.002, tokens=8)
    try:
        settings = make_settings([sim.url], f"{openai_sim.url}/v1")
        client = await gw_client(create_app(settings))
        await wait_for(client, lambda h: target(h, "onprem.r1")["state"] == "up", within=30)
        sim.popen.send_signal(signal.SIGSTOP)
        served = []
        for i in range(3 * settings.health.eject_after):
            r = await client.post("/v1/chat/completions", json={
                "model": "scout", "messages": [{"role": "user", "content": f"hello {i}"}]})
            assert r.status == 200
            served.append((await r.json())["served_by"])
            h = await health(client)
            if target(h, "onprem.r1")["state"] == "down":
                break
        assert target(h, "onprem.r1")["state"] == "down", (served, target(h, "onprem.r1"))
        assert all(s[-1] == "openai" for s in served), served
        assert len(served) <= settings.health.eject_after + 1, served
    finally:
        sim.popen.send_signal(signal.SIGCONT)
        sim.stop()
