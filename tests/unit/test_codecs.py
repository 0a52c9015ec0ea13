"""SSE decoding, cache keys and cost arithmetic: plain values in, plain values out."""

from __future__ import annotations

import pytest

from gateway.cache.keys import cache_key, normalize_question
from gateway.config import Price
from gateway.cost import cost_usd, estimate_tokens
from gateway.sse import SSEDecoder, SSEEvent, encode_event


def feed_all(chunks):
    d = SSEDecoder()
    out = []
    for c in chunks:
        out += d.feed(c)
    return out


def test_sse_events_split_anywhere_decode_the_same():
    raw = b'data: {"a": 1}\n\nevent: done\ndata: x\ndata: y\n\n: comment\n\ndata: [DONE]\n\n'
    whole = feed_all([raw])
    assert whole == [SSEEvent("message", '{"a": 1}'), SSEEvent("done", "x\ny"),
                     SSEEvent("message", "[DONE]")]
    for cut in range(1, len(raw)):
        assert feed_all([raw[:cut], raw[cut:]]) == whole
    assert feed_all([bytes([b]) for b in raw]) == whole


def test_sse_crlf_and_cr_line_endings():
    assert feed_all([b"data: a\r\n\r\ndata: b\r\r"]) == [SSEEvent("message", "a"),
                                                         SSEEvent("message", "b")]
    assert feed_all([b"data: a\r", b"\n\r\n"]) == [SSEEvent("message", "a")]


def test_sse_encoder_round_trips():
    assert feed_all([encode_event("delta", {"text": "hi\nthere"})]) == [
        SSEEvent("delta", '{"text":"hi\\nthere"}')]


@pytest.mark.parametrize(("a", "b"), [
    ("Which SUV?", "which suv"),
    ("  Which   SUV ? ", "which suv?"),
    ("ＷＨＩＣＨ ＳＵＶ", "which suv"),            # full-width folds
    ("which\u200f suv", "which suv"),             # RTL mark
    ("which\x00 suv", "which suv"),               # NUL
    ("Straße", "STRASSE"),                        # casefold
])
def test_same_question_same_key(a, b):
    assert normalize_question(a) == normalize_question(b)
    msgs = lambda q: [{"role": "user", "content": q}]  # noqa: E731
    assert cache_key("i", msgs(a), "") == cache_key("i", msgs(b), "")


@pytest.mark.parametrize(("a", "b"), [
    ("3.5 liter engine", "35 liter engine"),
    ("is it 4wd", "is it awd"),
    ("red", "read"),
    ("\ud800abc", "abc\ud800x"),                  # lone surrogates neither crash nor collide
])
def test_different_questions_different_keys(a, b):
    msgs = lambda q: [{"role": "user", "content": q}]  # noqa: E731
    assert cache_key("i", msgs(a), "") != cache_key("i", msgs(b), "")


def test_context_and_intent_are_part_of_the_key():
    q = [{"role": "user", "content": "and in blue?"}]
    ctx = [{"role": "user", "content": "Do you have a Civic?"},
           {"role": "assistant", "content": "Yes."}, *q]
    assert cache_key("i", q, "") != cache_key("i", ctx, "")
    assert cache_key("i", q, "") != cache_key("j", q, "")
    assert len(cache_key("inventory.search", ctx * 50, "")) < 60, "keys stay small"


def test_cost_arithmetic():
    prices = {"gpt-4o-mini": Price(input=0.15, output=0.60),
              "llama": Price(input=0.0, output=0.0)}
    assert cost_usd(prices, "gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert cost_usd(prices, "gpt-4o-mini", 200, 100) == pytest.approx((200 * 0.15 + 100 * 0.6) / 1e6)
    assert cost_usd(prices, "llama", 10_000, 10_000) == 0
    assert cost_usd(prices, "scout-static", 10, 10) == 0
    assert estimate_tokens("") == 0 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2


def test_dashboard_tiles_from_minute_rows():
    from gateway.stats import percentile_ms, summarize, ttft_bucket
    rows = [(0, {"req": 30, "req:onprem": 30, "fb_base": 30}),
            (1, {"req": 10, "req:openai": 10, "fb_base": 10, "fallback": 10,
                 "cache:fresh": 1, "cache:miss": 3, f"ttft:{ttft_bucket(120)}": 9,
                 f"ttft:{ttft_bucket(2500)}": 1, "avail:n": 4, "avail:up": 3,
                 "ws@p1": 2, "ws@p2": 5, "sessions@p1": 4})]
    tiles = summarize(rows, now=90.0)  # half-way through minute 1
    assert tiles["requests_per_min"] == round(40 / 1.5, 1)
    assert tiles["fallback_rate"] == 10 / 40
    assert tiles["cache_hit_rate"] == 0.25
    assert tiles["availability"] == 0.75
    # Interpolated within the bucket: 9 answers in (100, 200] and one in (2000, 3000].
    assert tiles["ttft_p50_ms"] == 100 + 100 * 5 / 9 and tiles["ttft_p95_ms"] == 2500
    assert tiles["websockets"] == 7 and tiles["active_sessions"] == 4
    assert percentile_ms({}, 50) is None


def test_percentiles_from_buckets_track_known_samples():
    """Every answer took ~300 ms: the tiles must say about 300, not the bucket's 500."""
    from gateway.stats import percentile_ms, ttft_bucket
    for samples in ([300.0] * 200, [float(v) for v in range(10, 1000, 5)],
                    [120.0] * 90 + [1800.0] * 10):
        buckets: dict[int, int] = {}
        for v in samples:
            buckets[ttft_bucket(v)] = buckets.get(ttft_bucket(v), 0) + 1
        ordered = sorted(samples)
        for p in (50, 95):
            exact = ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
            got = percentile_ms(buckets, p)
            assert got is not None
            low_edge = max([0, *(e for e in (50, 100, 200, 300, 500, 750, 1000, 1500, 2000)
                                 if e < exact)])
            high_edge = min(e for e in (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000)
                            if e >= exact)
            assert low_edge <= got <= high_edge, (p, exact, got)
    assert percentile_ms({ttft_bucket(300.0): 200}, 50) == 250.0


@pytest.mark.parametrize("text", ["Hello", "", 'a "quoted" \\ back\nslash', "¿Qué tal? 🚗 ﷺ",
                                  "\u2028\u2029\x00\x1f"])
def test_a_chunk_frame_is_the_chunk_encoded_whole(text):
    """Chunks built from precomputed bytes equal encoding the whole chunk as JSON, for the
    first chunk (with the role), later ones, tool calls and a change of model."""
    import orjson

    from gateway.api.openai_api import ChunkFrames
    from gateway.sse import encode_data

    def whole(model, delta):
        return encode_data({"id": "chatcmpl-msg_1", "object": "chat.completion.chunk",
                            "created": 1764000000, "model": model,
                            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": None}]})

    frames = ChunkFrames("chatcmpl-msg_1", 1764000000)
    calls = [{"index": 0, "id": "call_1", "type": "function",
              "function": {"name": "book", "arguments": '{"day": "Mon"}'}}]
    assert frames.text(text, "llama-3.3-70b", None) == \
        whole("llama-3.3-70b", {"role": "assistant", "content": text})
    assert frames.text(text, "llama-3.3-70b", None) == whole("llama-3.3-70b", {"content": text})
    assert frames.text(text, 'gpt-4o "mini"', calls) == \
        whole('gpt-4o "mini"', {"content": text, "tool_calls": calls})
    frame = frames.text(text, "llama-3.3-70b", None)
    assert orjson.loads(frame[len(b"data: "):])["choices"][0]["delta"]["content"] == text
