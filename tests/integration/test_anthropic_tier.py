"""The Anthropic tier, added as one module plus config: its stream, its faults, its privacy.

The fake upstream (tests/anthropic_fake.py) is first checked against Anthropic's own SDK,
so the events the tier is tested with are events the real API sends.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from gateway.app import create_app
from gateway.errors import TierBusy, TierMisconfigured, TierUnavailable
from gateway.providers.anthropic_tier import AnthropicConfig, AnthropicProvider, to_messages
from gateway.providers.base import Delta, TierRequest, Usage
from gateway.security.upstream_keys import KeySource
from tests.anthropic_fake import FakeAnthropic
from tests.conftest import API_KEY, PRIVATE_TURNS, STAFF, example_config, make_settings
from tests.sse_client import read_events

KEY = "anthropic-test-key-61af"
INTENT_DATA = example_config()["intents"]["vehicle.recommendation"]
QUESTION = "Which hybrid SUV would you recommend for a family of five?"
TOOLS = [{"type": "function", "function": {
    "name": "book_test_drive", "description": "Book a test drive",
    "parameters": {"type": "object", "properties": {"day": {"type": "string"}}}}}]


@pytest.fixture
async def fake():
    f = await FakeAnthropic(api_key=KEY).start()
    yield f
    await f.stop()


def with_anthropic(fake: FakeAnthropic, *, before_openai: bool = False):
    """Claude as the cloud backup, after on-prem: in place of OpenAI, or just before it."""
    def mutate(data):
        data["anthropic"] = {"enabled": True, "base_url": fake.url,
                             "model": "claude-3-5-haiku-latest"}
        data["prices"]["claude-3-5-haiku-latest"] = {"input": 0.80, "output": 4.00}
        for intent in data["intents"].values():
            ladder = intent["ladder"]
            if "openai" in ladder:
                at = ladder.index("openai")
                ladder.insert(at, "anthropic")
                if not before_openai:
                    ladder.remove("openai")
    return mutate


def settings_for(onprem_sim, fake, openai_url=None, before_openai=False):
    return make_settings([onprem_sim.url], openai_url,
                         mutate=with_anthropic(fake, before_openai=before_openai),
                         env={"ANTHROPIC_API_KEY": KEY})


def provider(fake: FakeAnthropic) -> AnthropicProvider:
    return AnthropicProvider(AnthropicConfig(base_url=fake.url, enabled=True),
                             KeySource("anthropic", KEY))


def request(text: str = QUESTION, **kw) -> TierRequest:
    from gateway.config import IntentConfig
    intent = IntentConfig(name="t", ladder=("anthropic", "static"), static_reply="s")
    return TierRequest(messages=[{"role": "system", "content": "You are Scout."},
                                 {"role": "user", "content": text}], intent=intent, **kw)


async def test_the_fake_speaks_what_anthropics_own_sdk_reads(fake):
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.url, max_retries=0)
    async with client.messages.stream(
            model="claude-3-5-haiku-latest", max_tokens=64, tools=[{
                "name": "book_test_drive", "input_schema": {"type": "object"}}],
            messages=[{"role": "user", "content": "book me a drive"}]) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "".join(fake.words)
    assert final.stop_reason == "tool_use"
    assert [b.input for b in final.content if b.type == "tool_use"] == [{"day": "saturday"}]
    await client.close()
    async with anthropic.AsyncAnthropic(api_key="wrong", base_url=fake.url,
                                        max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError):
            await wrong.messages.create(model="m", max_tokens=1, messages=[
                {"role": "user", "content": "hi"}])


async def test_it_streams_text_and_usage_with_the_system_prompt_apart(fake):
    p = provider(fake)
    events = [ev async for ev in p.stream(request(params={"max_tokens": 50,
                                                          "temperature": 1.7,
                                                          "stop": "\n\n"}))]
    await p.close()
    text = "".join(ev.text for ev in events if isinstance(ev, Delta))
    assert text == "".join(fake.words)
    assert [ev.finish_reason for ev in events if isinstance(ev, Delta)][-1] == "stop"
    usage = [ev for ev in events if isinstance(ev, Usage)]
    assert usage and usage[-1].completion_tokens == len(fake.words)
    sent = fake.bodies[-1]
    assert sent["system"] == "You are Scout." and sent["max_tokens"] == 50
    assert sent["temperature"] == 1.0 and sent["stop_sequences"] == ["\n\n"]
    assert fake.headers[-1]["x-api-key"] == KEY and fake.headers[-1]["anthropic-version"]


async def test_tool_use_becomes_openai_tool_calls(fake):
    p = provider(fake)
    events = [ev async for ev in p.stream(request("please book it", tools=TOOLS,
                                                 tool_choice="auto"))]
    await p.close()
    calls = [c for ev in events if isinstance(ev, Delta) and ev.tool_calls
             for c in ev.tool_calls]
    assert calls[0]["function"]["name"] == "book_test_drive" and calls[0]["id"] == "toolu_fake1"
    args = "".join(c["function"].get("arguments", "") for c in calls)
    assert json.loads(args) == {"day": "saturday"}
    assert [ev.finish_reason for ev in events if isinstance(ev, Delta)][-1] == "tool_calls"
    assert fake.bodies[-1]["tools"][0]["input_schema"]["properties"] == {"day": {"type": "string"}}
    assert fake.bodies[-1]["tool_choice"] == {"type": "auto"}


def test_a_conversation_becomes_alternating_turns_with_tool_results():
    system, turns = to_messages([
        {"role": "system", "content": "A"}, {"role": "developer", "content": "B"},
        {"role": "user", "content": "book it"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "c1", "type": "function",
            "function": {"name": "book_test_drive", "arguments": '{"day": "mon"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "booked"},
        {"role": "user", "content": "thanks"}])
    assert system == "A\n\nB"
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][0] == {"type": "tool_use", "id": "c1", "name": "book_test_drive",
                                      "input": {"day": "mon"}}
    assert turns[2]["content"][0]["type"] == "tool_result"
    assert turns[2]["content"][1] == {"type": "text", "text": "thanks"}


@pytest.mark.parametrize(("fault", "error", "words"), [
    ("http_401", TierMisconfigured, "refused the API key (401)"),
    ("http_529", TierUnavailable, "overloaded (529)"),
    ("http_429", TierBusy, "trying again in 7 s"),
    ("error_event", TierUnavailable, "overloaded_error mid-stream"),
    ("drop", TierUnavailable, "Anthropic stream"),
])
async def test_each_failure_is_the_tier_error_the_race_acts_on(fake, fault, error, words):
    fake.fault = fault
    p = provider(fake)
    got = []
    with pytest.raises(error) as exc:
        async for ev in p.stream(request()):
            got.append(ev)
    await p.close()
    assert words in exc.value.reason
    if fault == "http_401":
        assert exc.value.kind == "misconfigured"
    if fault == "http_529":
        assert exc.value.kind == "overloaded"


async def test_served_by_anthropic_through_the_openai_sdk_stream_and_not(
        aiohttp_server, onprem_sim, fake):
    await onprem_sim.set_fault("http_500")
    server = await aiohttp_server(create_app(settings_for(onprem_sim, fake)))
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=str(server.make_url("/v1")),
                                max_retries=0)
    whole = await client.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": QUESTION}])
    assert whole.choices[0].message.content == "".join(fake.words)
    assert whole.model == "claude-3-5-haiku-20241022"
    assert whole.model_extra["served_by"] == ["anthropic"]
    stream = await client.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": QUESTION + " (again)"}],
        stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(fake.words)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals[0].model_extra["served_by"] == ["anthropic"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    await client.close()


async def test_a_drop_mid_stream_is_resumed_by_the_next_tier(
        gw_client, onprem_sim, openai_sim, fake):
    await onprem_sim.set_fault("http_500")
    fake.fault, fake.fault_after = "drop", 3
    settings = settings_for(onprem_sim, fake, f"{openai_sim.url}/v1", before_openai=True)
    assert settings.intents["vehicle.recommendation"].ladder[:3] == ("onprem", "anthropic",
                                                                      "openai")
    client = await gw_client(create_app(settings))
    events = await read_events(await client.post("/api/chat", json={"message": QUESTION}))
    done = events[-1][1]
    assert done["served_by"] == ["anthropic", "openai"]
    text = "".join(e[1]["text"] for e in events if e[0] == "delta")
    assert text.startswith("Claude says the")
    switches = [(e[1]["from"], e[1]["to"], e[1]["kind"]) for e in events if e[0] == "switch"]
    assert ("anthropic", "openai", "dropped") in switches
    # what was said went along, so OpenAI continued rather than started over
    assert {"role": "assistant", "content": "Claude says the"} in openai_sim.stats.last_messages


PERSONAL = ("I'm Maria Gonzalez, which hybrid SUV would you recommend? Text me at "
            "(512) 555-0143 or write to maria.gonzalez@gmail.com")


@PRIVATE_TURNS
async def test_a_private_conversation_never_reaches_it_and_pii_is_redacted_before_it(
        gw_client, onprem_sim, fake, private):
    await onprem_sim.set_fault("http_500")
    client = await gw_client(create_app(settings_for(onprem_sim, fake)))
    r = await client.post("/v1/chat/completions", json={"model": "scout", "messages": [
        {"role": "user", "content": private},
        {"role": "assistant", "content": "Our finance team can help with that."},
        {"role": "user", "content": "Which trims come in blue?"}]})
    assert (await r.json())["served_by"] == ["inventory"]
    assert fake.bodies == [], "nothing of a private conversation reached Anthropic"
    r = await client.post("/v1/chat/completions", json={"model": "scout", "messages": [
        {"role": "user", "content": PERSONAL}]})
    assert (await r.json())["served_by"] == ["anthropic"]
    sent = json.dumps(fake.bodies[-1])
    for value in ("Maria Gonzalez", "555-0143", "maria.gonzalez@gmail.com"):
        assert value not in sent
    assert "[PHONE_1]" in sent and "[EMAIL_1]" in sent


async def test_health_probes_it_and_shows_a_bad_key_as_misconfigured(
        gw_client, onprem_sim, fake):
    import asyncio
    import time
    client = await gw_client(create_app(settings_for(onprem_sim, fake)))

    async def tier_state(want: str) -> dict:
        deadline = time.monotonic() + 10
        while True:
            h = await (await client.get("/health", headers=STAFF)).json()
            if h["tiers"]["anthropic"]["state"] == want or time.monotonic() > deadline:
                return h
            await asyncio.sleep(0.05)
    h = await tier_state("up")
    assert h["tiers"]["anthropic"] == {"state": "up", "reason": "claude-3-5-haiku-latest available"}
    assert h["targets"]["anthropic"]["kind"] == "api"
    fake.fault = "http_401"
    h = await tier_state("misconfigured")
    assert h["tiers"]["anthropic"]["state"] == "misconfigured"
    assert KEY not in json.dumps(h)


async def test_overloaded_529s_take_it_down_and_the_turns_still_answer(
        gw_client, onprem_sim, fake):
    await onprem_sim.set_fault("http_500")
    client = await gw_client(create_app(settings_for(onprem_sim, fake)))
    fake.fault = "http_529"
    for i in range(3):   # health.eject_after: three live failures in a row
        r = await client.post("/v1/chat/completions", json={"model": "scout", "messages": [
            {"role": "user", "content": f"{QUESTION} #{i}"}]})
        assert (await r.json())["served_by"][-1] == "inventory"   # a stock question
    h = await (await client.get("/health", headers=STAFF)).json()
    assert h["tiers"]["anthropic"]["state"] == "down"
    assert "overloaded (529)" in h["tiers"]["anthropic"]["reason"]
    r = await client.post("/v1/chat/completions", json={"model": "scout", "messages": [
        {"role": "user", "content": QUESTION + " once more"}]})
    body = await r.json()
    assert "anthropic" not in body["served_by"]
    assert len(fake.bodies) == 3, "a down tier is skipped without being asked"
