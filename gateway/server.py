"""Serving one app: the listener, its signals and its drain, the event loop, and the
cycle collector kept off the streaming path. `scout-gateway serve` and the demo both run
through here (gateway.cli parses the command line; gateway.demo builds the demo)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from gateway.api import ws
from gateway.appkeys import ANSWERING, API_KEYS, DRAINING, SETTINGS, UPSTREAM_KEYS
from gateway.logs import get_logger


async def run_server(app: web.Application, host: str, port: int,
                     ready: Callable[[], object] = lambda: None) -> None:
    """Serve until SIGTERM/SIGINT, then drain; SIGHUP re-reads the API key file.

    Draining starts in the signal handler itself: /readyz answers 503 at once and new chats
    get a 503 with Retry-After, while this process keeps listening: for server.drain_grace_s
    at least (a load balancer takes a few polls to see it leave), and until the answers in
    flight, HTTP streams and WebSocket turns alike, have finished (websocket.drain_s at
    most). Only then does the listener close. A second signal skips the rest of the grace.
    Client disconnects cancel their handlers (and so their upstreams) on the stateless
    OpenAI path; session turns finish on their own (gateway.turns).
    """
    settings = app[SETTINGS]
    drain_s, grace_s = settings.ws.drain_s, settings.server.drain_grace_s
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=drain_s + 5)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_stop() -> None:
        if stop.is_set():
            hurry.set()
        app[DRAINING].set()
        stop.set()

    def reload_keys() -> None:
        app[API_KEYS].reload()
        for keys in app[UPSTREAM_KEYS].values():
            keys.reload()

    handlers = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGHUP: reload_keys}
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
    try:
        # The app is built (runner.setup ran its startup): settle the collector before
        # listening, so no connection waits out its one full pass.
        tune_gc(settings.server.gc_threshold)
        await web.TCPSite(runner, host, port, reuse_port=True).start()
        ready()
        await stop.wait()
        log = get_logger("scout")
        began = loop.time()
        log.info("shutdown", drain_s=drain_s, grace_s=grace_s,
                 answering=app[ANSWERING].count)
        await ws.drain(app)   # WebSocket turns: going_away, then they finish
        if not await app[ANSWERING].wait_idle(max(0.0, began + drain_s - loop.time())):
            log.warning("drain_timeout", answering=app[ANSWERING].count)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, began + grace_s - loop.time())):
                await hurry.wait()
        log.info("stopped_listening", after_s=round(loop.time() - began, 3))
    finally:
        for sig in handlers:   # the loop may outlive this server (tests, embedding)
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def tune_gc(threshold: int) -> None:
    """Keep Python's cycle collector off the streaming path, once the app is built.

    Reference counting frees what a request allocates. With Python's defaults, at 128
    streams the collector took 0.1-0.2 ms of CPU per request without finding anything of
    the load's to free, and each full pass walked every object built at startup (config,
    routes, compiled patterns, the inventory), pausing every stream for 53-71 ms
    (docs/benchmarks.md). So what exists once the app is built is frozen out of the
    collector's sight (gc.freeze, as the gc documentation suggests for long-lived
    servers), and its youngest pass waits for `threshold` net allocations instead of
    700. Cycles are still looked for: at 10,000, every ~1,000 requests at 128 streams, in
    passes of a few milliseconds. A higher threshold makes the passes rarer but each one
    longer, and keeps garbage longer (docs/operations.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 10, 10)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed, else asyncio's loop (SCOUT_EVENT_LOOP=asyncio
    chooses asyncio's: for comparing the two)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    if os.environ.get("SCOUT_EVENT_LOOP") == "asyncio":
        asyncio.run(main)
    else:
        uvloop.run(main)
