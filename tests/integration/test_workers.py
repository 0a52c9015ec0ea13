"""`scout-gateway serve --workers N`: N processes on one port, metrics summed, a dead worker
replaced, SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp
import yaml

from tests.conftest import API_KEY, AUTH, ONPREM_KEY, STAFF, STAFF_KEY, example_config
from tests.servers import free_port


async def serving_line(stdout: asyncio.StreamReader) -> int:
    seen: list[bytes] = []   # shown if no worker says it is serving: why it did not
    try:
        async with asyncio.timeout(30):
            while line := await stdout.readline():
                if found := re.search(rb"event=serving .*pid=(\d+)", line):
                    return int(found.group(1))
                seen.append(line)
    except TimeoutError:
        raise AssertionError(b"no worker serving within 30 s; output:\n" + b"".join(seen)
                             ) from None
    raise AssertionError(b"the gateway exited before serving; output:\n" + b"".join(seen))


def requests_total(metrics: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("scout_requests_total{"))


async def ask(n: int, base: str) -> None:
    # A new connection per request, so the kernel spreads them over the workers.
    async with aiohttp.ClientSession(headers=AUTH,
                                     connector=aiohttp.TCPConnector(force_close=True)) as s:
        for i in range(n):
            async with s.post(f"{base}/v1/chat/completions", json={
                    "model": "scout", "messages": [{"role": "user",
                                                    "content": f"recommend a car {os.getpid()} {i}"}]}) as r:
                assert r.status == 200, await r.text()


async def test_workers_share_a_port_sum_their_metrics_and_are_replaced(tmp_path, onprem_sim):
    data = example_config()
    data["onprem"]["url"] = [onprem_sim.url]
    data["onprem"]["replicas"] = [{"name": "r1", "url": onprem_sim.url}]
    data["openai"]["enabled"] = False
    cfg = tmp_path / "scout.yaml"
    cfg.write_text(yaml.safe_dump(data))
    port = free_port()
    env = {**os.environ, "ONPREM_API_KEY": ONPREM_KEY, "SCOUT_API_KEYS": f"vercel:{API_KEY}",
           "SCOUT_STAFF_KEYS": f"ops:{STAFF_KEY}", "SCOUT_SIGNING_SECRET": "s" * 32}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(cfg), "--host", "127.0.0.1",
        "--port", str(port), "--workers", "2", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    base = f"http://127.0.0.1:{port}"
    try:
        pids = {await serving_line(proc.stdout), await serving_line(proc.stdout)}
        assert len(pids) == 2 and proc.pid not in pids
        await ask(30, base)
        async with aiohttp.ClientSession(headers=STAFF) as s:
            for _ in range(4):  # whichever worker answers the scrape, it reports all 30
                async with s.get(f"{base}/metrics") as r:
                    assert requests_total(await r.text()) == 30
        os.kill(pids.pop(), signal.SIGKILL)
        replacement = await serving_line(proc.stdout)
        assert replacement not in pids
        await ask(10, base)
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.communicate()
    assert proc.returncode == 0
    for pid in [*pids, replacement]:
        assert not running(pid), f"worker {pid} still running"


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
