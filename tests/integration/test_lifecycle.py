"""Start and stop the whole app with every tier on: nothing it opened is left open.

A real Redis, simulators for on-prem and OpenAI, the fake Anthropic API, a webhook sink
and the built-in inventory. After the app's cleanup, no task of its own is left running,
no socket it opened is still open, and collecting garbage raises no ResourceWarning (an
unclosed aiohttp session or Redis client warns when it is collected). The same holds
when one of the app's background tasks has died with an error before shutdown: the
cleanup logs it and goes on closing everything else.
"""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.health.monitor import HealthMonitor
from tests.anthropic_fake import FakeAnthropic
from tests.conftest import AUTH, OPENAI_KEY, make_settings, running
from tests.servers import RedisServer

ANTHROPIC_KEY = "anthropic-test-key-61af"


def describe(inodes: set[str]) -> list[str]:
    """Each socket as /proc/net lists it (its addresses, for the failure message)."""
    wanted = {i[len("socket:["):-1] for i in inodes}
    rows = []
    for table in ("tcp", "tcp6", "udp", "unix"):
        with open(f"/proc/net/{table}") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if (cols[9] if table != "unix" else cols[6]) in wanted:
                    rows.append(f"{table} {line.strip()}")
    return rows


def open_sockets() -> set[str]:
    """This process's socket descriptors, by inode."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


async def settled_tasks(baseline: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Tasks beyond `baseline` and this one, once finished ones have had their turn."""
    for _ in range(20):
        extra = {t for t in asyncio.all_tasks() if t not in baseline and not t.done()}
        extra.discard(asyncio.current_task())  # type: ignore[arg-type]
        if not extra:
            return extra
        await asyncio.sleep(0.05)
    return extra


@pytest.fixture
def redis(tmp_path: Path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def webhook_sink() -> tuple[web.AppRunner, str]:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


def every_tier(fake: FakeAnthropic):
    def mutate(data):
        data["anthropic"] = {"enabled": True, "base_url": fake.url,
                             "model": "claude-3-5-haiku-latest"}
        data["prices"]["claude-3-5-haiku-latest"] = {"input": 0.80, "output": 4.00}
        for intent in data["intents"].values():
            if "openai" in intent["ladder"]:
                intent["ladder"].insert(intent["ladder"].index("openai") + 1, "anthropic")
    return mutate


async def serve_and_stop(redis: RedisServer, break_a_task: bool,
                         monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], set, set]:
    """Run the app through a few answers, stop it; what was left open and what warned."""
    fake = await FakeAnthropic(api_key=ANTHROPIC_KEY).start()
    sink, hook_url = await webhook_sink()
    try:
        async with running() as onprem, running(api_key=OPENAI_KEY) as openai:
            settings = make_settings(
                [onprem.url], openai.url, redis_url=redis.url, mutate=every_tier(fake),
                env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "SCOUT_ALERT_WEBHOOK": hook_url})
            assert {"onprem", "openai", "anthropic", "inventory", "cache", "static"} <= set(
                settings.enabled_tiers())
            if break_a_task:
                async def dies(self: HealthMonitor) -> None:
                    raise RuntimeError("the flusher broke")
                monkeypatch.setattr(HealthMonitor, "background", dies)
            sockets, tasks = open_sockets(), set(asyncio.all_tasks())
            runner = web.AppRunner(create_app(settings))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            async with aiohttp.ClientSession(headers=AUTH) as client:
                for question, stream in (("Which hybrid SUV would you recommend?", False),
                                         ("Do you have a white pickup in stock?", True)):
                    async with client.post(
                            f"http://127.0.0.1:{port}/v1/chat/completions",
                            json={"model": "scout", "stream": stream,
                                  "messages": [{"role": "user", "content": question}]}) as r:
                        assert r.status == 200, await r.text()
                        await r.read()
            await runner.cleanup()
    finally:
        await sink.cleanup()
        await fake.stop()
    # The upstream servers are gone too (their ends of the app's connections with them):
    # what is still open now, the app left open.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    left = await settled_tasks(tasks)
    still_open = open_sockets() - sockets
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)], \
        left, still_open


@pytest.mark.parametrize("break_a_task", [False, True], ids=["clean", "a-task-had-died"])
async def test_stopping_the_app_closes_every_session_client_task_and_socket(
        redis, monkeypatch, break_a_task, caplog):
    warned, tasks, sockets = await serve_and_stop(redis, break_a_task, monkeypatch)
    assert warned == []
    assert tasks == set(), [t.get_coro() for t in tasks]
    assert sockets == set(), describe(sockets)
