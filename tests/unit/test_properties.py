"""Property-based tests (hypothesis): no input crashes a parser or collides two questions."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.api.requests import parse_completion_request
from gateway.cache.keys import cache_key, normalize_question
from gateway.config import ServerConfig
from gateway.errors import RequestRejected, TierUnavailable
from gateway.providers.base import Delta, Usage
from gateway.providers.completions import parse_chunk
from gateway.security.pii import Redactor, Restorer, find
from gateway.sse import SSEDecoder

ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)


@given(ANY_TEXT)
def test_normalizing_any_text_never_crashes_and_is_idempotent(text):
    once = normalize_question(text)
    assert normalize_question(once) == once
    assert cache_key("i", [{"role": "user", "content": text}], "")


@given(ANY_TEXT, ANY_TEXT)
def test_different_normalized_questions_never_share_a_key(a, b):
    ka = cache_key("i", [{"role": "user", "content": a}], "")
    kb = cache_key("i", [{"role": "user", "content": b}], "")
    assert (ka == kb) == (normalize_question(a) == normalize_question(b))


@given(ANY_TEXT, st.lists(st.integers(min_value=1, max_value=40), max_size=10))
def test_redact_then_restore_gives_the_text_back_however_it_is_chunked(text, cuts):
    r = Redactor()
    redacted = r.redact(text)
    assert not find(redacted), f"personal data left in {redacted!r}"
    rs = Restorer(r.values)
    out, pos = [], 0
    for n in cuts:
        out.append(rs.feed(redacted[pos:pos + n]))
        pos += n
    out.append(rs.feed(redacted[pos:]))
    out.append(rs.flush())
    assert "".join(out) == text


@given(st.binary(max_size=400), st.lists(st.integers(min_value=1, max_value=50), max_size=12))
def test_sse_decoding_does_not_depend_on_chunking(raw, cuts):
    whole = SSEDecoder().feed(raw)
    d, got, pos = SSEDecoder(), [], 0
    for n in cuts:
        got += d.feed(raw[pos:pos + n])
        pos += n
    got += d.feed(raw[pos:])
    assert got == whole


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=80))
def test_plain_ascii_questions_normalize_as_the_general_rules_say(text):
    from gateway.cache.keys import _normalized
    assert normalize_question(text) == _normalized(text)


SSE_LINE = st.one_of(
    st.text(max_size=30).map(lambda t: "data: " + t), st.text(max_size=10).map(lambda t: "data:" + t),
    st.text(max_size=10).map(lambda t: "event: " + t), st.text(max_size=10).map(lambda t: ":" + t),
    st.just(""), st.just("data"), st.text(max_size=10))


@given(st.lists(SSE_LINE, max_size=12))
def test_sse_whole_events_decode_as_the_general_rules_say(lines):
    """Chunks of whole LF-ended events take a fast path; it must agree with the rules."""
    raw = ("\n".join(lines) + "\n\n").encode("utf-8", "surrogatepass")
    assert SSEDecoder().feed(raw) == SSEDecoder()._general(raw)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(JSON)
def test_any_json_body_is_accepted_or_rejected_with_a_reason(body):
    try:
        parse_completion_request(body, ServerConfig(), frozenset({"scout"}))
    except RequestRejected as exc:
        assert 400 <= exc.status < 500 and exc.message


def _maybe(strategy):
    return st.one_of(JSON, strategy)


UPSTREAM_CHUNK = st.fixed_dictionaries({}, optional={
    "model": JSON,
    "usage": _maybe(st.fixed_dictionaries({}, optional={"prompt_tokens": JSON,
                                                        "completion_tokens": JSON})),
    "choices": _maybe(st.lists(_maybe(st.fixed_dictionaries({}, optional={
        "delta": _maybe(st.fixed_dictionaries({}, optional={"content": JSON,
                                                            "tool_calls": JSON})),
        "finish_reason": JSON})), max_size=3)),
})


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(st.one_of(UPSTREAM_CHUNK, JSON))
def test_any_upstream_chunk_is_parsed_or_fails_the_tier_with_a_reason(chunk):
    """Whatever an upstream streams, the race gets events of the right types or a TierError."""
    try:
        events = parse_chunk(json.dumps(chunk), "fallback-model", "on-prem")
    except TierUnavailable as exc:
        assert exc.reason.startswith("on-prem ")
        return
    for ev in events:
        if isinstance(ev, Delta):
            assert isinstance(ev.text, str) and isinstance(ev.model, str) and ev.model
            assert ev.tool_calls is None or isinstance(ev.tool_calls, list)
            assert ev.finish_reason is None or isinstance(ev.finish_reason, str)
        else:
            assert isinstance(ev, Usage)
            assert isinstance(ev.prompt_tokens, int) and isinstance(ev.completion_tokens, int)
