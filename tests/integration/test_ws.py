"""/ws/chat: protocol, auth, origins, concurrency, bad input, heartbeat, backpressure, resume."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import WSMsgType

from gateway.app import create_app
from gateway.appkeys import SESSIONS
from gateway.security.tokens import TokenSigner
from tests.conftest import API_KEY, SIGNING_SECRET, make_settings
from tests.ws_client import connect, text, token, until, until_all

Q = "Which hybrid SUV would you recommend for a family of five?"


def ws_settings(onprem_sim, openai_sim, redis_url=None, max_buffered_bytes=None, **ws):
    def mutate(data):
        data["websocket"].update(ws)
        if max_buffered_bytes is not None:
            data["server"]["max_buffered_bytes"] = max_buffered_bytes
        data["auth"]["allowed_origins"] = ["https://scout.example"]
    return make_settings([onprem_sim.url], f"{openai_sim.url}/v1", mutate=mutate,
                         redis_url=redis_url)


async def test_hello_then_a_streamed_chat_naming_who_served(gw_client, settings):
    client = await gw_client(create_app(settings))
    ws = await connect(client)
    assert ws.protocol == "scout.v1"
    await ws.send_json({"type": "chat", "id": "c1", "message": Q})
    events = await until(ws, "c1")
    assert events[0]["type"] == "start" and events[0]["session"]
    assert events[-1]["type"] == "done" and events[-1]["served_by"] == ["onprem"]
    assert text(events).startswith("Based on what you described")
    await ws.close()


async def test_several_chats_in_flight_up_to_the_cap(gw_client, onprem_sim, openai_sim):
    onprem_sim.knobs.token_interval_s = 0.02
    client = await gw_client(create_app(ws_settings(onprem_sim, openai_sim, max_in_flight=2)))
    ws = await connect(client)
    for i in range(3):
        await ws.send_json({"type": "chat", "id": f"c{i}", "message": f"recommend a car {i}"})
    chats = await until_all(ws, ["c0", "c1", "c2"])
    assert chats["c2"][-1]["code"] == "too_many_in_flight"
    assert chats["c0"][-1]["type"] == chats["c1"][-1]["type"] == "done"
    await ws.send_json({"type": "chat", "id": "c2", "message": "recommend a car 2"})
    assert (await until(ws, "c2"))[-1]["type"] == "done", "room again once one finished"


async def test_credentials(gw_client, aiohttp_client, settings):
    client = await gw_client(create_app(settings))
    url = client.make_url("/ws/chat")
    async with aiohttp.ClientSession() as s:
        for protocols in [(), ("scout.v1",), ("scout.v1", "bearer.forged.token"),
                          ("scout.v1", "bearer." + TokenSigner(SIGNING_SECRET.encode()).issue(
                              "vercel", -1))]:
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await s.ws_connect(url, protocols=protocols)
            assert exc.value.status == 401
        ws = await s.ws_connect(url, headers={"Authorization": f"Bearer {API_KEY}"})
        assert (await ws.receive_json())["type"] == "hello"
        await ws.close()


async def test_origin_allow_list(gw_client, onprem_sim, openai_sim):
    client = await gw_client(create_app(ws_settings(onprem_sim, openai_sim)))
    tok = await token(client)
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await connect(client, tok, headers={"Origin": "https://evil.example"})
    assert exc.value.status == 403
    ws = await connect(client, tok, headers={"Origin": "https://scout.example"})
    await ws.close()


async def test_bad_frames_get_errors_and_the_socket_keeps_working(gw_client, settings):
    client = await gw_client(create_app(settings))
    ws = await connect(client)
    for frame, code in [("{nope", "invalid_json"), ('{"type": "launch"}', "unknown_type"),
                        ("[1,2]", "unknown_type"), ('{"type": "chat", "id": "x"}', "invalid_value"),
                        ('{"type": "chat", "id": "x", "message": ""}', "invalid_value"),
                        ('{"type": "chat", "id": "x", "message": "hi", "session": "forged"}',
                         "invalid_session"),
                        ('{"type": "resume", "id": "x", "session": 5}', "invalid_session")]:
        await ws.send_str(frame)
        ev = await ws.receive_json(timeout=5)
        assert ev["type"] == "error" and ev["code"] == code, (frame, ev)
    await ws.send_bytes(b"\x00\x01")
    assert (await ws.receive_json(timeout=5))["code"] == "binary_frame"
    await ws.send_json({"type": "chat", "id": "ok", "message": Q})
    assert (await until(ws, "ok"))[-1]["type"] == "done"


async def test_an_oversized_frame_closes_with_1009(gw_client, onprem_sim, openai_sim):
    client = await gw_client(create_app(ws_settings(onprem_sim, openai_sim,
                                                    max_frame_bytes=1024)))
    ws = await connect(client)
    await ws.send_str('{"type": "chat", "message": "' + "x" * 5000 + '"}')
    msg = await ws.receive(timeout=5)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 1009


async def test_a_flood_is_refused_then_closed_and_others_are_unaffected(gw_client, onprem_sim,
                                                                        openai_sim):
    client = await gw_client(create_app(ws_settings(onprem_sim, openai_sim, burst=5,
                                                    messages_per_s=1)))
    flood, calm = await connect(client), await connect(client)
    for _ in range(40):
        await flood.send_json({"type": "ping"})
    kinds = []
    while True:
        msg = await flood.receive(timeout=5)
        if msg.type != WSMsgType.TEXT:
            break
        kinds.append(msg.json().get("code") or msg.json()["type"])
    assert kinds.count("pong") == 5 and "rate_limited" in kinds
    assert flood.close_code == 1008
    await calm.send_json({"type": "chat", "id": "c", "message": Q})
    assert (await until(calm, "c"))[-1]["type"] == "done"


async def test_a_peer_that_stops_answering_pings_is_closed_and_its_upstream_cancelled(
        gw_client, onprem_sim, openai_sim):
    onprem_sim.knobs.token_interval_s = 0.2
    onprem_sim.knobs.tokens = 100
    app = create_app(ws_settings(onprem_sim, openai_sim, heartbeat_s=0.3))
    client = await gw_client(app)
    ws = await connect(client, autoping=False)  # this client will never answer a ping
    await ws.send_json({"type": "chat", "id": "c", "message": Q})
    sid = (await ws.receive_json(timeout=5))["session"]
    for _ in range(100):
        if onprem_sim.stats.streams_started:
            break
        await asyncio.sleep(0.02)
    for _ in range(200):  # the server gives up on the silent peer within ~heartbeat_s
        if onprem_sim.stats.disconnects:
            break
        await asyncio.sleep(0.02)
    assert onprem_sim.stats.disconnects == 1 and onprem_sim.stats.completed == 0
    record = await app[SESSIONS].answer(sid, "c")
    assert record is not None and record["status"] == "interrupted"


async def test_a_socket_that_simply_closes_does_not_cancel_the_answer(gw_client, onprem_sim,
                                                                      openai_sim):
    onprem_sim.knobs.token_interval_s = 0.02
    app = create_app(ws_settings(onprem_sim, openai_sim))
    client = await gw_client(app)
    ws = await connect(client)
    await ws.send_json({"type": "chat", "id": "c", "message": Q})
    start = await ws.receive_json(timeout=5)
    await ws.close()
    # The replica finishing is not the end: the gateway then reads its last chunk and
    # stores the answer. Wait for the stored answer (on a busy box that takes a while).
    record = None
    for _ in range(600):
        record = await app[SESSIONS].answer(start["session"], "c")
        if record is not None and record["status"] != "streaming":
            break
        await asyncio.sleep(0.05)
    assert record is not None and record["status"] == "done", record
    assert record["text"].startswith("Based on")
    assert onprem_sim.stats.completed == 1 and onprem_sim.stats.disconnects == 0


async def test_a_slow_reader_fails_its_chat_only_and_can_resume(gw_client, onprem_sim,
                                                                openai_sim):
    onprem_sim.knobs.tokens = 40_000
    onprem_sim.knobs.token_interval_s = 0
    app = create_app(ws_settings(onprem_sim, openai_sim, max_buffered_bytes=4096))
    client = await gw_client(app)

    def tiny_receive_buffer(addr_info):
        family, type_, proto, _, _ = addr_info
        s = socket.socket(family, type_, proto)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return s

    tok = await token(client)
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(socket_factory=tiny_receive_buffer)) as s:
        ws = await s.ws_connect(client.make_url("/ws/chat"), protocols=("scout.v1", f"bearer.{tok}"),
                                max_msg_size=0)
        await ws.receive_json()
        await ws.send_json({"type": "chat", "id": "big", "message": Q})
        await asyncio.sleep(3)  # read nothing while the answer streams
        events = await until(ws, "big", within=60)
        sid = events[0]["session"]
        assert events[-1]["type"] == "error" and events[-1]["code"] == "slow_consumer"
        for _ in range(300):  # the turn itself went on and is kept whole
            record = await app[SESSIONS].answer(sid, "big")
            if record and record["status"] == "done":
                break
            await asyncio.sleep(0.05)
        assert record["status"] == "done" and len(record["text"].split()) == 40_000
        # the same socket still serves other chats
        await ws.send_json({"type": "resume", "id": "big", "session": sid})
        resumed = await until(ws, "big", within=30)
        assert resumed[-1]["type"] == "done" and text(resumed) == record["text"]
        await ws.close()


async def test_resume_while_streaming_and_after_it_finished(gw_client, onprem_sim, openai_sim):
    onprem_sim.knobs.token_interval_s = 0.03
    client = await gw_client(create_app(ws_settings(onprem_sim, openai_sim)))
    ws = await connect(client)
    await ws.send_json({"type": "chat", "id": "c", "message": Q})
    start = await ws.receive_json(timeout=5)
    first = await ws.receive_json(timeout=5)
    assert first["type"] == "delta"
    await ws.close()  # the phone went through a tunnel
    ws2 = await connect(client)
    await ws2.send_json({"type": "resume", "id": "c", "session": start["session"]})
    events = await until(ws2, "c")
    assert events[0]["type"] == "start" and events[0]["resumed"] is True
    assert events[-1]["type"] == "done"
    full = text(events)
    assert full.startswith("Based on what you described") and len(full.split()) == 8
    await ws2.send_json({"type": "resume", "id": "c", "session": start["session"]})
    again = await until(ws2, "c")
    assert text(again) == full and again[-1]["served_by"] == ["onprem"]
    await ws2.send_json({"type": "resume", "id": "nope", "session": start["session"]})
    assert (await until(ws2, "nope"))[-1]["code"] == "unknown_message"


async def test_resume_on_another_gateway_while_the_first_still_streams(
        gw_client, onprem_sim, openai_sim, redis_server):
    onprem_sim.knobs.token_interval_s = 0.15
    onprem_sim.knobs.tokens = 12
    settings = ws_settings(onprem_sim, openai_sim, redis_url=redis_server.url)
    a = await gw_client(create_app(settings))
    b = await gw_client(create_app(settings))
    ws = await connect(a)
    await ws.send_json({"type": "chat", "id": "c", "message": Q})
    start = await ws.receive_json(timeout=5)
    await ws.receive_json(timeout=5)
    await ws.close()
    await asyncio.sleep(0.7)  # some progress saved to Redis
    ws_b = await connect(b)
    await ws_b.send_json({"type": "resume", "id": "c", "session": start["session"]})
    events = await until(ws_b, "c", within=15)
    assert events[-1]["type"] == "done" and len(text(events).split()) == 12
