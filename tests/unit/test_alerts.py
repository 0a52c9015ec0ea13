"""Alerts that fire at a dealership's traffic, with the defaults of config/scout.yaml.

About 10k questions a month is ~14 an hour. With the GPU box answering nothing, the
fallback-rate alert must fire within 15 minutes; a misconfigured tier alerts at once.
Time is a fake clock: the test drives turns and monitor ticks minute by minute.
"""

from __future__ import annotations

from typing import Any

from gateway.config import load_settings
from gateway.health.monitor import HealthMonitor
from gateway.state.kv import MemoryKV
from gateway.stats import Stats, day_key
from tests.conftest import ROOT

ENV = {"ONPREM_API_KEY": "a", "OPENAI_API_KEY": "b", "SCOUT_API_KEYS": "t:0123456789abcdef"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def monitor() -> tuple[HealthMonitor, Stats, Clock, list[dict[str, Any]]]:
    settings = load_settings(ROOT / "config" / "scout.yaml", ENV)
    clock = Clock()
    kv = MemoryKV(max_keys=1000)
    stats = Stats(kv, "p1", clock=clock)
    m = HealthMonitor(settings, kv, stats, clock=clock)
    told: list[dict[str, Any]] = []
    m.on_change.append(told.append)   # what the webhook would post
    return m, stats, clock, told


async def test_the_fallback_alert_fires_within_15_minutes_at_14_questions_an_hour():
    m, stats, clock, told = monitor()
    gap_s = 3600 / 14
    outage_at = clock.now
    fired_at = None
    next_turn = outage_at + gap_s * 0.999   # the worst case: the first question comes late
    while clock.now < outage_at + 3600 and fired_at is None:
        clock.now += 60
        while next_turn <= clock.now:
            stats.record_turn(["openai"], 300.0, counts_for_fallback=True, cost_usd=0.0001,
                              openai_equivalent_usd=0.0001, cache=None)
            next_turn += gap_s
        await stats.flush()
        await m.fallback.check()
        if m.alerting:
            fired_at = clock.now
    assert fired_at is not None, "the alert never fired"
    minutes = (fired_at - outage_at) / 60
    print(f"\nfallback alert fired {minutes:.0f} min after on-prem stopped answering")
    assert minutes <= 15
    assert any(e["kind"] == "fallback_alert" for e in told)


async def test_a_quiet_normal_hour_does_not_alert():
    m, stats, clock, _ = monitor()
    for minute in range(60):
        clock.now += 60
        if minute % 4 == 0:
            stats.record_turn(["onprem"], 300.0, counts_for_fallback=True, cost_usd=0.0,
                              openai_equivalent_usd=0.0001, cache=None)
        if minute == 30:   # one fallback among fifteen answers
            stats.record_turn(["openai"], 300.0, counts_for_fallback=True, cost_usd=0.0001,
                              openai_equivalent_usd=0.0001, cache=None)
        await stats.flush()
        await m.fallback.check()
        assert not m.alerting


async def test_a_misconfigured_tier_alerts_at_once():
    m, _, _, told = monitor()
    m.observe_failure("openai", "no_credit", "OpenAI is out of credit (429 insufficient_quota)")
    assert m.state("openai").state == "misconfigured"
    assert told and told[-1]["tier"] == "openai" and told[-1]["to"] == "misconfigured"
    assert "out of credit" in told[-1]["reason"]


async def test_spend_is_counted_on_the_utc_day_each_answer_was_given():
    _, stats, clock, _ = monitor()
    clock.now = 1_800_057_599.0   # 23:59:59 UTC
    stats.record_turn(["openai"], 300.0, counts_for_fallback=True, cost_usd=0.001,
                      openai_equivalent_usd=0.001, cache=None)
    assert (await stats.today())["req"] == 1
    clock.now += 2                 # past midnight: a new day, counted from nothing
    assert "req" not in await stats.today()
    stats.record_turn(["onprem"], 100.0, counts_for_fallback=True, cost_usd=0.0,
                      openai_equivalent_usd=0.001, cache=None)
    await stats.flush()
    assert (await stats.today())["req"] == 1
    days = await stats.kv.hash_all([day_key("2027-01-15"), day_key("2027-01-16")])
    assert [d.get("req") for d in days] == [1, 1]
