"""Rate limits: per key and per address, moving windows shared through Redis, 429 + Retry-After."""

from __future__ import annotations

import asyncio

import pytest

from gateway.app import create_app
from gateway.security.ratelimit import client_ip
from tests.conftest import STAFF, make_settings
from tests.ws_client import connect, until

BODY = {"model": "scout", "messages": [{"role": "user", "content": "hello"}]}


def limited(onprem_sim, openai_sim, redis_url=None, **limits):
    def tight(data):
        data["rate_limits"].update(limits)
        data["auth"]["api_keys_env"] = "SCOUT_API_KEYS"
    return make_settings([onprem_sim.url], f"{openai_sim.url}/v1", mutate=tight,
                         redis_url=redis_url)


async def test_per_key_limit_is_a_429_with_retry_after_in_openai_shape(gw_client, onprem_sim,
                                                                       openai_sim):
    client = await gw_client(create_app(limited(onprem_sim, openai_sim, per_key="3/minute")))
    for _ in range(3):
        assert (await client.post("/v1/chat/completions", json=BODY)).status == 200
    resp = await client.post("/v1/chat/completions", json=BODY)
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 61
    err = (await resp.json())["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert "vercel" in err["message"] and "3 per 1 minute" in err["message"]
    metrics = await (await client.get("/metrics", headers=STAFF)).text()
    assert 'scout_rate_limited_total{scope="key"} 1.0' in metrics
    assert (await client.get("/v1/models")).status == 200, "only chat endpoints are limited"


async def test_per_address_limit_and_forwarded_addresses(gw_client, onprem_sim, openai_sim):
    client = await gw_client(create_app(limited(onprem_sim, openai_sim, per_ip="2/minute")))
    for _ in range(2):
        assert (await client.post("/api/chat", json={"message": "hi"})).status == 200
    assert (await client.post("/api/chat", json={"message": "hi"})).status == 429
    # Behind the edge nginx (a trusted proxy on loopback) each customer is counted apart.
    other = {"X-Forwarded-For": "203.0.113.7"}
    assert (await client.post("/api/chat", json={"message": "hi"}, headers=other)).status == 200


async def test_streams_at_once_per_address(gw_client, onprem_sim, openai_sim):
    onprem_sim.knobs.token_interval_s = 0.05  # a ~0.5 s answer
    client = await gw_client(create_app(limited(onprem_sim, openai_sim, streams_per_ip=1)))
    first = asyncio.ensure_future(client.post("/v1/chat/completions", json={**BODY,
                                                                           "stream": True}))
    await asyncio.sleep(0.1)
    second = await client.post("/v1/chat/completions", json=BODY)
    assert second.status == 429 and "already has 1 answers streaming" in \
        (await second.json())["error"]["message"]
    r = await first
    await r.read()
    assert (await client.post("/v1/chat/completions", json=BODY)).status == 200, "freed again"


async def test_limits_are_shared_through_redis_and_fall_back_per_process(
        gw_client, onprem_sim, openai_sim, redis_server):
    settings = limited(onprem_sim, openai_sim, redis_url=redis_server.url, per_key="4/minute")
    a, b = await gw_client(create_app(settings)), await gw_client(create_app(settings))
    assert (await (await a.get("/health", headers=STAFF)).json())["store"]["rate_limits"] == \
        "shared (Redis)"
    codes = [(await c.post("/v1/chat/completions", json=BODY)).status for c in (a, b, a, b, a)]
    assert codes == [200, 200, 200, 200, 429], "one window for both gateways"
    redis_server.stop()
    codes = [(await b.post("/v1/chat/completions", json=BODY)).status for _ in range(3)]
    assert 200 in codes, "Redis gone: per-process windows, nobody refused for it"
    health = await (await b.get("/health", headers=STAFF)).json()
    assert health["store"]["rate_limits"] == "per process"


async def test_websocket_chats_count_against_the_same_limits(gw_client, onprem_sim, openai_sim):
    client = await gw_client(create_app(limited(onprem_sim, openai_sim, per_key="2/minute")))
    ws = await connect(client)
    for i in range(2):
        await ws.send_json({"type": "chat", "id": f"c{i}", "message": "hello"})
        assert (await until(ws, f"c{i}"))[-1]["type"] == "done"
    await ws.send_json({"type": "chat", "id": "c2", "message": "hello"})
    refused = await until(ws, "c2")
    assert refused[-1]["code"] == "rate_limited"
    resp = await client.post("/api/chat", json={"message": "hi"})
    assert resp.status == 429, "one window for SSE and WebSocket alike"


@pytest.mark.parametrize(("remote", "xff", "ip"), [
    ("198.51.100.4", None, "198.51.100.4"),
    ("198.51.100.4", "203.0.113.9", "198.51.100.4"),       # untrusted sender: header ignored
    ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
    ("127.0.0.1", "203.0.113.9, 127.0.0.1", "203.0.113.9"),
    ("127.0.0.1", "not-an-ip", "127.0.0.1"),
    (None, None, "unknown"),
])
def test_client_ip(remote, xff, ip):
    assert client_ip(remote, xff) == ip
