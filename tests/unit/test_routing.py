"""Intent rules and route planning: pure tables."""

from __future__ import annotations

import pytest

from gateway.config import load_settings
from gateway.errors import PrivacyViolation
from gateway.routing.intents import IntentClassifier
from gateway.routing.plan import TierHealth, check_private, plan_route
from tests.conftest import ROOT

S = load_settings(ROOT / "config" / "scout.yaml", {"ONPREM_API_KEY": "a", "OPENAI_API_KEY": "b",
                                                   "SCOUT_API_KEYS": "t:0123456789abcdef"})
C = IntentClassifier(S.intents.values(), S.default_intent)
ALL = ("onprem", "openai", "cache", "static")


@pytest.mark.parametrize(("message", "intent"), [
    ("Which SUV would you recommend for a family of five?", "vehicle.recommendation"),
    ("I'm looking for a hybrid with good mpg for my commute", "vehicle.recommendation"),
    ("Do you have the 2023 Camry in stock in red?", "inventory.search"),
    ("How many F-150s are left on the lot?", "inventory.search"),
    ("Can I book a test drive on Saturday at 10am?", "scheduling"),
    ("What APR could I get with a 680 credit score?", "financing"),
    ("What would my monthly payment be on that SUV?", "financing"),   # private wins ties
    ("Hi there!", "general.greeting"),
    ("HELLO", "general.greeting"),
    ("What's the meaning of life?", "default"),
    ("", "default"),
    ("hybridization of evs", "default"),  # keywords match whole words only
])
def test_classify(message, intent):
    assert C.classify(message).name == intent


def up(tier: str) -> TierHealth:
    return TierHealth("up")


def test_static_is_always_last_and_always_there():
    p = plan_route(S.intents["scheduling"], enabled=ALL, health=up)
    assert p.ladder == ("onprem", "openai", "static")


def test_down_and_misconfigured_tiers_are_skipped_with_reasons():
    health = {"onprem": TierHealth("down", "refused"), "openai": TierHealth("misconfigured", "401")}
    p = plan_route(S.intents["vehicle.recommendation"], enabled=ALL,
                   health=lambda t: health.get(t, TierHealth("up")))
    assert p.ladder == ("cache", "static")
    assert p.skipped == (("onprem", "down: refused"), ("openai", "misconfigured: 401"))


@pytest.mark.parametrize("state", ["up", "busy", "loading", "unknown"])
def test_other_states_are_still_tried(state):
    p = plan_route(S.intents["default"], enabled=ALL, health=lambda t: TierHealth(state))
    assert p.ladder[0] == "onprem"


def test_pin_forces_one_tier_with_static_behind_it():
    p = plan_route(S.intents["default"], enabled=ALL, health=up, pin="openai")
    assert p.ladder == ("openai", "static")


def test_pin_never_takes_a_private_intent_off_site():
    p = plan_route(S.intents["financing"], enabled=ALL, health=up, pin="openai")
    assert p.ladder == ("onprem", "static")


def test_tools_keep_only_tool_capable_tiers():
    p = plan_route(S.intents["default"], enabled=ALL, health=up,
                   tool_tiers=frozenset({"openai"}))
    assert p.ladder == ("openai", "static")
    assert ("onprem", "cannot serve requests with tools") in p.skipped


def test_disabled_tiers_are_left_out():
    p = plan_route(S.intents["default"], enabled=("onprem", "cache", "static"), health=up)
    assert p.ladder == ("onprem", "cache", "static")


def test_check_private_refuses_openai_for_a_private_intent():
    with pytest.raises(PrivacyViolation):
        check_private(S.intents["financing"], ["openai"])
    check_private(S.intents["default"], ["openai"])
