"""A replica simulator that speaks vLLM's OpenAI API, with knobs for speed and faults.

Endpoints: POST /v1/chat/completions (stream and not), GET /v1/models,
/health, /metrics (vLLM's metric names). Faults, set at start or live:

    refuse               stop listening (connection refused)
    http_500             answer 500
    http_401             answer 401 (wrong API key)
    content_policy       answer 400 content_policy_violation, as OpenAI's policy refuses
    loading              answer 503 "Loading model" (llama.cpp while loading)
    hang_before_headers  accept the request, never answer
    hang_after_headers   send 200 and SSE headers, then nothing
    stall                send `fault_after` tokens, then go silent
    drop                 send `fault_after` tokens, then cut the connection

Tests drive it in-process (`ReplicaSimulator`); demos and benchmarks run it
as `python -m onprem.simulator`, with a control port for live faults.
`stats` counts requests, finished streams and client disconnects, so a test
can see that a cancelled upstream really went away.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import itertools
import re
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson
from aiohttp import web

FAULTS = ("none", "refuse", "http_500", "http_401", "http_429", "loading",
          "hang_before_headers",
          "hang_after_headers", "stall", "drop",
          "no_done",      # the whole answer and its finish_reason, then the body ends: no [DONE]
          "finish_hang",  # the whole answer and its finish_reason, then silence, socket open
          "bad_chunk",    # `bad_chunks` malformed events at `fault_after`, then the rest
          "content_policy")
# How a replica answers when asked to continue a cut answer, as real models do:
RESUME_STYLES = ("marker",    # "(continuing)" and then its answer (tells tests it was asked)
                 "continue",  # the words after the cut, as asked
                 "restart")   # its whole answer again, from the start
# The instruction's first words, in each language the gateway writes it in.
_RESUME_CUES = ("Your previous answer was cut off", "Tu respuesta anterior se cortó")

_WORDS = (
    "Based on what you described, the 2024 Toyota RAV4 Hybrid is a strong fit: it seats five, "
    "returns about 40 mpg combined, and has standard all-wheel drive. If you need a third row, "
    "the Kia Telluride and Honda Pilot are both on our lot this week, and I can book a test "
    "drive for either one whenever suits you."
).split(" ")

# For the demo (`dealer: true`): whole answers in a dealership assistant's voice, picked by
# what the customer asked, so a newcomer sees answers, not a test pattern.
_DEALER = (
    (("financ", "loan", "lease", "credit", "payment", "monthly", "apr", "down"),
     "Financing questions are handled by our own finance team, so nothing you share leaves "
     "the dealership. They can walk you through rates, terms and what a monthly payment "
     "would look like; call (555) 010-2001 or leave your number and they will reach out "
     "today."),
    (("stock", "lot", "available", "inventory", "have", "color", "colour", "trim"),
     "We have three 2024 RAV4 Hybrids on the lot right now: an XLE in Blueprint blue, an XSE "
     "in white and a Limited in midnight black. The XLE is the best value at $34,800. Would "
     "you like me to hold one for a test drive?"),
    (("test drive", "appointment", "schedule", "book", "visit", "open"),
     "I can book that for you. We're open 9am to 7pm every day, and Saturday mornings are the "
     "quietest. Tell me a time that suits you and which car you'd like to drive, and it will "
     "be ready and charged when you arrive."),
    (("hello", "hi", "hey", "thanks", "thank you", "good morning"),
     "Hi! I'm Scout, Lakeside Motors' assistant. I can recommend a car, check what's on the "
     "lot, or book a test drive. What are you looking for?"),
    ((),
     "Based on what you described, the 2024 Toyota RAV4 Hybrid is a strong fit: it seats "
     "five, returns about 40 mpg combined, and has standard all-wheel drive. If you need a "
     "third row, the Kia Telluride and Honda Pilot are both on our lot this week, and I can "
     "book a test drive for either one whenever suits you."),
)


def dealer_answer(question: str) -> list[str]:
    """A whole answer for the demo, chosen by the question's words."""
    q = question.lower()
    for cues, text in _DEALER:
        if not cues or any(re.search(rf"\b{re.escape(c)}", q) for c in cues):
            return text.split(" ")
    return _DEALER[-1][1].split(" ")


