"""Each branch of the ladder end to end: real sockets, the replica simulator, the app factory."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from gateway.app import create_app
from gateway.appkeys import STORE
from gateway.cache.store import AnswerCache
from gateway.providers.base import RESUME_INSTRUCTION
from gateway.state import keys
from gateway.state.kv import MemoryKV
from tests.conftest import ONPREM_KEY, OPENAI_KEY, STAFF, make_settings
from tests.sse_client import read_events

QUESTION = "Which hybrid SUV would you recommend for a family of five?"


async def chat(client, message=QUESTION, **extra):
    resp = await client.post("/api/chat", json={"message": message, **extra})
    assert resp.status == 200, await resp.text()
    return await read_events(resp)


def done(events):
    names = [n for n, _ in events]
    assert names[-1] in ("done", "error") and names.count("done") + names.count("error") == 1
    return events[-1][1]


def text(events):
    return "".join(e["text"] for n, e in events if n == "delta")


async def test_healthy_onprem_answers(gw_client, settings, onprem_sim, openai_sim):
    client = await gw_client(create_app(settings))
    events = await chat(client)
    assert events[0][0] == "start" and events[0][1]["intent"] == "vehicle.recommendation"
    d = done(events)
    assert d["served_by"] == ["onprem"] and d["models"] == ["llama-3.1-70b-instruct"]
    assert text(events).startswith("Based on what you described")
    assert d["tokens"]["completion"] == 8 and d["cost_usd"] == 0.0
    assert openai_sim.stats.requests == 0


async def test_connection_refused_goes_to_openai_at_once(gw_client, settings, onprem_sim,
                                                         openai_sim):
    await onprem_sim.set_fault("refuse")
    client = await gw_client(create_app(settings))
    t0 = time.perf_counter()
    events = await chat(client)
    elapsed = time.perf_counter() - t0
    d = done(events)
    assert d["served_by"] == ["openai"] and d["models"] == ["gpt-4o-mini"]
    assert elapsed < settings.intents["vehicle.recommendation"].deadlines.first_token_s, \
        "the hand-over did not wait for a deadline"
    assert [n for n, _ in events].count("switch") == 1
    assert d["cost_usd"] > 0


async def test_hang_after_headers_is_hedged_and_the_onprem_request_cancelled(
        gw_client, settings, onprem_sim, openai_sim):
    await onprem_sim.set_fault("hang_after_headers")
    client = await gw_client(create_app(settings))
    t0 = time.perf_counter()
    events = await chat(client)
    elapsed = time.perf_counter() - t0
    d = done(events)
    assert d["served_by"] == ["openai"]
    deadline = settings.intents["vehicle.recommendation"].deadlines.first_token_s
    assert elapsed >= deadline, "the hedge started at the first-token deadline, not before"
    switch = next(e for n, e in events if n == "switch")
    assert switch["kind"] == "hedge" and "hedging" in switch["reason"]
    for _ in range(100):  # the simulator sees the disconnect of the losing request
        if onprem_sim.stats.disconnects:
            break
        await asyncio.sleep(0.01)
    assert onprem_sim.stats.disconnects == 1 and onprem_sim.stats.running == 0


async def test_a_tier_that_keeps_losing_hedges_is_ejected_and_probes_do_not_bring_it_back(
        gw_client, settings, onprem_sim, openai_sim):
    """Hung generation (headers, then nothing) while /health and /v1/models still answer:
    after eject_after lost hedges, turns skip on-prem instead of each waiting a deadline,
    and the passing probes don't undo that before health.eject_ttl_s."""
    await onprem_sim.set_fault("hang_after_headers")
    client = await gw_client(create_app(settings))
    eject_after = settings.health.eject_after
    for i in range(eject_after):
        assert done(await chat(client, f"which SUV for a family, take {i}?"))["served_by"] == \
            ["openai"]
    waited = onprem_sim.stats.requests
    assert waited == eject_after
    await asyncio.sleep(3 * settings.health.interval_s)  # several probes pass meanwhile
    for i in range(3):
        d = done(await chat(client, f"which truck tows a boat, take {i}?"))
        assert d["served_by"] == ["openai"]
    assert onprem_sim.stats.requests == waited, "an ejected tier was sent more chats"
    health = await (await client.get("/health", headers=STAFF)).json()
    assert health["tiers"]["onprem"]["state"] == "down"
    assert "no first token" in health["tiers"]["onprem"]["reason"]


async def test_hang_before_headers_fails_at_the_headers_deadline(gw_client, settings,
                                                                  onprem_sim, openai_sim):
    await onprem_sim.set_fault("hang_before_headers")
    client = await gw_client(create_app(settings))
    events = await chat(client)
    assert done(events)["served_by"] == ["openai"]
    assert "no response headers" in next(e for n, e in events if n == "switch")["reason"]


