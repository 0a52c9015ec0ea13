"""Rate limits: per key and per address, moving windows shared through Redis, 429 + Retry-After."""

from __future__ import annotations

import asyncio

from gateway.app import create_app
from tests.conftest import AUTH, OTHER_KEY, STAFF, make_settings
from tests.ws_client import connect, until, until_all

BODY = {"model": "scout", "messages": [{"role": "user", "content": "hello"}]}


def limited(onprem_sim, openai_sim, redis_url=None, **limits):
    def tight(data):
        data["rate_limits"].update(limits)
        data["auth"]["api_keys_env"] = "SCOUT_API_KEYS"
        # One slow Redis read on a busy box (past the shipped 50 ms) rightly falls back to
        # per-process windows; here the windows shared are what is measured, not its speed.
        data.setdefault("redis", {})["timeout_ms"] = 1000
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
    assert err["type"] == "requests" and err["code"] == "rate_limit_exceeded"
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


async def test_websocket_chats_count_as_streams(gw_client, onprem_sim, openai_sim):
    onprem_sim.knobs.token_interval_s = 0.05  # a ~0.5 s answer
    client = await gw_client(create_app(limited(onprem_sim, openai_sim, streams_per_ip=1)))
    ws = await connect(client)
    await ws.send_json({"type": "chat", "id": "long", "message": "hello"})
    while (await ws.receive_json(timeout=10))["type"] != "delta":
        pass
    # The socket's answer is streaming: the same address gets no second stream, on any path.
    second = await client.post("/v1/chat/completions", json=BODY)
    assert second.status == 429 and "already has 1 answers streaming" in \
        (await second.json())["error"]["message"]
    await ws.send_json({"type": "chat", "id": "again", "message": "hello"})
    events = await until_all(ws, ["long", "again"])
    assert events["long"][-1]["type"] == "done"
    refused = events["again"][-1]
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    assert (await client.post("/v1/chat/completions", json=BODY)).status == 200, "freed again"


def per_user(onprem_sim, openai_sim, **limits):
    def tight(data):
        data["rate_limits"].update(limits)
        data["auth"]["end_user_keys"] = ["vercel"]
    return make_settings([onprem_sim.url], f"{openai_sim.url}/v1", mutate=tight)


async def test_end_users_named_by_a_trusted_key_get_buckets_of_their_own(
        gw_client, onprem_sim, openai_sim):
    client = await gw_client(create_app(per_user(onprem_sim, openai_sim, per_user="2/minute")))
    ana, ben = {**BODY, "user": "customer-ana"}, {**BODY, "user": "customer-ben"}
    assert [(await client.post("/v1/chat/completions", json=ana)).status
            for _ in range(3)] == [200, 200, 429]
    refused = await client.post("/v1/chat/completions", json=ana)
    assert "this end user is over 2 per 1 minute" in (await refused.json())["error"]["message"]
    # Same key, same address, another customer: not limited by Ana's bucket.
    assert (await client.post("/v1/chat/completions", json=ben)).status == 200
    # The header names the user on Scout's own API too, and wins over the body.
    hdr = {"X-Scout-User": "customer-ben"}
    assert (await client.post("/api/chat", json={"message": "hi", "user": "customer-ana"},
                              headers=hdr)).status == 200
    assert (await client.post("/api/chat", json={"message": "hi"}, headers=hdr)).status == 429


async def test_a_key_not_trusted_with_end_users_cannot_name_them(
        aiohttp_client, onprem_sim, openai_sim):
    settings = per_user(onprem_sim, openai_sim, per_user="1/minute")
    client = await aiohttp_client(create_app(settings))
    other = {"Authorization": f"Bearer {OTHER_KEY}"}   # label "mobile", not in end_user_keys
    r = await client.post("/v1/chat/completions", json=BODY,
                          headers={**other, "X-Scout-User": "customer-ana"})
    assert r.status == 403
    err = (await r.json())["error"]
    assert err["code"] == "end_user_not_allowed" and "mobile" in err["message"]
    # OpenAI's `user` from such a key is its abuse-monitoring id, not a limit key: two
    # requests pass a per-user limit of 1.
    for _ in range(2):
        assert (await client.post("/v1/chat/completions", json={**BODY, "user": "x"},
                                  headers=other)).status == 200
    r = await client.post("/api/ws-token", json={"user": "customer-ana"}, headers=other)
    assert r.status == 403 and (await r.json())["error"]["code"] == "end_user_not_allowed"


async def test_a_websocket_token_carries_its_end_user(aiohttp_client, onprem_sim, openai_sim):
    client = await aiohttp_client(create_app(per_user(onprem_sim, openai_sim,
                                                      per_user="1/minute")))
    tokens = []
    for user in ("customer-ana", "customer-ana", "customer-ben"):
        r = await client.post("/api/ws-token", json={"user": user}, headers=AUTH)
        assert r.status == 200
        tokens.append((await r.json())["token"])
    results = []
    for i, token in enumerate(tokens):
        ws = await client.ws_connect("/ws/chat", protocols=("scout.v1", f"bearer.{token}"))
        assert (await ws.receive_json())["type"] == "hello"
        await ws.send_json({"type": "chat", "id": f"c{i}", "message": "hello"})
        results.append((await until(ws, f"c{i}"))[-1])
        await ws.close()
    # Ana's second socket is her second chat this minute; Ben's first is his own.
    assert [e["type"] for e in results] == ["done", "error", "done"]
    assert results[1]["code"] == "rate_limited" and "end user" in results[1]["message"]