_ids = itertools.count(1)


@dataclass
class Knobs:
    model: str = "llama-3.1-70b-instruct"
    api_key: str | None = None
    ttft_s: float = 0.05
    token_interval_s: float = 0.005
    tokens: int = 20
    fault: str = "none"
    fault_after: int = 3
    waiting: int = 0   # reported as vllm:num_requests_waiting
    kv_cache_usage: float = 0.0   # reported as vllm:kv_cache_usage_perc (0–1)
    echo: bool = False  # answer with the last user message's words (tests what was sent)
    dealer: bool = False  # whole answers picked by the question (the demo), not `tokens` words
    answer: str = ""      # the answer's text, instead of `tokens` words of the stock answer
    resume_style: str = "marker"   # one of RESUME_STYLES
    resume_text: str = ""  # what it says when asked to continue, whatever the style
    bad_chunks: int = 1    # how many malformed events the bad_chunk fault writes in a row
    fault_times: int = 0   # chats the fault hits before it heals itself (0: every one)
    # A prefix cache as vLLM's automatic prefix caching keeps one (0 tokens: none): the
    # prompt in blocks, reused up to the first block that differs, least recently used
    # evicted. Time to first token grows by `prefill_s_per_token` per token not cached.
    prefix_cache_tokens: int = 0
    prefill_s_per_token: float = 0.0
    retry_after: str = "1"  # the http_429 fault's Retry-After ("" sends none)

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name: f.type for f in fields(self)}
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown knob {key!r}")
            if key == "fault" and value not in FAULTS:
                raise ValueError(f"unknown fault {value!r}; known: {', '.join(FAULTS)}")
            if key == "resume_style" and value not in RESUME_STYLES:
                raise ValueError(f"unknown resume style {value!r}; known: "
                                 f"{', '.join(RESUME_STYLES)}")
            setattr(self, key, value)


@dataclass
class Stats:
    requests: int = 0
    streams_started: int = 0
    completed: int = 0
    disconnects: int = 0    # the client went away before the answer was finished
    running: int = 0
    probes: int = 0          # GETs of /health, /v1/models and /metrics
    last_messages: list[Any] = field(default_factory=list)
    last_body: dict[str, Any] = field(default_factory=dict)   # the last chat request, whole
    last_traceparent: str | None = None   # W3C trace context of the last chat request
    prompt_tokens: int = 0   # read by chats, and of them from the prefix cache
    cached_tokens: int = 0


