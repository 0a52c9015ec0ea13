"""Intent rules and route planning: pure tables."""

from __future__ import annotations

import pytest

from gateway.config import load_settings
from gateway.errors import PrivacyViolation
from gateway.health.states import State, TierHealth
from gateway.language.intents import KEEP_CHARS, IntentClassifier, remembered
from gateway.routing.plan import check_offsite, plan_route
from tests.conftest import ROOT

S = load_settings(ROOT / "config" / "scout.yaml", {"ONPREM_API_KEY": "a", "OPENAI_API_KEY": "b",
                                                   "SCOUT_API_KEYS": "t:0123456789abcdef"})
C = IntentClassifier(S.intents.values(), S.default_intent)
ALL = ("onprem", "openai", "inventory", "cache", "static")


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


@pytest.mark.parametrize("state", [s for s in State if s not in {"down", "misconfigured"}])
def test_other_states_are_still_tried(state):
    p = plan_route(S.intents["default"], enabled=ALL, health=lambda t: TierHealth(state))
    assert p.ladder[0] == "onprem"


def test_pin_forces_one_tier_with_static_behind_it():
    p = plan_route(S.intents["vehicle.recommendation"], enabled=ALL, health=up, pin="openai")
    assert p.ladder == ("openai", "static")


def test_pin_never_takes_a_private_intent_off_site():
    p = plan_route(S.intents["financing"], enabled=ALL, health=up, pin="openai")
    assert p.ladder == ("onprem", "static")


def test_tools_keep_only_tool_capable_tiers():
    p = plan_route(S.intents["vehicle.recommendation"], enabled=ALL, health=up,
                   tool_tiers=frozenset({"openai"}))
    assert p.ladder == ("openai", "static")
    assert ("onprem", "cannot serve requests with tools") in p.skipped


def test_disabled_tiers_are_left_out():
    p = plan_route(S.intents["default"], enabled=("onprem", "cache", "static"), health=up)
    assert p.ladder == ("onprem", "cache", "static")


def test_check_offsite_refuses_openai_for_an_on_site_only_turn():
    with pytest.raises(PrivacyViolation):
        check_offsite("financing", "never", ["openai"])
    check_offsite("vehicle.recommendation", "redacted", ["openai"])


def test_an_earlier_private_turn_keeps_the_whole_conversation_on_site():
    history = [{"role": "user", "content": "My credit score is 640 and I make $85,000 a year, "
                                           "can I finance the Tacoma?"},
               {"role": "assistant", "content": "Let me check with our finance team."},
               {"role": "user", "content": "Which trims come in blue?"}]
    assert not C.classify("Which trims come in blue?").private
    private = C.private_turn(history)
    assert private is not None and private.name == "financing"
    p = plan_route(S.intents["vehicle.recommendation"], enabled=ALL, health=up,
                   private_turn=private)
    assert "openai" not in p.ladder and p.policy == "never"
    assert ("openai", "private conversation: an earlier turn is financing") in p.skipped
    # Pinning can't take it off-site either.
    p = plan_route(S.intents["vehicle.recommendation"], enabled=ALL, health=up, pin="openai",
                   private_turn=private)
    assert "openai" not in p.ladder


@pytest.mark.parametrize("message", [
    "What would my monthly be on the Camry?", "Can I get approved with a 580 score?",
    "How much down do I need?", "I still owe 12k on my Civic, what's the payoff look like?",
    "Is 0% APR available on the RAV4?", "We make about $60,000, what can we afford?",
    "¿Cuánto de enganche necesito?", "cuanto seria la mensualidad del Corolla",
    "I was born in 1990, do I qualify?", "can my dad co-sign?",
    "would we even qualify on one salary?", "can you qualify me before Friday?",
])
def test_money_credit_and_identity_questions_are_private(message):
    assert C.classify(message).private, message


@pytest.mark.parametrize("message", [
    "How much is the 2019 model?", "call me after 5", "my budget is flexible",
    "Is stock STK-48213 still available?", "What's the price of the Camry SE?",
    "What's the IIHS safety rating of the Highlander?", "Is the RAV4 Prime a plug-in?",
    # a car qualifying, somebody else's purchase, a bill paid at the counter, a reward
    "Does the Prius Prime qualify for the carpool lane sticker?",
    "My aunt financed her Highlander with you last spring. Any coming in?",
    "Is there a payment window in the service lane?",
    "what credit do I get for my two referrals?",
])
def test_ordinary_questions_about_cars_and_prices_are_not(message):
    assert not C.classify(message).private, message


@pytest.mark.parametrize("message", [
    "what about fınancing for the tacoma",        # a dotless ı: Turkish keyboards
    "WHAT ABOUT FİNANCİNG FOR THE TACOMA",        # a dotted capital İ
    "any \u212aind of lease deal on the tacoma",   # the Kelvin sign K, as some tools type it
])
def test_a_private_keyword_typed_with_letters_that_ignorecase_pairs_is_still_private(message):
    """The keyword regexes match case-insensitively by Unicode's rules, where "ı" and "İ"
    pair with "i": no shortcut in front of them may skip such a text."""
    assert C.classify(message).private, message


def test_a_text_is_read_once_unless_it_is_too_long_to_keep():
    reads: list[str] = []

    def read(text: str) -> int:
        reads.append(text)
        return len(text)

    lookup = remembered(read, maxsize=8)
    short, long = "any red trucks?", "x" * (KEEP_CHARS + 1)
    assert [lookup(short), lookup(short), lookup(long), lookup(long)] == [15, 15, len(long),
                                                                          len(long)]
    assert reads == [short, long, long], "a long text (a caller's 32 KiB each time) is not kept"
