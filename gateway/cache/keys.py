"""Cache keys: intent plus the normalized question plus what in the context changes it. Pure."""

from __future__ import annotations

import hashlib
import string
import unicodedata
from collections.abc import Sequence
from typing import Any

_INVISIBLE = {"Cf", "Cc", "Cs", "Co", "Cn"}  # format marks (RTL, ZWJ), controls, surrogates
_ASCII_EDGES = string.punctuation   # every ASCII character in Unicode's P* and S*


def _strip_punct(token: str) -> str:
    start, end = 0, len(token)
    while start < end and unicodedata.category(token[start])[0] in "PS":
        start += 1
    while end > start and unicodedata.category(token[end - 1])[0] in "PS":
        end -= 1
    return token[start:end]


def normalize_question(text: str) -> str:
    """Fold case, width, whitespace and punctuation at word edges.

    Punctuation inside a word is kept, so "3.5" and "35" stay apart. Invisible
    characters (RTL marks, NUL, lone surrogates) are dropped; what remains is
    valid text that can always be encoded.
    """
    if text.isascii() and text.isprintable():
        # Plain ASCII, no controls: NFKC changes nothing, casefold is lower(), and the
        # punctuation and symbols (Unicode P* and S*) are exactly string.punctuation.
        return " ".join(t for t in (w.strip(_ASCII_EDGES) for w in text.lower().split()) if t)
    return _normalized(text)


def _normalized(text: str) -> str:
    """normalize_question by the general rules, for any text."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE)
    tokens = (_strip_punct(t) for t in text.split())
    return " ".join(t for t in tokens if t)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def cache_key(intent: str, messages: Sequence[dict[str, Any]], system_prompt: str) -> str:
    """A short key: the intent, the last user message, and a digest of what came before.

    Earlier turns and a caller's own system prompt change the answer, so they
    are part of the key: only the same question in the same context shares an
    answer.
    """
    last_user = ""
    context: list[str] = [system_prompt]
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            last_user = _content_text(messages[i].get("content"))
            context += [f"{m.get('role')}:{_content_text(m.get('content'))}" for m in messages[:i]]
            break
    h = hashlib.blake2b(digest_size=16)
    for part in (intent, normalize_question(last_user), *context):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return f"{intent}:{h.hexdigest()}"