class ReplicaSimulator:
    def __init__(self, knobs: Knobs | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.knobs = knobs or Knobs()
        self.stats = Stats()
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._hangs: set[asyncio.Future[None]] = set()
        self.cache = PrefixCache()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> ReplicaSimulator:
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        if self.knobs.fault != "refuse":
            await self._listen()
        return self

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        if self.port == 0:
            server = self._site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def set_fault(self, fault: str, **knobs: Any) -> None:
        """Change the fault (and any knob) live; `refuse` closes the listening socket."""
        was_refusing = self.knobs.fault == "refuse"
        self.knobs.update({"fault": fault, **knobs})
        if fault == "refuse" and not was_refusing and self._site is not None:
            await self._site.stop()
            self._site = None
            self._drop_connections()  # a dead process keeps no keep-alive sockets either
        elif fault != "refuse" and self._site is None and self._runner is not None:
            await self._listen()
        if fault not in ("hang_before_headers", "hang_after_headers", "stall", "finish_hang"):
            for fut in self._hangs:  # let hung requests carry on normally
                if not fut.done():
                    fut.set_result(None)

    def _drop_connections(self) -> None:
        server = self._runner.server if self._runner is not None else None
        for proto in list(server.connections if server is not None else ()):
            if proto.transport is not None:
                proto.transport.close()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    # -- handlers -------------------------------------------------------------

    def _auth_error(self, request: web.Request) -> web.Response | None:
        key = self.knobs.api_key
        if self.knobs.fault == "http_401" or (
                key and request.headers.get("Authorization") != f"Bearer {key}"):
            return _error(401, "Invalid API key", "authentication_error")
        return None

    async def _health(self, request: web.Request) -> web.Response:
        self.stats.probes += 1
        if self.knobs.fault == "loading":
            return _error(503, "Loading model", "unavailable_error")
        return web.Response(text="")  # vLLM: 200 even when overloaded

    async def _models(self, request: web.Request) -> web.Response:
        self.stats.probes += 1
        if (err := self._auth_error(request)) is not None:
            return err
        if self.knobs.fault == "loading":
            return _error(503, "Loading model", "unavailable_error")
        return web.json_response({"object": "list", "data": [
            {"id": self.knobs.model, "object": "model", "created": 0, "owned_by": "vllm",
             "max_model_len": 8192}]})

    async def _metrics(self, request: web.Request) -> web.Response:
        self.stats.probes += 1
        m = self.knobs.model
        text = (
            "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="{m}"}} {float(self.stats.running)}\n'
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="{m}"}} {float(self.knobs.waiting)}\n'
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f'vllm:kv_cache_usage_perc{{model_name="{m}"}} {float(self.knobs.kv_cache_usage)}\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def _hang(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hangs.add(fut)
        try:
            await fut
        finally:
            self._hangs.discard(fut)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        k = self.knobs
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            return _error(400, "body is not JSON", "invalid_request_error")
        if (err := self._auth_error(request)) is not None:
            return err
        heal = False
        if k.fault != "none" and k.fault_times:
            k.fault_times -= 1
            heal = not k.fault_times   # this chat is the fault's last: the next ones are well
        try:
            return await self._answer_chat(request, body)
        finally:
            if heal:
                k.fault = "none"

    async def _answer_chat(self, request: web.Request,
                           body: dict[str, Any]) -> web.StreamResponse:
        k = self.knobs
        if k.fault == "http_500":
            return _error(500, "internal error", "internal_error")
        if k.fault == "http_429":
            limited = _error(429, "rate limit reached", "rate_limit_error")
            if k.retry_after:
                limited.headers["Retry-After"] = k.retry_after
            return limited
        if k.fault == "loading":
            return _error(503, "Loading model", "unavailable_error")
        if k.fault == "content_policy":
            return web.json_response({"error": {
                "message": "Your request was rejected as a result of our safety system.",
                "type": "invalid_request_error", "param": None,
                "code": "content_policy_violation"}}, status=400)
        if body.get("model") != k.model:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        messages = body.get("messages") or []
        self.stats.last_messages = messages
        self.stats.last_body = body
        self.stats.last_traceparent = request.headers.get("traceparent")
        self.stats.running += 1
        finished = False
        try:
            if k.fault == "hang_before_headers":
                await self._hang()
            words = _answer(messages, k)
            if k.dealer:
                last_user = next((m.get("content") for m in reversed(messages)
                                  if isinstance(m, dict) and m.get("role") == "user"), "")
                words = dealer_answer(str(last_user))
            if k.echo:
                last_user = next((m.get("content") for m in reversed(messages)
                                  if isinstance(m, dict) and m.get("role") == "user"), "")
                words = str(last_user).split(" ")
            fmt = body.get("response_format") or {}
            if fmt.get("type") in ("json_schema", "json_object"):   # guided decoding
                schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
                text = orjson.dumps(example_of(schema)).decode()
                words = [text[i:i + 8] for i in range(0, len(text), 8)]
                words = ["".join(words)] if not body.get("stream") else words
            if body.get("stream") and _wants_tool(body):
                resp = await self._stream_tool_call(request, body)
            elif body.get("stream"):
                resp = await self._stream(request, body, words, joined=bool(fmt))
            else:
                await asyncio.sleep(k.ttft_s + k.token_interval_s * max(0, len(words) - 1))
                resp = web.json_response(_completion(k.model, words, messages))
            finished = True
            self.stats.completed += 1
            return resp
        finally:
            self.stats.running -= 1
            if not finished:
                self.stats.disconnects += 1

    async def _stream_tool_call(self, request: web.Request,
                                body: dict[str, Any]) -> web.StreamResponse:
        """A call of the request's first tool, its arguments in two fragments."""
        k = self.knobs
        name = body["tools"][0]["function"]["name"]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await asyncio.sleep(k.ttft_s)
        base = {"id": f"chatcmpl-sim{next(_ids)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": k.model}
        for delta, finish in (
                ({"role": "assistant", "content": None, "tool_calls": [{
                    "index": 0, "id": f"call_sim{next(_ids)}", "type": "function",
                    "function": {"name": name, "arguments": '{"day": '}}]}, None),
                ({"tool_calls": [{"index": 0, "function": {"arguments": '"saturday"}'}}]},
                 None),
                ({}, "tool_calls")):
            await resp.write(b"data: " + orjson.dumps({**base, "choices": [{
                "index": 0, "delta": delta, "logprobs": None,
                "finish_reason": finish}]}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      words: list[str], joined: bool = False) -> web.StreamResponse:
        k = self.knobs
        cid = f"chatcmpl-sim{next(_ids)}"
        created = int(time.time())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        self.stats.streams_started += 1

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return b"data: " + orjson.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": created,
                "model": k.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]}) + b"\n\n"

        if k.fault == "hang_after_headers":
            await self._hang()
        prompt = prompt_tokens(body.get("messages") or [])
        cached = self.cache.read(prompt, k.prefix_cache_tokens) if k.prefix_cache_tokens else 0
        self.stats.prompt_tokens += len(prompt)
        self.stats.cached_tokens += cached
        await asyncio.sleep(k.ttft_s + k.prefill_s_per_token * (len(prompt) - cached))
        await resp.write(chunk({"role": "assistant", "content": ""}))
        for i, word in enumerate(words):
            if i and k.token_interval_s:
                await asyncio.sleep(k.token_interval_s)
            if i == k.fault_after and k.fault == "stall":
                await self._hang()
            if i == k.fault_after and k.fault == "drop":
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("simulated drop")
            if i == k.fault_after and k.fault == "bad_chunk":
                for _ in range(k.bad_chunks):
                    await resp.write(b'data: {"id": "' + cid.encode() + b'", "choices": [{"del\n\n')
            await resp.write(chunk({"content": word if i == 0 or joined else " " + word}))
        await resp.write(chunk({}, "stop"))
        if k.prefix_cache_tokens:
            # vLLM keeps the blocks it decodes too: the next turn, which sends this answer
            # back as history, finds it cached.
            answer = ("" if joined else " ").join(words)
            self.cache.read(prompt_tokens([*body["messages"], {"role": "assistant",
                                                                "content": answer}]),
                            k.prefix_cache_tokens)
        if k.fault == "no_done":
            await resp.write_eof()
            return resp
        if k.fault == "finish_hang":
            await self._hang()
        if (body.get("stream_options") or {}).get("include_usage"):
            usage: dict[str, Any] = _usage(messages=body["messages"], words=words)
            if k.prefix_cache_tokens:   # as vLLM reports it
                usage["prompt_tokens"] = len(prompt)
                usage["total_tokens"] = len(prompt) + len(words)
                usage["prompt_tokens_details"] = {"cached_tokens": cached}
            await resp.write(b"data: " + orjson.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": created,
                "model": k.model, "choices": [], "usage": usage}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _wants_tool(body: dict[str, Any]) -> bool:
    """Call a tool when tools are offered, the customer asks to book, and no tool has
    answered yet."""
    messages = body.get("messages") or []
    if not body.get("tools") or body.get("tool_choice") == "none" or not messages:
        return False
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    return last.get("role") == "user" and "book" in str(last.get("content", "")).lower()


