"""A real llama.cpp replica (SmolLM2-135M via llama-cpp-python) behind the gateway and nginx."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import aiohttp
import openai
import pytest

from gateway.app import create_app
from onprem import llamacpp
from onprem.nginx_conf import render_onprem
from onprem.simulator import Knobs, ReplicaSimulator
from tests.conftest import API_KEY, ONPREM_KEY, STAFF, make_settings
from tests.servers import Nginx, free_port, model_server

CANNED = "Based on what you described"  # how every simulated answer starts
LOGS: dict[str, Path] = {}   # replica URL → its server log


@pytest.fixture(scope="module")
def real_replica(tmp_path_factory):
    why = llamacpp.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    port = free_port()
    log_path = tmp_path_factory.mktemp("llamacpp") / "server.log"
    proc = model_server(llamacpp.command(port, ONPREM_KEY, "llama-3.1-70b-instruct"),
                        log_path, port, ONPREM_KEY, "llama.cpp replica")
    url = f"http://127.0.0.1:{port}"
    LOGS[url] = log_path
    yield url
    proc.terminate()
    proc.wait(10)


def short_answers(data):
    data["intents"]["vehicle.recommendation"]["cacheable"] = False  # every ask reaches a replica


async def test_real_tokens_stream_through_the_gateway_and_the_openai_client(
        aiohttp_server, real_replica, openai_sim):
    settings = make_settings([real_replica], f"{openai_sim.url}/v1", mutate=short_answers,
                             deadlines={"headers_s": 10, "first_token_s": 20, "gap_s": 10})
    server = await aiohttp_server(create_app(settings))
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=str(server.make_url("/v1")),
                                max_retries=0)
    t0 = time.perf_counter()
    stream = await client.chat.completions.create(
        # A 135M model sometimes ends an answer before its first token (an empty answer,
        # which the gateway rightly hands over): ask deterministically.
        model="scout", stream=True, max_tokens=32, temperature=0, seed=7,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Which family car would you recommend?"}])
    chunks = [c async for c in stream]
    elapsed = time.perf_counter() - t0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and not text.startswith(CANNED), "real model text, not the simulator's"
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) >= 5, "streamed token by token"
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.model_extra["served_by"] == ["onprem"]
    usage = chunks[-1].usage  # llama-cpp-python reports none: the gateway's estimate (chars/4)
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 0
    print(f"real model: {len(content)} streamed chunks in {elapsed:.2f} s through the gateway")
    await client.close()
    # llama-cpp-python serves one request at a time, so a probe that lands mid-answer waits
    # (and may time out); once idle, the monitor sees the real replica serve the model.
    async with aiohttp.ClientSession(headers=STAFF) as s:
        for _ in range(100):
            h = await (await s.get(server.make_url("/health"))).json()
            if h["targets"]["onprem.r1"]["state"] == "up":
                break
            await asyncio.sleep(0.1)
    assert h["targets"]["onprem.r1"]["reason"] == "serving llama-3.1-70b-instruct"


@pytest.fixture(params=["direct", "behind the on-prem nginx"])
def gpu_box(request, tmp_path, real_replica):
    """The real replica as the gateway reaches it: straight, or as on the GPU box, behind
    the on-prem nginx config (probes on /replicas/r1/..., chats on its affinity route)."""
    if request.param == "direct":
        yield real_replica, None
        return
    port = free_port()
    nginx = Nginx(tmp_path, render_onprem([("r1", real_replica.removeprefix("http://"))],
                                          f"127.0.0.1:{port}"))
    nginx.start(port)
    yield f"http://127.0.0.1:{port}", ["r1"]
    nginx.stop()


async def test_a_replica_busy_with_our_answer_is_busy_and_takes_the_next_turn(
        gw_client, gpu_box, openai_sim):
    """llama-cpp-python answers /v1/models only between completions, so while it writes a
    long answer for us every probe (1 s timeout, every 1.5 s) times out behind it. The
    monitor reads that as busy, never down, and the customer's next turn, sent the moment
    the answer ends, goes to the replica, not to the backup."""
    url, names = gpu_box

    def probes(data):
        short_answers(data)
        # Long enough that an idle replica on a loaded machine answers in time.
        data["health"].update(interval_s=1.5, timeout_s=1.0)
        if names:
            data["onprem"]["replicas"] = names
    settings = make_settings([url], f"{openai_sim.url}/v1", mutate=probes,
                             deadlines={"headers_s": 20, "first_token_s": 30, "gap_s": 10})
    client = await gw_client(create_app(settings))
    for _ in range(200):
        h = await (await client.get("/health", headers=STAFF)).json()
        if h["targets"]["onprem.r1"]["state"] == "up":
            break
        await asyncio.sleep(0.1)
    assert h["targets"]["onprem.r1"]["state"] == "up", h["targets"]
    sdk = openai.AsyncOpenAI(api_key=API_KEY, base_url=str(client.make_url("/v1")),
                             max_retries=0)
    seen: list[tuple[str, str]] = []
    answering = asyncio.Event()

    async def watch() -> None:
        while True:
            r1 = (await (await client.get("/health", headers=STAFF)).json())["targets"]["onprem.r1"]
            seen.append((r1["state"], r1["reason"]))
            if r1["state"] == "busy":
                answering.set()
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        messages = [{"role": "user", "content": "Tell me a long story about a family road trip "
                                                "in a minivan, with every stop on the way."}]
        stream = await sdk.chat.completions.create(
            model="scout", messages=messages, stream=True, max_tokens=400, temperature=0,
            seed=7)
        text, served = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                if chunk.choices[0].finish_reason:
                    served = chunk.model_extra["served_by"]
            if served is None and len(text) > 200 and not answering.is_set():
                # Long enough for a probe to wait behind it: see the monitor say so.
                try:
                    await asyncio.wait_for(answering.wait(), 30)
                except TimeoutError:
                    pytest.fail(f"never busy while it answered us; the monitor said {seen[-3:]}")
        assert served == ["onprem"]
        watcher.cancel()
        messages += [{"role": "assistant", "content": text},
                     {"role": "user", "content": "Which family car would you recommend?"}]
        answer = await sdk.chat.completions.create(model="scout", messages=messages,
                                                   max_tokens=16, temperature=0, seed=7)
        assert answer.model_extra["served_by"] == ["onprem"], answer.model_extra
    finally:
        watcher.cancel()
        await sdk.close()
    states = {state for state, _ in seen}
    assert "busy" in states and "down" not in states, seen
    assert any("answering 1 turn of ours" in reason for _, reason in seen), seen


# llama.cpp's log, after each completion (and before it, when its slot held a prefix).
COMPLETION = re.compile(r"(?:(\d+) prefix-match hit, remaining \d+ prompt tokens to eval\n"
                        r"(?:.*\n)*?)?.*prompt eval time = +[\d.]+ ms / +(\d+) tokens")


async def test_a_real_replica_reads_each_turns_history_from_its_cache(gw_client, real_replica,
                                                                      openai_sim):
    """Three grounded turns of one conversation: llama.cpp finds each turn's whole previous
    prompt, and the answer it wrote, already in its slot, and reads only what is new."""
    def grounded(data):
        short_answers(data)
        for intent in data["intents"].values():
            intent["cacheable"] = False
        data["hedging"].update(floor_s=3600.0)   # the replica answers, however slow
        # llama-cpp-python answers /v1/models only between completions: a probe waits.
        data["health"].update(interval_s=61.0, timeout_s=60.0, backoff_max_s=61.0)
    settings = make_settings([real_replica], f"{openai_sim.url}/v1", mutate=grounded,
                             deadlines={"headers_s": 60, "first_token_s": 60, "gap_s": 30})
    client = await gw_client(create_app(settings))
    for _ in range(200):   # the monitor has seen the replica serve (else the stock tier answers)
        h = await (await client.get("/health", headers=STAFF)).json()
        if h["targets"]["onprem.r1"]["state"] == "up":
            break
        await asyncio.sleep(0.1)
    log = LOGS[real_replica]
    start = log.stat().st_size
    messages: list[dict[str, str]] = []
    for question in ("Any used Honda SUVs on the lot?", "Do you have a red one?",
                     "Is there one under $25,000?"):
        messages.append({"role": "user", "content": question})
        r = await client.post("/v1/chat/completions", json={
            "model": "scout", "messages": messages, "max_tokens": 16, "temperature": 0,
            "seed": 7})
        body = await r.json()
        assert body["served_by"] == ["onprem"], body
        messages.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})
    with log.open("rb") as f:
        f.seek(start)
        done = [(int(hit or 0), int(read))
                for hit, read in COMPLETION.findall(f.read().decode(errors="replace"))]
    assert len(done) == 3, done
    prompts = [hit + read for hit, read in done]
    for (hit, _), before in zip(done[1:], prompts, strict=False):
        assert hit >= before, f"the previous prompt came from the slot: {done}"


async def test_nginx_pools_three_simulators_and_the_real_replica(gw_client, tmp_path,
                                                                 real_replica, openai_sim):
    sims = [await ReplicaSimulator(Knobs(api_key=ONPREM_KEY, ttft_s=0.05, token_interval_s=0.02,
                                         tokens=16)).start() for _ in range(3)]
    port = free_port()
    replicas = [(f"sim{i + 1}", f"127.0.0.1:{s.port}") for i, s in enumerate(sims)]
    replicas.append(("real", real_replica.removeprefix("http://")))
    nginx = Nginx(tmp_path, render_onprem(replicas, f"127.0.0.1:{port}"))
    nginx.start(port)
    try:
        def pool(data):
            short_answers(data)
            data["onprem"]["replicas"] = [name for name, _ in replicas]

        settings = make_settings([f"http://127.0.0.1:{port}"], f"{openai_sim.url}/v1", mutate=pool,
                                 deadlines={"headers_s": 10, "first_token_s": 20, "gap_s": 10})
        client = await gw_client(create_app(settings))
        for _ in range(100):
            h = await (await client.get("/health", headers=STAFF)).json()
            if h["capacity"]["replicas_serving"] == 4:
                break
            await asyncio.sleep(0.1)
        assert h["capacity"] == {"replicas_serving": 4, "replicas": 4}, h["targets"]

        async def ask(i: int) -> tuple[str, list[str]]:
            r = await client.post("/v1/chat/completions", json={
                "model": "scout", "max_tokens": 16, "temperature": 0, "seed": 7,
                "messages": [{"role": "user", "content": f"Recommend a car, request {i}."}]})
            body = await r.json()
            return body["choices"][0]["message"]["content"], body["served_by"]

        answers = await asyncio.gather(*(ask(i) for i in range(12)))
        assert all(served == ["onprem"] for _, served in answers)
        real = [text for text, _ in answers if not text.startswith(CANNED)]
        assert real, "least_conn sent some requests to the real replica"
        assert sum(s.stats.requests for s in sims) == 12 - len(real), "nothing replayed"
    finally:
        nginx.stop()
        for s in sims:
            await s.stop()
