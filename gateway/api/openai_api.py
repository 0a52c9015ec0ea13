"""The OpenAI API, exactly: POST /v1/chat/completions (stream and not), GET /v1/models.

`openai_turn` and `collect` are the one path every OpenAI-shaped endpoint takes (chat
completions here, the Responses API in `api/responses`): the same admission, plan, race,
cache and privacy; only the encoding differs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
from aiohttp import web

from gateway.api.auth import admitted, caller, upstream_user
from gateway.api.relay import answer_restarted, turn_failed
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
from gateway.errors import RequestRejected
from gateway.logs import get_logger
from gateway.routing.driver import SwitchOut, TextOut
from gateway.sse import DONE_LINE, encode_data
from gateway.tiers import registry

log = get_logger("scout.openai_api")

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}


def model_ids(settings: Settings) -> frozenset[str]:
    """The model names a request may ask for: asked by every request, made once."""
    return _model_ids(settings.enabled_tiers())


@cache
def _model_ids(tiers: tuple[str, ...]) -> frozenset[str]:
    return frozenset([ROUTED_MODEL, *(tier_model_id(t) for t in tiers)])


def _models(settings: Settings) -> list[dict[str, Any]]:
    data = [{"id": ROUTED_MODEL, "object": "model", "created": 0, "owned_by": "scout",
             "description": "routed: " + " → ".join(registry().names())}]
    for tier in settings.enabled_tiers():
        data.append({"id": tier_model_id(tier), "object": "model", "created": 0,
                     "owned_by": "scout", "upstream_model": settings.tier_model(tier)})
    return data


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": _models(request.app[SETTINGS])},
                             dumps=_dumps)


async def retrieve_model(request: web.Request) -> web.Response:
    """GET /v1/models/{model}: one model of the list, as OpenAI's retrieve answers."""
    wanted = request.match_info["model"]
    for model in _models(request.app[SETTINGS]):
        if model["id"] == wanted:
            return web.json_response(model, dumps=_dumps)
    raise RequestRejected(f"the model {wanted!r} does not exist here: GET /v1/models lists "
                          "the routed model and one per enabled tier", param="model",
                          status=404, code="model_not_found")


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


@asynccontextmanager
async def openai_turn(request: web.Request, req: CompletionRequest,
                      private_before: str | None = None) -> AsyncIterator[Turn]:
    """Admit the caller and plan the turn; the answer is written inside the block.
    `private_before` names a private intent an earlier, stored part of the conversation
    touched (the Responses API's previous_response_id): the turn stays on-site."""
    pin = None if req.model == ROUTED_MODEL else req.model.split("/", 1)[1]
    who = caller(request, req.user)
    chat = request.app[CHAT]
    async with admitted(request.app, who):
        yield chat.prepare(
            req.messages, pin=pin, params=req.params, tools=req.tools,
            tool_choice=req.tool_choice, key_label=who.label,
            response_format=req.response_format,
            end_user=upstream_user(request, who, req.user),
            private_before=chat.classifier.get(private_before) if private_before else None)


@dataclass
class Collected:
    """A whole answer: its text, its tool calls (merged from their fragments), its outcome."""

    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    outcome: TurnOutcome | None = None

    @property
    def failed(self) -> str | None:
        """Why no tier answered, or None."""
        if self.outcome is None:
            return "no answer"
        return None if self.outcome.complete else self.outcome.error


async def collect(request: web.Request, turn: Turn) -> Collected:
    parts: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    out = Collected()
    async with aclosing(request.app[CHAT].run(turn)) as events:
        async for ev in events:
            if isinstance(ev, TextOut):
                parts.append(ev.text)
                if ev.tool_calls:
                    _merge_tool_calls(calls, ev.tool_calls)
            elif isinstance(ev, SwitchOut) and ev.replace is not None:
                parts, calls = [ev.replace], {}   # nothing was sent yet: start it over
            elif isinstance(ev, TurnOutcome):
                out.outcome = ev
    out.text, out.calls = "".join(parts), [calls[i] for i in sorted(calls)]
    return out


