"""llama.cpp's own server (llama-server, as the compose runs it on the GPU box: batched slots,
/metrics on) with SmolLM2-135M behind the gateway: what it reports of its prompt cache
reaches the client and the hit rate, its queue reaches the monitor, and behind the on-prem
nginx each conversation keeps to the replica that holds its history.

scripts/test builds the server (scripts/build-llama-server) from the llama.cpp that the
locked llama-cpp-python vendors; without it these tests skip, and fail under CI."""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import openai
import pytest

from gateway.app import create_app
from onprem import llamacpp
from onprem.nginx_conf import render_onprem
from tests.conftest import API_KEY, ONPREM_KEY, STAFF, make_settings
from tests.servers import Nginx, free_port, model_server

SLOTS = 2
PATIENT = {"headers_s": 60, "first_token_s": 60, "gap_s": 30}


def start_llama_server(tmp_path_factory) -> tuple[str, object]:
    why = None if llamacpp.llama_server() else "no llama-server: run scripts/build-llama-server"
    why = why or llamacpp.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    port = free_port()
    proc = model_server(llamacpp.server_command(port, ONPREM_KEY, "llama-3.1-70b-instruct",
                                                threads=1, ctx_per_slot=4096, parallel=SLOTS),
                        tmp_path_factory.mktemp("llama-server") / "server.log", port,
                        ONPREM_KEY, "llama-server")
    return f"http://127.0.0.1:{port}", proc


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    url, proc = start_llama_server(tmp_path_factory)
    yield url
    proc.terminate()
    proc.wait(10)


def every_turn_to_the_replica(data):
    for intent in data["intents"].values():
        intent["cacheable"] = False
    data["hedging"].update(floor_s=3600.0)   # the replica answers, however slow


async def health_of(client, until, within: float = 60.0) -> dict:
    """/health's record of the replica once `until(record)` holds (else the last one)."""
    deadline = time.monotonic() + within
    while True:
        h = (await (await client.get("/health", headers=STAFF)).json())["targets"]["onprem.r1"]
        if until(h) or time.monotonic() > deadline:
            return h
        await asyncio.sleep(0.1)


async def test_llama_servers_cached_tokens_reach_the_client_and_the_hit_rate(
        gw_client, llama_server):
    """Three grounded turns of one conversation over openai-python: the server finds the
    conversation's earlier prompt in its cache, says so in `cached_tokens`, and the gateway
    passes that on and counts it. (With `--slot-prompt-similarity 0` each turn takes the
    least recently used slot; the slot the last turn used is put in the RAM cache only once
    this turn has started, so a turn finds the history up to the turn before last.)"""
    client = await gw_client(create_app(make_settings(
        [llama_server], None, mutate=every_turn_to_the_replica, deadlines=PATIENT)))
    assert (await health_of(client, lambda h: h["state"] == "up"))["state"] == "up"
    sdk = openai.AsyncOpenAI(api_key=API_KEY, base_url=str(client.make_url("/v1")),
                             max_retries=0)
    try:
        messages: list[dict[str, str]] = []
        usages = []
        for question in ("Any used Honda SUVs on the lot?", "Do you have a red one?",
                         "Is there one under $25,000?"):
            messages.append({"role": "user", "content": question})
            stream = await sdk.chat.completions.create(
                model="scout", messages=messages, stream=True, max_tokens=16,
                temperature=0, seed=7, stream_options={"include_usage": True})
            chunks = [c async for c in stream]
            final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
            assert final.model_extra["served_by"] == ["onprem"]
            messages.append({"role": "assistant", "content": "".join(
                c.choices[0].delta.content or "" for c in chunks if c.choices)})
            usages.append(chunks[-1].usage)
    finally:
        await sdk.close()
    assert not (usages[0].prompt_tokens_details and usages[0].prompt_tokens_details.cached_tokens)
    first, last = usages[0], usages[-1]
    cached = last.prompt_tokens_details.cached_tokens
    # The first turn's prompt is a prefix of the third's (the gateway keeps it so): all of
    # it, less at most the one token the server always reads again.
    assert first.prompt_tokens - 1 <= cached < last.prompt_tokens, usages
    tiles = (await (await client.get("/dashboard/data", headers=STAFF)).json())["tiles"]
    assert 0 < tiles["replica_prefix_hit_rate"]["r1"] < 1
    metrics = await (await client.get("/metrics", headers=STAFF)).text()
    assert 'scout_replica_cached_prompt_tokens_total{replica="r1"}' in metrics


