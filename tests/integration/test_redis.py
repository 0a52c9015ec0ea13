"""Shared state on a real redis-server: cache, stampede, sessions, two gateways, outages."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from gateway.app import create_app
from gateway.cache.store import AnswerCache
from gateway.state import keys
from gateway.state.kv import RedisKV
from gateway.state.redis_link import RedisLink
from tests.conftest import STAFF, make_settings
from tests.sse_client import read_events

QUESTION = "Which hybrid SUV would you recommend for a family of five?"


@pytest.fixture
def rsettings(onprem_sim, openai_sim, redis_server):
    return make_settings([onprem_sim.url], f"{openai_sim.url}/v1", redis_url=redis_server.url)


async def chat(client, message=QUESTION, **extra):
    resp = await client.post("/api/chat", json={"message": message, **extra})
    assert resp.status == 200, await resp.text()
    events = await read_events(resp)
    assert events[-1][0] == "done", events[-1]
    return events


def done(events):
    return events[-1][1]


async def redis_keys(redis_server, prefix: str) -> list[bytes]:
    r = aioredis.Redis.from_url(redis_server.url)
    try:
        return await r.keys(prefix + "*")
    finally:
        await r.aclose()


async def age_cache(redis_server) -> None:
    """Every cached answer past its fresh TTL, as if an hour had gone by."""
    link = RedisLink(redis_server.url, timeout_s=1)
    cache = AnswerCache(RedisKV(link))
    for key in await redis_keys(redis_server, keys.CACHE):
        short = key.decode().removeprefix(keys.CACHE)
        await cache.put(short, replace(await cache.get(short), fresh_until=0.0), 3600)
    await link.close()


async def test_fresh_hit_from_redis_calls_no_provider(gw_client, rsettings, onprem_sim,
                                                      redis_server):
    client = await gw_client(create_app(rsettings))
    assert done(await chat(client))["served_by"] == ["onprem"]
    assert len(await redis_keys(redis_server, keys.CACHE)) == 1
    calls = onprem_sim.stats.requests
    d = done(await chat(client, "which hybrid SUV would you recommend, for a family of five"))
    assert d["served_by"] == ["cache"] and d["cached"] == "fresh"
    assert onprem_sim.stats.requests == calls


async def test_stale_tier_served_when_every_provider_fails(gw_client, rsettings, onprem_sim,
                                                           openai_sim, redis_server):
    client = await gw_client(create_app(rsettings))
    await chat(client)
    await age_cache(redis_server)
    await onprem_sim.set_fault("http_500")
    await openai_sim.set_fault("refuse")
    events = await chat(client)
    assert done(events)["served_by"] == ["cache"] and done(events)["cached"] == "stale"
    assert [e for n, e in events if n == "switch"][-1]["to"] == "cache"


async def test_truncated_and_private_answers_are_never_cached(gw_client, rsettings,
                                                              onprem_sim, redis_server):
    client = await gw_client(create_app(rsettings))
    d = done(await chat(client, "What APR would I get with a 700 credit score?"))
    assert d["intent"] == "financing" and d["served_by"] == ["onprem"]
    await onprem_sim.set_fault("drop", fault_after=2)
    assert done(await chat(client))["served_by"] == ["onprem", "openai"]
    await onprem_sim.set_fault("none")
    assert await redis_keys(redis_server, keys.CACHE) == []
    # ... while a whole answer of a cacheable intent is stored (the test can fail).
    await chat(client, "Any minivans you'd recommend?")
    assert len(await redis_keys(redis_server, keys.CACHE)) == 1


async def test_static_replies_are_never_cached(gw_client, rsettings, onprem_sim, openai_sim,
                                               redis_server):
    client = await gw_client(create_app(rsettings))
    await onprem_sim.set_fault("refuse")
    await openai_sim.set_fault("refuse")
    # Not a stock question: the lot would answer that one.
    assert done(await chat(client, "What should I ask on a test drive?"))["served_by"] \
        == ["static"]
    assert await redis_keys(redis_server, keys.CACHE) == []


async def test_identical_concurrent_misses_make_one_upstream_call_across_two_gateways(
        gw_client, rsettings, onprem_sim, redis_server):
    onprem_sim.knobs.ttft_s = 0.3  # a slow first answer: everyone else arrives meanwhile
    a = await gw_client(create_app(rsettings))
    b = await gw_client(create_app(rsettings))
    results = await asyncio.gather(*(chat(c) for c in [a, b] * 8))
    served = sorted(done(r)["served_by"][0] for r in results)
    assert onprem_sim.stats.requests == 1
    assert served == ["cache"] * 15 + ["onprem"]
    texts = {"".join(e["text"] for n, e in r if n == "delta") for r in results}
    assert len(texts) == 1, "every asker got the same whole answer"


async def test_two_gateways_share_cache_and_sessions(gw_client, rsettings, onprem_sim,
                                                     redis_server):
    a = await gw_client(create_app(rsettings))
    b = await gw_client(create_app(rsettings))
    first = await chat(a)
    sid = first[0][1]["session"]
    assert done(first)["served_by"] == ["onprem"]
    # The same question on the other gateway: a fresh hit from the shared cache.
    assert done(await chat(b, QUESTION))["served_by"] == ["cache"]
    # The conversation continues on the other gateway with its history.
    events = await chat(b, "Does it come in blue?", session=sid)
    assert events[0][1]["session"] == sid
    # The system prompt, then the history (each stock question with its table before it).
    sent = [m for i, m in enumerate(onprem_sim.stats.last_messages)
            if i == 0 or m["role"] != "system"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == QUESTION and sent[3]["content"] == "Does it come in blue?"
    assert sent[2]["content"].startswith("Based on what you described")


async def test_a_forged_or_malformed_session_id_is_rejected(gw_client, rsettings):
    client = await gw_client(create_app(rsettings))
    first = await chat(client)
    sid = first[0][1]["session"]
    forged = sid[:-1] + ("A" if sid[-1] != "A" else "B")
    for bad in (forged, "x" * 10_000, "../../etc/passwd", "a" * 24 + "." + "b" * 16, 42, ""):
        resp = await client.post("/api/chat", json={"message": "hi", "session": bad})
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_session"


async def test_chat_goes_on_through_a_redis_stop_and_start(gw_client, rsettings,
                                                           onprem_sim, redis_server):
    client = await gw_client(create_app(rsettings))
    await chat(client)
    health = await (await client.get("/health", headers=STAFF)).json()
    assert health["store"]["state"] == "up" and health["status"] == "ok"
    redis_server.stop()
    for i in range(3):  # Redis gone: every chat still answers, from the providers
        d = done(await chat(client, f"Which sedan would you recommend, option {i}?"))
        assert d["served_by"] == ["onprem"]
    health = await (await client.get("/health", headers=STAFF)).json()
    assert health["store"]["state"] == "down" and health["status"] == "degraded"
    assert health["store"]["reason"] and "redis://" not in str(health)
    redis_server.start()
    for _ in range(50):  # the link notices within its ping interval (1 s)
        health = await (await client.get("/health", headers=STAFF)).json()
        if health["store"]["state"] == "up":
            break
        await asyncio.sleep(0.1)
    assert health["store"]["state"] == "up" and health["status"] == "ok"
    await chat(client, "Which pickup would you recommend?")
    d = done(await chat(client, "Which pickup would you recommend?"))
    assert d["served_by"] == ["cache"], "the cache is used again with no restart"


async def test_redis_down_at_start(gw_client, onprem_sim, openai_sim, redis_server):
    redis_server.stop()
    settings = make_settings([onprem_sim.url], f"{openai_sim.url}/v1", redis_url=redis_server.url)
    client = await gw_client(create_app(settings))
    d = done(await chat(client))
    assert d["served_by"] == ["onprem"]
    assert (await (await client.get("/health", headers=STAFF)).json())["store"]["state"] == "down"
    redis_server.start()
    for _ in range(50):
        if (await (await client.get("/health", headers=STAFF)).json())["store"]["state"] == "up":
            break
        await asyncio.sleep(0.1)
    assert (await (await client.get("/health", headers=STAFF)).json())["store"]["state"] == "up"


async def test_a_slow_redis_costs_one_short_timeout_and_the_chat_answers(
        gw_client, onprem_sim, openai_sim, redis_server):
    shipped = make_settings([onprem_sim.url], f"{openai_sim.url}/v1", redis_url=redis_server.url,
                            mutate=lambda d: d["redis"].update(timeout_ms=50))  # the default
    client = await gw_client(create_app(shipped))
    await chat(client, "warm up the connection pool, recommend a car")
    sleeper = asyncio.get_running_loop().run_in_executor(
        None, redis_server.command, "DEBUG", "SLEEP", "1.5")
    await asyncio.sleep(0.1)
    d = done(await chat(client, "Which coupe would you recommend?"))
    assert d["served_by"] == ["onprem"]
    store = (await (await client.get("/health", headers=STAFF)).json())["store"]
    assert store["state"] == "down" and "no answer within 50 ms" in store["reason"]
    await sleeper


async def test_an_answer_finished_after_the_client_left_can_be_fetched(
        gw_client, rsettings, onprem_sim, redis_server):
    onprem_sim.knobs.token_interval_s = 0.05
    client = await gw_client(create_app(rsettings))
    sid = (await chat(client, "hello"))[0][1]["session"]
    resp = await client.post("/api/chat", json={"message": "Which truck would you recommend?",
                                                "session": sid, "id": "m-2"})
    await resp.content.readline()
    resp.close()  # the customer's phone lost signal mid-answer
    record = None
    for _ in range(100):   # while it streams: its status and the text so far; then done
        r = await client.post("/api/chat/answer", json={"session": sid, "id": "m-2"})
        if r.status == 200:
            record = await r.json()
            if record["status"] == "done":
                break
            assert record["status"] == "streaming"
            assert "Based on what you described".startswith(record["text"][:27]) or \
                record["text"].startswith("Based on what you described")
        await asyncio.sleep(0.05)
    assert record is not None and record["status"] == "done"
    assert record["text"].startswith("Based on what you described")
    assert record["done"]["served_by"] == ["onprem"]
    missing = await client.post("/api/chat/answer", json={"session": sid, "id": "nope"})
    assert missing.status == 404


async def test_no_request_fails_because_of_redis(gw_client, rsettings, redis_server):
    client = await gw_client(create_app(rsettings))
    redis_server.stop()

    async def one(i: int) -> int:
        resp = await client.post("/v1/chat/completions", json={
            "model": "scout", "messages": [{"role": "user", "content": f"recommend a car {i}"}]})
        return resp.status

    assert await asyncio.gather(*(one(i) for i in range(20))) == [200] * 20


async def test_with_redis_down_a_session_turn_uses_the_requests_own_history(
        gw_client, rsettings, onprem_sim, redis_server):
    client = await gw_client(create_app(rsettings))
    sid = (await chat(client, "Do you have a Civic?"))[0][1]["session"]
    redis_server.stop()
    history = [{"role": "user", "content": "Do you have a Civic?"},
               {"role": "assistant", "content": "Yes, two."}]
    d = done(await chat(client, "Which trims?", session=sid, history=history))
    assert d["served_by"] == ["onprem"]
    sent = [m for m in onprem_sim.stats.last_messages[1:] if m["role"] != "system"]
    assert [m["content"] for m in sent] == ["Do you have a Civic?", "Yes, two.", "Which trims?"]
