"""The Vercel AI SDK (`ai` and `@ai-sdk/openai`, real npm packages) against a gateway this
test starts, with simulated replicas: `streamText` over /v1/responses (the SDK's default)
and over chat completions, `generateText`, `generateObject` with a zod schema, follow-ups.
The assertions live in tests/node/ai-sdk.test.mjs (node:test)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from gateway.app import create_app
from tests.conftest import API_KEY, ROOT, make_settings

NODE_TESTS = ROOT / "tests" / "node"


def node_ready() -> None:
    """Fail with what to do, not with a stack trace from deep inside npm."""
    assert shutil.which("node"), "Node.js 20 or newer is needed for the AI SDK tests " \
        "(scripts/test installs the npm packages; Node itself comes from the system)"
    assert (NODE_TESTS / "node_modules" / "ai").is_dir(), \
        f"npm packages missing: run `npm ci` in {NODE_TESTS} (scripts/test does)"


async def run_node(*args: str, env: dict[str, str], cwd: Path = NODE_TESTS) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "node", *args, cwd=cwd, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_the_ai_sdk_streams_generates_and_reads_who_answered(
        aiohttp_server, onprem_sim, openai_sim):
    node_ready()
    server = await aiohttp_server(create_app(make_settings([onprem_sim.url],
                                                           f"{openai_sim.url}/v1")))
    rc, out = await run_node("--test", "--test-reporter=spec", "ai-sdk.test.mjs", env={
        "SCOUT_URL": str(server.make_url("")).rstrip("/"), "SCOUT_API_KEY": API_KEY,
        "AI_SDK_LOG_WARNINGS": "false"})
    print(out)
    assert rc == 0, out
    assert "# fail 0" in out or "ℹ fail 0" in out, out
    assert "streamText with the default provider" in out
