"""The race's decisions, branch by branch, with a fake clock (plain numbers)."""

from __future__ import annotations

import pytest

from gateway.config import Deadlines
from gateway.routing.race import (
    CancelTier,
    EmitRestart,
    EmitSwitch,
    EmitText,
    Finish,
    GiveUp,
    Race,
    StartTier,
    SwitchKind,
)

D = Deadlines(headers_s=1.0, first_token_s=2.0, gap_s=3.0)
LADDER = ("onprem", "openai", "cache", "static")


def starts(actions):
    return [(a.tier, a.prefix) for a in actions if isinstance(a, StartTier)]


def cancels(actions):
    return [a.tier for a in actions if isinstance(a, CancelTier)]


def switches(actions):
    return [(a.from_tier, a.to_tier) for a in actions if isinstance(a, EmitSwitch)]


def test_first_tier_starts_alone_and_streams_to_the_end():
    r = Race(LADDER, D)
    assert starts(r.start(0.0)) == [("onprem", "")]
    r.on_headers(1, 0.1)
    out = r.on_token(1, "Hi", 0.5)
    assert out == [EmitText(1, "onprem", "Hi")]
    assert r.on_token(1, " there", 0.6) == [EmitText(1, "onprem", " there")]
    assert r.on_finish(1, 0.7) == [Finish(("onprem",))]
    assert r.done and r.first_token_at == 0.5


def test_fast_failure_hands_over_at_once_without_waiting():
    r = Race(LADDER, D)
    r.start(0.0)
    out = r.on_failure(1, "unavailable: connection refused", 0.01)
    assert starts(out) == [("openai", "")]
    assert switches(out) == [("onprem", "openai")]
    assert r.attempts[2].started_at == 0.01


def test_missing_headers_is_a_failure_and_cancels_the_tier():
    r = Race(LADDER, D)
    r.start(0.0)
    assert r.next_deadline() == 1.0
    assert r.on_tick(0.99) == []
    out = r.on_tick(1.0)
    assert cancels(out) == ["onprem"]
    assert starts(out) == [("openai", "")]


@pytest.mark.parametrize("winner", ["onprem", "openai"])
def test_hedge_at_first_token_deadline_won_by_either_side(winner):
    r = Race(LADDER, D)
    r.start(0.0)
    r.on_headers(1, 0.1)
    assert r.next_deadline() == 2.0
    out = r.on_tick(2.0)
    assert starts(out) == [("openai", "")], "the next tier starts beside the slow one"
    assert cancels(out) == []
    assert r.attempts[1].active
    r.on_headers(2, 2.1)
    wid, lid = (1, 2) if winner == "onprem" else (2, 1)
    out = r.on_token(wid, "A", 2.5)
    assert cancels(out) == [r.attempts[lid].tier], "the loser is cancelled"
    assert r.stats.hedge_winner == winner
    assert r.on_token(lid, "late", 2.6) == [], "a cancelled tier's late token is ignored"
    assert r.on_finish(wid, 3.0) == [Finish((winner,))]


def test_a_hedged_tier_hands_over_only_once():
    r = Race(LADDER, D)
    r.start(0.0)
    r.on_headers(1, 0.1)
    r.on_tick(2.0)  # hedge: openai starts
    assert r.on_failure(1, "unavailable: late 500", 2.2) == [], \
        "openai already replaces onprem; no second replacement"
    out = r.on_failure(2, "misconfigured: 401", 2.3)
    assert starts(out) == [("cache", "")]


def test_a_refusal_ends_the_race_and_stops_the_hedge_beside_it():
    r = Race(LADDER, D)
    r.start(0.0)
    r.on_headers(1, 0.1)
    r.on_tick(2.0)   # hedge: openai starts beside onprem
    out = r.on_refusal(2, "content_policy: refused")
    assert cancels(out) == ["onprem"] and starts(out) == []
    assert out[-1] == GiveUp("content_policy: refused") and r.done
    assert r.on_token(1, "late", 2.5) == [], "nothing after the refusal is passed on"


def test_hedge_tier_failing_fast_hands_over_while_the_slow_one_still_runs():
    r = Race(LADDER, D)
    r.start(0.0)
    r.on_headers(1, 0.1)
    r.on_tick(2.0)
    out = r.on_failure(2, "misconfigured: 401", 2.01)
    assert starts(out) == [("cache", "")]
    assert r.attempts[1].active