def example_of(schema: dict[str, Any], key: str = "") -> Any:
    """A value that satisfies a JSON Schema (the subset structured output uses), as guided
    decoding would produce."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("anyOf", "oneOf", "allOf"):
        if schema.get(union):
            return example_of(schema[union][0], key)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {k: example_of(v, k) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example_of(schema.get("items") or {"type": "string"}, key)
                for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "integer":
        return max(int(schema.get("minimum", 0)), min(5, int(schema.get("maximum", 5))))
    if kind == "number":
        return float(max(schema.get("minimum", 0), min(2.5, schema.get("maximum", 2.5))))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {"model": "RAV4 Hybrid", "make": "Toyota", "name": "RAV4 Hybrid XLE"}.get(
        key, f"{key or 'value'} (simulated)")


def _answer(messages: list[Any], k: Knobs) -> list[str]:
    n = k.tokens
    last = messages[-1].get("content", "") if messages and isinstance(messages[-1], dict) else ""
    words = k.answer.split(" ") if k.answer else list(itertools.islice(itertools.cycle(_WORDS), n))
    if not (isinstance(last, str) and last.startswith(_RESUME_CUES)):
        return words
    if k.resume_text:
        return k.resume_text.split(" ")
    if k.resume_style == "restart":
        return words
    if k.resume_style == "continue":
        cut = messages[-2].get("content", "") if len(messages) > 1 else ""
        # From the space after the cut: the first chunk is "", the next " word".
        return ["", *words[len(str(cut).split(" ")):]]
    return ["(continuing)", *words[: max(0, n - 1)]]


def prompt_tokens(messages: list[Any]) -> list[str]:
    """The prompt as a chat template lays it out, in 4-character tokens (about an English
    token's length): what a prefix cache compares."""
    text = "".join(f"<|{m.get('role')}|>{m.get('content')}<|end|>" for m in messages
                   if isinstance(m, dict))
    return [text[i:i + 4] for i in range(0, len(text), 4)]


class PrefixCache:
    """vLLM's automatic prefix caching in miniature: the prompt is cut into blocks, each
    named by a hash of itself and every block before it; a prompt reuses its leading
    blocks already held, and blocks are evicted least recently used. A streamed answer's
    blocks are held too, as the prompt that would send it back lays them out."""

    BLOCK = 16   # tokens per block, vLLM's default

    def __init__(self) -> None:
        self.blocks: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def read(self, tokens: list[str], capacity_tokens: int) -> int:
        """Tokens of `tokens` found cached; then all of its blocks are held (recently used)."""
        chain = hashlib.blake2b(digest_size=16)
        cached, hit = 0, True
        for start in range(0, len(tokens) - len(tokens) % self.BLOCK, self.BLOCK):
            chain.update("".join(tokens[start:start + self.BLOCK]).encode())
            key = chain.digest()
            if hit and key in self.blocks:
                cached += self.BLOCK
            else:
                hit = False
            self.blocks[key] = None
            self.blocks.move_to_end(key)
        while len(self.blocks) * self.BLOCK > capacity_tokens:
            self.blocks.popitem(last=False)
        return cached


def _usage(messages: list[Any], words: list[str]) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict)) // 4
    return {"prompt_tokens": prompt, "completion_tokens": len(words),
            "total_tokens": prompt + len(words)}


