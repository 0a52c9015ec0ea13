"""The floor for a Python gateway: a bare aiohttp relay on uvloop, bytes in, bytes out.

    python -m bench.relay --upstream http://127.0.0.1:8001 --port 9000

No auth, no parsing, no routing, no fallbacks, but the gateway's event loop and collector
settings: it forwards the request body to the upstream over a pooled connection and writes
each piece of the answer as it arrives.
bench.overhead runs it next to the gateway, so the table says how much of the
gateway's cost is aiohttp and the event loop, and how much is Scout's own work;
`POST /constant` answers a canned completion, bench.cache's floor for a static reply.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
from aiohttp import web

from gateway.config import ServerConfig
from gateway.server import run, tune_gc

# The size and shape of a short non-streamed completion.
CONSTANT = {"id": "chatcmpl-0", "object": "chat.completion", "created": 0, "model": "canned",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": "x" * 200}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "served_by": ["static"]}


def make_app(upstream: str) -> web.Application:
    async def relay(request: web.Request) -> web.StreamResponse:
        session: aiohttp.ClientSession = request.app["session"]
        body = await request.read()
        async with session.post(f"{upstream}/v1/chat/completions", data=body,
                                headers={"Content-Type": "application/json",
                                         "Authorization": request.headers.get("Authorization",
                                                                              "")}) as up:
            resp = web.StreamResponse(status=up.status,
                                      headers={"Content-Type": up.content_type})
            await resp.prepare(request)
            async for piece in up.content.iter_any():
                await resp.write(piece)
            await resp.write_eof()
            return resp

    async def constant(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(CONSTANT)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000),
            timeout=aiohttp.ClientTimeout(total=None))
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", relay)
    app.router.add_post("/constant", constant)  # bench.cache's floor: a canned answer
    return app


async def serve(upstream: str, host: str, port: int) -> None:
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    tune_gc(ServerConfig().gc_threshold)   # the gateway's own runtime settings, for a fair floor
    await web.TCPSite(runner, host, port).start()
    await asyncio.Event().wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    run(serve(args.upstream, args.host, args.port))  # the gateway's own loop choice: uvloop


if __name__ == "__main__":
    main()
