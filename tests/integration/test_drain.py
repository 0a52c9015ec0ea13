"""SIGTERM on a real gateway process: stop accepting, say going away, let answers finish."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
import yaml

from gateway.state import keys
from tests.conftest import (
    API_KEY,
    AUTH,
    ONPREM_KEY,
    OPENAI_KEY,
    SIGNING_SECRET,
    STAFF,
    STAFF_KEY,
    example_config,
)
from tests.servers import free_port


async def start_gateway(tmp_path: Path, onprem_url: str, redis_url: str, drain_s: float,
                        grace_s: float = 0.0, env_extra: dict[str, str] | None = None,
                        mutate=None):
    data = example_config()
    data["onprem"]["url"] = [onprem_url]
    data["onprem"]["replicas"] = [{"name": "r1", "url": onprem_url}]
    data["openai"]["enabled"] = False
    data["websocket"]["drain_s"] = drain_s
    data["server"]["drain_grace_s"] = grace_s
    if mutate is not None:
        mutate(data)
    cfg = tmp_path / "scout.yaml"
    cfg.write_text(yaml.safe_dump(data))
    port = free_port()
    env = {**os.environ, "ONPREM_API_KEY": ONPREM_KEY, "OPENAI_API_KEY": OPENAI_KEY,
           "SCOUT_SIGNING_SECRET": SIGNING_SECRET, "SCOUT_API_KEYS": f"vercel:{API_KEY}",
           "SCOUT_STAFF_KEYS": f"ops:{STAFF_KEY}",
           "REDIS_URL": redis_url, **(env_extra or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(cfg), "--host", "127.0.0.1",
        "--port", str(port), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    lines: list[bytes] = []
    async with asyncio.timeout(20):
        while b"serving" not in lines[-1:][0] if lines else True:
            lines.append(await proc.stdout.readline())
            assert lines[-1], b"exited before serving:\n" + b"".join(lines)
    proc.lines = lines   # type: ignore[attr-defined]  # what it said before serving
    return proc, f"http://127.0.0.1:{port}"


async def open_chat(session, base, chat_id):
    ws = await session.ws_connect(f"{base}/ws/chat", headers=AUTH)
    assert (await ws.receive_json())["type"] == "hello"
    await ws.send_json({"type": "chat", "id": chat_id,
                        "message": "Which hybrid SUV would you recommend?"})
    start = await ws.receive_json(timeout=10)
    assert (await ws.receive_json(timeout=10))["type"] == "delta"
    return ws, start["session"]


async def drain_events(ws):
    events = []
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return events
        events.append(msg.json())


@pytest.mark.parametrize("cut", [False, True], ids=["finishes", "cut-by-drain"])
async def test_sigterm_drains_websockets(tmp_path, onprem_sim, redis_server, cut):
    onprem_sim.knobs.token_interval_s = 0.05
    onprem_sim.knobs.tokens = 200 if cut else 20  # 10 s vs 1 s of answer
    proc, base = await start_gateway(tmp_path, onprem_sim.url, redis_server.url,
                                     drain_s=2 if cut else 10)
    try:
        async with aiohttp.ClientSession() as s:
            busy, sid = await open_chat(s, base, "c1")
            idle = await s.ws_connect(f"{base}/ws/chat", headers=AUTH)
            await idle.receive_json()
            assert (await s.get(f"{base}/readyz")).status == 200
            idle_read = asyncio.ensure_future(drain_events(idle))  # a client reads as it comes
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # Still listening, but no longer ready: a load balancer stops sending customers.
            while (ready := await s.get(f"{base}/readyz")).status == 200:
                pass
            took = time.monotonic() - t0
            print(f"/readyz answered 503 {took * 1000:.0f} ms after SIGTERM")
            assert ready.status == 503 and (await ready.json())["status"] == "draining"
            assert took < 0.1, "the issue asks for 100 ms; it is set in the signal handler"
            assert (await s.get(f"{base}/livez")).status == 200, "alive while draining"
            health = await (await s.get(f"{base}/health", headers=STAFF)).json()
            assert health["draining"] is True
            refused = await s.post(f"{base}/api/chat", json={"message": "hi"}, headers=AUTH)
            assert refused.status == 503 and refused.headers["Retry-After"] == "1"
            assert (await refused.json())["error"]["code"] == "shutting_down"
            # The idle socket is told, then closed with 1001 at once.
            idle_events = await idle_read
            assert idle_events[0]["type"] == "going_away"
            assert idle.close_code == 1001
            events = await drain_events(busy)
            assert events[0]["type"] == "going_away"
            last = [e for e in events if e.get("id") == "c1"][-1]
            assert busy.close_code == 1001
            if cut:
                assert last["type"] == "error" and last["code"] == "interrupted"
            else:
                assert last["type"] == "done" and last["served_by"] == ["onprem"]
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    r = aioredis.Redis.from_url(redis_server.url)
    record = orjson.loads(await r.get(f"{keys.ANSWER}{sid}:c1"))
    await r.aclose()
    if cut:  # kept for resume on another gateway, with what was written
        assert record["status"] == "interrupted" and record["text"].startswith("Based on")
    else:
        assert record["status"] == "done"


async def test_an_upstream_outage_is_not_a_reason_to_restart_or_deregister(aiohttp_client):
    """Both generative tiers down: /health says so (503, for humans and alerts), but the
    gateway still answers from cache and static, so /livez and /readyz stay 200."""
    from gateway.app import create_app
    from tests.conftest import STAFF, make_settings

    dead = f"http://127.0.0.1:{free_port()}"
    client = await aiohttp_client(create_app(make_settings([dead], f"{dead}/v1")), headers=AUTH)
    async with asyncio.timeout(20):
        while True:  # until the probes have seen both tiers fail
            health = await client.get("/health", headers=STAFF)
            if health.status == 503:
                break
            await asyncio.sleep(0.05)
    assert (await health.json())["status"] == "down"
    assert (await client.get("/livez")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"
    answer = await client.post("/v1/chat/completions", json={
        "model": "scout", "messages": [{"role": "user", "content": "hello"}]})
    assert answer.status == 200 and (await answer.json())["served_by"] == ["static"]


async def test_an_http_stream_in_flight_keeps_the_listener_open_until_it_ends(
        tmp_path, onprem_sim, redis_server):
    """SIGTERM with an OpenAI-API stream in flight: /readyz is 503 within 100 ms and stays
    503, polled on a fresh connection each time, and no connection is refused until the
    answer has ended (and the grace has passed); then the process exits 0."""
    onprem_sim.knobs.update({"token_interval_s": 0.05, "tokens": 40})   # 2 s of answer
    proc, base = await start_gateway(tmp_path, onprem_sim.url, redis_server.url, drain_s=10,
                                     grace_s=0.5)
    polls: list[tuple[float, int | str]] = []
    try:
        async with aiohttp.ClientSession() as s:
            resp = await s.post(f"{base}/v1/chat/completions", headers=AUTH, json={
                "model": "scout", "stream": True,
                "messages": [{"role": "user", "content": "Which hybrid SUV do you recommend?"}]})
            assert resp.status == 200
            first = await resp.content.readline()
            assert first.startswith(b"data: ")
            body = asyncio.ensure_future(resp.content.read())
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            streaming_when_refused = None
            while True:   # each poll on a new connection, as a load balancer's health check
                try:
                    async with aiohttp.ClientSession(
                            connector=aiohttp.TCPConnector(force_close=True)) as fresh, \
                            fresh.get(f"{base}/readyz") as r:
                        polls.append((time.monotonic() - t0, r.status))
                except aiohttp.ClientConnectionError as exc:
                    streaming_when_refused = not body.done()
                    polls.append((time.monotonic() - t0, type(exc).__name__))
                    break
                await asyncio.sleep(0.02)
            rest = await body
        assert rest.rstrip().endswith(b"data: [DONE]"), "the answer in flight finished"
        assert streaming_when_refused is False, "no connection refused while it streamed"
        answered = [p for p in polls if isinstance(p[1], int)]
        assert answered and answered[0][0] < 0.1 and answered[0][1] == 503, polls[:3]
        assert all(status == 503 for _, status in answered), "503 throughout, never 200"
        refused_at = polls[-1][0]
        assert refused_at >= 0.5, "listening for the grace at least"
        print(f"{len(answered)} polls answered 503; listener closed {refused_at:.2f} s after "
              "SIGTERM, once the answer had ended")
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
async def test_every_line_a_server_writes_is_structured(tmp_path, onprem_sim, redis_server,
                                                        fmt):
    """From the first line to the last (a config warning, serving, answers, shutdown), on
    stdout and stderr alike, each line is one record in the chosen format."""
    import json

    import logfmtkv

    def moved(data):   # an old setting's name: read with a warning
        data["server"]["passive_health_ttl_s"] = data["health"].pop("eject_ttl_s", 30)
    proc, base = await start_gateway(tmp_path, onprem_sim.url, redis_server.url, drain_s=5,
                                     env_extra={"SCOUT_LOG_FORMAT": fmt}, mutate=moved)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{base}/api/chat", headers=AUTH,
                              json={"message": "Which hybrid SUV do you recommend?"}) as r:
                await r.read()
            async with s.post(f"{base}/api/chat", headers=AUTH, data=b"{not json") as r:
                assert r.status == 400
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stdout.read(), 20)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = [ln.decode() for ln in [*proc.lines, *rest.splitlines(keepends=True)] if ln.strip()]
    records = [json.loads(ln) if fmt == "json" else
               dict(logfmtkv.parse(ln.rstrip("\n"), strict=True, duplicates="error"))
               for ln in lines]
    events = [r.get("event") for r in records]
    assert all(isinstance(r, dict) and r.get("level") for r in records), lines
    for needed in ("config_warning", "serving", "shutdown", "stopped_listening"):
        assert needed in events, (needed, events)
    serving = records[events.index("serving")]
    assert serving["url"] == base and str(serving["pid"]) == str(proc.pid)
