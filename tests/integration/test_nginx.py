"""The nginx configs, rendered from their templates, run in a real nginx."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import aiohttp
import openai
import pytest

from gateway.app import create_app
from onprem.nginx_conf import render_edge, render_onprem
from tests.conftest import API_KEY, AUTH, STAFF, make_settings
from tests.servers import Nginx, free_port, self_signed_cert
from tests.sse_client import read_events


@pytest.fixture
async def three_replicas(make_replicas):
    return await make_replicas(3, token_interval_s=0.01, tokens=30)


@pytest.fixture
def onprem_nginx(tmp_path, three_replicas):
    port = free_port()
    conf = render_onprem([(f"r{i + 1}", f"127.0.0.1:{s.port}")
                          for i, s in enumerate(three_replicas)], f"127.0.0.1:{port}")
    nginx = Nginx(tmp_path, conf)
    nginx.start(port)
    nginx.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield nginx
    nginx.stop()


def behind_nginx(nginx_url: str, openai_url: str, **deadlines):
    def names(data):  # the monitor probes each replica through nginx's /replicas/NAME paths
        data["onprem"]["replicas"] = ["r1", "r2", "r3"]
    return make_settings([nginx_url], openai_url, mutate=names,
                         deadlines=deadlines or None)


def test_nginx_t_passes_on_both_configs(tmp_path):
    onprem = Nginx(tmp_path / "onprem", render_onprem(
        [("replica-1", "127.0.0.1:8001"), ("replica-2", "127.0.0.1:8002")], "127.0.0.1:18000"))
    result = onprem.test()
    assert result.returncode == 0, result.stderr
    (tmp_path / "edge").mkdir()
    cert, key = self_signed_cert(tmp_path / "edge")
    edge = Nginx(tmp_path / "edge", render_edge("127.0.0.1:8080", "scout.example.com", str(cert),
                                                str(key), "18080", "18443", nginx=Nginx.version()))
    result = edge.test()
    assert result.returncode == 0, result.stderr


async def test_through_nginx_the_monitor_sees_each_replica_and_tokens_stream(
        gw_client, onprem_nginx, three_replicas, openai_sim):
    client = await gw_client(create_app(behind_nginx(onprem_nginx.url, f"{openai_sim.url}/v1")))
    for _ in range(100):
        h = await (await client.get("/health", headers=STAFF)).json()
        if h["capacity"]["replicas_serving"] == 3:
            break
        await asyncio.sleep(0.05)
    assert h["capacity"] == {"replicas_serving": 3, "replicas": 3}
    assert h["targets"]["onprem.path"]["reason"] == "nginx answered 200"
    events = await read_events(await client.post("/api/chat", json={"message": "hello"}))
    assert events[-1][1]["served_by"] == ["onprem"]
    assert len([e for n, e in events if n == "delta"]) == 30
    await three_replicas[1].set_fault("refuse")
    for _ in range(100):
        h = await (await client.get("/health", headers=STAFF)).json()
        if h["targets"]["onprem.r2"]["state"] == "down":
            break
        await asyncio.sleep(0.05)
    assert h["targets"]["onprem.r2"]["state"] == "down" and h["tiers"]["onprem"]["state"] == "up"
    assert "2/3 replicas serving" in h["tiers"]["onprem"]["reason"]


async def test_a_replica_killed_under_load_loses_no_request_and_nginx_never_replays_a_post(
        gw_client, onprem_nginx, three_replicas, openai_sim):
    # Long deadlines: only the kill can move an answer, never a hedge.
    settings = behind_nginx(onprem_nginx.url, f"{openai_sim.url}/v1", headers_s=10,
                            first_token_s=10, gap_s=1)
    client = await gw_client(create_app(settings))
    for s in three_replicas:
        s.knobs.token_interval_s = 0.03  # ~1 s answers, so the kill lands mid-stream

    async def ask(i: int) -> dict:
        r = await client.post("/api/chat", json={"message": f"recommend a sedan, number {i}"})
        return (await read_events(r))[-1][1]

    tasks = [asyncio.ensure_future(ask(i)) for i in range(30)]
    await asyncio.sleep(0.4)
    victim = three_replicas[0]
    in_flight = victim.stats.running
    await victim.set_fault("refuse")  # the process dies: its sockets close mid-answer
    results = await asyncio.gather(*tasks)
    assert all("served_by" in r for r in results), "every request got an answer"
    resumed = [r for r in results if len(r["served_by"]) > 1]
    assert in_flight >= 1 and len(resumed) >= 1
    assert all(r["served_by"][0] == "onprem" for r in results)
    posts = sum(s.stats.requests for s in three_replicas) + openai_sim.stats.requests
    # Each request's first POST plus one per resume: nginx re-sent nothing that had reached a
    # replica (a replay would show up here as an extra request).
    assert posts == 30 + len(resumed), (posts, len(resumed))


async def test_edge_nginx_tls_sse_unbuffered_websocket_headers_and_body_cap(
        tmp_path, aiohttp_server, settings, onprem_sim):
    onprem_sim.knobs.tokens = 20
    onprem_sim.knobs.token_interval_s = 0.05
    server = await aiohttp_server(create_app(settings))
    cert, key = self_signed_cert(tmp_path)
    http_port, https_port = free_port(), free_port()
    edge = Nginx(tmp_path, render_edge(f"127.0.0.1:{server.port}", "_", str(cert), str(key),
                                       f"127.0.0.1:{http_port}", f"127.0.0.1:{https_port}",
                                       nginx=Nginx.version()))
    edge.start(https_port)
    base = f"https://127.0.0.1:{https_port}"
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    try:
        async with aiohttp.ClientSession(headers=AUTH,
                                         connector=aiohttp.TCPConnector(ssl=insecure)) as s:
            t0 = time.perf_counter()
            resp = await s.post(f"{base}/api/chat", json={"message": "recommend a wagon"})
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            first_delta_at = None
            async for line in resp.content:
                if line.startswith(b"event: delta") and first_delta_at is None:
                    first_delta_at = time.perf_counter() - t0
            total = time.perf_counter() - t0
            assert first_delta_at is not None and first_delta_at < total / 2, \
                f"SSE was buffered: first delta at {first_delta_at:.2f} s of {total:.2f} s"
            ws = await s.ws_connect(f"{base.replace('https', 'wss')}/ws/chat")
            assert (await ws.receive_json())["type"] == "hello"
            await ws.send_json({"type": "chat", "id": "e1", "message": "hello there"})
            while (ev := await ws.receive_json(timeout=10))["type"] not in ("done", "error"):
                pass
            assert ev["type"] == "done"
            await ws.close()
            # The Responses API through the edge, with openai-python: typed events unbuffered,
            # and who answered in the header the edge passes on.
            sdk = openai.AsyncOpenAI(api_key=API_KEY, base_url=f"{base}/v1", max_retries=0,
                                     http_client=openai.DefaultAsyncHttpxClient(verify=False))
            t0 = time.perf_counter()
            stream = await sdk.responses.create(model="scout", input="recommend a wagon too",
                                                stream=True)
            first_text_at, kinds = None, []
            async for ev in stream:
                kinds.append(ev.type)
                if ev.type == "response.output_text.delta" and first_text_at is None:
                    first_text_at = time.perf_counter() - t0
            total = time.perf_counter() - t0
            assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
            assert first_text_at is not None and first_text_at < total / 2, \
                f"the Responses stream was buffered: {first_text_at:.2f} s of {total:.2f} s"
            whole = await sdk.responses.with_raw_response.create(model="scout",
                                                                 input="recommend a coupe")
            assert whole.headers["x-scout-served-by"] == "onprem"
            await sdk.close()
            big = await s.post(f"{base}/v1/chat/completions", data=b"x" * 400_000)
            assert big.status == 413
            plain = await s.get(f"http://127.0.0.1:{http_port}/health", allow_redirects=False)
            assert plain.status == 301 and plain.headers["Location"].startswith("https://")
    finally:
        edge.stop()


def test_edge_nginx_cuts_slow_loris_headers(tmp_path):
    """The rendered edge config's header timeout, shortened to 1 s, really closes a client
    that never finishes its headers (the gateway itself is never reached)."""
    cert, key = self_signed_cert(tmp_path)
    http_port, https_port = free_port(), free_port()
    conf = render_edge("127.0.0.1:9", "_", str(cert), str(key), f"127.0.0.1:{http_port}",
                       f"127.0.0.1:{https_port}", nginx=Nginx.version())
    assert "client_header_timeout 10s;" in conf
    edge = Nginx(tmp_path, conf.replace("client_header_timeout 10s;", "client_header_timeout 1s;"))
    edge.start(http_port)
    try:
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            t0 = time.monotonic()
            got = s.recv(4096)  # blocks until nginx gives up on us
            waited = time.monotonic() - t0
        assert got == b"" or got.startswith(b"HTTP/1.1 408"), got[:100]
        assert waited < 9, "closed by the 1 s header timeout, not the socket's own timeout"
    finally:
        edge.stop()
