"""A gateway told to stop does stop: a cancelled background task ends, even when a call in
it swallowed the cancellation.

Python 3.11's asyncio.wait_for returns its operation's result, and drops the caller's
cancellation, when the operation finishes in the same step as the cancel. A health
monitor cancelled at that moment went on probing, the app's cleanup waited for it, and the
process never exited on SIGTERM (seen once in a full test run with a busy core: the demo
with Redis hung)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.app import _stop
from gateway.state.redis_link import RedisLink


async def test_a_redis_call_ending_as_its_caller_is_cancelled_passes_the_cancel_on():
    link = RedisLink("redis://127.0.0.1:1", timeout_s=5.0)
    link.state = "up"
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    started = asyncio.Event()

    async def op(_client):
        started.set()
        return await answer

    async def caller() -> str:
        return await link.run(op, "default")

    task = asyncio.create_task(caller())
    await started.wait()
    answer.set_result("pong")   # the operation ends...
    task.cancel()               # ...in the same step as the cancel
    with pytest.raises(asyncio.CancelledError):
        await task
    await link.close()


async def test_stop_ends_a_task_that_swallowed_its_first_cancellation():
    rounds = 0

    async def stubborn() -> None:
        nonlocal rounds
        while True:
            try:
                rounds += 1
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if rounds > 1:
                    raise   # the second cancel is let through

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(_stop(task))
    # Waited on, not awaited: a timeout here must not cancel the task a second time itself.
    done, _ = await asyncio.wait({stopping}, timeout=30)
    if not done:   # without the re-cancel, _stop waits forever
        stopping.cancel()
    assert stopping in done, "_stop never returned"
    assert task.cancelled() and rounds == 2


async def test_stop_gives_up_on_a_task_that_swallows_every_cancel_and_names_it(monkeypatch):
    logged: list[tuple[str, dict]] = []

    class Recorder:
        def error(self, event: str, **fields) -> None:
            logged.append((event, fields))

    monkeypatch.setattr("gateway.app.log", Recorder())
    cancels = 0
    release = asyncio.Event()

    async def deaf() -> None:
        nonlocal cancels
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancels += 1   # swallowed, every time

    task = asyncio.create_task(deaf(), name="deaf-monitor")
    await asyncio.sleep(0)
    try:
        stopping = asyncio.create_task(_stop(task, within_s=0.3))
        done, _ = await asyncio.wait({stopping}, timeout=30)
        if not done:   # without the bound, _stop re-cancels forever
            stopping.cancel()
    finally:
        release.set()   # the task ends either way, so the test's loop can close
        await task
    assert stopping in done, "_stop never returned"
    assert cancels >= 1
    assert logged == [("background_task_ignores_cancel",
                       {"task": "deaf-monitor", "waited_s": 0.3})]