async def test_conversations_sharing_their_start_each_find_their_own_history(
        gw_client, llama_server):
    """More conversations than slots, all opening with the same question (so the same system
    prompt and stock table), their turns taken in turn, as customers' are: each later turn
    reads less than one turn adds to its prompt, its own history coming from the server's
    RAM cache. With llama.cpp's default slot choice it re-read its whole history after the
    first question, from a slot holding another of them (onprem.llamacpp.server_command)."""
    client = await gw_client(create_app(make_settings(
        [llama_server], None, mutate=every_turn_to_the_replica, deadlines=PATIENT)))
    assert (await health_of(client, lambda h: h["state"] == "up"))["state"] == "up"
    sdk = openai.AsyncOpenAI(api_key=API_KEY, base_url=str(client.make_url("/v1")),
                             max_retries=0)
    conversations: list[list[dict[str, str]]] = [[] for _ in range(SLOTS + 1)]
    prompts: list[list[int]] = [[] for _ in conversations]
    read: list[list[int]] = [[] for _ in conversations]
    try:
        for t, question in enumerate(("Any used Honda SUVs on the lot?",
                                      "Do you have a red one?", "Is there one under $25,000?")):
            for c, messages in enumerate(conversations):
                messages.append({"role": "user", "content": f"{question} (customer {c})"
                                 if t == 0 else question})
                answer = await sdk.chat.completions.create(
                    model="scout", messages=messages, max_tokens=16, temperature=0, seed=7)
                messages.append({"role": "assistant",
                                 "content": answer.choices[0].message.content or ""})
                usage = answer.usage
                assert usage is not None and usage.prompt_tokens_details is not None
                prompts[c].append(usage.prompt_tokens)
                read[c].append(usage.prompt_tokens - (usage.prompt_tokens_details.cached_tokens
                                                      or 0))
    finally:
        await sdk.close()
    for c in range(len(conversations)):
        for t in (1, 2):
            added = prompts[c][t] - prompts[c][t - 1]
            assert read[c][t] < added, (c, t, prompts[c], read[c])


async def test_llama_servers_deferred_requests_reach_the_monitor(gw_client, llama_server):
    """More requests than slots: the server defers the rest, says so on /metrics
    (`llamacpp:requests_deferred`), and the probes read it: with busy_waiting 0 the
    replica shows busy, naming the queue; once the queue drains it is up again."""
    def no_queue_allowed(data):
        every_turn_to_the_replica(data)
        data["health"]["busy_waiting"] = 0
    client = await gw_client(create_app(make_settings(
        [llama_server], None, mutate=no_queue_allowed, deadlines=PATIENT)))
    assert (await health_of(client, lambda h: h["state"] == "up"))["state"] == "up"

    async def long_answer(session: aiohttp.ClientSession, i: int) -> int:
        async with session.post(f"{llama_server}/v1/chat/completions", json={
                "messages": [{"role": "user", "content": f"Tell me a long story, number {i}."}],
                "max_tokens": 400, "ignore_eos": True, "temperature": 0, "seed": i}) as r:
            await r.read()
            return r.status

    async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {ONPREM_KEY}"}) as session:
        asks = [asyncio.create_task(long_answer(session, i)) for i in range(SLOTS + 2)]
        busy = await health_of(client, lambda h: h["state"] == "busy")
        statuses = await asyncio.gather(*asks)
    assert statuses == [200] * (SLOTS + 2)
    assert busy["state"] == "busy", busy
    assert "requests waiting" in busy["reason"], busy
    assert (await health_of(client, lambda h: h["state"] == "up"))["state"] == "up"


