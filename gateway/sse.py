"""Server-sent events: an incremental decoder that does no I/O, and encoders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


# Not frozen: one is made per chunk (why: providers/base.py, Delta).
@dataclass(slots=True)
class SSEEvent:
    event: str
    data: str


class SSEDecoder:
    """Feed bytes as they arrive; get complete events back.

    Follows the WHATWG rules that matter for LLM streams: events end at a blank
    line, `data:` lines are joined with newlines, comments (`:`) are ignored,
    and CRLF, CR or LF all end a line.
    """

    __slots__ = ("_buf", "_data", "_event", "_skip_lf")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event = ""
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to it

    def _idle(self) -> bool:
        """Between events: nothing of a line or an event is held back."""
        return not self._buf and not self._data and not self._event and not self._skip_lf

    def single_data(self, chunk: bytes) -> bytes | None:
        """The data of `chunk`, undecoded, when it is exactly one event of one `data:` line
        and nothing is held back (how vLLM, llama.cpp and OpenAI send each chunk); None for
        anything else, which goes to `feed`."""
        if chunk.startswith(b"data: ") and chunk.find(b"\n") == len(chunk) - 2 \
                and chunk.endswith(b"\n\n") and b"\r" not in chunk and self._idle():
            return chunk[6:-2]
        return None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if chunk.endswith(b"\n\n") and b"\r" not in chunk and self._idle():
            return self._whole(chunk)
        return self._general(chunk)

    def _whole(self, chunk: bytes) -> list[SSEEvent]:
        """The common case: whole events ending in LF, each a single `data:` line (what
        vLLM, llama.cpp and OpenAI send). Any other event goes through the general rules."""
        out: list[SSEEvent] = []
        for block in chunk[:-2].split(b"\n\n"):
            if block.startswith(b"data: ") and b"\n" not in block:
                out.append(SSEEvent("message", block[6:].decode("utf-8", "replace")))
            elif block:
                out += self._general(block + b"\n\n")
        return out

    def _general(self, chunk: bytes) -> list[SSEEvent]:
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        buf = self._buf + chunk
        out: list[SSEEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else n)
            if cr >= 0:
                end, nxt = cr, cr + 1
                if nxt < n and buf[nxt] == 0x0A:
                    nxt += 1
                elif nxt == n:
                    self._skip_lf = True
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            event = self._line(buf[start:end].decode("utf-8", "replace"))
            if event is not None:
                out.append(event)
            start = nxt
        self._buf = buf[start:]
        return out

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            ev = SSEEvent(self._event or "message", "\n".join(self._data))
            self._data, self._event = [], ""
            return ev
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


def encode_data(payload: Any) -> bytes:
    """An unnamed SSE event (the OpenAI stream format)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def encode_event(event: str, payload: Any) -> bytes:
    """A named SSE event (Scout's /api/chat format)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


DONE_LINE = b"data: [DONE]\n\n"
