"""SIGTERM on a real gateway process: stop accepting, say going away, let answers finish."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
import yaml

from gateway.state import keys
from tests.conftest import API_KEY, AUTH, ONPREM_KEY, OPENAI_KEY, SIGNING_SECRET, example_config
from tests.servers import free_port


async def start_gateway(tmp_path: Path, onprem_url: str, redis_url: str, drain_s: float):
    data = example_config()
    data["onprem"]["url"] = [onprem_url]
    data["onprem"]["replicas"] = [{"name": "r1", "url": onprem_url}]
    data["openai"]["enabled"] = False
    data["websocket"]["drain_s"] = drain_s
    cfg = tmp_path / "scout.yaml"
    cfg.write_text(yaml.safe_dump(data))
    port = free_port()
    env = {**os.environ, "ONPREM_API_KEY": ONPREM_KEY, "OPENAI_API_KEY": OPENAI_KEY,
           "SCOUT_SIGNING_SECRET": SIGNING_SECRET, "SCOUT_API_KEYS": f"vercel:{API_KEY}",
           "REDIS_URL": redis_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(cfg), "--host", "127.0.0.1",
        "--port", str(port), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    async with asyncio.timeout(20):
        while b"serving on" not in await proc.stdout.readline():
            pass
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
                                     drain_s=0.5 if cut else 10)
    try:
        async with aiohttp.ClientSession() as s:
            busy, sid = await open_chat(s, base, "c1")
            idle = await s.ws_connect(f"{base}/ws/chat", headers=AUTH)
            await idle.receive_json()
            proc.send_signal(signal.SIGTERM)
            # The idle socket is told, then closed with 1001 at once.
            idle_events = await drain_events(idle)
            assert idle_events[0]["type"] == "going_away"
            assert idle.close_code == 1001
            # New connections are refused: the gateway stopped listening.
            with pytest.raises(aiohttp.ClientConnectionError):
                await s.get(f"{base}/health")
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
