"""Floors for `python -m bench.language`: the figures measured on the shared labelled
set (../shared/eval, written by others) and on the project's own, held so that a change
that makes the judgements worse fails. The floors are what was measured, not 1.000; the
gaps to the goals are in docs/privacy.md and docs/inventory.md."""

from __future__ import annotations

import asyncio

import pytest

from bench.language import OWN, SHARED, evaluate


def share(pair: tuple[int, int]) -> float:
    return pair[0] / pair[1]


@pytest.fixture(scope="module")
def shared():
    if not (SHARED / "privacy_topics.jsonl").exists():
        pytest.skip(f"the shared labelled set is not on this machine ({SHARED})")
    return asyncio.run(evaluate(SHARED, own=False))


def test_private_conversations_on_the_shared_set(shared):
    figures = shared["privacy"]["figures"]["all"]
    assert share(figures["recall"]) >= 0.975
    assert share(figures["false_positives"]) <= 0.08
    assert share(figures["kept_onsite_private"]) == 1.0   # the shipped config keeps them all


def test_personal_data_on_the_shared_set(shared):
    per_type = shared["pii"]["per_type"]
    for kind in ("SSN", "CARD", "PHONE", "EMAIL", "DOB", "BANK_ACCOUNT", "ROUTING",
                 "ADDRESS", "DL", "PLATE", "VIN"):
        assert share(per_type[kind]["recall"]) >= 0.95, kind
    assert share(per_type["NAME"]["recall"]) >= 0.93
    assert share(per_type["NAME"]["precision"]) >= 0.95
    assert share(shared["pii"]["keep"]) >= 0.99


def test_stock_questions_on_the_shared_set(shared):
    assert shared["inventory"]["exact"][0] >= 60
    assert shared["inventory"]["reach_inventory"][0] >= 60


def test_the_own_sets():
    own = asyncio.run(evaluate(OWN, own=True))
    privacy = own["privacy"]["figures"]["all"]
    assert share(privacy["recall"]) >= 0.9
    assert share(privacy["false_positives"]) <= 0.0
    names = own["pii"]["per_type"]["NAME"]
    assert share(names["recall"]) >= 0.95 and share(names["precision"]) >= 0.95
    assert share(own["pii"]["keep"]) >= 0.99
