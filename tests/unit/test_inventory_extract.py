"""Search filters read from customers' questions, on tests/data/inventory_questions.txt:
hand-labelled questions (the vocabulary is the shipped sample lot's)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from gateway.config import settings_from_dict
from gateway.inventory.extract import extract
from gateway.inventory.store import Filters
from tests.conftest import example_config

ROOT = Path(__file__).resolve().parents[2]
ROWS = list(csv.DictReader((ROOT / "gateway" / "data" / "inventory.csv").read_text()
                           .splitlines()))
VOCAB = {c: sorted({r[c] for r in ROWS}) for c in ("make", "model", "body_style", "fuel")}
LISTS = ("makes", "models", "body_styles", "fuels", "colors")
FIELDS = (*LISTS, "year_min", "year_max", "price_min", "price_max", "mileage_max", "condition")


def labelled() -> list[tuple[str, dict]]:
    out = []
    for line in (ROOT / "tests" / "data" / "inventory_questions.txt").read_text().splitlines():
        if line.startswith("#") or " =>" not in line:
            continue
        question, label = (part.strip() for part in line.split(" =>"))
        want: dict = {}
        for part in filter(None, (p.strip() for p in label.split(";"))):
            key, value = part.split("=", 1)
            want[key] = tuple(sorted(v.lower() for v in value.split("|"))) if key in LISTS \
                else (int(value) if value.isdigit() else value)
        out.append((question, want))
    return out


def normal(f: Filters) -> dict:
    got = f.as_dict()
    return {k: tuple(sorted(x.lower() for x in v)) if k in LISTS else v for k, v in got.items()}


def test_filters_from_150_questions(capsys):
    rows = labelled()
    assert len(rows) >= 150
    tp, fp, fn = Counter(), Counter(), Counter()
    exact = 0
    for question, want in rows:
        got = normal(extract([question], VOCAB))
        exact += got == want
        for field in FIELDS:
            w, g = want.get(field), got.get(field)
            if w is None and g is None:
                continue
            if w == g:
                tp[field] += 1
            else:
                fp[field] += g is not None
                fn[field] += w is not None
    accuracy = exact / len(rows)
    with capsys.disabled():
        print(f"\ninventory filters on {len(rows)} questions: exact {accuracy:.3f}; "
              "field precision recall support")
        for field in FIELDS:
            p = tp[field] / (tp[field] + fp[field]) if tp[field] + fp[field] else 1.0
            r = tp[field] / (tp[field] + fn[field]) if tp[field] + fn[field] else 1.0
            print(f"  {field:12} {p:.3f} {r:.3f} {tp[field] + fn[field]}")
    assert accuracy >= 0.95


def test_recent_turns_carry_the_model_and_config_adds_synonyms():
    turns = ["Do you have any RAV4 hybrids?", "what about in red?"]
    f = extract(turns, VOCAB)
    assert f.models == ("RAV4",) and f.fuels == ("hybrid",) and f.colors == ("red",)
    switched = extract([*turns, "and a Camry?"], VOCAB)
    assert switched.models == ("Camry",)
    settings = settings_from_dict(example_config(), {
        "ONPREM_API_KEY": "a", "OPENAI_API_KEY": "b", "SCOUT_API_KEYS": "t:0123456789abcdef"})
    synonyms = {p: (f, v) for p, f, v in settings.inventory.synonyms}
    assert extract(["Do you have family haulers?"], VOCAB, synonyms).body_styles == ("minivan",)


def test_what_the_conversation_asked_for_holds_past_a_few_turns():
    """Follow-ups that name nothing new ("those", "one") still ask of the same cars, however
    many came between; what a turn names replaces its own kind only."""
    turns = ["Do you have any used Toyota trucks?", "how many miles on those",
             "any of them with a tow package", "is there one under 35k?"]
    f = extract(turns, VOCAB)
    assert (f.makes, f.body_styles, f.condition, f.price_max) == \
        (("Toyota",), ("truck",), "used", 35000)
    other = extract([*turns, "and from Ford?"], VOCAB)
    assert (other.makes, other.body_styles, other.price_max) == (("Ford",), ("truck",), 35000)


def test_names_typed_with_letters_and_digits_apart_and_hyphens_as_spaces():
    assert extract(["got a cr v in stock?"], VOCAB).models == ("CR-V",)
    assert extract(["looking at an f 150 crew cab"], VOCAB).models == ("F-150",)
    assert extract(["is the ioniq5 any good"], VOCAB).models == ("Ioniq 5",)
    assert extract(["a rav 4 maybe"], VOCAB).models == ("RAV4",)
    assert extract(["something plug in, ideally"], VOCAB).fuels == ("plug-in hybrid",)
    # Digits beside words that are no model stay a number, not a name.
    assert extract(["4 doors and a big trunk"], VOCAB).models == ()


def test_a_make_the_lot_has_none_of_is_still_asked_for():
    f = extract(["Do you carry any Mazdas or Volvos?"], VOCAB)
    assert set(f.makes) == {"Mazda", "Volvo"}
    assert extract(["Any Mercedes-Benz?"], VOCAB).makes == ("Mercedes-Benz",)
    # The lot's own spelling of a make it has is kept.
    assert extract(["a Kia please"], VOCAB).makes == ("Kia",)
    # A make that is also an everyday word is not read into a question.
    assert extract(["a mini van for the kids"], VOCAB).makes == ()


def test_typos_are_read_as_the_name_one_edit_away_and_everyday_words_are_not():
    assert extract(["any hybirds under 30k?"], VOCAB).fuels == ("hybrid",)
    assert extract(["the Telluride, or a Sorrento"], VOCAB).models == ("Telluride", "Sorento")
    assert extract(["a Corola maybe"], VOCAB).models == ("Corolla",)
    assert extract(["a Camri maybe"], VOCAB).models == ()   # under six letters: too short
    assert extract(["we escaped early, any red trucks?"], VOCAB).models == ()
    assert extract(["schedule me for tomorrow morning"], VOCAB).as_dict() == {}


def test_a_name_the_customer_does_not_want_is_left_out():
    assert extract(["a hybrid, but not a plug-in"], VOCAB).fuels == ("hybrid",)
    assert extract(["SUVs without diesel"], VOCAB).fuels == ()
    assert extract(["I don't want a truck, show me sedans"], VOCAB).body_styles == ("sedan",)
    assert extract(["sin diesel, una camioneta pickup"], VOCAB).as_dict() == {
        "body_styles": ("truck",)}


def test_ceilings_floors_and_years_read_as_said():
    f = extract(["no more than $22,500 for a Civic"], VOCAB)
    assert (f.price_min, f.price_max) == (None, 22500)
    assert extract(["a Camry, 31k tops"], VOCAB).price_max == 31000
    assert extract(["una minivan que no exceda de 36 mil"], VOCAB).price_max == 36000
    assert extract(["un eléctrico de más de 40 mil"], VOCAB).price_min == 40000
    assert extract(["under 2020 miles is fine, any Rogue"], VOCAB).price_max is None
    assert extract(["a Rogue newer than 2020"], VOCAB).year_min == 2021
    assert extract(["an Accord from before 2019"], VOCAB).year_max == 2018
    assert extract(["un Civic 2021 o más nuevo"], VOCAB).year_min == 2021
    assert extract(["mi hermana vive en Nuevo León"], VOCAB).condition is None


def test_a_model_the_lot_has_none_of_is_asked_for_by_name():
    assert extract(["got a Cybertruck?"], VOCAB).models == ("Cybertruck",)
    assert extract(["any 4Runners left"], VOCAB).models == ("4Runner",)
    # Known models are named whole: no "Eclipse" for the Eclipse Cross.
    assert extract(["we watched the eclipse from the lot"], VOCAB).models == ()