def test_stall_mid_stream_is_resumed_by_the_next_tier_with_the_partial_answer():
    r = Race(LADDER, D)
    r.start(0.0)
    r.on_token(1, "The RAV4", 0.5)
    r.on_token(1, " is", 0.6)
    assert r.next_deadline() == pytest.approx(3.6)
    out = r.on_tick(3.6)
    assert cancels(out) == ["onprem"]
    assert switches(out) == [("onprem", "openai")]
    assert starts(out) == [("openai", "The RAV4 is")]
    assert "stalled" in next(a.reason for a in out if isinstance(a, EmitSwitch))
    # Held until judged (one word can't tell going on from beginning again): the finish
    # passes it on.
    assert r.on_token(2, " great", 4.0) == []
    assert r.on_finish(2, 4.1) == [EmitText(2, "openai", " great"),
                                   Finish(("onprem", "openai"))]
    assert "".join(r.text) == "The RAV4 is great"
    assert r.stats.resumes == 1


def test_more_text_is_taken_as_a_token_only_from_the_attempt_answering():
    """on_text, the steady state's shortcut, takes exactly what on_token would emit."""
    r = Race(LADDER, D)
    r.start(0.0)
    assert not r.on_text(1, "first", 0.5), "the first token goes through on_token"
    r.on_token(1, "The RAV4", 0.5)
    assert r.on_text(1, " is", 0.6)
    assert not r.on_text(1, "", 0.65), "no text is no token"
    assert r.next_deadline() == pytest.approx(3.6), "it moves the gap deadline like a token"
    r.on_tick(3.6)   # stalled: openai resumes
    assert not r.on_text(1, " late", 3.7), "a cut attempt's text is not taken"
    assert not r.on_text(2, " great", 4.0), "a resume's words are judged first (on_token)"
    r.on_token(2, " great for towing and long trips with the whole family", 4.0)
    r.on_token(2, " too", 4.05)
    assert r.on_text(2, "!", 4.1), "once judged, the shortcut takes them"
    r.on_finish(2, 4.2)
    assert not r.on_text(2, " more", 4.3), "nothing after the finish"
    assert "".join(r.text) == "The RAV4 is great for towing and long trips with the whole family too!"


def test_drop_mid_stream_resumes_and_skips_the_cache_which_cannot_continue():
    r = Race(("onprem", "cache", "static"), D)
    r.start(0.0)
    r.on_token(1, "Part", 0.5)
    out = r.on_failure(1, "unavailable: connection reset", 0.7)
    assert starts(out) == [("static", "Part")]
    assert "dropped" in next(a.reason for a in out if isinstance(a, EmitSwitch))


def test_every_tier_failing_ends_on_static():
    r = Race(LADDER, D)
    r.start(0.0)
    r.on_failure(1, "unavailable: refused", 0.0)
    r.on_failure(2, "unavailable: refused", 0.0)
    out = r.on_failure(3, "unavailable: no cached answer", 0.0)
    assert starts(out) == [("static", "")]
    r.on_token(4, "Sorry", 0.0)
    assert r.on_finish(4, 0.0) == [Finish(("static",))]


def test_give_up_only_when_nothing_is_left():
    r = Race(("onprem",), D)
    r.start(0.0)
    assert r.on_failure(1, "unavailable", 0.1) == [GiveUp("every tier failed")]
    assert r.done


def test_a_stream_that_ends_without_text_counts_as_a_failure():
    r = Race(LADDER, D)
    r.start(0.0)
    out = r.on_finish(1, 0.2)
    assert starts(out) == [("openai", "")]


def test_tokens_after_the_finish_are_ignored_and_no_deadline_remains():
    r = Race(LADDER, D)
    r.start(0.0)
    r.on_token(1, "x", 0.1)
    r.on_finish(1, 0.2)
    assert r.on_token(1, "y", 0.3) == []
    assert r.next_deadline() is None


def test_a_tool_call_without_text_is_a_token():
    r = Race(LADDER, D)
    r.start(0.0)
    out = r.on_token(1, "", 0.1, payload={"tool_calls": [1]})
    assert isinstance(out[-1], EmitText) and r.winner is r.attempts[1]
    assert r.on_token(1, "", 0.2) == [], "an empty token with nothing attached is not a token"


