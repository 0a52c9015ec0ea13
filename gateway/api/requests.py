"""Reading and validating request bodies; every problem becomes a 4xx that names it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gateway.appkeys import SETTINGS
from gateway.config import ServerConfig
from gateway.errors import PayloadTooLarge, RequestRejected

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# Sampling parameters passed through to the upstream, with their accepted types.
_PARAMS: dict[str, tuple[type, ...]] = {
    "max_tokens": (int,), "max_completion_tokens": (int,), "temperature": (int, float),
    "top_p": (int, float), "presence_penalty": (int, float), "frequency_penalty": (int, float),
    "seed": (int,), "stop": (str, list),
}
ROUTED_MODEL = "scout"
_KIND = {str: "string", list: "list"}


def end_user_id(value: Any, param: str) -> str | None:
    """An end-user id as sent (OpenAI's `user`, X-Scout-User): 1-256 printable characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 256 or not value.isprintable():
        raise RequestRejected(f"{param} must be 1-256 printable characters naming the end user",
                              param=param, code="invalid_value")
    return value


def tier_model_id(tier: str) -> str:
    """The public model id that pins a tier, as listed by /v1/models."""
    return f"{ROUTED_MODEL}/{tier}"


async def read_json_body(request: web.Request) -> Any:
    """Read the body (server.max_body_bytes, within server.body_timeout_s) and parse JSON,
    or reject with a reason."""
    server = request.app[SETTINGS].server
    max_bytes, timeout_s = server.max_body_bytes, server.body_timeout_s
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {max_bytes}")
    content = request.content
    data: bytes | bytearray
    if content.is_eof():   # the whole body came with the headers: nothing to wait for
        data = content.read_nowait()
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"request body is over the {max_bytes}-byte limit")
    else:
        data = await _read_body(request, max_bytes, timeout_s)
    if not data.strip():
        raise RequestRejected("request body is empty; send a JSON object", code="invalid_json")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RequestRejected(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise RequestRejected("request body is nested too deeply", code="invalid_json") from None


async def _read_body(request: web.Request, max_bytes: int, timeout_s: float) -> bytearray:
    """A body still arriving: its segments until its end, within `timeout_s`."""
    data = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            # The body may arrive in many segments: read until its end, not just what's here.
            while chunk := await request.content.readany():
                data += chunk
                if len(data) > max_bytes:
                    raise PayloadTooLarge(f"request body is over the {max_bytes}-byte limit")
    except TimeoutError:
        raise RequestRejected(f"request body not received within {timeout_s:g} s", status=408,
                              code="body_timeout") from None
    return data


def _reject(message: str, param: str) -> RequestRejected:
    return RequestRejected(message, param=param, code="invalid_value")


def content_text(content: Any, where: str, kinds: frozenset[str] = frozenset({"text"})) -> str:
    """The text of a message's content: a string or a list of text parts (`kinds`: the
    part types that hold text; the Responses API has input_text and output_text too)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            text = part.get("text", part.get("refusal")) if isinstance(part, dict) else None
            if not isinstance(kind, str) or kind not in kinds or not isinstance(text, str):
                raise _reject(f"{where}.content[{i}]: only text parts ({', '.join(sorted(kinds))}"
                              f", with a text) are supported; got {str(kind)[:40]!r}",
                              f"{where}.content")
            parts.append(text)
        return "".join(parts)
    raise _reject(f"{where}.content must be a string or a list of text parts", f"{where}.content")


def validate_messages(raw: Any, server: ServerConfig, param: str = "messages"
                      ) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise _reject(f"{param} must be a non-empty array of messages", param)
    if len(raw) > server.max_messages:
        raise _reject(f"{param} has {len(raw)} messages; the limit is {server.max_messages}", param)
    out: list[dict[str, Any]] = []
    for i, m in enumerate(raw):
        where = f"{param}[{i}]"
        if not isinstance(m, dict):
            raise _reject(f"{where} must be an object with role and content", where)
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise _reject(f"{where}.role must be one of {', '.join(sorted(ROLES))}; "
                          f"got {str(role)[:40]!r}", f"{where}.role")
        content = m.get("content")
        if content is None and role == "assistant" and m.get("tool_calls"):
            text = ""
        else:
            text = content_text(content, where)
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > server.max_message_bytes:
            raise PayloadTooLarge(f"{where} is {size} bytes; the limit per message is "
                                  f"{server.max_message_bytes}", param=f"{where}.content")
        if role == "user" and not text.strip():
            raise _reject(f"{where} is an empty user message", f"{where}.content")
        msg: dict[str, Any] = {"role": role, "content": content}
        for extra, kind in (("name", str), ("tool_calls", list), ("tool_call_id", str)):
            if extra in m:
                if not isinstance(m[extra], kind):
                    raise _reject(f"{where}.{extra} must be a {_KIND[kind]}", f"{where}.{extra}")
                msg[extra] = m[extra]
        out.append(msg)
    if not any(m["role"] == "user" for m in out):
        raise _reject(f"{param} has no user message to answer", param)
    return out


@dataclass(slots=True)
class CompletionRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    params: dict[str, Any] = field(default_factory=dict)
    tools: list[Any] | None = None
    tool_choice: Any = None
    user: str | None = None       # OpenAI's end-user id (per-user limits; hashed upstream)
    response_format: dict[str, Any] | None = None   # text, json_object or json_schema


# One plain check per field, in the order the API documents them (hence its branch count).
def parse_completion_request(body: Any, server: ServerConfig,  # noqa: C901, PLR0912
                             models: frozenset[str]) -> CompletionRequest:
    """Validate an OpenAI chat completion request."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _reject("model is required: use 'scout' (routed) or one of /v1/models", "model")
    if model not in models:
        raise RequestRejected(f"The model '{model[:100]}' does not exist; available: "
                              f"{', '.join(sorted(models))}", param="model", status=404,
                              code="model_not_found")
    messages = validate_messages(body.get("messages"), server)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _reject("stream must be true or false", "stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise _reject("stream_options must be an object", "stream_options")
    include_usage = (opts or {}).get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise _reject("stream_options.include_usage must be true or false",
                      "stream_options.include_usage")
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise _reject("only n=1 is supported", "n")
    params: dict[str, Any] = {}
    for name, types in _PARAMS.items():
        if name in body and body[name] is not None:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, types):
                raise _reject(f"{name} has the wrong type ({type(value).__name__})", name)
            params[name] = value
    if "max_completion_tokens" in params:
        params.setdefault("max_tokens", params.pop("max_completion_tokens"))
    if "max_tokens" in params and params["max_tokens"] < 1:
        raise _reject("max_tokens must be at least 1", "max_tokens")
    if "temperature" in params and not 0 <= params["temperature"] <= 2:
        raise _reject("temperature must be between 0 and 2", "temperature")
    if "top_p" in params and not 0 <= params["top_p"] <= 1:
        raise _reject("top_p must be between 0 and 1", "top_p")
    if isinstance(params.get("stop"), list) and not all(isinstance(s, str)
                                                        for s in params["stop"]):
        raise _reject("stop must be a string or a list of strings", "stop")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise _reject("tools must be an array of tool objects", "tools")
        try:
            orjson.dumps(tools)
        except (orjson.JSONEncodeError, RecursionError):
            raise _reject("tools is nested too deeply", "tools") from None
        tools = tools or None
    user = end_user_id(body.get("user"), "user")
    return CompletionRequest(model, messages, stream, include_usage, params, tools,
                             body.get("tool_choice") if tools else None, user,
                             parse_response_format(body.get("response_format")))


def parse_response_format(value: Any, param: str = "response_format") -> dict[str, Any] | None:
    """OpenAI's response_format, checked: text, json_object, or json_schema with a name and
    a schema. Passed to the tiers that honour it; the others are skipped."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind != "json_schema":
        raise _reject(f"{param}.type must be text, json_object or json_schema; got "
                      f"{str(kind)[:40]!r}", f"{param}.type")
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) \
            or not isinstance(spec.get("schema", {}), dict):
        raise _reject(f"{param}.json_schema must be an object with a name and a schema "
                      "(a JSON Schema object)", f"{param}.json_schema")
    if "strict" in spec and not isinstance(spec["strict"], bool):
        raise _reject(f"{param}.json_schema.strict must be true or false",
                      f"{param}.json_schema.strict")
    return {"type": "json_schema", "json_schema": {
        k: spec[k] for k in ("name", "description", "schema", "strict") if k in spec}}
