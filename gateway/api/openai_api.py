"""The OpenAI API, exactly: POST /v1/chat/completions (stream and not), GET /v1/models."""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import Any

import orjson
from aiohttp import web

from gateway.api.auth import admitted, caller
from gateway.api.relay import all_tiers_failed
from gateway.api.requests import (
    ROUTED_MODEL,
    CompletionRequest,
    parse_completion_request,
    read_json_body,
    tier_model_id,
)
from gateway.appkeys import CHAT, SETTINGS
from gateway.chat import Turn, TurnOutcome
from gateway.config import Settings
from gateway.routing.driver import TextOut
from gateway.sse import DONE_LINE, encode_data
from gateway.tiers import registry

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}


def model_ids(settings: Settings) -> frozenset[str]:
    return frozenset([ROUTED_MODEL, *(tier_model_id(t) for t in settings.enabled_tiers())])


async def list_models(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    data = [{"id": ROUTED_MODEL, "object": "model", "created": 0, "owned_by": "scout",
             "description": "routed: " + " → ".join(registry().names())}]
    for tier in settings.enabled_tiers():
        data.append({"id": tier_model_id(tier), "object": "model", "created": 0,
                     "owned_by": "scout", "upstream_model": settings.tier_model(tier)})
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    body = await read_json_body(request)
    req = parse_completion_request(body, settings.server, model_ids(settings))
    pin = None if req.model == ROUTED_MODEL else req.model.split("/", 1)[1]
    who = caller(request, req.user)
    async with admitted(request.app, who):
        turn = request.app[CHAT].prepare(req.messages, pin=pin, params=req.params,
                                         tools=req.tools, tool_choice=req.tool_choice,
                                         key_label=who.label)
        if req.stream:
            return await _stream(request, turn, req)
        return await _complete(request, turn)


def _scout_headers(turn: Turn) -> dict[str, str]:
    return {"X-Scout-Intent": turn.plan.intent.name, "X-Scout-Turn": turn.id}


async def _stream(request: web.Request, turn: Turn, req: CompletionRequest) -> web.StreamResponse:
    resp = web.StreamResponse(headers={**SSE_HEADERS, **_scout_headers(turn)})
    await resp.prepare(request)
    cid = f"chatcmpl-{turn.id}"
    created = int(time.time())
    role_sent = False
    last_model = ROUTED_MODEL
    async with aclosing(request.app[CHAT].run(turn)) as events:
        async for ev in events:
            if isinstance(ev, TextOut):
                delta: dict[str, Any] = {"content": ev.text}
                if not role_sent:
                    delta = {"role": "assistant", **delta}
                    role_sent = True
                if ev.tool_calls:
                    delta["tool_calls"] = ev.tool_calls
                last_model = ev.model
                await resp.write(encode_data({
                    "id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": ev.model, "choices": [{"index": 0, "delta": delta,
                                                    "logprobs": None, "finish_reason": None}]}))
            elif isinstance(ev, TurnOutcome):
                if not ev.complete:
                    await resp.write(encode_data({"error": all_tiers_failed(ev.error)}))
                    break
                await resp.write(encode_data({
                    "id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": last_model,
                    "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                 "finish_reason": ev.finish_reason}],
                    "served_by": ev.served_by, "scout": ev.done_event()}))
                if req.include_usage:
                    await resp.write(encode_data({
                        "id": cid, "object": "chat.completion.chunk", "created": created,
                        "model": last_model, "choices": [], "usage": _usage(ev)}))
    await resp.write(DONE_LINE)
    await resp.write_eof()
    return resp


def _usage(outcome: TurnOutcome) -> dict[str, int]:
    return {"prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens}


def _merge_tool_calls(calls: dict[int, dict[str, Any]], deltas: list[Any]) -> None:
    """Fold streamed tool-call fragments into whole calls, by index."""
    for d in deltas:
        if not isinstance(d, dict):
            continue
        call = calls.setdefault(int(d.get("index", 0)),
                                {"id": "", "type": "function",
                                 "function": {"name": "", "arguments": ""}})
        if d.get("id"):
            call["id"] = d["id"]
        fn = d.get("function") or {}
        call["function"]["name"] += fn.get("name") or ""
        call["function"]["arguments"] += fn.get("arguments") or ""


async def _complete(request: web.Request, turn: Turn) -> web.Response:
    parts: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    outcome: TurnOutcome | None = None
    async with aclosing(request.app[CHAT].run(turn)) as events:
        async for ev in events:
            if isinstance(ev, TextOut):
                parts.append(ev.text)
                if ev.tool_calls:
                    _merge_tool_calls(calls, ev.tool_calls)
            elif isinstance(ev, TurnOutcome):
                outcome = ev
    if outcome is None or not outcome.complete:
        reason = outcome.error if outcome else "no answer"
        return web.Response(status=502, content_type="application/json", body=orjson.dumps(
            {"error": all_tiers_failed(reason)}))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(parts) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    body = {
        "id": f"chatcmpl-{turn.id}", "object": "chat.completion", "created": int(time.time()),
        "model": outcome.models[0] if outcome.models else ROUTED_MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": outcome.finish_reason}],
        "usage": _usage(outcome),
        "served_by": outcome.served_by,
        "scout": outcome.done_event(),
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        headers=_scout_headers(turn))
