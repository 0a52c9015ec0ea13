"""The Anthropic (Claude) tier: a second cloud backup, over the Messages API.

Claude Haiku was the assistant's earlier fallback. This module is the whole tier: its
config section (`anthropic:`), its provider, its probe and its registry entry. Being
off-site, it gets privacy (refusal of private conversations, PII redaction and restoring)
from `OffsiteGuard` by construction, like OpenAI.

Wire protocol (https://docs.anthropic.com/en/api/messages-streaming): POST /v1/messages
with `stream: true` answers server-sent events `message_start` (model, input tokens),
`content_block_start` (a text or a `tool_use` block), `content_block_delta` (`text_delta`
or `input_json_delta`), `content_block_stop`, `message_delta` (stop reason, output tokens),
`message_stop`, plus `ping` and `error`. They are mapped onto the gateway's events:
text deltas, OpenAI-shaped `tool_calls` deltas, a finish reason and usage.

Failures: 401/403 misconfigured, 429 busy (Retry-After), 529 overloaded and 5xx down, an
`error` event mid-stream or a stream without `message_stop` a drop (the race resumes on
the next tier with what was said).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, ClassVar

import aiohttp
import orjson

from gateway.providers import (
    HEADERS,
    Count,
    Delta,
    Flag,
    HealthConfig,
    KeySource,
    ProbeTarget,
    Seconds,
    SSEDecoder,
    StreamEvent,
    Targets,
    TierConfig,
    TierContext,
    TierRequest,
    TierSpec,
    TierUnavailable,
    Usage,
    Verdict,
    get,
    json_object,
    models_listed,
    open_stream,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
WHERE = "Anthropic"
_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
         "tool_use": "tool_calls", "pause_turn": "stop", "refusal": "content_filter"}


class AnthropicConfig(TierConfig):
    """`anthropic:` — Claude as a cloud backup (after OpenAI in a ladder, or instead)."""

    section: ClassVar[str] = "anthropic"
    key_required: ClassVar[bool] = True

    enabled: Flag = False
    model: str = "claude-3-5-haiku-latest"
    api_key_env: str | None = "ANTHROPIC_API_KEY"
    base_url: str = DEFAULT_BASE_URL
    supports_tools: Flag = True
    max_tokens: Count = 1024          # the Messages API needs one; a request's own wins
    timeout_s: Seconds = 60.0


def _text(content: Any) -> str:
    """OpenAI content (a string or parts) as plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One OpenAI chat message as Anthropic content blocks."""
    role = message.get("role")
    if role == "tool":
        return [{"type": "tool_result", "tool_use_id": str(message.get("tool_call_id", "")),
                 "content": _text(message.get("content"))}]
    out: list[dict[str, Any]] = []
    if text := _text(message.get("content")):
        out.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = {}
        out.append({"type": "tool_use", "id": str(call.get("id", "")),
                    "name": str(fn.get("name", "")), "input": args if isinstance(args, dict)
                    else {}})
    return out


def to_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI chat messages as (system, Anthropic messages): system and developer
    messages become `system`; tool results are user turns; turns of one role in a row
    are merged, since the API alternates user and assistant."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text(m.get("content")))
            continue
        role = "assistant" if role == "assistant" else "user"
        blocks = _blocks(m)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    if out and out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": [{"type": "text", "text": "(continued)"}]})
    return "\n\n".join(s for s in system if s), out


def to_tools(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        fn = t.get("function") or {} if isinstance(t, dict) else {}
        if fn.get("name"):
            out.append({"name": fn["name"], "description": fn.get("description", ""),
                        "input_schema": fn.get("parameters") or {"type": "object"}})
    return out


def to_tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice == "required":
        return {"type": "any"}
    if choice == "auto":
        return {"type": "auto"}
    if isinstance(choice, dict) and (name := (choice.get("function") or {}).get("name")):
        return {"type": "tool", "name": name}
    return None   # "none" is expressed by sending no tools


def request_body(cfg: AnthropicConfig, request: TierRequest,
                 messages: list[dict[str, Any]]) -> dict[str, Any]:
    system, turns = to_messages(messages)
    p = request.params
    body: dict[str, Any] = {"model": cfg.model, "messages": turns, "stream": True,
                            "max_tokens": p.get("max_tokens") or cfg.max_tokens}
    if system:
        body["system"] = system
    if "temperature" in p:
        body["temperature"] = min(1.0, float(p["temperature"]))  # Anthropic's range is 0–1
    if "top_p" in p:
        body["top_p"] = p["top_p"]
    if "stop" in p:
        body["stop_sequences"] = [p["stop"]] if isinstance(p["stop"], str) else p["stop"]
    if request.end_user:
        body["metadata"] = {"user_id": request.end_user}
    if request.tools and request.tool_choice != "none":
        body["tools"] = to_tools(request.tools)
        if (choice := to_tool_choice(request.tool_choice)) is not None:
            body["tool_choice"] = choice
    return body


class EventMapper:
    """Anthropic stream events in, the gateway's events out. Pure, one per stream."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.input_tokens = 0
        self.tools: dict[int, int] = {}   # content block index → tool call index
        self.done = False

    def feed(self, event: str, data: str) -> list[StreamEvent]:
        ev = json_object(data, WHERE, "an event")
        try:
            return self._map(str(ev.get("type") or event), ev)
        except (TypeError, ValueError, AttributeError):
            raise TierUnavailable(f"{WHERE} sent a malformed {event} event") from None

    def _map(self, kind: str, ev: dict[str, Any]) -> list[StreamEvent]:
        if kind == "error":
            err = ev.get("error")
            err = err if isinstance(err, dict) else {}
            raise TierUnavailable(f"{WHERE} reported {err.get('type', 'an error')} mid-stream: "
                                  f"{str(err.get('message', ''))[:200]}")
        if kind == "message_start":
            msg = ev.get("message") or {}
            self.model = str(msg.get("model") or self.model)
            self.input_tokens = int((msg.get("usage") or {}).get("input_tokens") or 0)
            return []
        if kind == "content_block_start":
            block = ev.get("content_block") or {}
            if block.get("type") == "tool_use":
                i = self.tools[int(ev.get("index", 0))] = len(self.tools)
                return [Delta("", self.model, [{
                    "index": i, "id": str(block.get("id", "")), "type": "function",
                    "function": {"name": str(block.get("name", "")), "arguments": ""}}])]
            if block.get("type") == "text" and block.get("text"):
                return [Delta(str(block["text"]), self.model)]
            return []
        if kind == "content_block_delta":
            delta = ev.get("delta") or {}
            if delta.get("type") == "text_delta":
                text = delta.get("text")
                if not isinstance(text, str):
                    raise TierUnavailable(f"{WHERE} sent text that is not text")
                return [Delta(text, self.model)] if text else []
            if delta.get("type") == "input_json_delta":
                call = self.tools.get(int(ev.get("index", 0)))
                if call is None:
                    raise TierUnavailable(f"{WHERE} sent tool input for no tool block")
                return [Delta("", self.model, [{"index": call, "function": {
                    "arguments": str(delta.get("partial_json", ""))}}])]
            return []
        if kind == "message_delta":
            reason = (ev.get("delta") or {}).get("stop_reason")
            out: list[StreamEvent] = []
            if reason:
                out.append(Delta("", self.model, None, _STOP.get(str(reason), "stop")))
            output = int((ev.get("usage") or {}).get("output_tokens") or 0)
            out.append(Usage(self.input_tokens, output))
            return out
        if kind == "message_stop":
            self.done = True
        return []   # ping, content_block_stop, and event types added later


