"""From what a customer wrote to search filters: make, model, body style, fuel, colour, year
range, price ceiling or floor, mileage ceiling, new or used. Pure.

The vocabulary is data: the makes, models, body styles, fuels and colours come from the
inventory itself (so a model the lot starts selling is understood at once), plus a small
list of synonyms ("hybrid", "EV", "plug-in", "SUV", "crossover", "pickup"), extendable in
`inventory.synonyms`. Amounts ("$35k", "35,000", "35 grand") are read by one function.
Recent turns count: "what about in red?" keeps the model asked about before.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial

from rapidfuzz.distance import OSA
from rapidfuzz.process import extractOne

from gateway.inventory.store import Filters
from gateway.inventory.vocabulary import (
    COLOR_ES,
    COLOR_WORDS,
    DRIVETRAINS,
    KNOWN_MAKES,
    KNOWN_MODELS,
    SYNONYMS,
)
from gateway.language.literals import Prechecked

YEAR = r"(19[89]\d|20[0-4]\d)"
DIGIT = re.compile(r"\d")
AMOUNT = r"\$?\s?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s?(k|K|grand|thousand|mil)?"
NOT_MILES = r"(?!\s?(?:mi\b|miles|millas|mileage))"
_DRIVETRAIN = re.compile(r"(?<![\w-])(" + "|".join(re.escape(k) for k in
                         sorted(DRIVETRAINS, key=len, reverse=True)) + r")(?![\w-])", re.I)


def _rule(pattern: str, flags: int = re.I) -> Prechecked:
    """Each rule behind its pre-check: most questions lack the words it needs."""
    return Prechecked(re.compile(pattern, flags))


# Ceilings and floors, said before the amount ("no more than $18,500", "hasta 30 mil") or after
# it ("$25k or less", "30k tops"). A floor's words inside a ceiling's ("no more than") are
# not a floor.
CEILING = (r"under|below|less than|(?:no|not) more than|no higher than|not over|"
           r"max(?:imum)?(?: of)?|up to|at most|tops|capped at|cheaper than|within|"
           r"budget(?: is| of)?|cheaper\b.{0,30}?\bthan|"
           r"menos de|hasta|no mas de|maximo|a lo mucho|por debajo de|"
           r"(?:que )?no (?:pase|pasen|supere|superen|exceda|excedan) (?:de|los)")
PRICE_MAX = _rule(rf"\b(?:{CEILING})\s+{AMOUNT}{NOT_MILES}")
PRICE_MAX_AFTER = _rule(rf"{AMOUNT}\s?(?:dollars|dolares|bucks|usd)?\s+(?:or\s+(?:less|under|"
                        rf"below|cheaper)|max(?:imum)?\b|tops\b|at most|o\s+menos|"
                        rf"(?:como\s+)?maximo)")
PRICE_MIN = _rule(rf"(?<!no )(?<!not )\b(?:over|above|more than|at least|starting at|from|"
                  rf"mas de|arriba de|minimo)\s+{AMOUNT}{NOT_MILES}")
PRICE_AROUND = _rule(rf"\b(?:around|about|roughly|near|~|alrededor de)\s+{AMOUNT}"
                     rf"{NOT_MILES}")
MILES_MAX = _rule(rf"\b(?:under|below|less than|fewer than|(?:no|not) more than|"
                  rf"max(?:imum)?|up to|at most|menos de|no mas de|maximo)\s+{AMOUNT}\s?"
                  rf"(?:mi\b|miles|mileage|millas)"
                  rf"|{AMOUNT}\s?(?:mi\b|miles|millas)\s+(?:or\s+(?:less|fewer|under|below)|"
                  rf"max(?:imum)?|tops|o\s+menos)")
PRICE_RANGE = _rule(rf"\b(?:between|from|entre|de|desde)\s+{AMOUNT}\s*(?:and|to|-|–|y|a|"
                    rf"hasta)\s*{AMOUNT}{NOT_MILES}")
MILES_MAX_2 = _rule(rf"\b(?:low miles|low mileage|pocas millas)\b|"
                    rf"\bmileage\s+(?:under|below)\s+{AMOUNT}")
YEAR_RANGE = _rule(rf"\b(?:between\s+)?{YEAR}\s*(?:-|–|to|through|and)\s*{YEAR}\b", 0)
# A year as the first one allowed ("2021 or newer"), the one after the first ("newer than
# 2021"), the last one allowed ("2019 or older") or the one before the last ("before 2019").
YEAR_MIN = _rule(rf"\b(?:{YEAR}\s+or\s+(?:newer|later|up)|{YEAR}\s+(?:en adelante|o (?:mas )?"
                 rf"nuevos?|para arriba|o posterior)|(?:from|since|desde(?: el)?)\s+{YEAR}"
                 rf"\s+(?:on|onwards?|and up|en adelante)\b|(?:since|desde(?: el)?)\s+{YEAR}|"
                 rf"{YEAR}\s*\+)")
YEAR_AFTER = _rule(rf"\b(?:newer than|after|later than|mas nuevos? que|posterior(?:es)? al?|"
                   rf"despues del?)\s+{YEAR}")
YEAR_MAX = _rule(rf"\b(?:{YEAR}\s+or\s+(?:older|earlier)|{YEAR}\s+o\s+(?:mas\s+)?"
                 rf"(?:viejos?|antiguos?|anteriores?))")
YEAR_BEFORE = _rule(rf"\b(?:older than|before|earlier than|antes del?|anterior(?:es)? al?|"
                    rf"mas viejos? que)\s+{YEAR}")
YEAR_ONE = _rule(rf"\b{YEAR}\b", 0)
# Not "new customers", nor a place: New York, Nuevo León.
NEW = _rule(r"\b(?:brand[- ]new|new|nuev[oa]s?|0 ?km)\b(?!\s+(?:one|ones|to|customers?|york|"
            r"jersey|mexico|hampshire|orleans|leon|laredo)\b)")
USED = _rule(r"\b(?:used|pre-?owned|certified|second[- ]hand|usad[oa]s?|seminuev[oa]s?)\b")
# A name said as what the customer does not want: "not a plug-in", "no trucks", "sin diesel".
NEGATED = re.compile(r"(?:\b(?:not|no|non|isn'?t|aren'?t|without|except|excluding|"
                     r"but not|rather than|instead of|do(?: not|n'?t) (?:want|need|like)|sin|"
                     r"excepto|no quiero|ni)[\s-]+(?:(?:a|an|the|any|un|una|unos|unas|el|la|los|"
                     r"las)\s+)?)$")
NOT_FUEL_GAS = _rule(r"\b(?:on|save|saving|good)\s+gas\b|\bgas\s+mileage\b")


def shades(low: str, shades_in_stock: Iterable[str]) -> tuple[str, ...]:
    """The colours a text asks for: a shade of the stock named whole ("pearl white"), then
    each colour word alone ("white", "blanco", "grey" as "gray"). The store matches a
    shade exactly and a colour word as its whole family (store.where)."""
    named = [c.lower() for c in shades_in_stock
             if " " in c and re.search(rf"\b{re.escape(c.lower())}\b", low)]
    rest = low
    for c in named:
        rest = rest.replace(c, " ")
    words = [c for c in COLOR_WORDS if c in rest and re.search(rf"\b{c}s?\b", rest)]
    words += [en for es, en in COLOR_ES.items() if es in rest and re.search(rf"\b{es}s?\b", rest)]
    return tuple(dict.fromkeys([*named, *("gray" if w == "grey" else w for w in words)]))


def amount(number: str, unit: str | None) -> int:
    value = float(number.replace(",", ""))
    if unit and unit.lower() in ("k", "grand", "thousand", "mil"):
        value *= 1000
    return int(value)


def fold(text: str) -> str:
    """The text without its accents, as the vocabulary is written: "sedán" is "sedan",
    "híbrida" is "hibrida"."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c))