async def chat_completions(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    body = await read_json_body(request)
    req = parse_completion_request(body, settings.server, model_ids(settings))
    async with openai_turn(request, req) as turn:
        if req.stream:
            return await _stream(request, turn, req)
        return await _complete(request, turn)


def _scout_headers(turn: Turn) -> dict[str, str]:
    return {"X-Scout-Intent": turn.plan.intent.name, "X-Scout-Turn": turn.id}


class ChunkFrames:
    """`chat.completion.chunk` frames for one answer, built from bytes made once: the part
    before the delta (id, created, model) is kept per model, so each chunk encodes only its
    own text. Byte for byte what encoding the whole chunk as JSON gives."""

    __slots__ = ("_cid", "_created", "_heads", "role_sent")

    TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'

    def __init__(self, cid: str, created: int) -> None:
        self._cid, self._created = cid, created
        self._heads: dict[str, bytes] = {}
        self.role_sent = False

    def text(self, text: str, model: str, tool_calls: list[Any] | None) -> bytes:
        head = self._heads.get(model)
        if head is None:
            head = self._heads[model] = (
                b'data: {"id":' + orjson.dumps(self._cid) + b',"object":"chat.completion.chunk"'
                b',"created":' + str(self._created).encode() + b',"model":' + orjson.dumps(model)
                + b',"choices":[{"index":0,"delta":{')
        role = b""
        if not self.role_sent:
            role, self.role_sent = b'"role":"assistant",', True
        calls = b',"tool_calls":' + orjson.dumps(tool_calls) if tool_calls else b""
        return b"".join((head, role, b'"content":', orjson.dumps(text), calls, b"}", self.TAIL))

    def whole(self, model: str, **fields: Any) -> bytes:
        """A chunk with other fields (the last one, usage), encoded whole."""
        return encode_data({"id": self._cid, "object": "chat.completion.chunk",
                            "created": self._created, "model": model, **fields})


async def _stream(request: web.Request, turn: Turn, req: CompletionRequest) -> web.StreamResponse:
    resp = web.StreamResponse(headers={**SSE_HEADERS, **_scout_headers(turn)})
    await resp.prepare(request)
    frames = ChunkFrames(f"chatcmpl-{turn.id}", int(time.time()))
    last_model = ROUTED_MODEL
    tail: list[bytes] = []   # what ends the stream: sent with the end of the body, one write
    async with aclosing(request.app[CHAT].run(turn)) as events:
        async for ev in events:
            if isinstance(ev, TextOut):
                last_model = ev.model
                await resp.write(frames.text(ev.text, ev.model, ev.tool_calls))
            elif isinstance(ev, SwitchOut) and ev.replace is not None:
                if frames.role_sent:   # text the client has can't be taken back here
                    log.warning("answer_restarted_after_text", turn=turn.id, api="chat")
                    tail.append(encode_data({"error": answer_restarted()}))
                    break
                if ev.replace:
                    await resp.write(frames.text(ev.replace, last_model, None))
            elif isinstance(ev, TurnOutcome):
                if not ev.complete:
                    tail.append(encode_data({"error": turn_failed(ev)[1]}))
                    break
                tail.append(frames.whole(last_model, choices=[
                    {"index": 0, "delta": {}, "logprobs": None,
                     "finish_reason": ev.finish_reason}],
                    served_by=ev.served_by, scout=ev.done_event()))
                if req.include_usage:
                    tail.append(frames.whole(last_model, choices=[], usage=_usage(ev)))
    tail.append(DONE_LINE)
    await resp.write_eof(b"".join(tail))
    return resp


def _usage(outcome: TurnOutcome) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": outcome.prompt_tokens,
                             "completion_tokens": outcome.completion_tokens,
                             "total_tokens": outcome.prompt_tokens + outcome.completion_tokens}
    if (cached := outcome.cached_prompt_tokens) is not None:   # as vLLM and OpenAI say it
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


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


def no_answer(outcome: TurnOutcome | None) -> web.Response:
    status, error = turn_failed(outcome)
    return web.Response(status=status, content_type="application/json",
                        body=orjson.dumps({"error": error}))


async def _complete(request: web.Request, turn: Turn) -> web.Response:
    got = await collect(request, turn)
    if got.failed is not None:
        return no_answer(got.outcome)
    outcome = got.outcome
    assert outcome is not None
    message: dict[str, Any] = {"role": "assistant", "content": got.text or None,
                               "refusal": None}
    if got.calls:
        message["tool_calls"] = got.calls
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
                        headers={**_scout_headers(turn), **served_by_header(outcome)})


def served_by_header(outcome: TurnOutcome) -> dict[str, str]:
    """Who answered, for clients that read headers but not extra body fields (the AI SDK's
    `response.headers`): the tiers in order, comma-separated."""
    return {"X-Scout-Served-By": ",".join(outcome.served_by)}