@pytest.fixture
def two_behind_nginx(tmp_path, tmp_path_factory, llama_server):
    """The GPU box in miniature: two llama-server replicas behind the on-prem nginx config,
    rendered from its template (least_conn on /v1/, a route per replica)."""
    second, proc = start_llama_server(tmp_path_factory)
    urls = [llama_server, second]
    port = free_port()
    nginx = Nginx(tmp_path, render_onprem([(f"r{i + 1}", u.removeprefix("http://"))
                                           for i, u in enumerate(urls)], f"127.0.0.1:{port}"))
    nginx.start(port)
    yield f"http://127.0.0.1:{port}", urls
    nginx.stop()
    proc.terminate()
    proc.wait(10)


async def predicted(session: aiohttp.ClientSession, urls: list[str]) -> list[float]:
    """Each replica's own count of tokens it has written (its /metrics, not the gateway's)."""
    counts = []
    for url in urls:
        async with session.get(f"{url}/metrics") as r:
            text = await r.text()
        counts.append(next(float(line.split()[1]) for line in text.splitlines()
                           if line.startswith("llamacpp:tokens_predicted_total ")))
    return counts


async def test_through_the_gpu_boxs_nginx_each_conversation_keeps_its_replica_and_history(
        gw_client, two_behind_nginx):
    """Three conversations over openai-python, their turns interleaved, through the real
    on-prem nginx in front of two llama-server replicas: each conversation's turns all reach
    one replica (by the replicas' own counters), the two replicas share the conversations,
    and a third turn finds the conversation's first prompt in that replica's cache, as the
    replica's `cached_tokens` passed back through nginx and the gateway says. Through
    nginx's least_conn alone the interleaved turns alternate between the replicas."""
    nginx_url, urls = two_behind_nginx

    def via_nginx(data):
        every_turn_to_the_replica(data)
        data["onprem"]["replicas"] = ["r1", "r2"]   # their routes on nginx, /replicas/NAME
    client = await gw_client(create_app(make_settings(
        [nginx_url], None, mutate=via_nginx, deadlines=PATIENT)))
    for name in ("r1", "r2"):
        deadline = time.monotonic() + 60
        while True:
            h = (await (await client.get("/health", headers=STAFF)).json())["targets"]
            if h[f"onprem.{name}"]["state"] == "up" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert h[f"onprem.{name}"]["state"] == "up", h
    sdk = openai.AsyncOpenAI(api_key=API_KEY, base_url=str(client.make_url("/v1")),
                             max_retries=0)
    conversations: list[list[dict[str, str]]] = [[] for _ in range(3)]
    served: list[list[int]] = [[] for _ in conversations]
    usages: list[list] = [[] for _ in conversations]
    try:
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {ONPREM_KEY}"}) as replicas:
            for t, question in enumerate(("Any used Honda SUVs on the lot?",
                                          "Do you have a red one?",
                                          "Is there one under $25,000?")):
                for c, messages in enumerate(conversations):
                    messages.append({"role": "user", "content": f"{question} (customer {c})"
                                     if t == 0 else question})
                    before = await predicted(replicas, urls)
                    answer = await sdk.chat.completions.create(
                        model="scout", messages=messages, max_tokens=16, temperature=0, seed=7)
                    after = await predicted(replicas, urls)
                    moved = [i for i in range(len(urls)) if after[i] > before[i]]
                    assert len(moved) == 1, (c, t, before, after)
                    served[c].append(moved[0])
                    assert answer.model_extra["served_by"] == ["onprem"]
                    messages.append({"role": "assistant",
                                     "content": answer.choices[0].message.content or ""})
                    usages[c].append(answer.usage)
    finally:
        await sdk.close()
    assert all(len(set(turns)) == 1 for turns in served), served
    assert {turns[0] for turns in served} == {0, 1}, served
    for c, (first, _, third) in enumerate(usages):
        assert third.prompt_tokens_details is not None, (c, third)
        assert first.prompt_tokens - 1 <= third.prompt_tokens_details.cached_tokens, (c, usages[c])
