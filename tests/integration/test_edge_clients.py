"""Real client addresses through the real edge nginx, as on the EC2 box.

The edge nginx (the rendered edge config) runs in its own network namespace, as the
compose service does on its bridge network: the gateway sees nginx's non-loopback
address as the peer of every request. The customers are two other non-loopback
addresses. Only nginx's address is a trusted proxy.

    client A 10.252.0.11 ─┐
    client B 10.252.0.12 ─┼─ veth ── nginx 10.252.0.2 (netns) ── gateway 10.252.0.1
    (host side: .1 .11 .12)
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from gateway.app import create_app
from onprem.nginx_conf import render_edge
from tests.conftest import AUTH, STAFF, make_settings
from tests.netns import Namespace, netns_or_skip
from tests.servers import Nginx, free_port, need_binary, self_signed_cert

GATEWAY, NGINX, CLIENT_A, CLIENT_B = "10.252.0.1", "10.252.0.2", "10.252.0.11", "10.252.0.12"
BODY = {"model": "scout", "messages": [{"role": "user", "content": "hello"}]}


@dataclass
class Edge:
    url: str       # the edge nginx, as customers reach it
    direct: str    # the gateway itself, bypassing nginx


@pytest.fixture
async def edge(tmp_path, aiohttp_server, onprem_sim, openai_sim) -> AsyncIterator[Edge]:
    need_binary("ip", "iproute2")
    nginx = need_binary("nginx", "nginx")
    netns_or_skip()
    net = Namespace("scout-edge", GATEWAY, NGINX)
    try:
        net.up()
        for addr in (CLIENT_A, CLIENT_B):
            net.add_host_address(addr)

        def tight(data):
            data["server"]["trusted_proxies"] = ["127.0.0.1", "::1", NGINX]
            data["rate_limits"].update(per_ip="2/minute", streams_per_ip=1)

        settings = make_settings([onprem_sim.url], f"{openai_sim.url}/v1", mutate=tight)
        server = await aiohttp_server(create_app(settings), host=GATEWAY)
        cert, key = self_signed_cert(tmp_path)
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(render_edge(f"{GATEWAY}:{server.port}", "_", str(cert), str(key),
                                    f"{NGINX}:{free_port()}", f"{NGINX}:{port}",
                                    nginx=Nginx.version()))
        net.spawn(nginx, "-p", str(tmp_path), "-c", str(conf), "-e", "stderr",
                  "-g", "daemon off;")
        deadline = time.monotonic() + 15
        while True:
            try:
                _, w = await asyncio.open_connection(NGINX, port)
                w.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("edge nginx did not start in its namespace") from None
                await asyncio.sleep(0.05)
        yield Edge(f"https://{NGINX}:{port}", f"http://{GATEWAY}:{server.port}")
    finally:
        net.down()


def session_from(addr: str) -> aiohttp.ClientSession:
    """A customer's client: its own source address, the frontend's key, a self-signed edge."""
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    return aiohttp.ClientSession(headers=AUTH, connector=aiohttp.TCPConnector(
        ssl=tls, local_addr=(addr, 0), force_close=True))


async def test_each_customer_behind_the_edge_has_its_own_bucket(edge):
    url = edge.url
    async with session_from(CLIENT_A) as a, session_from(CLIENT_B) as b:
        codes = [(await a.post(f"{url}/v1/chat/completions", json=BODY)).status
                 for _ in range(3)]
        assert codes == [200, 200, 429], "A is limited by its own address"
        # B shares the proxy with A but not its bucket.
        assert (await b.post(f"{url}/v1/chat/completions", json=BODY)).status == 200
        # A forged X-Forwarded-For does not buy A a fresh bucket: nginx overwrites it, and
        # the gateway would take the right-most untrusted hop anyway.
        forged = await a.post(f"{url}/v1/chat/completions", json=BODY,
                              headers={"X-Forwarded-For": "198.51.100.77"})
        assert forged.status == 429
        # The operator's check: which address the last request was attributed to, and why.
        health = await (await b.get(f"{url}/health", headers=STAFF)).json()
        last = health["client_addresses"]["last_request"]
        assert last == {"address": CLIENT_B, "peer": NGINX,
                        "via": f"X-Forwarded-For from trusted proxy {NGINX}"}


async def test_websocket_chats_behind_the_edge_count_per_customer(edge, onprem_sim):
    url = edge.url
    onprem_sim.knobs.token_interval_s = 0.05   # a ~0.5 s answer holds A's one stream
    async with session_from(CLIENT_A) as a, session_from(CLIENT_B) as b:
        ws = await a.ws_connect(f"{url.replace('https', 'wss')}/ws/chat")
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        await ws.send_json({"type": "chat", "id": "w1", "message": "hello"})
        while (await ws.receive_json(timeout=10))["type"] != "delta":
            pass
        busy = await a.post(f"{url}/v1/chat/completions", json=BODY)
        assert busy.status == 429 and "already has 1 answers streaming" in \
            (await busy.json())["error"]["message"]
        assert (await b.post(f"{url}/v1/chat/completions", json=BODY)).status == 200
        while (ev := await ws.receive_json(timeout=10))["type"] not in ("done", "error"):
            pass
        assert ev["type"] == "done"
        await ws.close()


async def test_a_client_that_reaches_the_gateway_directly_cannot_forge_its_address(edge):
    """Not a trusted proxy: its X-Forwarded-For is ignored and its own address counts."""
    async with session_from(CLIENT_A) as a:
        codes = [(await a.post(f"{edge.direct}/v1/chat/completions", json=BODY,
                               headers={"X-Forwarded-For": f"198.51.100.{i}"})).status
                 for i in range(3)]
        assert codes == [200, 200, 429]
        health = await (await a.get(f"{edge.direct}/health", headers=STAFF)).json()
    last = health["client_addresses"]["last_request"]
    assert last["address"] == CLIENT_A and last["peer"] == CLIENT_A
    assert "not a trusted proxy" in last["via"]
    assert health["client_addresses"]["trusted_proxies"] == ["127.0.0.1", "::1", NGINX]
