"""What customers say reaches the logs only at DEBUG; INFO has ids, sizes, intents, timings."""

from __future__ import annotations

import logging

from gateway.app import create_app
from tests.conftest import log_fields
from tests.ws_client import connect, text, until

MARKER = "Zebrafinch-7731 wants the blue hatchback, call 555-867-5309"


def leaks(caplog, needle: str, level: int = logging.INFO) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()[:200]}" for r in caplog.records
            if r.levelno >= level and needle in r.getMessage()]


async def test_message_and_answer_text_are_logged_only_at_debug(gw_client, settings, onprem_sim,
                                                                caplog):
    caplog.set_level(logging.DEBUG)
    client = await gw_client(create_app(settings))
    body = {"model": "scout", "messages": [{"role": "user", "content": MARKER}]}
    r = await client.post("/v1/chat/completions", json=body)
    answer = (await r.json())["choices"][0]["message"]["content"]
    sse = await client.post("/api/chat", json={"message": MARKER + " (sse)"})
    assert b"event: done" in await sse.read()
    ws = await connect(client)
    await ws.send_json({"type": "chat", "id": "w1", "message": MARKER + " (ws)"})
    ws_answer = text(await until(ws, "w1"))
    await ws.close()
    await onprem_sim.set_fault("http_500")  # a failing tier and a fallback: still no text at INFO
    r = await client.post("/v1/chat/completions", json={
        "model": "scout", "messages": [{"role": "user", "content": MARKER + " (fallback)"}]})
    assert r.status == 200
    for needle in (MARKER, "Zebrafinch", "555-867-5309", answer[:40], ws_answer[:40]):
        assert not leaks(caplog, needle), leaks(caplog, needle)
    # The words are there at DEBUG (so this test sees the log at all), and INFO has the sizes.
    assert leaks(caplog, "Zebrafinch", logging.DEBUG)
    turns = [log_fields(r) for r in caplog.records if log_fields(r)["event"] == "turn"]
    assert len(turns) >= 4 and all("question_chars" in t and "intent" in t for t in turns)
