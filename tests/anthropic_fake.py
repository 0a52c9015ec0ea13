"""A fake Anthropic Messages API: the real event stream, the real error shapes, faults.

POST /v1/messages answers with Anthropic's SSE events (`message_start`,
`content_block_start`, `ping`, `content_block_delta`, `content_block_stop`,
`message_delta`, `message_stop`), or one JSON message when `stream` is false. A request
that offers tools and asks to "book" gets a `tool_use` block with streamed
`input_json_delta`s. GET /v1/models lists dated model ids, as Anthropic does.

Faults: http_401, http_429, http_529 (overloaded, with Anthropic's error body),
drop (cut the connection after `fault_after` text deltas), error_event (an `error` event
after `fault_after` deltas). Every request body is kept in `bodies`, so a test can see
exactly what left the building.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODELS = ["claude-3-5-haiku-20241022", "claude-sonnet-4-5-20250929"]


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@dataclass
class FakeAnthropic:
    api_key: str
    words: list[str] = field(default_factory=lambda: ["Claude", " says", " the", " Civic",
                                                      " is", " in", " stock."])
    fault: str = ""
    fault_after: int = 3
    delay_s: float = 0.0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> FakeAnthropic:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_get("/v1/models", self.models)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @staticmethod
    def error(status: int, kind: str, message: str) -> web.Response:
        return web.json_response({"type": "error", "error": {"type": kind, "message": message}},
                                 status=status)

    def refused(self, request: web.Request) -> web.Response | None:
        # x-api-key (the documented header), or a bearer token (what newer SDKs send)
        keys = {request.headers.get("x-api-key"),
                request.headers.get("Authorization", "").removeprefix("Bearer ")}
        if self.api_key not in keys or self.fault == "http_401":
            return self.error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self.error(400, "invalid_request_error", "anthropic-version is required")
        return None

    async def models(self, request: web.Request) -> web.Response:
        if (bad := self.refused(request)) is not None:
            return bad
        return web.json_response({"data": [{"type": "model", "id": m, "display_name": m,
                                            "created_at": "2024-10-22T00:00:00Z"}
                                           for m in MODELS],
                                  "has_more": False, "first_id": MODELS[0],
                                  "last_id": MODELS[-1]})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        if (bad := self.refused(request)) is not None:
            return bad
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if self.fault == "http_529":
            return self.error(529, "overloaded_error", "Overloaded")
        if self.fault == "http_429":
            return web.json_response({"type": "error", "error": {
                "type": "rate_limit_error", "message": "slow down"}}, status=429,
                headers={"retry-after": "7"})
        for key in ("model", "messages", "max_tokens"):
            if key not in body:
                return self.error(400, "invalid_request_error", f"{key}: Field required")
        roles = [m["role"] for m in body["messages"]]
        if roles[0] != "user" or any(a == b for a, b in itertools.pairwise(roles)):
            return self.error(400, "invalid_request_error", "roles must alternate")
        last = body["messages"][-1]["content"]
        text = last if isinstance(last, str) else " ".join(
            b.get("text", "") for b in last if b.get("type") == "text")
        tool = body.get("tools") and "book" in text.lower()
        model = "claude-3-5-haiku-20241022"
        usage_in = sum(len(json.dumps(m)) // 4 for m in body["messages"])
        if not body.get("stream"):
            content: list[dict[str, Any]] = [{"type": "text", "text": "".join(self.words)}]
            return web.json_response({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": len(self.words)}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await resp.write(sse("message_start", {"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": usage_in, "output_tokens": 1}}}))
        await resp.write(sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                     "content_block": {"type": "text",
                                                                       "text": ""}}))
        await resp.write(sse("ping", {"type": "ping"}))
        for i, word in enumerate(self.words):
            if i == self.fault_after and self.fault == "drop":
                assert request.transport is not None
                request.transport.close()
                return resp
            if i == self.fault_after and self.fault == "error_event":
                await resp.write(sse("error", {"type": "error", "error": {
                    "type": "overloaded_error", "message": "Overloaded"}}))
                return resp
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            await resp.write(sse("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": word}}))
        await resp.write(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        stop = "end_turn"
        if tool:
            name = body["tools"][0]["name"]
            await resp.write(sse("content_block_start", {
                "type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_fake1", "name": name,
                                  "input": {}}}))
            for part in ('{"day": ', '"saturday"}'):
                await resp.write(sse("content_block_delta", {
                    "type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": part}}))
            await resp.write(sse("content_block_stop", {"type": "content_block_stop",
                                                        "index": 1}))
            stop = "tool_use"
        await resp.write(sse("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": len(self.words)}}))
        await resp.write(sse("message_stop", {"type": "message_stop"}))
        await resp.write_eof()
        return resp
