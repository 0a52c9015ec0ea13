"""POST /v1/responses: the part of OpenAI's Responses API that text chat uses.

The Vercel AI SDK (`createOpenAI(...)(model)`) and openai-python (`client.responses`) call
this by default. A request is read into the same `CompletionRequest` the chat completions
endpoint builds, and runs through the same turn (`openai_api.openai_turn`: admission,
plan, race, cache, privacy); only the encoding is the Responses API's.

Supported: `input` as a string or as items (messages with text parts, `function_call`,
`function_call_output`, `item_reference`), `instructions`, `stream` with its typed events,
`max_output_tokens`, `temperature`, `top_p`, `text.format` (json_schema, json_object),
function `tools` and `tool_choice`, `user` / `safety_identifier`, `previous_response_id`
and `store` (answers are kept for `sessions.ttl_s`, readable only with the same API key).
Anything else is refused with a 400 that names it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import orjson
from aiohttp import web

from gateway.api.auth import KEY_LABEL
from gateway.api.openai_api import (
    SSE_HEADERS,
    Collected,
    collect,
    model_ids,
    no_answer,
    openai_turn,
    served_by_header,
)
from gateway.api.relay import answer_restarted, turn_failed
from gateway.api.requests import (
    ROUTED_MODEL,
    CompletionRequest,
    content_text,
    parse_completion_request,
    read_json_body,
)
from gateway.appkeys import CHAT, SETTINGS, STORE
from gateway.chat import Turn, TurnOutcome
from gateway.errors import RequestRejected
from gateway.routing.driver import SwitchOut, TextOut
from gateway.state import keys
from gateway.state.kv import KV

# Fields read; fields accepted as hints with nothing to do here (echoed back).
READ = frozenset({"model", "input", "instructions", "stream", "max_output_tokens", "temperature",
                  "top_p", "text", "user", "safety_identifier", "previous_response_id", "store",
                  "tools", "tool_choice"})
HINTS = frozenset({"parallel_tool_calls", "metadata", "truncation", "service_tier",
                   "prompt_cache_key", "prompt_cache_retention", "stream_options"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})


def _reject(message: str, param: str) -> RequestRejected:
    return RequestRejected(message, param=param, code="invalid_value")


class Kept:
    """Stored turns (for `previous_response_id`) and their output items (for
    `item_reference`), per API key, expiring with the sessions' TTL."""

    def __init__(self, kv: KV, ttl_s: float, label: str) -> None:
        self.kv, self.ttl_s, self.label = kv, ttl_s, label

    async def _get(self, key: str) -> Any:
        raw = await self.kv.get(key)
        record = orjson.loads(raw) if raw else None
        return record["value"] if record and record.get("label") == self.label else None

    async def turn(self, response_id: str) -> dict[str, Any] | None:
        """{"messages": the conversation so far, "private": a private intent it touched}"""
        value = await self._get(keys.RESPONSE + response_id)
        return value if isinstance(value, dict) else None

    async def item(self, item_id: str) -> dict[str, Any] | None:
        value = await self._get(keys.ITEM + item_id)
        return value if isinstance(value, dict) else None

    async def save(self, response_id: str, turn: dict[str, Any],
                   items: dict[str, dict[str, Any]]) -> None:
        for key, value in ((keys.RESPONSE + response_id, turn),
                           *((keys.ITEM + i, m) for i, m in items.items())):
            await self.kv.set(key, orjson.dumps({"label": self.label, "value": value}),
                              self.ttl_s)


