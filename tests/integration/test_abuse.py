"""Abuse at the socket level, driven by hypothesis: header injection, WebSocket frame floods,
slow-loris clients. The answer is always a 4xx with a reason or a clean close; nothing leaks
into response headers, nothing reaches a 500, and other clients keep being served.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import API_KEY
from tests.threaded import ThreadedGateway

# aiohttp masks client frames with the random module; hypothesis mistakes that for a strategy.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")
COUNTS: Counter[str] = Counter()
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _relaxed(data: dict[str, Any]) -> None:
    data["websocket"].update(max_frame_bytes=4096, messages_per_s=1000, burst=1000)
    data["server"]["body_timeout_s"] = 1.0


@pytest.fixture(scope="module")
def gateway():
    with ThreadedGateway(_relaxed) as gw:
        yield gw
    print(f"\nabuse cases run: {dict(COUNTS)}")


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes (every request says Connection: close).

    It reads while it sends, as HTTP clients do: a server that answers a bad request stops
    reading and closes, and a client still stuck sending the rest (160 KB of pipelined
    requests) would get a reset before it ever read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        sender = threading.Thread(target=_send_all, args=(s, data), daemon=True)
        sender.start()
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            if not chunks:   # reset before any answer: that is a failure
                raise
        sender.join(timeout)
    return b"".join(chunks)


def _send_all(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except OSError:   # the server answered and closed before taking it all
        pass


def parse_response(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, body


def still_served(port: int) -> None:
    status, _, body = parse_response(raw_request(
        port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert status == 200 and b"status" in body


# Header names and values with everything an attacker would try: CR/LF to smuggle a header
# or split the response, NUL, obs-fold, non-ASCII, very long values.
INJECT = st.sampled_from([b"\r\nX-Injected: 1", b"\nX-Injected: 1", b"\rX-Injected: 1", b"\x00",
                          b"\r\n\r\nGET /metrics HTTP/1.1\r\nX-Injected: 1", b"\r\n X-Injected: 1",
                          "é".encode(), b"\xff\xfe", b"%0d%0aX-Injected:%201"])
PIECE = st.one_of(INJECT, st.binary(max_size=40),
                  st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                          max_size=40).map(str.encode))
FIELD = st.lists(PIECE, min_size=1, max_size=4).map(b"".join)
NAMES = st.one_of(st.sampled_from([b"Authorization", b"X-API-Key", b"X-Forwarded-For",
                                   b"Content-Type", b"Origin", b"Host", b"Transfer-Encoding",
                                   b"Content-Length"]), FIELD)
TARGETS = st.sampled_from([(b"GET", b"/health"), (b"POST", b"/v1/chat/completions"),
                           (b"POST", b"/api/chat"), (b"GET", b"/ws/chat"), (b"GET", b"/metrics"),
                           (b"OPTIONS", b"/v1/chat/completions")])
BODY = orjson.dumps({"model": "scout", "messages": [{"role": "user", "content": "hello"}]})


@SETTINGS
@given(target=TARGETS, name=NAMES, value=FIELD, huge=st.booleans())
def test_header_injection_never_reflects_and_never_500s(gateway, target, name, value, huge):
    method, path = target
    if huge:
        value = value * 2000  # past aiohttp's 8190-byte field limit
    req = (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           b"Authorization: Bearer " + API_KEY.encode() + b"\r\n" + name + b": " + value + b"\r\n"
           b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() +
           b"\r\n\r\n" + BODY)
    raw = raw_request(gateway.port, req)
    status, headers, body = parse_response(raw)
    COUNTS["header injection"] += 1
    assert 100 <= status < 500, raw[:500]
    assert "x-injected" not in headers, "a request header was reflected into the response"
    if "content-length" in headers:  # exactly one response: nothing after its body
        assert len(body) == int(headers["content-length"][0]), "the response was split"
    assert b"Traceback" not in raw
    if status >= 400 and headers.get("content-type", [""])[0].startswith("application/json"):
        assert orjson.loads(body)["error"]["message"]
    if COUNTS["header injection"] % 20 == 0:
        still_served(gateway.port)


# WebSocket frames: valid chats, resumes and pings mixed with garbage JSON, wrong types,
# binary frames, invalid UTF-8 and oversized frames, sent as fast as the socket takes them.
JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                       | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(["type", "id", "message", "session",
                                                          "history", "x"]), inner, max_size=4),
                       max_leaves=10)
FRAME = st.one_of(
    st.just(("text", b'{"type": "ping"}')),
    st.builds(lambda i: ("text", orjson.dumps({"type": "chat", "id": f"c{i}",
                                               "message": "which SUV for five?"})),
              st.integers(0, 9)),
    JSONISH.map(lambda v: ("text", orjson.dumps(v))),
    st.fixed_dictionaries({"type": st.sampled_from(["chat", "resume", "ping", "launch"])},
                          optional={"id": JSONISH, "message": JSONISH, "session": JSONISH,
                                    "history": JSONISH}).map(lambda v: ("text", orjson.dumps(v))),
    st.text(max_size=60).map(lambda t: ("text", t.encode("utf-8", "surrogatepass"))),
    st.binary(max_size=60).map(lambda b: ("binary", b)),
    st.just(("text", b"\xff\xfe\xed\xa0\x80")),  # invalid UTF-8 in a text frame
    st.just(("text", b'{"type": "chat", "message": "' + b"x" * 5000 + b'"}')),  # > 4096
)
EVENTS = {"hello", "start", "delta", "switch", "done", "error", "pong"}
MARK = b'{"type": "resume", "id": "end-of-flood", "session": "x"}'


async def _flood(url: str, frames: list[tuple[str, bytes]]) -> tuple[int | None, list[dict]]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/api/ws-token", headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            tok = (await r.json())["token"]
        ws = await s.ws_connect(f"{url}/ws/chat", protocols=("scout.v1", f"bearer.{tok}"))
        for kind, data in [*frames, ("text", MARK)]:
            if ws.closed:
                break
            try:
                await ws.send_frame(data, aiohttp.WSMsgType.TEXT if kind == "text" else
                                    aiohttp.WSMsgType.BINARY)
            except aiohttp.ClientConnectionResetError:
                break  # the server closed on an earlier frame
        events: list[dict] = []
        async with asyncio.timeout(20):
            while True:
                msg = await ws.receive()
                if msg.type != WSMsgType.TEXT:
                    break
                events.append(orjson.loads(msg.data))
                if events[-1].get("id") == "end-of-flood":
                    await ws.close()
                    return None, events
        return ws.close_code, events


@SETTINGS
@given(frames=st.lists(FRAME, max_size=40))
def test_websocket_frame_floods_get_errors_or_a_clean_close(gateway, frames):
    close_code, events = asyncio.run(_flood(gateway.url, frames))
    COUNTS["websocket floods"] += 1
    COUNTS["websocket frames"] += len(frames)
    for ev in events:
        assert ev["type"] in EVENTS, ev
        if ev["type"] == "error":
            assert ev["message"] and ev["code"] != "internal_error", ev
    if close_code is not None:  # closed before the end marker: only for a reason
        oversized = any(len(d) > 4096 for _, d in frames)
        bad_text = any(_invalid_utf8(d) for k, d in frames if k == "text")
        # 1009 too big, 1007 invalid UTF-8; 1006 when our own writes after the server's
        # close frame reset the connection before we read it (RFC 6455 7.1.7 allows it).
        expected = {code for code, why in ((1009, oversized), (1007, bad_text),
                                           (1006, oversized or bad_text)) if why}
        assert close_code in expected, (close_code, events[-3:])


def _invalid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_a_malformed_header_is_logged_without_its_bytes(gateway, caplog):
    marker = b"Bearer credential-lookalike-1f2e3d"
    raw = raw_request(gateway.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"Authorization: " + marker + b"\x01\r\n\r\n")
    assert parse_response(raw)[0] == 400
    deadline = time.monotonic() + 5
    while not any("bad_http_request" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the bad request was never logged"
        time.sleep(0.05)
    logged = "\n".join(caplog.text.splitlines())
    assert marker.decode() not in logged and "Traceback" not in logged


def test_after_the_floods_a_calm_client_is_answered(gateway):
    async def ask() -> list[dict]:
        async with aiohttp.ClientSession() as s, s.post(
                f"{gateway.url}/v1/chat/completions", json=orjson.loads(BODY),
                headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            assert r.status == 200
            return [await r.json()]
    assert asyncio.run(ask())[0]["choices"][0]["message"]["content"]


def test_a_body_arriving_in_pieces_is_read_to_its_end(gateway):
    """A body split across TCP segments with a pause between them is one request (it used
    to be cut at the first segment and rejected as invalid JSON)."""
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Type: application/json"
            b"\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(head + BODY[:20])
        time.sleep(0.3)
        s.sendall(BODY[20:])
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    status, _, body = parse_response(b"".join(chunks))
    assert status == 200, body


def test_slow_loris_clients_hold_no_one_else_up_and_slow_bodies_get_408(gateway):
    """200 connections dribbling headers, 20 dribbling bodies: everyone else is still served;
    a body that doesn't arrive within server.body_timeout_s gets a 408 naming the limit."""
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: 500\r\n"
            b"Content-Type: application/json\r\n\r\n")
    lorises: list[socket.socket] = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # headers never finish
            lorises.append(s)
        bodies = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
            s.sendall(head + b'{"model": "sc')  # 13 of 500 promised bytes
            bodies.append(s)
            lorises.append(s)
        started = time.monotonic()
        for _ in range(5):  # meanwhile, others are served
            still_served(gateway.port)
            for s in lorises[:50]:
                s.sendall(b"a")
        for s in bodies:
            status, _, body = parse_response(s.recv(65536))
            assert status == 408, body
            assert b"not received within 1 s" in body
        assert time.monotonic() - started < 10  # the body timeout fired (1 s), not a hang
        COUNTS["slow-loris connections"] += len(lorises)
    finally:
        for s in lorises:
            s.close()
    still_served(gateway.port)
