"""POST /v1/responses through openai-python's own client.responses: stream and not, JSON
schema output, tools, previous_response_id, item references and refusals by name."""

from __future__ import annotations

import json

import openai
import pytest

from gateway.app import create_app
from tests.conftest import API_KEY, OTHER_KEY, PRIVATE_TURNS, make_settings

QUESTION = "Which hybrid SUV would you recommend for a family of five?"


async def test_a_whole_response_with_the_real_model_and_who_served_it(sdk, onprem_sim):
    r = await sdk.responses.create(model="scout", input=QUESTION,
                                      instructions="Answer in one paragraph.",
                                      max_output_tokens=200)
    assert r.status == "completed" and r.output_text.startswith("Based on what you described")
    assert r.model == "llama-3.1-70b-instruct"
    assert r.model_extra["served_by"] == ["onprem"]
    assert r.usage.output_tokens == 8 and r.usage.input_tokens > 0
    details = r.usage.input_tokens_details
    assert {"cached_tokens", "cache_write_tokens"} <= details.model_fields_set, "both required"
    assert onprem_sim.stats.last_messages[0] == {"role": "system",
                                                 "content": "Answer in one paragraph."}


async def test_a_streamed_response_has_the_typed_events_in_order(sdk, onprem_sim):
    stream = await sdk.responses.create(model="scout", input=QUESTION, stream=True)
    events = [e async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds and "response.output_text.done" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert text == final.output_text and text.startswith("Based on what you described")
    assert final.model_extra["served_by"] == ["onprem"]


async def test_failover_is_invisible_but_named(sdk, onprem_sim):
    await onprem_sim.set_fault("http_500")
    r = await sdk.responses.create(model="scout", input=QUESTION)
    assert r.model_extra["served_by"] == ["openai"] and r.model == "gpt-4o-mini"


async def test_previous_response_id_continues_the_conversation(sdk, onprem_sim):
    first = await sdk.responses.create(model="scout", input="Do you have the RAV4 Hybrid?")
    second = await sdk.responses.create(model="scout", input="And in blue?",
                                           previous_response_id=first.id)
    assert second.status == "completed"
    sent = onprem_sim.stats.last_messages
    assert {"role": "user", "content": "Do you have the RAV4 Hybrid?"} in sent
    assert {"role": "assistant", "content": first.output_text} in sent
    assert sent[-1] == {"role": "user", "content": "And in blue?"}


async def test_a_stored_response_belongs_to_its_api_key(sdk, gateway):
    first = await sdk.responses.create(model="scout", input="Do you have the RAV4 Hybrid?")
    other = openai.AsyncOpenAI(api_key=OTHER_KEY, base_url=str(gateway.make_url("/v1")),
                               max_retries=0)
    with pytest.raises(openai.NotFoundError) as exc:
        await other.responses.create(model="scout", input="And in blue?",
                                     previous_response_id=first.id)
    assert exc.value.body["code"] == "previous_response_not_found"
    await other.close()
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.create(model="scout", input="hi",
                                      previous_response_id="resp_nothing")


async def test_an_item_reference_is_read_back_from_the_store(sdk, onprem_sim):
    first = await sdk.responses.create(model="scout", input="Do you have the RAV4 Hybrid?")
    item_id = first.output[0].id
    await sdk.responses.create(model="scout", input=[
        {"role": "user", "content": "Do you have the RAV4 Hybrid?"},
        {"type": "item_reference", "id": item_id},
        {"role": "user", "content": [{"type": "input_text", "text": "Is it AWD?"}]}])
    assert {"role": "assistant", "content": first.output_text} in onprem_sim.stats.last_messages


async def test_json_schema_output_goes_to_tiers_that_honour_it(sdk, onprem_sim):
    schema = {"type": "object", "properties": {"model": {"type": "string"},
                                               "seats": {"type": "integer"}},
              "required": ["model", "seats"], "additionalProperties": False}
    r = await sdk.responses.create(model="scout", input=QUESTION, text={"format": {
        "type": "json_schema", "name": "pick", "schema": schema, "strict": True}})
    picked = json.loads(r.output_text)
    assert set(picked) == {"model", "seats"} and isinstance(picked["seats"], int)
    assert r.text.format.type == "json_schema"


async def test_unsupported_fields_are_refused_by_name(sdk):
    with pytest.raises(openai.BadRequestError) as exc:
        await sdk.responses.create(model="scout", input=QUESTION,
                                      reasoning={"effort": "high"}, background=True)
    assert "unsupported fields for /v1/responses here: background, reasoning" in \
        exc.value.body["message"]
    with pytest.raises(openai.BadRequestError) as exc:
        await sdk.responses.create(model="scout", input=[
            {"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}])
    assert "only text parts" in exc.value.body["message"]
    with pytest.raises(openai.BadRequestError) as exc:
        await sdk.responses.create(model="scout", input=QUESTION, max_output_tokens=0)
    assert exc.value.body["param"] == "max_output_tokens"


async def test_function_tools_round_trip(sdk, openai_sim):
    # on-prem is configured without tool support: the plan sends tool requests to OpenAI
    c = sdk
    tools = [{"type": "function", "name": "book_test_drive", "description": "Book a drive",
              "parameters": {"type": "object", "properties": {"day": {"type": "string"}}}}]
    r = await c.responses.create(model="scout", input="Please book me a test drive Saturday",
                                 tools=tools)
    calls = [o for o in r.output if o.type == "function_call"]
    assert r.model_extra["served_by"] == ["openai"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("book_test_drive", {"day": "saturday"})]
    assert openai_sim.stats.last_body["tools"][0]["function"]["name"] == "book_test_drive"
    echoed = r.tools[0]
    assert {"strict", "parameters"} <= echoed.model_fields_set, "the spec requires both"
    assert echoed.strict is None and echoed.name == "book_test_drive"
    follow = await c.responses.create(model="scout", tools=tools, input=[
        {"role": "user", "content": "Please book me a test drive Saturday"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": calls[0].name,
         "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "booked"}])
    assert follow.status == "completed" and follow.output_text
    sent = openai_sim.stats.last_messages
    assert {"role": "tool", "tool_call_id": calls[0].call_id, "content": "booked"} in sent
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "book_test_drive"


async def test_streamed_tool_calls_are_function_call_items(sdk):
    tools = [{"type": "function", "name": "book_test_drive",
              "parameters": {"type": "object", "properties": {"day": {"type": "string"}}}}]
    stream = await sdk.responses.create(model="scout", tools=tools, stream=True,
                                           input="Book me a drive on Saturday")
    events = [e async for e in stream]
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert added and added[0].type == "function_call" and added[0].name == "book_test_drive"
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"day": "saturday"}
    final = events[-1].response
    assert final.output[0].type == "function_call" and final.output[0].call_id




@PRIVATE_TURNS
async def test_a_private_conversation_stays_on_site_through_previous_response_id(
        aiohttp_server, onprem_sim, openai_sim, private):
    def one_turn_kept(data):
        data["sessions"]["max_turns"] = 1   # the private turn leaves the window at once
    gateway = await aiohttp_server(create_app(make_settings(
        [onprem_sim.url], f"{openai_sim.url}/v1", mutate=one_turn_kept)))
    c = openai.AsyncOpenAI(api_key=API_KEY, base_url=str(gateway.make_url("/v1")),
                           max_retries=0)
    first = await c.responses.create(model="scout", input=private)
    second = await c.responses.create(model="scout", input="Which trims come in blue?",
                                      previous_response_id=first.id)
    third = await c.responses.create(model="scout", input="And which one is the cheapest?",
                                     previous_response_id=second.id)
    # The window kept only the last turn: the financing question itself is gone from it...
    assert third.model_extra["served_by"] == ["onprem"]
    assert private not in str(onprem_sim.stats.last_messages)
    await onprem_sim.set_fault("http_500")   # OpenAI would be next for an ordinary question
    fourth = await c.responses.create(model="scout", input="Which SUV would you recommend?",
                                      previous_response_id=third.id)
    # ...and still the conversation stays on-site: it touched financing.
    assert fourth.model_extra["served_by"] == ["inventory"]
    assert openai_sim.stats.requests == 0, "nothing of a private conversation left the building"
    await c.close()