class AnthropicProvider:
    tier = "anthropic"

    def __init__(self, config: AnthropicConfig, keys: KeySource | None = None) -> None:
        self.config = config
        self.model = config.model
        self._url = f"{config.base_url.rstrip('/')}/v1/messages"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30,
                                           enable_cleanup_closed=True))
        if keys is None and config.api_key:
            keys = KeySource("anthropic", config.api_key.get())
        self.keys = keys
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.timeout_s,
                                              sock_read=config.timeout_s)

    def _headers(self, key: str | None) -> dict[str, str]:
        return {"content-type": "application/json", "accept": "text/event-stream",
                "anthropic-version": API_VERSION, **({"x-api-key": key} if key else {})}

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        # Privacy (refusal, redaction, restoring) is OffsiteGuard's, around every off-site tier.
        body = orjson.dumps(request_body(self.config, request, request.upstream_messages()))
        async with aclosing(self._events(body)) as events:
            async for ev in events:
                yield ev

    async def _events(self, body: bytes) -> AsyncGenerator[StreamEvent, None]:
        resp: aiohttp.ClientResponse | None = None
        complete = False
        try:
            resp = await open_stream(self._session, self._url, body, self._headers, self.keys,
                                     self._timeout, WHERE)
            yield HEADERS
            decoder, mapper = SSEDecoder(), EventMapper(self.model)
            try:
                async for chunk in resp.content.iter_any():
                    for ev in decoder.feed(chunk):
                        for out in mapper.feed(ev.event, ev.data):
                            yield out
                        if mapper.done:
                            complete = True
                            return
            except TimeoutError:
                raise TierUnavailable(f"{WHERE} went silent mid-stream") from None
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                raise TierUnavailable(f"{WHERE} stream broke: {exc.__class__.__name__}") from None
            raise TierUnavailable(f"{WHERE} stream ended without message_stop")
        finally:
            if resp is not None:
                if complete:
                    resp.release()
                else:
                    resp.close()   # so Anthropic stops generating (and billing)

    async def close(self) -> None:
        await self._session.close()