async def test_stall_after_a_few_tokens_is_resumed_by_openai(gw_client, settings,
                                                             onprem_sim, openai_sim):
    await onprem_sim.set_fault("stall", fault_after=3)
    client = await gw_client(create_app(settings))
    events = await chat(client)
    d = done(events)
    assert d["served_by"] == ["onprem", "openai"]
    switch = next(e for n, e in events if n == "switch")
    assert (switch["from"], switch["to"]) == ("onprem", "openai") and "stalled" in switch["reason"]
    answer = text(events)
    assert answer.startswith("Based on what") and "(continuing)" in answer
    sent = openai_sim.stats.last_messages
    assert sent[-2] == {"role": "assistant", "content": "Based on what"}
    assert sent[-1]["content"] == RESUME_INSTRUCTION


async def test_drop_mid_stream_is_resumed(gw_client, settings, onprem_sim, openai_sim):
    await onprem_sim.set_fault("drop", fault_after=2)
    client = await gw_client(create_app(settings))
    events = await chat(client)
    assert done(events)["served_by"] == ["onprem", "openai"]
    assert "dropped" in next(e for n, e in events if n == "switch")["reason"]


async def test_401_from_onprem_goes_to_openai_and_marks_onprem_misconfigured(
        gw_client, settings, onprem_sim, openai_sim, caplog):
    await onprem_sim.set_fault("http_401")
    client = await gw_client(create_app(settings))
    assert done(await chat(client))["served_by"] == ["openai"]
    health = await (await client.get("/health", headers=STAFF)).json()
    assert health["tiers"]["onprem"]["state"] == "misconfigured"
    assert "401" in health["tiers"]["onprem"]["reason"]
    assert health["status"] == "degraded"
    # While misconfigured the tier is skipped without even trying it.
    before = onprem_sim.stats.requests
    events = await chat(client, "Any minivans you'd suggest?")
    assert done(events)["served_by"] == ["openai"]
    assert onprem_sim.stats.requests == before
    assert events[0][1]["skipped"][0]["tier"] == "onprem"
    assert ONPREM_KEY not in str(health) and OPENAI_KEY not in str(health)


async def test_every_tier_down_serves_the_static_reply(gw_client, settings, onprem_sim,
                                                       openai_sim):
    await onprem_sim.set_fault("http_500")
    await openai_sim.set_fault("refuse")
    settings = make_settings([onprem_sim.url], f"{openai_sim.url}/v1",   # no inventory tier
                             mutate=lambda d: d["inventory"].update(enabled=False))
    client = await gw_client(create_app(settings))
    events = await chat(client, "Do you have a 2022 Civic in blue?")
    d = done(events)
    assert d["served_by"] == ["static"] and d["intent"] == "inventory.search"
    assert text(events) == settings.intents["inventory.search"].static_reply


async def test_private_intent_never_reaches_openai(gw_client, settings, onprem_sim,
                                                   openai_sim):
    await onprem_sim.set_fault("refuse")
    client = await gw_client(create_app(settings))
    events = await chat(client, "What APR would I get on a loan with a 640 credit score?")
    d = done(events)
    assert d["intent"] == "financing" and d["served_by"] == ["static"]
    assert openai_sim.stats.requests == 0


async def test_a_fresh_cached_answer_is_served_without_any_provider(gw_client, settings,
                                                                    onprem_sim, openai_sim):
    client = await gw_client(create_app(settings))
    first = done(await chat(client))
    assert first["served_by"] == ["onprem"] and first["cached"] is False
    calls = onprem_sim.stats.requests
    events = await chat(client, "  which HYBRID suv would you recommend for a family of five ")
    d = done(events)
    assert d["served_by"] == ["cache"] and d["cached"] == "fresh"
    assert onprem_sim.stats.requests == calls
    assert text(events).startswith("Based on what you described")


async def test_the_cache_tier_serves_when_providers_fail(gw_client, settings, onprem_sim,
                                                         openai_sim):
    store = MemoryKV()
    client = await gw_client(create_app(settings, store=store))
    done(await chat(client))
    await age(store)
    calls = onprem_sim.stats.requests
    await chat(client)
    assert onprem_sim.stats.requests == calls + 1, "a stale entry is not served as fresh"
    await age(store)
    await onprem_sim.set_fault("refuse")
    await openai_sim.set_fault("refuse")
    events = await chat(client)
    d = done(events)
    assert d["served_by"] == ["cache"] and d["cached"] == "stale"
    assert text(events).startswith("Based on what you described")


async def age(store: MemoryKV) -> None:
    """Move every cached answer past its fresh TTL: only the ladder's cache tier may use it."""
    cache = AnswerCache(store)
    for key in [k for k in store._data if k.startswith(keys.CACHE)]:
        short = key.removeprefix(keys.CACHE)
        answer = await cache.get(short)
        await cache.put(short, replace(answer, fresh_until=0.0), 3600)


async def test_a_truncated_answer_is_never_cached(gw_client, settings, onprem_sim,
                                                  openai_sim):
    app = create_app(settings)
    client = await gw_client(app)
    await onprem_sim.set_fault("drop", fault_after=2)
    assert done(await chat(client))["served_by"] == ["onprem", "openai"]
    assert not [k for k in app[STORE]._data if k.startswith(keys.CACHE)]