async def _messages(value: Any, kept: Kept) -> list[dict[str, Any]]:
    """Responses API input as chat messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise _reject("input must be a string or a non-empty array of input items", "input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _reject(f"{where} must be an object", where)
        kind = item.get("type", "message")
        if kind == "item_reference":
            found = await kept.item(str(item.get("id", "")))
            if found is None:
                raise _reject(f"{where}: item {str(item.get('id'))[:80]!r} is not stored here "
                              "(it expired, or belongs to another API key); send the message "
                              "itself", where)
            out.append(found)
        elif kind == "message":
            text = content_text(item.get("content"), where, _TEXT_PARTS)
            out.append({"role": item.get("role"), "content": text})
        elif kind == "function_call":
            call = {"id": str(item.get("call_id", "")), "type": "function",
                    "function": {"name": str(item.get("name", "")),
                                 "arguments": str(item.get("arguments", ""))}}
            if out and out[-1].get("role") == "assistant" and "tool_calls" in out[-1]:
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = content_text(item.get("output"), where, _TEXT_PARTS)
            out.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")),
                        "content": output})
        else:
            raise _reject(f"{where}.type {str(kind)[:40]!r} is not supported here: send "
                          "messages, function_call, function_call_output or item_reference",
                          f"{where}.type")
    return out


def _tools(value: Any) -> list[dict[str, Any]] | None:
    if value is None or value == []:
        return None
    if not isinstance(value, list):
        raise _reject("tools must be an array of function tools", "tools")
    out = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") != "function" \
                or not isinstance(tool.get("name"), str):
            raise _reject(f"tools[{i}]: only function tools ({{type: function, name, "
                          "parameters}}) are supported", f"tools[{i}]")
        out.append({"type": "function", "function": {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}})
    return out


def _echoed_tools(value: Any) -> list[dict[str, Any]]:
    """The request's function tools as the Response object names them: `strict` and
    `parameters` are always there, null when the caller left them out (the gateway checks
    arguments against no schema, so it never claims strict mode on its own)."""
    return [{"type": "function", "name": tool["name"],
             **({"description": tool["description"]} if "description" in tool else {}),
             "parameters": tool.get("parameters"), "strict": tool.get("strict")}
            for tool in value or []]


def _tool_choice(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "function", "function": {"name": value.get("name")}}
    if value is None or value in ("auto", "none", "required"):
        return value
    raise _reject("tool_choice must be auto, none, required or {type: function, name}",
                  "tool_choice")


def _format(text: Any) -> Any:
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(text, dict) or set(text) - {"format", "verbosity"}:
        raise _reject("text must be an object with a format", "text")
    if not isinstance(fmt, dict):
        raise _reject("text.format must be an object with a type", "text.format")
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {
            k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}}
    return fmt


def _check_hints(body: dict[str, Any]) -> None:
    """The fields accepted and echoed back, checked as OpenAI checks them."""
    metadata = body.get("metadata")
    if metadata is not None and not (
            isinstance(metadata, dict) and len(metadata) <= 16 and all(
                isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                for k, v in metadata.items())):
        raise _reject("metadata must be an object of up to 16 string values", "metadata")
    for name, kind in (("parallel_tool_calls", bool), ("store", bool), ("stream", bool),
                       ("service_tier", str), ("prompt_cache_key", str),
                       ("prompt_cache_retention", str), ("stream_options", dict)):
        if body.get(name) is not None and not isinstance(body[name], kind):
            raise _reject(f"{name} has the wrong type ({type(body[name]).__name__})", name)
    if body.get("truncation") not in (None, "auto", "disabled"):
        raise _reject("truncation must be auto or disabled", "truncation")


async def parse_responses_request(body: Any, models: frozenset[str], server: Any,
                                  kept: Kept) -> tuple[CompletionRequest, list[dict[str, Any]],
                                                       str | None]:
    """The request as a chat completion request, the conversation to keep (without the
    instructions: OpenAI does not carry them over to a follow-up), and the private intent
    the stored part of it touched, if any."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object", code="invalid_json")
    unknown = sorted(k for k, v in body.items() if k not in READ | HINTS and v is not None)
    if unknown:
        raise RequestRejected(f"unsupported field{'s' if len(unknown) > 1 else ''} for "
                              f"/v1/responses here: {', '.join(unknown)}", param=unknown[0],
                              code="unsupported_parameter")
    if body.get("include"):
        raise _reject("include is not supported here", "include")
    _check_hints(body)
    history: list[dict[str, Any]] = []
    private: str | None = None
    if (prev := body.get("previous_response_id")) is not None:
        found = await kept.turn(str(prev)) if isinstance(prev, str) else None
        if found is None:
            raise RequestRejected(f"previous response {str(prev)[:80]!r} not found (it expired, "
                                  "or belongs to another API key)", param="previous_response_id",
                                  status=404, code="previous_response_not_found")
        history, private = list(found.get("messages") or []), found.get("private")
    conversation = [*history, *await _messages(body.get("input"), kept)]
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _reject("instructions must be a string", "instructions")
    limit = body.get("max_output_tokens")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise _reject("max_output_tokens must be a whole number of at least 1",
                      "max_output_tokens")
    chat = {"model": body.get("model"), "stream": body.get("stream", False),
            "messages": ([{"role": "system", "content": instructions}] if instructions else [])
            + conversation,
            "max_tokens": limit, "temperature": body.get("temperature"),
            "top_p": body.get("top_p"), "tools": _tools(body.get("tools")),
            "tool_choice": _tool_choice(body.get("tool_choice")),
            "user": body.get("user") or body.get("safety_identifier"),
            "response_format": _format(body.get("text"))}
    try:
        req = parse_completion_request(chat, server, models)
    except RequestRejected as exc:   # name the Responses API's own fields
        renamed = {"messages": "input", "max_tokens": "max_output_tokens",
                   "response_format": "text.format"}
        param = exc.param or ""
        for old, new in renamed.items():
            if param.startswith(old):
                exc.param = new + param[len(old):]
                exc.message = exc.message.replace(old, new)
        raise
    return req, conversation, private


