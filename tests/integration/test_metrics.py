"""/metrics parses with Prometheus's own parser and carries every metric; cost adds up by hand."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.api.dashboard import snapshot
from gateway.app import create_app
from tests.conftest import STAFF, make_settings
from tests.sse_client import read_events

EXPECTED = {
    "scout_requests", "scout_time_to_first_token_seconds", "scout_request_duration_seconds",
    "scout_fallbacks", "scout_hedges", "scout_resumes", "scout_cache_lookups",
    "scout_static_replies", "scout_tokens", "scout_cost_usd", "scout_rate_limited",
    "scout_gateway_overhead_seconds", "scout_active_websockets", "scout_active_sessions",
    "scout_tier_state", "scout_target_state",
}
Q = "Which hybrid SUV would you recommend for a family of five?"


async def scrape(client) -> dict:
    resp = await client.get("/metrics", headers=STAFF)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(await resp.text())}


def value(families, name, **labels) -> float:
    """Sum of a counter's or gauge's samples whose labels match."""
    return sum(s.value for s in families[name].samples
               if s.name in (name, name + "_total")
               and all(s.labels.get(k) == v for k, v in labels.items()))


async def ask(client, message):
    r = await client.post("/api/chat", json={"message": message})
    return (await read_events(r))[-1][1]


async def test_metrics_are_staff_only_and_carry_every_metric(gw_client, settings, onprem_sim):
    client = await gw_client(create_app(settings))
    assert (await client.get("/metrics")).status == 401, "a frontend API key is not enough"
    await ask(client, Q)
    families = await scrape(client)
    assert EXPECTED <= set(families), EXPECTED - set(families)


async def test_a_mixed_run_costs_what_hand_arithmetic_says(gw_client, onprem_sim, openai_sim):
    client = await gw_client(create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1")))
    on = await ask(client, Q)                       # on-prem: priced at 0
    hit = await ask(client, Q)                      # fresh cache hit: free
    await onprem_sim.set_fault("http_500")
    off = await ask(client, "Which sedan would you suggest for a long commute?")   # OpenAI
    assert (on["served_by"], hit["served_by"], off["served_by"]) == (["onprem"], ["cache"],
                                                                    ["openai"])
    # By hand: gpt-4o-mini at $0.15 / 1M input and $0.60 / 1M output, with the simulated
    # OpenAI's own usage: prompt = characters // 4 of what it was sent, completion = 8.
    sent = openai_sim.stats.last_messages
    prompt = sum(len(m["content"]) for m in sent) // 4
    expected = (prompt * 0.15 + 8 * 0.60) / 1_000_000
    assert off["tokens"] == {"prompt": prompt, "completion": 8}
    assert off["cost_usd"] == pytest.approx(expected, rel=1e-6)
    assert on["cost_usd"] == 0 and hit["cost_usd"] == 0
    families = await scrape(client)
    assert value(families, "scout_cost_usd", tier="openai") == pytest.approx(expected, rel=1e-6)
    assert value(families, "scout_cost_usd", tier="onprem") == 0
    assert value(families, "scout_cache_lookups", result="fresh_hit") == 1
    # The dashboard's spend and saving agree: saving = all three at OpenAI prices - spend.
    snap = await snapshot(client.app)
    assert snap["tiles"]["spend_today_usd"] == pytest.approx(expected, rel=1e-6)
    on_prompt = on["tokens"]["prompt"]
    all_openai = (on_prompt * 0.15 + 8 * 0.60) / 1e6 + expected  # the cache hit: 0 tokens
    assert snap["tiles"]["saved_today_usd"] == pytest.approx(all_openai - expected, rel=1e-6)


async def test_fallbacks_hedges_resumes_and_static_are_counted(gw_client, onprem_sim, openai_sim):
    client = await gw_client(create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1")))
    await onprem_sim.set_fault("stall", fault_after=2)
    assert (await ask(client, "Which coupe would you recommend?"))["served_by"] == ["onprem",
                                                                                   "openai"]
    await onprem_sim.set_fault("hang_after_headers")
    assert (await ask(client, "Which van would you recommend?"))["served_by"] == ["openai"]
    await onprem_sim.set_fault("none")
    await openai_sim.set_fault("refuse")
    await onprem_sim.set_fault("http_500")
    assert (await ask(client, "What are your opening hours on sunday?"))["served_by"] == ["static"]
    families = await scrape(client)
    assert value(families, "scout_resumes", from_tier="onprem", to_tier="openai") == 1
    assert value(families, "scout_fallbacks", reason="hedge") == 1
    assert value(families, "scout_hedges", winner="openai") == 1
    assert value(families, "scout_static_replies", intent="scheduling") == 1
    assert value(families, "scout_requests", tier="onprem", outcome="resumed") == 1
    overhead = families["scout_gateway_overhead_seconds"]
    assert next(s.value for s in overhead.samples if s.name.endswith("_count")) == 3


async def test_tier_state_gauges_follow_the_monitor(gw_client, settings, onprem_sim):
    client = await gw_client(create_app(settings))
    await onprem_sim.set_fault("http_401")
    for _ in range(60):
        families = await scrape(client)
        if value(families, "scout_tier_state", tier="onprem", state="misconfigured") == 1:
            break
        await asyncio.sleep(0.05)
    assert value(families, "scout_tier_state", tier="onprem", state="misconfigured") == 1
    assert value(families, "scout_tier_state", tier="onprem", state="up") == 0
    assert value(families, "scout_target_state", target="onprem.r1", state="misconfigured") == 1
