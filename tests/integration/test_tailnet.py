"""A simulated tailnet: the GPU box in its own network namespace, joined by a veth pair.

The gateway (this process, the "EC2 box") reaches the GPU box's nginx only over the
veth link; tc netem adds the tailnet's latency and loss, and pulling the link down is
a partition. Needs root and network namespaces; skips with the reason where the
machine forbids them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.app import create_app
from onprem.nginx_conf import render_onprem
from tests.conftest import ONPREM_KEY, STAFF, make_settings
from tests.netns import Namespace, netns_or_skip, sh
from tests.servers import need_binary
from tests.sse_client import read_events

GPU_ADDR, GW_ADDR = "10.250.77.2", "10.250.77.1"  # only inside the link this test creates


class Tailnet(Namespace):
    def __init__(self, workdir: Path) -> None:
        super().__init__("scout-gpu", GW_ADDR, GPU_ADDR, 30)
        self.workdir = workdir

    def degrade(self) -> str:
        """Latency and loss with netem; where the kernel has no netem, a slow link with tbf."""
        netem = sh("tc", "qdisc", "replace", "dev", self.host_if, "root", "netem", "delay", "20ms",
                   "5ms", "loss", "1%", check=False)
        if netem.returncode == 0:
            return "netem: 20 ms ± 5 ms, 1 % loss"
        sh("tc", "qdisc", "replace", "dev", self.host_if, "root", "tbf", "rate", "2mbit",
           "burst", "32kbit", "latency", "50ms")
        return f"tbf: 2 Mbit/s (this kernel has no netem: {netem.stderr.strip()})"

    def link(self, state: str) -> None:
        sh("ip", "link", "set", self.host_if, state)


@pytest.fixture
def tailnet(tmp_path):
    need_binary("ip", "iproute2")
    need_binary("tc", "iproute2")
    nginx = need_binary("nginx", "nginx")
    netns_or_skip()
    net = Tailnet(tmp_path)
    try:
        net.up()
        # The GPU box: one replica simulator behind the real on-prem nginx, both in the netns.
        net.spawn(sys.executable, "-m", "onprem.simulator", "--host", "127.0.0.1", "--port",
                  "8001", "--api-key", ONPREM_KEY, "--ttft", "0.02", "--interval", "0.005",
                  "--tokens", "10")
        conf = tmp_path / "nginx.conf"
        conf.write_text(render_onprem([("r1", "127.0.0.1:8001")], f"{GPU_ADDR}:8000"))
        net.spawn(nginx, "-p", str(tmp_path), "-c", str(conf), "-e", "stderr",
                  "-g", "daemon off;")
        deadline = time.monotonic() + 15
        while subprocess.run(["ip", "netns", "exec", net.ns, sys.executable, "-c",
                              "import urllib.request; urllib.request.urlopen("
                              "'http://127.0.0.1:8001/health', timeout=1); urllib.request.urlopen("
                              f"'http://{GPU_ADDR}:8000/replicas/r1/health', timeout=1)"],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the GPU box did not come up in its namespace")
            time.sleep(0.1)
        yield net
    finally:
        net.down()


async def onprem_state(client) -> dict:
    return await (await client.get("/health", headers=STAFF)).json()


async def wait_state(client, state: str, within: float) -> tuple[dict, float]:
    t0 = time.monotonic()
    while True:
        h = await onprem_state(client)
        if h["tiers"]["onprem"]["state"] == state:
            return h, time.monotonic() - t0
        if time.monotonic() - t0 > within:
            raise AssertionError(f"onprem never {state}: {h['tiers']['onprem']}")
        await asyncio.sleep(0.05)


async def test_partition_is_noticed_within_one_probe_interval_and_healed(gw_client, tailnet,
                                                                         openai_sim):
    def over_the_tailnet(data):
        data["onprem"]["replicas"] = ["r1"]

    settings = make_settings([f"http://{GPU_ADDR}:8000"], f"{openai_sim.url}/v1",
                             mutate=over_the_tailnet)
    interval, timeout = settings.health.interval_s, settings.health.timeout_s
    client = await gw_client(create_app(settings))
    await wait_state(client, "up", 5)

    how = tailnet.degrade()  # a tailnet on a bad day: still on-prem
    print(f"link degraded with {how}")
    events = await read_events(await client.post("/api/chat", json={"message": "hi there"}))
    assert events[-1][1]["served_by"] == ["onprem"]

    tailnet.link("down")  # partition
    h, took = await wait_state(client, "down", 5)
    assert took <= interval * 1.2 + timeout + 0.3, f"noticed after {took:.2f} s"
    assert h["tiers"]["onprem"]["reason"].startswith("GPU box unreachable over the tailnet")
    t0 = time.perf_counter()
    events = await read_events(await client.post("/api/chat", json={"message": "hello again"}))
    assert events[-1][1]["served_by"] == ["openai"]
    assert events[0][1]["skipped"][0]["tier"] == "onprem", "skipped, not waited for"
    assert time.perf_counter() - t0 < settings.intents["general.greeting"].deadlines.headers_s

    tailnet.link("up")
    await wait_state(client, "up", 10)
    events = await read_events(await client.post("/api/chat", json={"message": "hey, back?"}))
    assert events[-1][1]["served_by"] == ["onprem"]
