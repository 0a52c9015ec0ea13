"""One streaming client for every OpenAI-compatible upstream (vLLM, llama.cpp, OpenAI).

Both generative tiers speak the same wire protocol: POST /chat/completions with
`stream: true`, then server-sent events of JSON chunks ending in `[DONE]`. So both
go through this one aiohttp path — pooled keep-alive connections, an incremental
SSE decoder, orjson, and one vocabulary of tier errors — and a failover from one
to the other costs the same as a request to either (bench.tiers measures it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

import aiohttp
import orjson

from gateway.errors import (
    TierBusy,
    TierContentPolicy,
    TierError,
    TierMalformed,
    TierMisconfigured,
    TierOutOfCredit,
    TierOverloaded,
    TierRejectedInput,
    TierUnavailable,
    TierUnreachable,
    connect_failure,
)
from gateway.providers.base import HEADERS, Delta, Skipped, StreamEvent, TierRequest, Usage
from gateway.security.upstream_keys import KeySource
from gateway.sse import SSEDecoder

# How long [DONE] may wait for the body's end before the connection is closed instead;
# and how long usage and [DONE] may take after the finish_reason.
DRAIN_S = 0.5
# Malformed events skipped in a row before the stream counts as broken.
MALFORMED_IN_A_ROW = 2


# The error codes OpenAI (content_policy_violation) and Azure OpenAI (content_filter) give
# when their content policy refuses a request.
CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "content_filter"})


def _policy_error(body: str) -> dict[str, object] | None:
    """The upstream's error object, when it is a content-policy refusal, in OpenAI's shape."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(error, dict) or error.get("code") not in CONTENT_POLICY_CODES:
        return None
    return {"message": str(error.get("message") or "refused under the content policy"),
            "type": str(error.get("type") or "invalid_request_error"),
            "param": error.get("param") if isinstance(error.get("param"), str) else None,
            "code": error["code"]}


def classify_status(status: int, body: str, where: str,
                    retry_after: str | None = None) -> Exception:
    """Map an upstream HTTP error status to the tier error the race acts on."""
    detail = body.strip().replace("\n", " ")[:200]
    if status in (401, 403):
        return TierMisconfigured(f"{where} refused the API key ({status})")
    if status == 429:
        if "insufficient_quota" in body:   # a paid backup out of credit: red until paid
            return TierOutOfCredit(f"{where} is out of credit (429 insufficient_quota): "
                                   "add credit or raise the spend limit")
        try:
            wait, told = min(max(float(retry_after or 5), 1.0), 300.0), retry_after is not None
        except ValueError:
            wait, told = 5.0, False
        return TierBusy(f"{where} is rate-limiting us (429); trying again in {wait:g} s", wait,
                        told)
    if status == 529:   # Anthropic's "overloaded": down for now, not a key problem
        return TierOverloaded(f"{where} is overloaded (529)")
    if status == 404:
        return TierMisconfigured(f"{where} does not serve the configured model (404: {detail})")
    if status in (400, 422) and (error := _policy_error(body)) is not None:
        return TierContentPolicy(f"{where} refused the input under its content policy "
                                 f"({status}: {error.get('code')})", status, error)
    if status in (400, 413, 422):
        return TierRejectedInput(f"{where} rejected the request ({status}: {detail})")
    return TierUnavailable(f"{where} answered {status}")