GENERIC_FIRST_WORDS = frozenset({"model", "new", "grand", "the", "super"})
_DIGIT_EDGE = re.compile(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])")
_DIGIT_GAP = re.compile(r"(?<=[a-z]) (?=\d)|(?<=\d) (?=[a-z])")
# Typos: a word of six letters or more one edit (two from nine letters) from a name
# ("hybird", "sorrento"). Not a word that ends like an inflected everyday word ("escaped").
TYPO_MIN = 6
_WORD = re.compile(rf"[a-z][a-z0-9]{{{TYPO_MIN - 1},}}")
_INFLECTED = ("ed", "ing", "ly", "er")


def _lot_first(column: str, lot: list[str]) -> list[str]:
    """The lot's own names first, then the known ones it has none of."""
    known = {v.lower() for v in lot}
    extra = KNOWN_MAKES if column == "make" else KNOWN_MODELS if column == "model" else ()
    return lot + [m for m in extra if m.lower() not in known]


def _phrases(vocabulary: Mapping[str, Iterable[str]],
             synonyms: Mapping[str, tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(phrase, field, canonical value), longest first. Each name also as customers type
    it: without its hyphen ("F150", "CR V"), and a multi-word model of the lot by its
    distinctive first word ("Bolt" for "Bolt EUV")."""
    out: list[tuple[str, str, str]] = []
    for column, field in (("make", "makes"), ("model", "models"), ("body_style", "body_styles"),
                          ("fuel", "fuels")):
        lot = list(vocabulary.get(column, ()))
        firsts = [v.split()[0].lower() for v in lot if " " in v]
        for v in _lot_first(column, lot):
            low = v.lower()
            out += [(low, field, v), (low.replace("-", ""), field, v),
                    (low.replace("-", " "), field, v)]
            # Letters and digits apart or together, as typed: "RAV4" as "rav 4", "CX-5" as
            # "cx 5", "Ioniq 5" as "ioniq5".
            bare = low.replace("-", "")
            out += [(_DIGIT_EDGE.sub(" ", bare), field, v),
                    (_DIGIT_GAP.sub("", low), field, v)]
            first = low.split()[0]
            if field == "models" and " " in low and firsts.count(first) == 1 \
                    and first not in GENERIC_FIRST_WORDS and len(first) > 3:
                out.append((first, field, v))
    out += [(p, f, v) for p, (f, v) in synonyms.items()]
    out += [(p.replace("-", " "), f, v) for p, (f, v) in synonyms.items() if "-" in p]
    return sorted(set(out), key=lambda t: -len(t[0]))


@dataclass(frozen=True, slots=True)
class Matchers:
    """A vocabulary compiled once (the inventory keeps it until its stock changes): each
    phrase's pattern, a name in the plural too ("Camrys", "F-150s"); and the one-word
    names a typo is corrected to."""

    patterns: list[tuple[str, re.Pattern[str], str, str]]
    words: dict[str, list[tuple[str, str]]]


def matchers(vocabulary: Mapping[str, Iterable[str]],
             synonyms: Mapping[str, tuple[str, str]] = SYNONYMS) -> Matchers:
    phrases = _phrases(vocabulary, synonyms)
    words: dict[str, list[tuple[str, str]]] = {}
    for phrase, field, value in phrases:
        if len(phrase) >= TYPO_MIN and phrase.isalpha():
            words.setdefault(phrase, []).append((field, value))
    return Matchers([(phrase, re.compile(rf"(?<![\w-]){re.escape(phrase)}(?:s|es)?(?![\w-])"),
                      field, value) for phrase, field, value in phrases], words)


def _typo(word: str, words: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """The name a misspelt word stands for, if one is that close. A word with an everyday
    ending only for a name with the same ending: "escaped" is not the Escape."""
    if word in words:
        return []
    stem = word[:-1] if word.endswith("s") and len(word) > TYPO_MIN else word
    best = extractOne(stem, list(words), scorer=OSA.distance,
                      score_cutoff=2 if len(stem) >= 9 else 1)
    if best is None or any(stem.endswith(e) and not best[0].endswith(e) for e in _INFLECTED):
        return []
    return words[best[0]]


def _read_names(low: str, compiled: Matchers, plain: str | None,
                text: str) -> dict[str, list[str]]:
    """Names the text asks for, by field: whole phrases first, longest first, then typos;
    a name the customer says they do not want is left out."""
    found: dict[str, list[str]] = {"makes": [], "models": [], "body_styles": [], "fuels": []}
    taken: list[tuple[int, int]] = []

    def add(field: str, value: str) -> None:
        if value not in found[field]:
            found[field].append(value)
    for phrase, pattern, field, value in compiled.patterns:
        if phrase not in low:   # the pattern needs the phrase itself: skip the regex
            continue
        for m in pattern.finditer(low):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue   # part of a longer phrase already read ("plug-in hybrid")
            taken.append((m.start(), m.end()))
            if NEGATED.search(low, 0, m.start()) is not None:
                continue   # "hybrid, not plug-in"
            if value == "gas" and field == "fuels" and NOT_FUEL_GAS.search(text, plain):
                continue   # "good on gas" is about economy, not the fuel
            add(field, value)
    for m in _WORD.finditer(low):
        if any(m.start() < e and s < m.end() for s, e in taken) \
                or NEGATED.search(low, 0, m.start()) is not None:
            continue
        for field, value in _typo(m.group(), compiled.words):
            add(field, value)
    return found


def _years(text: str, plain: str | None) -> tuple[int | None, int | None]:
    if yr := YEAR_RANGE.search(text, plain):
        return int(yr.group(1)), int(yr.group(2))
    for rule, lo, hi, shift in ((YEAR_MIN, True, False, 0), (YEAR_AFTER, True, False, 1),
                                (YEAR_MAX, False, True, 0), (YEAR_BEFORE, False, True, -1)):
        if m := rule.search(text, plain):
            year = int(next(g for g in m.groups() if g)) + shift
            return (year if lo else None), (year if hi else None)
    if one := YEAR_ONE.search(text, plain):
        return int(one.group(1)), int(one.group(1))
    return None, None


def _price(m: re.Match[str], number: int = 1) -> int | None:
    """The amount a price rule read, or None when it can't be a car's price: under $1,000,
    or a bare year ("under 2020" is not dollars)."""
    value = amount(m.group(number), m.group(number + 1))
    bare_year = 1980 <= value <= 2049 and m.group(number + 1) is None and "$" not in m.group()
    return None if value < 1000 or bare_year else value


def extract_one(text: str, vocabulary: Mapping[str, Iterable[str]],
                synonyms: Mapping[str, tuple[str, str]] = SYNONYMS,
                compiled: Matchers | None = None) -> Filters:
    text = fold(text)
    low = f" {text.lower()} "
    plain = low if text.isascii() else None   # what the rules' pre-checks read
    found = _read_names(low, compiled if compiled is not None else
                        matchers(vocabulary, synonyms), plain, text)
    f = Filters(makes=tuple(found["makes"]), models=tuple(found["models"]),
                body_styles=tuple(found["body_styles"]), fuels=tuple(found["fuels"]),
                colors=shades(low, vocabulary.get("exterior_color", ())),
                drivetrains=tuple(dict.fromkeys(DRIVETRAINS[m.group(1).lower()]
                                                for m in _DRIVETRAIN.finditer(low))))
    if DIGIT.search(text) is None:   # amounts and years need one
        f = replace(f, mileage_max=30000) if MILES_MAX_2.search(text, plain) else f
        return _condition(f, text, plain)
    miles_spans = []
    for m in MILES_MAX.finditer(text, plain):
        number, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        f = replace(f, mileage_max=amount(number, unit))
        miles_spans.append(m.span())
    if (m2 := MILES_MAX_2.search(text, plain)) and f.mileage_max is None:
        f = replace(f, mileage_max=amount(m2.group(1), m2.group(2)) if m2.group(1) else 30000)
    for rule in (PRICE_MAX, PRICE_MAX_AFTER):
        for m in rule.finditer(text, plain):
            if not any(s <= m.start() < e for s, e in miles_spans) \
                    and (ceiling := _price(m)) is not None:
                f = replace(f, price_max=ceiling)
    for m in PRICE_RANGE.finditer(text, plain):
        low_end, high_end = amount(m.group(1), m.group(2) or m.group(4)), \
            amount(m.group(3), m.group(4))
        if 1000 <= low_end <= high_end and not (1980 <= high_end <= 2049 and not m.group(4)):
            f = replace(f, price_min=low_end, price_max=high_end)
    for pm in PRICE_MIN.finditer(text, plain):
        if (floor := _price(pm)) is not None:
            f = replace(f, price_min=floor)
    if (m3 := PRICE_AROUND.search(text, plain)) and f.price_max is None \
            and (about := _price(m3)) is not None:
        f = replace(f, price_min=int(about * 0.9), price_max=int(about * 1.1))
    year_min, year_max = _years(text, plain)
    f = replace(f, year_min=year_min, year_max=year_max)
    return _condition(f, text, plain)


def _condition(f: Filters, text: str, plain: str | None) -> Filters:
    if USED.search(text, plain):
        return replace(f, condition="used")
    if NEW.search(text, plain):
        return replace(f, condition="new")
    return f


# The user turns a search is read from, at most: the conversation's, bounded so a long
# one costs each turn the same.
CARRIED_TURNS = 12


def extract(user_turns: list[str], vocabulary: Mapping[str, Iterable[str]],
            synonyms: Mapping[str, tuple[str, str]] = SYNONYMS,
            read: Callable[[str], Filters] | None = None) -> Filters:
    """Filters from the last user turn, with what the conversation asked for before kept
    where the last one says nothing of it: "is there one under $25,000?", three questions
    after "any used Honda SUVs?", still asks for a used Honda SUV, and "what about a
    Toyota?" then asks for a used Toyota SUV under $25,000. What a turn names replaces what
    was asked for of the same kind. `read` is extract_one for this vocabulary (the
    inventory passes one that remembers each text)."""
    if read is None:
        read = partial(extract_one, vocabulary=vocabulary, synonyms=synonyms,
                       compiled=matchers(vocabulary, synonyms))
    if len(user_turns) == 1:   # nothing earlier to carry over
        return read(user_turns[0])
    merged = Filters()
    for text in user_turns[-CARRIED_TURNS:]:
        f = read(text)
        changes = {k: v for k, v in f.__dict__.items() if v not in (None, ())}
        if f.models and not f.makes:
            changes["makes"] = ()   # a new model: the earlier make need not hold
        merged = replace(merged, **changes)
    return merged