def _usage(outcome: TurnOutcome) -> dict[str, Any]:
    return {"input_tokens": outcome.prompt_tokens,
            # no tier reports what it wrote to a prompt cache, and the spec requires the field
            "input_tokens_details": {"cached_tokens": outcome.cached_prompt_tokens or 0,
                                     "cache_write_tokens": 0},
            "output_tokens": outcome.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens}


class Encoder:
    """The Responses API's objects for one turn."""

    def __init__(self, turn: Turn, body: dict[str, Any], req: CompletionRequest) -> None:
        self.id = f"resp_{turn.id.removeprefix('msg_')}"
        self.message_id = turn.id
        self.created = int(time.time())
        self.body, self.req = body, req
        self.model = str(body.get("model") or ROUTED_MODEL)

    def call_item(self, i: int, call: dict[str, Any], status: str) -> dict[str, Any]:
        fn = call.get("function") or {}
        return {"type": "function_call", "id": f"fc_{self.message_id.removeprefix('msg_')}_{i}",
                "call_id": call.get("id") or f"call_{i}", "name": fn.get("name", ""),
                "arguments": fn.get("arguments", ""), "status": status}

    def message_item(self, text: str, status: str) -> dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return {"type": "message", "id": self.message_id, "status": status,
                "role": "assistant", "content": content if status == "completed" else []}

    def response(self, status: str, output: list[dict[str, Any]],
                 outcome: TurnOutcome | None = None) -> dict[str, Any]:
        fmt = self.req.response_format or {"type": "text"}
        if fmt.get("type") == "json_schema":
            fmt = {"type": "json_schema", **fmt["json_schema"]}
        out: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "background": False, "error": None, "incomplete_details": None,
            "instructions": self.body.get("instructions"),
            "max_output_tokens": self.body.get("max_output_tokens"),
            "model": (outcome.models[0] if outcome is not None and outcome.models
                      else self.model),
            "output": output, "parallel_tool_calls": self.body.get("parallel_tool_calls", True),
            "previous_response_id": self.body.get("previous_response_id"),
            "store": self.body.get("store", True),
            "temperature": self.body.get("temperature"), "top_p": self.body.get("top_p"),
            "text": {"format": fmt}, "tool_choice": self.body.get("tool_choice") or "auto",
            "tools": _echoed_tools(self.body.get("tools")), "truncation": self.body.get("truncation"),
            "metadata": self.body.get("metadata") or {}, "user": self.body.get("user"),
            "usage": _usage(outcome) if outcome is not None else None,
        }
        if status == "failed":   # why, from the outcome (the caller may say more)
            _, failed = turn_failed(outcome)
            out["error"] = {"code": "server_error" if failed["code"] == "all_tiers_failed"
                            else failed["code"], "message": failed["message"]}
        if outcome is not None:
            out["served_by"] = outcome.served_by
            out["scout"] = outcome.done_event()
        return out


