"""The OpenAI wire format, driven by the real openai-python client over a real socket."""

from __future__ import annotations

import asyncio

import openai
import pytest

from gateway.app import create_app
from tests.conftest import AUTH, ONPREM_KEY, OPENAI_KEY

QUESTION = "Which hybrid SUV would you recommend for a family of five?"


async def test_openai_client_streams_with_usage_and_real_model_names(sdk, onprem_sim):
    stream = await sdk.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Based on what you described")
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert {c.model for c in content_chunks} == {"llama-3.1-70b-instruct"}
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert finals[0].model_extra["served_by"] == ["onprem"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8


async def test_each_chunk_names_the_model_that_produced_it_across_a_resume(sdk, onprem_sim):
    await onprem_sim.set_fault("stall", fault_after=3)
    stream = await sdk.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": QUESTION}], stream=True)
    chunks = [c async for c in stream if c.choices and c.choices[0].delta.content]
    models = [c.model for c in chunks]
    assert models[:3] == ["llama-3.1-70b-instruct"] * 3
    assert set(models[3:]) == {"gpt-4o-mini"}


async def test_non_streaming_completion(sdk):
    r = await sdk.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": QUESTION}])
    assert r.object == "chat.completion" and r.model == "llama-3.1-70b-instruct"
    assert r.choices[0].message.content.startswith("Based on what")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.model_extra["served_by"] == ["onprem"]


async def test_models_lists_the_routed_model_and_one_per_tier(sdk):
    ids = [m.id async for m in sdk.models.list()]
    assert ids == ["scout", "scout/onprem", "scout/openai", "scout/inventory", "scout/cache",
                   "scout/static"]


async def test_a_model_is_retrieved_by_its_id_and_an_unknown_one_is_a_404(sdk):
    model = await sdk.models.retrieve("scout/onprem")
    assert (model.id, model.object, model.owned_by) == ("scout/onprem", "model", "scout")
    assert (await sdk.models.retrieve("scout")).id == "scout"
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.models.retrieve("gpt-5-turbo")
    assert caught.value.body["code"] == "model_not_found"


async def test_a_whole_answer_says_it_has_no_refusal(sdk):
    r = await sdk.chat.completions.with_raw_response.create(
        model="scout", messages=[{"role": "user", "content": QUESTION}])
    message = r.parse().choices[0].message
    assert message.refusal is None
    assert "refusal" in r.http_response.json()["choices"][0]["message"], "present, as null"


async def test_pinning_a_tier(sdk, onprem_sim, openai_sim):
    r = await sdk.chat.completions.create(
        model="scout/openai", messages=[{"role": "user", "content": QUESTION}])
    assert r.model_extra["served_by"] == ["openai"] and onprem_sim.stats.requests == 0


async def test_pinning_openai_never_bypasses_a_private_intent(sdk, openai_sim):
    r = await sdk.chat.completions.create(
        model="scout/openai",
        messages=[{"role": "user", "content": "Can I get a car loan with bad credit?"}])
    assert r.model_extra["scout"]["intent"] == "financing"
    assert r.model_extra["served_by"] == ["onprem"]
    assert openai_sim.stats.requests == 0


async def test_system_prompt_is_prepended_unless_the_caller_sends_one(sdk, onprem_sim,
                                                                      settings):
    await sdk.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": "Tell me about trucks"}])
    sent = onprem_sim.stats.last_messages
    assert sent[0] == {"role": "system", "content": settings.server.system_prompt}
    await sdk.chat.completions.create(
        model="scout", messages=[{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Tell me about vans"}])
    assert onprem_sim.stats.last_messages[0] == {"role": "system", "content": "Be brief."}


async def test_requests_with_tools_go_to_tool_capable_tiers(sdk, onprem_sim, openai_sim):
    tools = [{"type": "function", "function": {"name": "book_test_drive", "parameters": {
        "type": "object", "properties": {"day": {"type": "string"}}}}}]
    r = await sdk.chat.completions.create(
        model="scout", tools=tools,
        messages=[{"role": "user", "content": "Book a test drive on Saturday"}])
    assert r.model_extra["served_by"] == ["openai"]
    assert onprem_sim.stats.requests == 0 and openai_sim.stats.requests == 1


async def test_a_required_tool_call_no_tier_can_make_is_a_clear_error_not_a_canned_reply(
        sdk, onprem_sim, openai_sim):
    tools = [{"type": "function", "function": {"name": "book_test_drive", "parameters": {
        "type": "object", "properties": {"day": {"type": "string"}}}}}]
    ask = [{"role": "user", "content": "Book a test drive on Saturday"}]
    # The only tier that calls tools here is OpenAI: with it refusing connections and
    # marked down, "required" cannot be met now.
    await openai_sim.set_fault("refuse")
    # Before the monitor has noticed, the attempt fails live: an error, never a canned reply.
    with pytest.raises(openai.APIStatusError) as exc:
        await sdk.chat.completions.create(model="scout", tools=tools, messages=ask,
                                          tool_choice="required")
    assert exc.value.status_code in (502, 503)
    for _ in range(100):   # once it has (probes every 0.5 s here): refused before any try
        with pytest.raises(openai.APIStatusError) as exc:
            await sdk.chat.completions.create(model="scout", tools=tools, messages=ask,
                                              tool_choice="required")
        if exc.value.status_code == 503:
            assert exc.value.body["code"] == "no_tool_tier" and "openai" in exc.value.message
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("never refused up front")
    # Without "required", a reply in words is still an answer.
    r = await sdk.chat.completions.create(model="scout", tools=tools, messages=ask)
    assert r.choices[0].finish_reason == "stop"


async def test_unknown_model_is_a_404_in_openai_shape(sdk):
    with pytest.raises(openai.NotFoundError) as exc:
        await sdk.chat.completions.create(
            model="gpt-5-turbo", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["code"] == "model_not_found"
    assert "gpt-5-turbo" in exc.value.body["message"]


async def test_a_client_disconnect_stops_the_upstream(aiohttp_server, onprem_sim, openai_sim):
    import aiohttp

    from tests.conftest import make_settings
    # Deadlines far away: only the client's going away can end the upstream request.
    slow = {"headers_s": 30, "first_token_s": 30, "gap_s": 30}
    gateway = await aiohttp_server(create_app(
        make_settings([onprem_sim.url], f"{openai_sim.url}/v1", deadlines=slow)))
    await onprem_sim.set_fault("stall", fault_after=2)
    async with aiohttp.ClientSession(headers=AUTH) as session:
        resp = await session.post(gateway.make_url("/v1/chat/completions"), json={
            "model": "scout", "stream": True,
            "messages": [{"role": "user", "content": QUESTION}]})
        await resp.content.readline()  # the first chunk arrived: on-prem is streaming
        resp.close()                    # the customer closed the tab
    for _ in range(200):
        if onprem_sim.stats.disconnects:
            break
        await asyncio.sleep(0.01)
    assert onprem_sim.stats.disconnects == 1 and onprem_sim.stats.running == 0
    assert openai_sim.stats.requests == 0, "no deadline fired; the disconnect did it"


async def test_secrets_never_appear_in_responses(sdk, gateway, onprem_sim):
    import aiohttp
    await onprem_sim.set_fault("http_401")
    r = await sdk.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": QUESTION}])
    async with aiohttp.ClientSession() as s:
        health = await (await s.get(gateway.make_url("/health"))).text()
    for blob in (r.model_dump_json(), health):
        assert ONPREM_KEY not in blob and OPENAI_KEY not in blob


async def test_personal_data_is_redacted_before_openai_and_restored_in_the_answer(
        sdk, onprem_sim, openai_sim):
    openai_sim.knobs.echo = True  # OpenAI answers with what it was sent
    said = "Please call me at (555) 201-3344 or write to jane.doe@example.com about the SUV"
    r = await sdk.chat.completions.create(
        model="scout/openai", messages=[{"role": "user", "content": said}])
    assert r.model_extra["served_by"] == ["openai"]
    sent = openai_sim.stats.last_messages[-1]["content"]
    assert "555" not in sent and "jane.doe" not in sent
    assert "[PHONE_1]" in sent and "[EMAIL_1]" in sent
    assert r.choices[0].message.content == said, "the customer sees their own details back"
    assert onprem_sim.stats.requests == 0