def _completion(model: str, words: list[str], messages: list[Any]) -> dict[str, Any]:
    return {"id": f"chatcmpl-sim{next(_ids)}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words)},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": _usage(messages, words)}


def _error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "code": status}},
                             status=status)


def control_app(sim: ReplicaSimulator) -> web.Application:
    """A separate port to read stats and change faults, reachable even while refusing."""

    async def get(request: web.Request) -> web.Response:
        return web.json_response({"knobs": asdict(sim.knobs), "stats": {
            k: v for k, v in asdict(sim.stats).items() if k != "last_messages"}})

    async def post(request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            await sim.set_fault(changes.pop("fault", sim.knobs.fault), **changes)
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return await get(request)

    app = web.Application()
    app.router.add_get("/", get)
    app.router.add_post("/", post)
    return app


async def serve(args: argparse.Namespace) -> None:
    knobs = Knobs(model=args.model, api_key=args.api_key, ttft_s=args.ttft,
                  token_interval_s=args.interval, tokens=args.tokens, fault=args.fault,
                  fault_after=args.fault_after)
    sim = await ReplicaSimulator(knobs, args.host, args.port).start()
    runner = None
    if args.control_port is not None:
        runner = web.AppRunner(control_app(sim), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.control_port).start()
    print(f"replica simulator {knobs.model} on {sim.url} fault={knobs.fault}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--control-port", type=int)
    ap.add_argument("--model", default="llama-3.1-70b-instruct")
    ap.add_argument("--api-key")
    ap.add_argument("--ttft", type=float, default=0.05, help="seconds to first token")
    ap.add_argument("--interval", type=float, default=0.005, help="seconds between tokens")
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--fault", default="none", choices=FAULTS)
    ap.add_argument("--fault-after", type=int, default=3)
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