def judge_models(status: int | None, body: str, error: str, model: str) -> Verdict:
    """Anthropic from its model list (no tokens spent). Pure. An alias (`-latest`) is not
    listed itself, so a dated id that starts with it counts."""
    if status is None:
        return Verdict("down", f"{WHERE} unreachable: {error}")
    if status in (401, 403):
        return Verdict("misconfigured", f"{WHERE} refused the API key ({status})")
    if status != 200:
        return Verdict("down", f"{WHERE} answered {status}")
    listed = models_listed(body)
    if listed is None:
        return Verdict("down", f"{WHERE} sent a model list that is not JSON")
    stem = model.removesuffix("-latest")
    if listed and not any(m == model or m.startswith(stem) for m in listed):
        return Verdict("misconfigured", f"model {model} is not available to this key")
    return Verdict("up", f"{model} available")


def _targets(cfg: TierConfig) -> Targets:
    assert isinstance(cfg, AnthropicConfig)

    async def models(session: aiohttp.ClientSession, key: str | None,
                     h: HealthConfig) -> Verdict:
        started = time.perf_counter()
        headers = {"anthropic-version": API_VERSION, **({"x-api-key": key} if key else {})}
        r = await get(session, f"{cfg.base_url.rstrip('/')}/v1/models?limit=1000",
                      h.timeout_s, headers, limit=1 << 20)
        v = judge_models(r.status, r.body, r.error, cfg.model)
        return Verdict(v.state, v.reason, (time.perf_counter() - started) * 1000)
    return Targets((ProbeTarget("anthropic", "api", models),))


def _provider(ctx: TierContext) -> AnthropicProvider:
    cfg = ctx.settings.tiers["anthropic"]
    assert isinstance(cfg, AnthropicConfig)
    return AnthropicProvider(cfg, ctx.keys)


TIER = TierSpec(
    name="anthropic", label="Anthropic", color="#db6d28", generative=True, offsite=True,
    config=AnthropicConfig, provider=_provider, targets=_targets, gen_ai_system="anthropic",
    hints={"misconfigured": "set a valid ANTHROPIC_API_KEY and check anthropic.model",
           "unavailable": "check outbound HTTPS to api.anthropic.com (529: overloaded)"})
