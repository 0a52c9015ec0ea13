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
from tests.sse_client import read_events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("with_redis", [False, True])
async def test_demo_starts_says_what_is_simulated_and_answers(request, with_redis):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "REDIS_URL")}
    if with_redis:
        env["REDIS_URL"] = request.getfixturevalue("redis_server").url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    banner = []
    try:
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "demo exited early:\n" + "".join(banner)
                banner.append(line)
                if "Ctrl-C" in line:
                    break
        text = "".join(banner)
        assert "2 SIMULATED replicas" in text and "OpenAI       SIMULATED" in text
        assert ("state        Redis at 127.0.0.1:" if with_redis else "state        in-process") in text
        async with aiohttp.ClientSession() as s:
            key = next(ln.split()[2] for ln in banner if "API key" in ln)
            resp = await s.post(f"http://127.0.0.1:{port}/api/chat",
                                headers={"Authorization": f"Bearer {key}"},
                                json={"message": "Which hybrid SUV would you recommend?"})
            events = await read_events(resp)
        assert events[-1][0] == "done" and events[-1][1]["served_by"] == ["onprem"]
    finally:
        proc.terminate()
        await proc.wait()


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
