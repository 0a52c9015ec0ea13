"""The on-prem key rotated in its file while traffic flows: nobody notices, staff can see it."""

from __future__ import annotations

import asyncio
import os
import time

from gateway.app import create_app
from tests.conftest import ONPREM_KEY, STAFF, make_settings
from tests.sse_client import read_events

NEW_KEY = "onprem-rotated-key-8b2c41"


async def rotating(client, expected: bool) -> None:
    """Until staff /health says the key is (or is no longer) mid-rotation."""
    async with asyncio.timeout(10):
        while True:
            health = await (await client.get("/health", headers=STAFF)).json()
            if health["keys"]["onprem"]["rotating"] is expected:
                return
            await asyncio.sleep(0.05)


async def more_turns(served: list, n: int) -> None:
    """Until the traffic loop has answered `n` more turns."""
    target = len(served) + n
    async with asyncio.timeout(10):
        while True:
            if len(served) >= target:
                return
            await asyncio.sleep(0.02)


async def test_rotating_the_onprem_key_file_fails_no_turn(gw_client, onprem_sim, openai_sim,
                                                          tmp_path):
    key_file = tmp_path / "onprem.key"
    key_file.write_text(ONPREM_KEY + "\n")
    month_ago = time.time() - 31 * 86400
    os.utime(key_file, (month_ago, month_ago))

    def from_file(data):
        data["onprem"].pop("api_key_env", None)
        data["onprem"]["api_key_file"] = str(key_file)

    client = await gw_client(create_app(make_settings([onprem_sim.url], f"{openai_sim.url}/v1",
                                                      mutate=from_file)))
    health = await (await client.get("/health", headers=STAFF)).json()
    assert health["keys"]["onprem"]["source"] == "file"
    assert health["keys"]["onprem"]["age_days"] >= 31
    assert health["keys"]["onprem"]["rotation_due_in_days"] < 0, "overdue at 30 days"
    served: list[list[str]] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        i = 0
        while not stop.is_set():
            events = await read_events(await client.post(
                "/api/chat", json={"message": f"recommend a hybrid SUV ({i})"}))
            served.append(events[-1][1].get("served_by", ["error"]))
            i += 1

    flow = asyncio.ensure_future(traffic())
    try:
        # 1. The gateway side first: the new key is in the file, the GPU box still wants
        #    the old one. Each refused request is retried with the old key at once.
        key_file.write_text(NEW_KEY + "\n")
        await rotating(client, True)
        await more_turns(served, 5)
        # 2. Then the GPU box switches: the new key is seen to work, the old one dropped.
        onprem_sim.knobs.api_key = NEW_KEY
        await rotating(client, False)
        await more_turns(served, 5)
    finally:
        stop.set()
        await flow
    assert served and all(s == ["onprem"] for s in served), \
        f"{sum(s != ['onprem'] for s in served)} of {len(served)} turns left on-prem"
    health = await (await client.get("/health", headers=STAFF)).json()
    assert health["keys"]["onprem"]["age_days"] < 1, "the new file's age"
    assert health["tiers"]["onprem"]["state"] == "up"
    metrics = await (await client.get("/metrics", headers=STAFF)).text()
    assert 'scout_key_age_seconds{key="onprem"}' in metrics
    assert NEW_KEY not in str(health) and NEW_KEY not in metrics
