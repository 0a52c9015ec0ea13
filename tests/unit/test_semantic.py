"""The privacy model reads paraphrases the keyword rules miss; look-alikes the rules used
to take as private are blanked before they read; a stock question reaches the inventory
tier whatever its intent."""

from __future__ import annotations

from gateway.language.intents import IntentClassifier
from gateway.language.semantic import PrivacyModel, clauses, shipped_model
from gateway.routing.plan import plan_route
from tests.unit.test_routing import S
from tests.unit.test_routing import up as healthy

RULES = IntentClassifier(S.intents.values(), S.default_intent)
FULL = IntentClassifier.for_settings(S)


def test_a_paraphrase_the_rules_miss_is_private_through_the_model():
    for text in ("money's been tight since my hours got cut, what's the smallest I'd owe each time",
                 "the bank said no to me last month"):
        assert not RULES.classify(text).private, text     # the keywords alone miss it
        assert FULL.classify(text).private, text
        assert FULL.private_turn([{"role": "user", "content": "hi"},
                                  {"role": "user", "content": text}]) is not None


def test_the_model_leaves_ordinary_questions_alone():
    for text in ("do you have white pickups", "what time do you close on Saturday",
                 "is the truck CARB approved", "does the EV get the federal tax credit"):
        assert not FULL.classify(text).private, text


def test_look_alikes_are_blanked_before_the_rules_read():
    assert not RULES.classify("can I get a referral credit for my cousin").private
    assert not RULES.classify("is the Prius HOV approved").private
    assert RULES.classify("will my credit get me approved for a loan").private


def test_the_threshold_and_margin_fail_closed():
    model = shipped_model("", 0.05, 0.01)
    text = "how much will I be shelling out every month for the Rogue"
    score = model.score(text)
    strict = PrivacyModel(model.private_examples, model.public_examples,
                          threshold=score + 0.005, margin=0.0)
    doubtful = PrivacyModel(model.private_examples, model.public_examples,
                            threshold=score + 0.005, margin=0.01)
    assert not strict.is_private(text) and doubtful.is_private(text)


def test_staff_examples_extend_the_shipped_ones(tmp_path):
    extra = tmp_path / "ours.yaml"
    extra.write_text("private:\n  - the Rogue's monthly damage for me\npublic: []\n")
    base = shipped_model()
    more = PrivacyModel.shipped(extra)
    assert len(more.private_examples) == len(base.private_examples) + 1
    assert more.score("what's the monthly damage on the Rogue for me") > \
        base.score("what's the monthly damage on the Rogue for me")


def test_clauses_split_a_turn_where_ideas_join():
    assert clauses("is the red one there? also I owe 9k on my trade") == [
        "is the red one there also I owe k on my trade", "is the red one there",
        "I owe k on my trade"]
    # A clause is two words or more once digits are gone: "number 39" alone is not one.
    assert clauses("recommend a sedan, number 39") == ["recommend a sedan number",
                                                      "recommend a sedan"]


def test_a_stock_question_reaches_the_inventory_tier_whatever_intent_it_lands_in():
    without = [name for name, i in S.intents.items() if "inventory" not in i.ladder]
    assert "default" in without and "vehicle.recommendation" in without   # the test can fail
    for name in S.intents:
        intent = S.intents[name]
        plan = plan_route(intent, enabled=tuple(S.enabled_tiers()), health=healthy,
                          stock_tier="inventory")
        assert "inventory" in plan.ladder, name
        if name in without:   # after every model of the ladder, before the last resort
            assert plan.ladder[-2:] == ("inventory", "static"), (name, plan.ladder)
        plain = plan_route(intent, enabled=tuple(S.enabled_tiers()), health=healthy)
        assert ("inventory" in plain.ladder) == (name not in without), name


def test_punctuation_and_digits_do_not_turn_a_car_question_into_money():
    for tag in ("q1", "q4", "(q4)", "#22", "!!"):
        text = f"Which hybrid SUV would you recommend for a family of five? {tag}"
        assert not FULL.classify(text).private, text
    assert not any(FULL.classify(f"recommend a car {n}").private for n in range(200))
    assert not any(FULL.classify(f"recommend a sedan, number {n}").private for n in range(100))


def test_the_gateways_own_resume_text_is_skipped_whatever_the_content_shape():
    ours = frozenset({"Continue exactly where you stopped."})
    parts = [{"type": "text", "text": "the bank said no to me last month"}]
    assert FULL.private_turn([{"role": "user", "content": parts}], ours) is not None
    assert FULL.private_turn([{"role": "user", "content": "Continue exactly where you stopped."},
                              {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                             ours) is None
