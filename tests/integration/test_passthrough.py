"""What a request asks of the model reaches the tier that can honour it, in that tier's own
words: response_format, token limits, the end user (hashed), and nothing raw."""

from __future__ import annotations

import json

import openai
import pytest

from gateway.app import create_app
from tests.conftest import API_KEY, make_settings

QUESTION = "Which hybrid SUV would you recommend for a family of five?"
SCHEMA = {"type": "object", "properties": {"model": {"type": "string"},
                                           "seats": {"type": "integer"}},
          "required": ["model", "seats"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "pick", "schema": SCHEMA,
                                                 "strict": True}}


async def sdk_for(aiohttp_server, settings):
    server = await aiohttp_server(create_app(settings))
    return openai.AsyncOpenAI(api_key=API_KEY, base_url=str(server.make_url("/v1")),
                              max_retries=0)


async def test_response_format_goes_to_the_tier_that_honours_it_and_skips_the_other(
        aiohttp_server, onprem_sim, openai_sim):
    def llama_cpp_without_grammars(data):
        data["onprem"]["supports_response_format"] = False
    client = await sdk_for(aiohttp_server, make_settings(
        [onprem_sim.url], f"{openai_sim.url}/v1", mutate=llama_cpp_without_grammars))
    r = await client.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": QUESTION}], response_format=FORMAT)
    assert r.model_extra["served_by"] == ["openai"] and onprem_sim.stats.requests == 0
    assert set(json.loads(r.choices[0].message.content)) == {"model", "seats"}
    assert openai_sim.stats.last_body["response_format"] == FORMAT
    await client.close()


async def test_response_format_reaches_vllm_and_plain_text_is_no_constraint(
        aiohttp_server, onprem_sim, openai_sim):
    client = await sdk_for(aiohttp_server, make_settings([onprem_sim.url], f"{openai_sim.url}/v1"))
    r = await client.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": QUESTION}], response_format=FORMAT,
        stream=False)
    assert r.model_extra["served_by"] == ["onprem"]
    assert onprem_sim.stats.last_body["response_format"] == FORMAT
    await client.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": QUESTION + "?"}],
        response_format={"type": "text"})
    assert "response_format" not in onprem_sim.stats.last_body
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(
            model="scout", messages=[{"role": "user", "content": QUESTION}],
            response_format={"type": "yaml"})
    assert exc.value.body["param"] == "response_format.type"
    await client.close()


async def test_token_limits_are_each_upstreams_own_and_the_user_is_hashed(
        aiohttp_server, onprem_sim, openai_sim):
    client = await sdk_for(aiohttp_server, make_settings([onprem_sim.url], f"{openai_sim.url}/v1"))
    await client.chat.completions.create(
        model="scout/onprem", messages=[{"role": "user", "content": QUESTION}],
        max_completion_tokens=64, user="customer-4711")
    vllm = onprem_sim.stats.last_body
    assert vllm["max_tokens"] == 64 and "max_completion_tokens" not in vllm
    assert "user" not in vllm
    await client.chat.completions.create(
        model="scout/openai", messages=[{"role": "user", "content": QUESTION}],
        max_tokens=64, user="customer-4711")
    cloud = openai_sim.stats.last_body
    assert cloud["max_completion_tokens"] == 64 and "max_tokens" not in cloud
    assert cloud["user"].startswith("scout-") and "4711" not in json.dumps(cloud)
    await client.chat.completions.create(
        model="scout/openai", messages=[{"role": "user", "content": QUESTION + "!"}],
        user="customer-4711")
    assert openai_sim.stats.last_body["user"] == cloud["user"], "stable per user"
    await client.chat.completions.create(
        model="scout/openai", messages=[{"role": "user", "content": QUESTION + "!!"}],
        user="customer-4712")
    assert openai_sim.stats.last_body["user"] != cloud["user"]
    await client.close()
