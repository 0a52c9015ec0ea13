"""The commands a newcomer and an operator run: demo, check."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import aiohttp
import pytest

from gateway.doctor import run_checks
from tests.conftest import make_settings
from tests.servers import stopped
from tests.sse_client import read_events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("mode", ["plain", "redis", "real-model"])
async def test_demo_starts_says_what_is_simulated_and_answers(request, mode):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "REDIS_URL", "SCOUT_STAFF_KEYS")}
    if mode == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_server").url
    extra = []
    if mode == "real-model":
        from onprem import llamacpp
        if (why := llamacpp.available()) is not None:
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
        extra = ["--real-model"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--port", str(port), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    banner = []
    try:
        async with asyncio.timeout(120):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "demo exited early:\n" + "".join(banner)
                banner.append(line)
                if "Ctrl-C" in line:
                    break
        text = "".join(banner)
        assert "OpenAI       SIMULATED" in text
        if mode == "real-model":
            assert "1 REAL replica: SmolLM2-135M-Instruct" in text and "1 SIMULATED" in text
        else:
            assert "2 SIMULATED replicas" in text
        assert ("state        Redis at 127.0.0.1:" if mode == "redis" else "state        in-process") in text
        async with aiohttp.ClientSession() as s:
            key = next(ln.split()[2] for ln in banner if "API key" in ln)
            resp = await s.post(f"http://127.0.0.1:{port}/api/chat",
                                headers={"Authorization": f"Bearer {key}"},
                                json={"message": "Which hybrid SUV would you recommend?"})
            events = await read_events(resp)
            # The staff token it prints opens /metrics and the full /health.
            staff = next(ln.split("staff token:")[1].split()[0] for ln in banner
                         if "staff token:" in ln)
            metrics = await s.get(f"http://127.0.0.1:{port}/metrics",
                                  headers={"Authorization": f"Bearer {staff}"})
            assert metrics.status == 200 and "scout_requests_total" in await metrics.text()
            health = await (await s.get(f"http://127.0.0.1:{port}/health",
                                        headers={"Authorization": f"Bearer {staff}"})).json()
            assert "targets" in health
        assert events[-1][0] == "done" and events[-1][1]["served_by"][0] in ("onprem", "openai")
        assert events[-1][1]["served_by"] == ["onprem"] or mode == "real-model", events[-1]
    finally:
        await stopped(proc)


async def test_check_says_in_words_what_works(onprem_sim, openai_sim):
    settings = make_settings([onprem_sim.url], f"{openai_sim.url}/v1")
    lines: list[str] = []
    assert await run_checks(settings, lines.append) is True
    assert lines[0].startswith("OK   onprem: answered with model llama-3.1-70b-instruct")
    assert lines[1].startswith("OK   openai: answered with model gpt-4o-mini")
    await openai_sim.set_fault("http_401")
    await onprem_sim.set_fault("refuse")
    lines.clear()
    assert await run_checks(settings, lines.append) is False
    assert lines[0].startswith("FAIL onprem: on-prem unreachable") and "tailnet" in lines[0]
    assert "OpenAI refused the API key (401)" in lines[1] and "OPENAI_API_KEY" in lines[1]
