"""However an upstream's bytes are cut into reads, the streaming client yields the answer the
SSE rules and the chunk parser give for the whole body: the one-event-per-read shortcut
(bytes straight to the JSON parser) and the general decoder must agree, down to text that is
not UTF-8, CR line ends, comments and an error event."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import IntentConfig
from gateway.errors import TierError, TierMalformed
from gateway.providers.base import Delta, TierRequest, Usage
from gateway.providers.completions import MALFORMED_IN_A_ROW, CompletionsClient, parse_chunk
from gateway.sse import SSEDecoder

INTENT = IntentConfig(name="vehicle", ladder=("onprem", "static"), static_reply="x")


class Content:
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def readany(self) -> bytes:
        await asyncio.sleep(0)
        return self.reads.pop(0) if self.reads else b""

    def is_eof(self) -> bool:
        return True


class Response:
    status = 200

    def __init__(self, reads: list[bytes]) -> None:
        self.headers: dict[str, str] = {}
        self.content = Content(list(reads))

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class Session:
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def post(self, url: str, **_: Any) -> Response:
        return Response(self.reads)


def answer(events: list[Any]) -> tuple[str, list[str], list[tuple[int, int]]]:
    """What a stream said, whatever its grouping: the text, the finish reasons, the usage."""
    return ("".join(e.text for e in events if isinstance(e, Delta)),
            [e.finish_reason for e in events if isinstance(e, Delta) and e.finish_reason],
            [(e.prompt_tokens, e.completion_tokens) for e in events if isinstance(e, Usage)])


def reference(body: bytes) -> tuple[tuple[str, list[str], list[tuple[int, int]]], bool]:
    """The whole body through the general SSE rules and the parser, and whether it broke:
    a malformed event is skipped unless more than MALFORMED_IN_A_ROW come in a row, and an
    answer that gave its finish_reason is whole, with or without [DONE]."""
    events: list[Any] = []
    bad = 0
    try:
        for ev in SSEDecoder().feed(body):
            if ev.data == "[DONE]":
                return answer(events), False
            try:
                got = parse_chunk(ev.data, "fallback", "on-prem")
            except TierMalformed:
                bad += 1
                if bad > MALFORMED_IN_A_ROW:
                    raise
                continue
            bad = 0
            events += got
    except TierError:
        pass
    return answer(events), not answer(events)[1]   # broken unless it said it finished


def client_reads(reads: list[bytes]) -> tuple[tuple[str, list[str], list[tuple[int, int]]], bool]:
    client = CompletionsClient(Session(reads), "on-prem", "fallback", None,  # type: ignore[arg-type]
                               aiohttp.ClientTimeout(total=None))
    request = TierRequest(messages=[{"role": "user", "content": "hi"}], intent=INTENT)

    async def run() -> tuple[tuple[str, list[str], list[tuple[int, int]]], bool]:
        events: list[Any] = []
        try:
            async for ev in client.stream("http://upstream/v1/chat/completions", request,
                                          request.messages):
                events.append(ev)
        except TierError:
            return answer(events), True
        return answer(events), False

    return asyncio.run(run())


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def event(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["text", "text", "text", "finish", "usage", "role", "comment",
                                 "latin1", "error", "not-json", "two-lines"]))
    end = draw(st.sampled_from([b"\n\n", b"\n\n", b"\r\n\r\n", b"\r\r"]))
    chunk: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
    if kind == "comment":
        return b": keep-alive" + end
    if kind == "not-json":
        return b"data: {not json" + end
    if kind == "error":
        chunk["error"] = {"message": draw(TEXT)}
    elif kind == "usage":
        chunk["choices"] = []
        chunk["usage"] = {"prompt_tokens": draw(st.integers(0, 99)),
                          "completion_tokens": draw(st.integers(0, 99))}
    elif kind == "finish":
        chunk["choices"] = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    elif kind == "role":
        chunk["choices"] = [{"index": 0, "delta": {"role": "assistant"}}]
    else:
        chunk["choices"] = [{"index": 0, "delta": {"content": draw(TEXT)},
                             "finish_reason": None}]
    data = orjson.dumps(chunk)
    if kind == "two-lines":   # an event's data is its lines joined: "1\n{...}" is no chunk
        return b"data: 1\n" + b"data: " + data + end
    if kind == "latin1":   # not UTF-8: read with replacement characters, as the decoder does
        data = data.replace(b'"m"', b'"m\xe9"')
        chunk["choices"] = [{"index": 0, "delta": {"content": "caf\xe9"}}]
        data = orjson.dumps(chunk).replace("é".encode(), b"\xe9")
    return b"data: " + data + end


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event(), max_size=8), st.booleans(), st.lists(st.integers(1, 400), max_size=6))
def test_any_cut_of_any_stream_reads_as_the_whole_body_does(events, done, cuts):
    body = b"".join(events) + (b"data: [DONE]\n\n" if done else b"")
    whole_events = [*events, *([b"data: [DONE]\n\n"] if done else [])]   # one read per event
    cut_reads, at = [], 0
    for n in cuts:
        cut_reads.append(body[at:at + n])
        at += n
    cut_reads = [r for r in [*cut_reads, body[at:]] if r]
    expected = reference(body)
    assert client_reads(whole_events) == expected
    assert client_reads(cut_reads) == expected
    # A read per line, the blank line that ends an event kept with the line before it.
    assert client_reads([r for r in re.split(rb"(?<=[^\n\r]\n)(?=[^\n])", body) if r]) \
        == expected


def test_a_chunk_that_is_not_utf8_is_read_with_replacement_as_before():
    chunk = b'data: {"model":"m","choices":[{"delta":{"content":"caf\xe9"}}]}\n\n'
    (text, _, _), broken = client_reads([chunk, b"data: [DONE]\n\n"])
    assert (text, broken) == ("caf\ufffd", False)


def test_a_whole_looking_read_that_ends_an_event_begun_earlier_is_not_taken_alone():
    # "data: 1" and the next line are one event ("1\n{...}"), not JSON: one malformed
    # event, skipped whole, however whole the second read looks on its own.
    reads = [b"data: 1\n", b'data: {"model":"m","choices":[{"delta":{"content":"x"}}]}\n\n',
             b"data: [DONE]\n\n"]
    assert client_reads(reads) == reference(b"".join(reads)) == (("", [], []), False)