async def _post(session: aiohttp.ClientSession, url: str, body: bytes,
                headers: Callable[[str | None], dict[str, str]], keys: KeySource | None,
                client_timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
    """POST with the current key; refused (401/403) while a rotation is in progress, the
    same request once more with the previous key (refused means nothing was generated)."""
    key = keys.current() if keys else None
    resp = await session.post(url, data=body, headers=headers(key), timeout=client_timeout)
    if keys is None or key is None:
        return resp
    if resp.status in (401, 403) and (old := keys.fallback()) is not None:
        # Mid-rotation, the upstream may switch keys between two requests: the old key,
        # then the new one once more, before the refusal counts.
        for retry in (old, key):
            resp.close()
            resp = await session.post(url, data=body, headers=headers(retry),
                                      timeout=client_timeout)
            if resp.status not in (401, 403):
                if resp.status == 200:
                    keys.worked(retry)
                return resp
        keys.refused(key)
        return resp
    if resp.status == 200:
        keys.worked(key)
    return resp


async def open_stream(session: aiohttp.ClientSession, url: str, body: bytes,
                      headers: Callable[[str | None], dict[str, str]], keys: KeySource | None,
                      client_timeout: aiohttp.ClientTimeout, where: str
                      ) -> aiohttp.ClientResponse:
    """Send one streaming request and return the 200 response, or raise the tier error
    its failure means. Shared by every upstream's client, whatever its wire format."""
    try:
        resp = await _post(session, url, body, headers, keys, client_timeout)
    except TimeoutError:
        raise TierUnavailable(f"{where} timed out before answering") from None
    except aiohttp.ClientConnectorError as exc:   # never connected: nothing was sent
        raise TierUnreachable(f"{where} unreachable: "
                              f"{connect_failure(exc.os_error, exc.host, exc.port)}") from None
    except aiohttp.ClientConnectionError as exc:
        raise TierUnavailable(f"{where} unreachable: {exc.__class__.__name__}") from None
    if resp.status != 200:
        text = await _read_some(resp)
        resp.close()
        raise classify_status(resp.status, text, where, resp.headers.get("Retry-After"))
    return resp


def _request_body(request: TierRequest, model: str, messages: list[dict[str, Any]],
                  token_field: str, send_user: bool) -> bytes:
    body: dict[str, Any] = {
        **request.params,
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if "max_tokens" in body and token_field != "max_tokens":
        body[token_field] = body.pop("max_tokens")
    if request.tools:
        body["tools"] = request.tools
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
    if request.response_format is not None:
        body["response_format"] = request.response_format
    if send_user and request.end_user:
        body["user"] = request.end_user
    return orjson.dumps(body)


class CompletionsClient:
    """Streams one chat completion from `url` and yields Headers, Deltas and Usage.

    `where` names the upstream in error reasons ("on-prem", "OpenAI"). `token_field` is
    the upstream's name for the answer's token limit: OpenAI's newer models refuse
    `max_tokens` and take `max_completion_tokens`, vLLM and llama.cpp take `max_tokens`.
    `send_user` passes the end user's hashed id (OpenAI's abuse monitoring). A stream read
    to `[DONE]` returns its connection to the pool; any other end (error, deadline,
    the race cancelling a loser) closes it, so the upstream stops generating.
    """

    def __init__(self, session: aiohttp.ClientSession, where: str, model: str,
                 keys: KeySource | None, timeout: aiohttp.ClientTimeout,
                 token_field: str = "max_tokens", send_user: bool = False) -> None:
        self.where = where
        self.token_field = token_field
        self.send_user = send_user
        self.model = model
        self._session = session
        self._timeout = timeout
        self.keys = keys
        self._base_headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}

    def _headers(self, key: str | None) -> dict[str, str]:
        if not key:
            return self._base_headers
        return {**self._base_headers, "Authorization": f"Bearer {key}"}

    # The SSE stream's states in one loop on the hot path: split, it would cost a call per
    # chunk (hence its size).
    async def stream(self, url: str, request: TierRequest,  # noqa: C901, PLR0912, PLR0915
                     messages: list[dict[str, Any]]) -> AsyncGenerator[StreamEvent, None]:
        """`messages` as sent: the request's own, or the OpenAI tier's redacted copy."""
        where = self.where
        body = _request_body(request, self.model, messages, self.token_field, self.send_user)
        resp: aiohttp.ClientResponse | None = None
        complete = False
        finished = False   # a finish_reason came: the answer is whole, whatever follows
        bad = 0            # malformed events in a row
        try:
            resp = await open_stream(self._session, url, body, self._headers, self.keys,
                                     self._timeout, where)
            yield HEADERS
            decoder = SSEDecoder()
            content = resp.content
            try:
                while True:
                    if finished:
                        # Only usage and [DONE] are left: an upstream that doesn't send
                        # them soon has still given the whole answer.
                        try:
                            async with asyncio.timeout(DRAIN_S):
                                chunk = await content.readany()
                        except TimeoutError:
                            return
                    else:
                        chunk = await content.readany()
                    if not chunk:
                        break
                    # The usual read, one whole chunk event: its JSON is read from the bytes
                    # as they came. Anything else ([DONE] too), or JSON that does not parse
                    # as bytes (not UTF-8), goes through the decoder below.
                    data = decoder.single_data(chunk)
                    if data is not None and data.startswith(b"{"):
                        try:
                            one = parse_chunk(data, self.model, where)
                        except TierError:
                            pass
                        else:
                            bad = 0
                            for out in one:
                                finished |= type(out) is Delta and out.finish_reason is not None
                                yield out
                            continue
                    pieces: list[StreamEvent] = []
                    broken: TierError | None = None
                    done = False
                    try:
                        for ev in decoder.feed(chunk):
                            if ev.data == "[DONE]":
                                done = True
                                break
                            try:
                                pieces += parse_chunk(ev.data, self.model, where)
                                bad = 0
                            except TierMalformed as exc:
                                # One bad event is skipped (and counted); a stream that
                                # keeps sending them is broken.
                                bad += 1
                                if bad > MALFORMED_IN_A_ROW:
                                    raise TierUnavailable(
                                        f"{where} sent {bad} malformed events in a row "
                                        f"({exc.reason})") from None
                                pieces.append(Skipped(exc.reason))
                    except TierError as exc:   # what came before the broken event counts
                        broken = exc
                    for out in joined(pieces) if len(pieces) > 1 else pieces:
                        finished |= type(out) is Delta and out.finish_reason is not None
                        yield out
                    if broken is not None:
                        if finished:   # the answer was whole before the upstream erred
                            return
                        raise broken
                    if done:
                        complete = await _drained(resp)
                        return
            except TimeoutError:  # aiohttp's sock_read, where one is set
                if finished:
                    return
                raise TierUnavailable(f"{where} went silent mid-stream") from None
            except aiohttp.ClientPayloadError as exc:
                if finished:
                    return
                raise TierUnavailable(f"{where} stream broke: {exc.__class__.__name__}") from None
            except aiohttp.ClientConnectionError as exc:
                if finished:
                    return
                raise TierUnavailable(
                    f"{where} connection lost: {exc.__class__.__name__}") from None
            if finished:   # the answer ended with its finish_reason; only [DONE] is missing
                return
            raise TierUnavailable(f"{where} stream ended without [DONE] or a finish_reason")
        finally:
            if resp is not None:
                if complete:
                    resp.release()  # back to the keep-alive pool
                else:
                    resp.close()    # close the socket so the upstream stops generating


def joined(events: list[StreamEvent]) -> list[StreamEvent]:
    """Events that arrived in one read, with consecutive plain text from one model joined:
    what is already here goes on as one event and one write to the client, and nothing
    waits for more."""
    out: list[StreamEvent] = []
    for ev in events:
        prev = out[-1] if out else None
        if type(ev) is Delta and type(prev) is Delta and ev.model == prev.model \
                and not (ev.tool_calls or ev.finish_reason or prev.tool_calls
                         or prev.finish_reason):
            out[-1] = Delta(prev.text + ev.text, ev.model)
        else:
            out.append(ev)
    return out


async def _drained(resp: aiohttp.ClientResponse) -> bool:
    """Read what follows [DONE] (the chunked terminator) so the connection can be reused.

    A response released before its body's end is closed, not pooled: each request
    would then pay a new TCP (over the tailnet, WireGuard) handshake.
    """
    content = resp.content
    if content.is_eof():   # the usual case: the body's end came with [DONE]
        return True
    try:
        async with asyncio.timeout(DRAIN_S):
            while await content.readany():
                pass
    except (TimeoutError, aiohttp.ClientError):
        return False
    return True


async def _read_some(resp: aiohttp.ClientResponse) -> str:
    try:
        async with asyncio.timeout(1.0):
            return (await resp.content.read(2048)).decode("utf-8", "replace")
    except (TimeoutError, aiohttp.ClientError):
        return ""


def json_object(data: str | bytes, where: str, what: str) -> dict[str, Any]:
    """One event's payload as a JSON object; anything else is a broken stream."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise TierMalformed(f"{where} sent {what} that is not JSON") from None
    if not isinstance(value, dict):
        raise TierMalformed(f"{where} sent {what} that is not a JSON object")
    return value


def parse_chunk(data: str | bytes, default_model: str, where: str) -> list[StreamEvent]:
    """One `data:` payload of an OpenAI stream as the events the race consumes."""
    chunk = json_object(data, where, "a chunk")
    if "error" in chunk:
        err = chunk["error"]
        msg = err.get("message", "") if isinstance(err, dict) else str(err)
        raise TierUnavailable(f"{where} reported an error mid-stream: {str(msg)[:200]}")
    out: list[StreamEvent] = []
    model = chunk.get("model")
    if not isinstance(model, str) or not model:
        model = default_model
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise TierMalformed(f"{where} sent choices that are not a list")
    for choice in choices:
        if not isinstance(choice, dict):
            raise TierMalformed(f"{where} sent a choice that is not a JSON object")
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise TierMalformed(f"{where} sent a delta that is not a JSON object")
        text = delta.get("content") or ""
        if not isinstance(text, str):
            raise TierMalformed(f"{where} sent content that is not text")
        tool_calls = delta.get("tool_calls") or None
        if tool_calls is not None and not isinstance(tool_calls, list):
            raise TierMalformed(f"{where} sent tool_calls that are not a list")
        finish = choice.get("finish_reason") or None
        if finish is not None and not isinstance(finish, str):
            raise TierMalformed(f"{where} sent a finish_reason that is not text")
        if text or tool_calls or finish:
            out.append(Delta(text, model, tool_calls, finish))
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        out.append(Usage(prompt if isinstance(prompt, int) else 0,
                         completion if isinstance(completion, int) else 0,
                         cached if isinstance(cached, int) else None))
    return out
