"""Personal data: patterns, placeholders, restoring, and precision/recall on a labelled set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.security.pii import Redactor, Restorer, find, luhn_ok, vin_ok

DATA = Path(__file__).resolve().parents[1] / "data" / "pii_messages.jsonl"


@pytest.mark.parametrize(("text", "kinds"), [
    ("call (555) 201-3344", ["PHONE"]), ("call 555-201-3344", ["PHONE"]),
    ("+1 555 201 3344", ["PHONE"]), ("5552013344", ["PHONE"]),
    ("mail a.b+c@mail.example.org now", ["EMAIL"]),
    ("card 4111 1111 1111 1111", ["CARD"]), ("card 4111 1111 1111 1112", []),  # Luhn fails
    ("SSN 123-45-6789", ["SSN"]), ("ssn: 123456789", ["SSN"]),
    ("000-12-3456", []), ("666-12-3456", []), ("123-00-4567", []),
    ("my driver's license is D1234567", ["DL"]), ("DL # S123-4567-8901", ["DL"]),
    ("the DL is great", []),
    ("my VIN is 1HGCM82633A004352", ["VIN"]),
    ("is VIN 1HGCM82633A004352 still for sale?", []),     # the dealership's own lot
    ("my VIN is 1HGCM82633A004353", []),                  # bad check digit
    ("$32,999 for the 2024 RAV4 with 12,000 miles", []),
    ("stock STK-48213, listing #4432198", []),
])
def test_find(text, kinds):
    assert [f.kind for f in find(text)] == kinds


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert vin_ok("1M8GDM9AXKP042788") and not vin_ok("1M8GDM9AXKP042789")
    assert not vin_ok("IHGCM82633A004352"), "I, O and Q never appear in a VIN"


def test_same_value_same_placeholder_and_restoring_across_chunks():
    r = Redactor()
    a = r.redact("call 555-201-3344 or 555-201-3344, or mail x@example.com")
    assert a == "call [PHONE_1] or [PHONE_1], or mail [EMAIL_1]"
    assert r.redact("again 555-201-3344, new 555-999-0000") == "again [PHONE_1], new [PHONE_2]"
    rs = Restorer(r.values)
    pieces = ["I'll call [PH", "ONE_1", "] and [PHONE_2] and write to [EMAIL_", "1]."]
    out = "".join(rs.feed(p) for p in pieces) + rs.flush()
    assert out == "I'll call 555-201-3344 and 555-999-0000 and write to x@example.com."
    rs = Restorer(r.values)
    assert rs.feed("an [UNKNOWN_9] and a lone [") + rs.flush() == "an [UNKNOWN_9] and a lone ["


def test_precision_and_recall_on_the_labelled_set(capsys):
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    assert len(rows) >= 200
    tp = fp = fn = 0
    per_kind: dict[str, list[int]] = {}
    for row in rows:
        want = [(e["kind"], e["value"]) for e in row["entities"]]
        got = [(f.kind, f.value) for f in find(row["text"])]
        for item in got:
            k = per_kind.setdefault(item[0], [0, 0, 0])
            if item in want:
                tp += 1
                k[0] += 1
                want.remove(item)
            else:
                fp += 1
                k[1] += 1
        for kind, _ in want:
            fn += 1
            per_kind.setdefault(kind, [0, 0, 0])[2] += 1
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    with capsys.disabled():
        print(f"\nPII on {len(rows)} messages: precision {precision:.3f}, recall {recall:.3f} "
              f"(tp {tp}, fp {fp}, fn {fn}); by kind (tp, fp, fn): {per_kind}")
    assert precision >= 0.95 and recall >= 0.95


def test_only_the_kinds_switched_on_are_redacted():
    text = "I'm Maria Gonzalez, call (512) 555-0143 or maria@example.com"
    only_phone = Redactor(frozenset({"PHONE"}))
    assert only_phone.redact(text) == "I'm Maria Gonzalez, call [PHONE_1] or maria@example.com"
    assert only_phone.counts() == {"PHONE": 1}
    everything = Redactor()
    assert everything.redact(text) == "I'm [NAME_1], call [PHONE_1] or [EMAIL_1]"


def test_the_gateways_own_system_prompt_is_not_scanned():
    from gateway.security.pii import redact_messages
    prompt = "You are Scout. Call (555) 010-2000 for a salesperson."
    r = Redactor()
    out = redact_messages([{"role": "system", "content": prompt},
                           {"role": "user", "content": "text me at 512-555-0143"}], r,
                          frozenset({prompt}))
    assert out[0]["content"] == prompt and out[1]["content"] == "text me at [PHONE_1]"
    assert r.counts() == {"PHONE": 1}


@pytest.mark.parametrize(("text", "name"), [
    # A title or a label says a name follows, whatever its case.
    ("please ask for mrs. okafor-reyes at the desk", "okafor-reyes"),
    ("co-signer: Whitfield, Margaret", "Whitfield, Margaret"),
    ("the title should be in the name of Odalys Quintero", "Odalys Quintero"),
    # A sign-off, alone on its line or after a dash.
    ("See you Saturday.\nRegards,\nTobias Kettering", "Tobias Kettering"),
    ("what time do you open? -Rhiannon Velasquez", "Rhiannon Velasquez"),
    # Family name first, as Vietnamese names are written.
    ("this is Vo Thanh Tung about the Tucson", "Vo Thanh Tung"),
    # Prefixed surnames.
    ("I'm Siobhan McAllister, calling back", "Siobhan McAllister"),
])
def test_names_as_people_write_them(text, name):
    assert [f.value for f in find(text) if f.kind == "NAME"] == [name]


@pytest.mark.parametrize("text", [
    "Do You Have The Camry In Stock",          # shouting is not a name
    "is the Le Mans Blue one still there?",    # a colour, not a person
    "Best regards, and thanks for the quick reply",
    "send it to 12 Oak Ct Apt 4 please",       # an address, not a name
])
def test_words_that_are_not_names(text):
    assert [f.value for f in find(text) if f.kind == "NAME"] == []
