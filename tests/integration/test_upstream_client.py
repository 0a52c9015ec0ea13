"""The one upstream client both generative tiers use, against scripted servers over TCP."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.config import PII_KINDS, IntentConfig
from gateway.errors import TierMisconfigured, TierUnavailable
from gateway.health.probes import get, probe_openai
from gateway.language.intents import IntentClassifier
from gateway.providers.base import Delta, Headers, Provider, Skipped, TierRequest, Usage
from gateway.providers.offsite import OffsiteGuard
from gateway.providers.openai_tier import OpenAIConfig, OpenAIProvider
from gateway.security.upstream_keys import KeySource

KEY = "upstream-test-key-51d0"


def chunk(content: str | None = None, finish: str | None = None, **extra: object) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {"model": "gpt-4o-mini-2024-07-18", "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def scripted(pieces: list[bytes], seen: list[dict[str, Any]] | None = None,
             status: int = 200, gap_s: float = 0.0):
    """A /v1/chat/completions that writes `pieces` as separate TCP writes."""
    async def handler(request: web.Request) -> web.StreamResponse:
        if seen is not None:  # what each request carried, and the socket it came on
            seen.append({"headers": request.headers, "body": await request.json(),
                         "peer": request.transport.get_extra_info("peername")})
        if status != 200:
            return web.json_response({"error": {"message": "nope"}}, status=status)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in pieces:
            await resp.write(piece)
            await asyncio.sleep(gap_s)
        return resp
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    return app


def provider_for(server) -> OpenAIProvider:
    return OpenAIProvider(OpenAIConfig(base_url=str(server.make_url("/v1"))),
                          KeySource("openai", KEY))


INTENT = IntentConfig(name="t", ladder=("openai",), static_reply="static")


def ask(text: str) -> TierRequest:
    return TierRequest(messages=[{"role": "user", "content": text}], intent=INTENT)


def guarded(server) -> OffsiteGuard:
    """OpenAI as the app wires it: behind the off-site guard (refusal, redaction)."""
    return OffsiteGuard(provider_for(server), IntentClassifier([INTENT], "t"),
                        frozenset(PII_KINDS))


async def collect(provider: Provider, request: TierRequest) -> list[object]:
    try:
        return [ev async for ev in provider.stream(request)]
    finally:
        await provider.close()


async def test_openai_tier_streams_with_the_key_and_returns_the_connection(aiohttp_server):
    seen: list[dict[str, Any]] = []
    server = await aiohttp_server(scripted(
        [chunk("Hello"), chunk(" there", "stop"),
         b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}\n\n',
         b"data: [DONE]\n\n"], seen))
    provider = provider_for(server)
    try:
        events = [ev async for ev in provider.stream(ask("hi"))]
        # A stream read to [DONE] leaves its connection in the pool for the next request.
        again = [ev async for ev in provider.stream(ask("again"))]
    finally:
        await provider.close()
    assert isinstance(events[0], Headers) and again[1:] == events[1:]
    assert [(e.text, e.model, e.finish_reason) for e in events if isinstance(e, Delta)] == [
        ("Hello", "gpt-4o-mini-2024-07-18", None), (" there", "gpt-4o-mini-2024-07-18", "stop")]
    assert events[-1] == Usage(7, 2)
    assert seen[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    body = seen[0]["body"]
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert len(seen) == 2 and seen[1]["peer"] == seen[0]["peer"]


async def test_a_placeholder_cut_at_the_streams_end_is_still_restored(aiohttp_server):
    """OpenAI sees [PHONE_1]; a stream that ends inside it without a finish_reason
    must still give the customer their number back, not drop the held text."""
    seen: list[dict[str, Any]] = []
    server = await aiohttp_server(scripted(
        [chunk("I'll call you at [PHO"), chunk("NE_1]"), b"data: [DONE]\n\n"], seen))
    events = await collect(guarded(server), ask("Call me at (555) 201-3344 please"))
    assert "(555) 201-3344" not in seen[0]["body"]["messages"][0]["content"]
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert text == "I'll call you at (555) 201-3344"


@pytest.mark.parametrize(("status", "error", "words"), [
    (401, TierMisconfigured, "OpenAI refused the API key (401)"),
    (404, TierMisconfigured, "OpenAI does not serve the configured model"),
    (503, TierUnavailable, "OpenAI answered 503"),
])
async def test_error_statuses_become_tier_errors(aiohttp_server, status, error, words):
    server = await aiohttp_server(scripted([], status=status))
    with pytest.raises(error) as caught:
        await collect(provider_for(server), ask("hi"))
    assert words in caught.value.reason and KEY not in caught.value.reason


@pytest.mark.parametrize(("pieces", "words"), [
    ([chunk("Hel")], "OpenAI stream ended without [DONE]"),
    # One malformed event is skipped; three in a row are a broken stream.
    ([b'data: {"choices": [{"delta": {"content": 42}}]}\n\n'] * 3,
     "3 malformed events in a row (OpenAI sent content that is not text)"),
    ([b'data: {"error": {"message": "overloaded"}}\n\n'], "error mid-stream: overloaded"),
])
async def test_broken_streams_fail_the_tier_with_a_reason(aiohttp_server, pieces, words):
    server = await aiohttp_server(scripted(pieces))
    with pytest.raises(TierUnavailable) as caught:
        await collect(provider_for(server), ask("hi"))
    assert words in caught.value.reason


async def test_text_that_arrives_together_goes_on_as_one_event(aiohttp_server):
    """Chunks in one TCP write reach the race (and the client) as one event: a busy
    upstream or a slow loop costs one write downstream, not one per token."""
    server = await aiohttp_server(scripted([b"".join([
        chunk("Hel"), chunk("lo"), chunk(" the"), chunk("re", "stop"),
        b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 4}}\n\n',
        b"data: [DONE]\n\n"])]))
    events = await collect(provider_for(server), ask("hi"))
    assert events[1:] == [Delta("Hello the", "gpt-4o-mini-2024-07-18"),
                          Delta("re", "gpt-4o-mini-2024-07-18", None, "stop"), Usage(7, 4)]


async def test_text_before_a_broken_event_in_the_same_read_still_counts(aiohttp_server):
    server = await aiohttp_server(scripted([chunk("Part") + chunk(" one") +
                                            b'data: {"choices": "nope"}\n\n' * 3]))
    provider = provider_for(server)
    got: list[object] = []
    with pytest.raises(TierUnavailable) as caught:
        async for ev in provider.stream(ask("hi")):
            got.append(ev)
    await provider.close()
    assert [e for e in got if isinstance(e, Delta)] == [Delta("Part one", "gpt-4o-mini-2024-07-18")]
    assert [type(e) for e in got[2:]] == [Skipped, Skipped], "two skipped, the third breaks it"
    assert "choices that are not a list" in caught.value.reason


async def test_a_probe_reads_a_model_list_that_arrives_in_pieces(aiohttp_server):
    """OpenAI's model list is tens of KB: it comes in several TCP segments."""
    ids = [f"model-{i:04d}" for i in range(2000)] + ["gpt-4o-mini"]
    payload = orjson.dumps({"object": "list", "data": [{"id": i} for i in ids]})

    async def models(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": {}}, status=401)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(payload)
        await resp.prepare(request)
        for i in range(0, len(payload), 8192):
            await resp.write(payload[i:i + 8192])
            await asyncio.sleep(0.01)
        return resp

    app = web.Application()
    app.router.add_get("/v1/models", models)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        got = await get(session, str(server.make_url("/v1/models")), 5,
                        {"Authorization": f"Bearer {KEY}"}, limit=1 << 20)
        assert got.status == 200 and orjson.loads(got.body)["data"][-1]["id"] == "gpt-4o-mini"
        base = str(server.make_url("/v1"))
        up = await probe_openai(session, base, "gpt-4o-mini", KEY, 5)
        assert (up.state, up.reason) == ("up", "gpt-4o-mini available")
        refused = await probe_openai(session, base, "gpt-4o-mini", "wrong", 5)
        assert refused.state == "misconfigured" and "wrong" not in refused.reason