def _kept_items(enc: Encoder, got: Collected) -> tuple[list[dict[str, Any]],
                                                        dict[str, dict[str, Any]]]:
    """The answer's output items, and each as the chat message it is when referenced."""
    output: list[dict[str, Any]] = []
    items: dict[str, dict[str, Any]] = {}
    if got.text:
        output.append(enc.message_item(got.text, "completed"))
        items[enc.message_id] = {"role": "assistant", "content": got.text}
    for i, call in enumerate(got.calls):
        item = enc.call_item(i, call, "completed")
        output.append(item)
        items[item["id"]] = {"role": "assistant", "content": None, "tool_calls": [call]}
    return output, items


def _answer(got: Collected) -> dict[str, Any]:
    answer: dict[str, Any] = {"role": "assistant", "content": got.text or None}
    if got.calls:
        answer["tool_calls"] = got.calls
    return answer


async def responses(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    body = await read_json_body(request)
    kept = Kept(request.app[STORE], settings.sessions.ttl_s, request.get(KEY_LABEL, "anonymous"))
    req, conversation, private = await parse_responses_request(body, model_ids(settings),
                                                               settings.server, kept)
    store = body.get("store", True) is not False
    # What is kept for a follow-up: the last turns (as sessions keep them), and whether the
    # conversation ever touched a private intent, which outlives the turns dropped.
    window = 2 * settings.sessions.max_turns
    async with openai_turn(request, req, private) as turn:
        enc = Encoder(turn, body, req)
        headers = {"X-Scout-Intent": turn.plan.intent.name, "X-Scout-Turn": turn.id}

        def keep(got: Collected) -> Any:
            if not store or got.failed is not None:
                return _noop()
            _, items = _kept_items(enc, got)
            return kept.save(enc.id, {"messages": [*conversation, _answer(got)][-window:],
                                      "private": turn.private}, items)
        if req.stream:
            return await _stream(request, turn, enc, headers, keep)
        got = await collect(request, turn)
        if got.failed is not None:
            return no_answer(got.outcome)
        output, _ = _kept_items(enc, got)
        await keep(got)
        assert got.outcome is not None
        return web.Response(body=orjson.dumps(enc.response("completed", output, got.outcome)),
                            content_type="application/json",
                            headers={**headers, **served_by_header(got.outcome)})


async def _noop() -> None:
    return None


class _Events:
    """Typed server-sent events, numbered."""

    def __init__(self, resp: web.StreamResponse) -> None:
        self.resp = resp
        self.n = 0

    async def send(self, kind: str, **fields: Any) -> None:
        data = orjson.dumps({"type": kind, "sequence_number": self.n, **fields})
        self.n += 1
        await self.resp.write(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")


async def _stream(request: web.Request, turn: Turn, enc: Encoder, headers: dict[str, str],
                  keep: Callable[[Collected], Any]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={**SSE_HEADERS, **headers})
    await resp.prepare(request)
    ev = _Events(resp)
    await ev.send("response.created", response=enc.response("in_progress", []))
    await ev.send("response.in_progress", response=enc.response("in_progress", []))
    out = _StreamedOutput(ev, enc)
    got = Collected()
    restarted = False
    async with aclosing(request.app[CHAT].run(turn)) as events:
        async for item in events:
            if isinstance(item, TextOut):
                if item.text:
                    await out.text(item.text)
                for frag in item.tool_calls or []:
                    await out.call_fragment(frag)
            elif isinstance(item, SwitchOut) and item.replace is not None:
                if out.texts or out.calls:   # sent already: this API can't take it back
                    restarted = True
                    break
                if item.replace:
                    await out.text(item.replace)
            elif isinstance(item, TurnOutcome):
                got.outcome = item
    got.text, got.calls = "".join(out.texts), [out.calls[i] for i in out.order]
    if restarted:
        await ev.send("response.failed", response={
            **enc.response("failed", [], None), "error": {
                "code": "server_error", "message": answer_restarted()["message"]}})
    elif got.failed is not None:
        await ev.send("response.failed", response=enc.response("failed", [], got.outcome))
    else:
        await out.finish(got)
        output, _ = _kept_items(enc, got)
        await keep(got)
        await ev.send("response.completed",
                      response=enc.response("completed", output, got.outcome))
    await resp.write_eof()
    return resp


class _StreamedOutput:
    """The output items as they stream: the message's text deltas, each tool call announced
    when it starts and its arguments as deltas, then each item done."""

    def __init__(self, ev: _Events, enc: Encoder) -> None:
        self.ev, self.enc = ev, enc
        self.texts: list[str] = []
        self.message_at: int | None = None        # the message's output index, once open
        self.calls: dict[int, dict[str, Any]] = {}  # tool-call index → the call so far
        self.order: list[int] = []                # tool-call indexes, in arrival order
        self.at: dict[int, int] = {}              # tool-call index → its output index

    def _next(self) -> int:
        return len(self.at) + (self.message_at is not None)

    async def text(self, text: str) -> None:
        enc, ev = self.enc, self.ev
        if self.message_at is None:
            self.message_at = self._next()
            await ev.send("response.output_item.added", output_index=self.message_at,
                          item=enc.message_item("", "in_progress"))
            await ev.send("response.content_part.added", item_id=enc.message_id,
                          output_index=self.message_at, content_index=0,
                          part={"type": "output_text", "text": "", "annotations": [],
                                "logprobs": []})
        self.texts.append(text)
        await ev.send("response.output_text.delta", item_id=enc.message_id,
                      output_index=self.message_at, content_index=0, delta=text, logprobs=[])

    async def call_fragment(self, frag: Any) -> None:
        if not isinstance(frag, dict):
            return
        i = int(frag.get("index", 0))
        fn = frag.get("function") or {}
        if i not in self.calls:
            self.calls[i] = {"id": frag.get("id") or "", "type": "function",
                             "function": {"name": fn.get("name") or "", "arguments": ""}}
            self.at[i] = self._next()
            self.order.append(i)
            await self.ev.send("response.output_item.added", output_index=self.at[i],
                               item=self.enc.call_item(len(self.order) - 1, self.calls[i],
                                                       "in_progress"))
        call = self.calls[i]
        if frag.get("id"):
            call["id"] = frag["id"]
        if args := fn.get("arguments"):
            call["function"]["arguments"] += args
            await self.ev.send("response.function_call_arguments.delta",
                               item_id=self.enc.call_item(self.order.index(i), call, "")["id"],
                               output_index=self.at[i], delta=args)

    async def finish(self, got: Collected) -> None:
        enc, ev = self.enc, self.ev
        if self.message_at is not None:
            done = enc.message_item(got.text, "completed")
            await ev.send("response.output_text.done", item_id=enc.message_id,
                          output_index=self.message_at, content_index=0, text=got.text,
                          logprobs=[])
            await ev.send("response.content_part.done", item_id=enc.message_id,
                          output_index=self.message_at, content_index=0,
                          part=done["content"][0])
            await ev.send("response.output_item.done", output_index=self.message_at, item=done)
        for n, i in enumerate(self.order):
            item = enc.call_item(n, self.calls[i], "completed")
            await ev.send("response.function_call_arguments.done", item_id=item["id"],
                          output_index=self.at[i], arguments=item["arguments"])
            await ev.send("response.output_item.done", output_index=self.at[i], item=item)
