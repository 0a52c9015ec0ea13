"""Privacy end to end, on every API: a private turn keeps the whole conversation on-site, and
what does go to OpenAI goes redacted. The OpenAI simulator's own counters and recorded
request are the proof: they see what really left."""

from __future__ import annotations

import json

import pytest

from gateway.app import create_app
from tests.conftest import PRIVATE, PRIVATE_TURNS, STAFF, make_settings
from tests.sse_client import read_events
from tests.ws_client import connect, until

# A stock question: with the GPU box down, the lot answers it on-site (the inventory tier).
FOLLOW_UP = "Which trims come in blue?"
PERSONAL = ("Hi, I'm Maria Gonzalez. Which hybrid SUV would you recommend for my family? Text "
            "me at (512) 555-0143 or write to maria.gonzalez@gmail.com, I live at 1234 Oak "
            "Ridge Dr")
VALUES = ("Maria Gonzalez", "555-0143", "maria.gonzalez@gmail.com", "1234 Oak Ridge Dr")


@pytest.fixture
async def client(gw_client, onprem_sim, openai_sim):
    return await gw_client(create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1")))


def history_with_a_private_turn(private: str = PRIVATE) -> list[dict[str, str]]:
    return [{"role": "user", "content": private},
            {"role": "assistant", "content": "Our finance team can help with that."},
            {"role": "user", "content": FOLLOW_UP}]


@PRIVATE_TURNS
async def test_openai_api_non_stream_keeps_a_private_conversation_on_site(
        client, onprem_sim, openai_sim, private):
    await onprem_sim.set_fault("http_500")   # the GPU box fails: OpenAI would be next
    r = await client.post("/v1/chat/completions", json={
        "model": "scout", "messages": history_with_a_private_turn(private)})
    body = await r.json()
    assert r.status == 200 and body["served_by"] == ["inventory"]
    assert openai_sim.stats.requests == 0, "nothing of this conversation reached OpenAI"


@PRIVATE_TURNS
async def test_openai_api_stream_keeps_a_private_conversation_on_site(
        client, onprem_sim, openai_sim, private):
    await onprem_sim.set_fault("http_500")
    r = await client.post("/v1/chat/completions", json={
        "model": "scout", "stream": True, "messages": history_with_a_private_turn(private)})
    chunks = [json.loads(line[6:]) for line in (await r.text()).splitlines()
              if line.startswith("data: {")]
    assert chunks[-1]["served_by"] == ["inventory"]
    assert openai_sim.stats.requests == 0


@PRIVATE_TURNS
async def test_an_sse_session_stays_private_after_its_financing_turn(
        client, onprem_sim, openai_sim, private):
    first = await read_events(await client.post("/api/chat", json={"message": private}))
    sid = first[0][1]["session"]
    assert first[-1][1]["served_by"] == ["onprem"]
    await onprem_sim.set_fault("http_500")
    events = await read_events(await client.post("/api/chat", json={
        "message": FOLLOW_UP, "session": sid}))
    start, done = events[0][1], events[-1][1]
    assert done["served_by"] == ["inventory"]
    assert {"tier": "openai", "reason": "private conversation: an earlier turn is financing"} \
        in start["skipped"]
    assert openai_sim.stats.requests == 0


@PRIVATE_TURNS
async def test_a_websocket_session_stays_private_after_its_financing_turn(
        client, onprem_sim, openai_sim, private):
    ws = await connect(client)
    await ws.send_json({"type": "chat", "id": "w1", "message": private})
    events = await until(ws, "w1")
    sid = events[0]["session"]
    await onprem_sim.set_fault("http_500")
    await ws.send_json({"type": "chat", "id": "w2", "message": FOLLOW_UP, "session": sid})
    events = await until(ws, "w2")
    assert events[-1]["type"] == "done" and events[-1]["served_by"] == ["inventory"]
    assert openai_sim.stats.requests == 0
    await ws.close()


async def test_a_session_stays_private_after_the_turn_leaves_the_history_window(
        gw_client, onprem_sim, openai_sim):
    def one_turn_window(data):
        data["sessions"]["max_turns"] = 1
    client = await gw_client(create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1",
                                                      mutate=one_turn_window)))
    first = await read_events(await client.post("/api/chat", json={"message": PRIVATE}))
    sid = first[0][1]["session"]
    for question in ("Do you have the RAV4 in stock?", "What about the Camry in red?"):
        await read_events(await client.post("/api/chat", json={"message": question,
                                                               "session": sid}))
    await onprem_sim.set_fault("http_500")
    events = await read_events(await client.post("/api/chat", json={
        "message": "Which SUV would you recommend instead?", "session": sid}))
    assert events[-1][1]["served_by"] == ["inventory"]
    assert openai_sim.stats.requests == 0


@PRIVATE_TURNS
async def test_a_stateless_request_is_judged_on_every_message_it_carries(
        client, onprem_sim, openai_sim, private):
    """The private turn is the first of three; the last one alone looks harmless."""
    await onprem_sim.set_fault("http_500")
    messages = [*history_with_a_private_turn(private),
                {"role": "assistant", "content": "We have three trims in blue."},
                {"role": "user", "content": "Which SUV would you recommend?"}]
    r = await client.post("/v1/chat/completions", json={"model": "scout", "messages": messages})
    assert (await r.json())["served_by"] == ["inventory"] and openai_sim.stats.requests == 0


@pytest.mark.parametrize("api", ["openai", "sse", "ws"])
async def test_an_ordinary_conversation_reaches_openai_redacted_and_the_customer_sees_it_whole(
        client, onprem_sim, openai_sim, api):
    await onprem_sim.set_fault("http_500")
    openai_sim.knobs.echo = True   # OpenAI answers with the words it was sent
    if api == "openai":
        r = await client.post("/v1/chat/completions", json={
            "model": "scout", "messages": [{"role": "user", "content": PERSONAL}]})
        body = await r.json()
        served, answer = body["served_by"], body["choices"][0]["message"]["content"]
    elif api == "sse":
        events = await read_events(await client.post("/api/chat", json={"message": PERSONAL}))
        served = events[-1][1]["served_by"]
        answer = "".join(e[1]["text"] for e in events if e[0] == "delta")
    else:
        ws = await connect(client)
        await ws.send_json({"type": "chat", "id": "p1", "message": PERSONAL})
        events = await until(ws, "p1")
        await ws.close()
        served = events[-1]["served_by"]
        answer = "".join(e["text"] for e in events if e["type"] == "delta")
    assert served == ["openai"]
    sent = json.dumps(openai_sim.stats.last_messages)
    for value in VALUES:
        assert value not in sent, f"{value} left the building"
    assert "[NAME_1]" in sent and "[PHONE_1]" in sent and "[EMAIL_1]" in sent
    for value in VALUES:   # the echo quotes them back: restored for the customer
        assert value in answer
    metrics = await (await client.get("/metrics", headers=STAFF)).text()
    assert 'scout_offsite_turns_total{intent="vehicle.recommendation"} 1.0' in metrics
    for kind in ("NAME", "PHONE", "EMAIL", "ADDRESS"):
        assert f'scout_pii_redacted_total{{kind="{kind}"}} 1.0' in metrics
    # The staff page's "what left the building today": counts, never text.
    page = await (await client.get("/dashboard/data", headers=STAFF)).json()
    assert page["privacy"]["offsite_turns"] == {"vehicle.recommendation": 1}
    assert page["privacy"]["redacted"] == {"NAME": 1, "PHONE": 1, "EMAIL": 1, "ADDRESS": 1}
    assert not any(v in json.dumps(page) for v in VALUES)
