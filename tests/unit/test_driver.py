"""The race carried out on the event loop with scripted providers."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import pytest

from gateway.config import Deadlines, IntentConfig
from gateway.errors import PrivacyViolation, TierMisconfigured, TierUnavailable
from gateway.providers.base import RESUME_INSTRUCTION, TierRequest
from gateway.providers.static import StaticProvider
from gateway.routing.driver import RaceResult, SwitchOut, TextOut, run_race
from gateway.routing.plan import RoutePlan
from tests.fakes import Observer, ScriptedProvider

D = Deadlines(headers_s=0.2, first_token_s=0.3, gap_s=0.3)
INTENT = IntentConfig(name="vehicle", ladder=("onprem", "openai", "static"), deadlines=D,
                      static_reply="static reply")
PRIVATE = IntentConfig(name="financing", ladder=("onprem", "static"), deadlines=D,
                       static_reply="call us", private=True)


def plan(ladder=("onprem", "openai", "static"), intent=INTENT):
    return RoutePlan(intent, tuple(ladder), D)


async def collect(p, providers, observer=None, intent=INTENT, slow_after=None):
    """The race's events; with `slow_after`, the client stops reading for twice the gap
    deadline after that many texts (a slow client: the scenario, not a wait)."""
    req = TierRequest(messages=[{"role": "user", "content": "hi"}], intent=intent)
    events = []
    async with aclosing(run_race(p, req, providers, observer or Observer())) as stream:
        async for ev in stream:
            events.append(ev)
            if isinstance(ev, TextOut) and len(events) == slow_after:
                await asyncio.sleep(D.gap_s * 2)
    return events


def text(events):
    return "".join(e.text for e in events if isinstance(e, TextOut))


async def test_connection_refused_goes_to_the_next_tier_at_once():
    onprem = ScriptedProvider("onprem", [("raise", TierUnavailable("refused"))])
    openai = ScriptedProvider("openai", [("headers",), ("text", "Hello")])
    obs = Observer()
    t0 = time.perf_counter()
    events = await collect(plan(), {"onprem": onprem, "openai": openai,
                                    "static": StaticProvider()}, obs)
    assert time.perf_counter() - t0 < D.first_token_s, "no deadline was waited for"
    result = events[-1]
    assert isinstance(result, RaceResult) and result.served_by == ["openai"]
    assert obs.failures == [("onprem", "unavailable")] and obs.successes == ["openai"]


@pytest.mark.parametrize("slow_wins", [True, False])
async def test_hedge_and_the_loser_is_cancelled(slow_wins):
    # onprem sends headers, then is silent past the first-token deadline.
    onprem = ScriptedProvider("onprem", [("headers",), ("sleep", 0.35 if slow_wins else 5),
                                         ("text", "on-prem")])
    openai = ScriptedProvider("openai", [("headers",), ("sleep", 5 if slow_wins else 0.01),
                                         ("text", "backup")])
    events = await collect(plan(), {"onprem": onprem, "openai": openai,
                                    "static": StaticProvider()})
    result = events[-1]
    assert isinstance(result, RaceResult)
    assert result.served_by == (["onprem"] if slow_wins else ["openai"])
    assert result.stats.hedges == [("onprem", "openai")]
    loser = openai if slow_wins else onprem
    assert loser.cancelled == 1 and loser.closed == 1
    assert any(isinstance(e, SwitchOut) and "hedging" in e.reason for e in events)


async def test_stall_mid_stream_is_resumed_by_the_next_tier():
    onprem = ScriptedProvider("onprem", [("headers",), ("text", "The RAV4"), ("hang",)])
    openai = ScriptedProvider("openai", [("headers",), ("text", " is great")])
    events = await collect(plan(), {"onprem": onprem, "openai": openai,
                                    "static": StaticProvider()})
    assert text(events) == "The RAV4 is great"
    assert events[-1].served_by == ["onprem", "openai"]
    switch = next(e for e in events if isinstance(e, SwitchOut))
    assert (switch.from_tier, switch.to_tier) == ("onprem", "openai")
    assert "stalled" in switch.reason
    sent = openai.requests[0].upstream_messages()
    assert sent[-2] == {"role": "assistant", "content": "The RAV4"}
    assert sent[-1]["content"] == RESUME_INSTRUCTION
    assert onprem.cancelled == 1


async def test_drop_mid_stream_is_resumed():
    onprem = ScriptedProvider("onprem", [("headers",), ("text", "Part one"),
                                         ("raise", TierUnavailable("connection reset"))])
    openai = ScriptedProvider("openai", [("headers",), ("text", ", part two")])
    events = await collect(plan(), {"onprem": onprem, "openai": openai,
                                    "static": StaticProvider()})
    assert text(events) == "Part one, part two"
    assert "dropped" in next(e for e in events if isinstance(e, SwitchOut)).reason


async def test_all_tiers_failing_serve_the_static_reply():
    onprem = ScriptedProvider("onprem", [("raise", TierMisconfigured("401"))])
    openai = ScriptedProvider("openai", [("raise", TierUnavailable("500"))])
    obs = Observer()
    events = await collect(plan(), {"onprem": onprem, "openai": openai,
                                    "static": StaticProvider()}, obs)
    assert text(events) == "static reply"
    assert events[-1].served_by == ["static"] and events[-1].complete
    assert obs.failures == [("onprem", "misconfigured"), ("openai", "unavailable")]


async def test_closing_the_stream_early_cancels_every_upstream():
    onprem = ScriptedProvider("onprem", [("headers",), ("text", "a"), ("hang",)])
    req = TierRequest(messages=[{"role": "user", "content": "hi"}], intent=INTENT)
    async with aclosing(run_race(plan(), req, {"onprem": onprem, "openai": onprem,
                                               "static": StaticProvider()}, Observer())) as s:
        async for ev in s:
            if isinstance(ev, TextOut):
                break  # the client went away
    assert onprem.cancelled == 1 and onprem.closed == 1


async def test_cancelling_the_caller_cancels_the_upstream():
    onprem = ScriptedProvider("onprem", [("headers",), ("hang",)])
    task = asyncio.ensure_future(collect(plan(("onprem", "static")),
                                         {"onprem": onprem, "static": StaticProvider()}))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert onprem.cancelled == 1


async def test_a_private_intent_is_refused_at_dispatch_even_if_the_ladder_names_openai():
    openai = ScriptedProvider("openai", [("headers",), ("text", "leak")])
    forced = RoutePlan(PRIVATE, ("openai", "static"), D)  # as if the planner were bypassed
    with pytest.raises(PrivacyViolation):
        await collect(forced, {"openai": openai, "static": StaticProvider()}, intent=PRIVATE)
    assert openai.requests == [], "nothing was sent"


async def test_a_provider_bug_costs_one_tier_not_the_turn():
    onprem = ScriptedProvider("onprem", [("raise", KeyError("bug"))])
    events = await collect(plan(("onprem", "static")),
                           {"onprem": onprem, "static": StaticProvider()})
    assert events[-1].served_by == ["static"]


def chunks(n, word="w", pause=0.002):
    """`n` text chunks with a pause before each, as a real upstream sends them."""
    return [step for _ in range(n) for step in (("sleep", pause), ("text", word))]


async def test_an_answer_streaming_alone_is_read_in_the_callers_task():
    # The fast path: once one attempt answers alone, no pump task and no queue per chunk.
    onprem = ScriptedProvider("onprem", [("headers",), *chunks(30), ("usage", 5, 30)])
    caller = asyncio.current_task()
    events = await collect(plan(), {"onprem": onprem, "openai": onprem,
                                    "static": StaticProvider()})
    assert text(events) == "w" * 30 and events[-1].complete
    assert events[-1].parts[0][1:3] == (5, 30)   # what came after the hand-back still counts
    in_caller = sum(1 for t in onprem.text_read_by if t is caller)
    assert in_caller >= 27, f"only {in_caller} of 30 chunks read without the pump"


async def test_a_stall_on_the_fast_path_is_resumed_and_closes_the_upstream():
    onprem = ScriptedProvider("onprem", [("headers",), *chunks(10, "a"), ("hang",)])
    openai = ScriptedProvider("openai", [("headers",), ("text", "b")])
    caller = asyncio.current_task()
    events = await collect(plan(), {"onprem": onprem, "openai": openai,
                                    "static": StaticProvider()})
    assert onprem.text_read_by[-1] is caller, "the stall happened on the fast path"
    assert text(events) == "a" * 10 + "b"
    assert events[-1].served_by == ["onprem", "openai"]
    assert "stalled" in next(e for e in events if isinstance(e, SwitchOut)).reason
    assert openai.requests[0].upstream_messages()[-2]["content"] == "a" * 10
    assert onprem.cancelled == 1 and onprem.closed == 1


async def test_a_drop_on_the_fast_path_is_resumed():
    onprem = ScriptedProvider("onprem", [("headers",), *chunks(10, "a"),
                                         ("raise", TierUnavailable("connection reset"))])
    openai = ScriptedProvider("openai", [("headers",), *chunks(10, "b")])
    events = await collect(plan(), {"onprem": onprem, "openai": openai,
                                    "static": StaticProvider()})
    assert text(events) == "a" * 10 + "b" * 10
    assert events[-1].served_by == ["onprem", "openai"] and events[-1].complete
    assert "dropped" in next(e for e in events if isinstance(e, SwitchOut)).reason


async def test_closing_early_on_the_fast_path_closes_the_upstream():
    onprem = ScriptedProvider("onprem", [("headers",), *chunks(30), ("hang",)])
    req = TierRequest(messages=[{"role": "user", "content": "hi"}], intent=INTENT)
    seen = 0
    async with aclosing(run_race(plan(), req, {"onprem": onprem, "openai": onprem,
                                               "static": StaticProvider()}, Observer())) as s:
        async for ev in s:
            seen += isinstance(ev, TextOut)
            if seen == 20:
                break  # the client went away mid-answer
    assert onprem.text_read_by[-1] is asyncio.current_task()
    assert onprem.closed == 1


async def test_cancelling_the_caller_on_the_fast_path_cancels_the_upstream():
    onprem = ScriptedProvider("onprem", [("headers",), *chunks(10), ("hang",)])
    task = asyncio.ensure_future(collect(plan(("onprem", "static")),
                                         {"onprem": onprem, "static": StaticProvider()}))
    await onprem.hanging.wait()   # all ten read, and waiting (the gap deadline is 0.3 s away)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert onprem.text_read_by[-1] is task
    assert onprem.cancelled == 1 and onprem.closed == 1


async def test_a_slow_client_on_the_fast_path_is_not_taken_for_a_stalled_upstream():
    """The client stops reading for longer than the gap deadline while the upstream goes on
    sending (buffered, so read without waiting): no stall, no switch, one tier."""
    onprem = ScriptedProvider("onprem", [("headers",), *chunks(5, "a"),
                                         *[("text", "b")] * 25, ("usage", 5, 30)])
    events = await collect(plan(), {"onprem": onprem, "openai": onprem,
                                    "static": StaticProvider()}, slow_after=5)
    assert onprem.text_read_by[5] is asyncio.current_task(), "on the fast path"
    assert text(events) == "a" * 5 + "b" * 25
    assert events[-1].served_by == ["onprem"] and events[-1].complete
    assert not any(isinstance(e, SwitchOut) for e in events)


async def test_an_upstream_silent_while_the_client_was_slow_is_cut_at_the_next_read():
    onprem = ScriptedProvider("onprem", [("headers",), *chunks(5, "a"), ("hang",)])
    openai = ScriptedProvider("openai", [("headers",), ("text", "b")])
    events = await collect(plan(), {"onprem": onprem, "openai": openai,
                                    "static": StaticProvider()}, slow_after=5)
    assert text(events) == "a" * 5 + "b"
    assert "stalled" in next(e for e in events if isinstance(e, SwitchOut)).reason
    assert onprem.cancelled == 1 and onprem.closed == 1