def kinds(actions):
    return [a.kind for a in actions if isinstance(a, EmitSwitch)]


# Upstream error text can say anything, "stalled" and "headers" included: the label must
# come from what the race decided, never from the words.
WORDY = "unavailable: upstream said 'stalled waiting for headers; hedging disabled'"


@pytest.mark.parametrize(("events", "kind"), [
    (lambda r: r.on_failure(1, WORDY, 0.1), SwitchKind.FAILED),
    (lambda r: r.on_tick(1.0), SwitchKind.HEADERS_DEADLINE),
    (lambda r: (r.on_headers(1, 0.1), r.on_tick(2.0))[1], SwitchKind.HEDGE),
    (lambda r: (r.on_token(1, "Part", 0.5), r.on_tick(3.5))[1], SwitchKind.STALLED),
    (lambda r: (r.on_token(1, "Part", 0.5), r.on_failure(1, WORDY, 0.7))[1],
     SwitchKind.DROPPED),
])
def test_every_switch_carries_the_kind_the_race_decided(events, kind):
    r = Race(LADDER, D)
    r.start(0.0)
    assert kinds(events(r)) == [kind]


class Call:
    """A token's payload carrying tool calls, as the driver's Delta does."""

    def __init__(self, calls=None):
        self.tool_calls = calls


def test_a_resume_that_answers_anew_replaces_the_partial_answer():
    r = Race(LADDER, D)
    r.start(0.0)
    r.on_token(1, "The 2022 Tacoma is priced at", 0.5)
    out = r.on_failure(1, "unavailable: connection reset", 0.6)
    assert starts(out) == [("openai", "The 2022 Tacoma is priced at")]
    assert r.on_token(2, "Sure! That Tacoma from 2022", 0.9) == [], "held until judged"
    out = r.on_token(2, " costs $31,500 and it is priced to sell. ", 1.0)
    assert [type(a) for a in out] == [EmitRestart]
    assert out[0].text == "Sure! That Tacoma from 2022 costs $31,500 and it is priced to sell. "
    assert "".join(r.text) == out[0].text, "the answer is the new one alone"
    assert r.on_token(2, "Want a drive?", 1.1) == [EmitText(2, "openai", "Want a drive?")]
    assert r.stats.restarts == 1 and r.stats.resumes == 1


def test_a_resume_that_starts_again_word_for_word_passes_on_only_what_is_new():
    r = Race(LADDER, D)
    r.start(0.0)
    r.on_token(1, "We have two in stock.", 0.5)
    r.on_failure(1, "unavailable: connection reset", 0.6)
    assert r.on_token(2, "We have two", 0.9) == []
    assert r.on_token(2, " in stock. Both are", 1.0) == [EmitText(2, "openai", " Both are")]
    assert r.on_finish(2, 1.1) == [Finish(("onprem", "openai"))]
    assert "".join(r.text) == "We have two in stock. Both are"
    assert r.stats.trimmed == 1 and r.stats.restarts == 0


def test_an_answer_with_tool_calls_is_never_continued_it_begins_again():
    r = Race(LADDER, D)
    r.start(0.0)
    call = Call([{"index": 0, "function": {"name": "book", "arguments": '{"day": '}}])
    r.on_token(1, "", 0.5, call)
    out = r.on_failure(1, "unavailable: connection reset", 0.6)
    assert starts(out) == [("openai", "")], "a fresh start: no prefix to continue"
    again = Call([{"index": 0, "function": {"name": "book", "arguments": '{"day": "sat"}'}}])
    out = r.on_token(2, "", 0.9, again)
    assert [type(a) for a in out] == [EmitRestart] and out[0].payload is again
    assert r.on_finish(2, 1.0) == [Finish(("onprem", "openai"))]


def test_silence_after_the_finish_reason_is_no_stall():
    r = Race(LADDER, D)
    r.start(0.0)
    r.on_token(1, "Done.", 0.5)
    r.on_finish_reason(1)
    assert r.next_deadline() is None, "usage and the end may follow: nothing is due"
    assert r.on_tick(10.0) == []
    assert r.on_finish(1, 10.1) == [Finish(("onprem",))]
