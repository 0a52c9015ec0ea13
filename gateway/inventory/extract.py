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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import partial

from gateway.inventory.store import Filters
from gateway.language.literals import Prechecked

# phrase → (field, value); longer phrases win over their parts.
SYNONYMS: dict[str, tuple[str, str]] = {
    "plug-in hybrid": ("fuels", "plug-in hybrid"), "plug in hybrid": ("fuels", "plug-in hybrid"),
    "plug-in": ("fuels", "plug-in hybrid"), "phev": ("fuels", "plug-in hybrid"),
    "hybrid": ("fuels", "hybrid"), "hybrids": ("fuels", "hybrid"),
    "electric": ("fuels", "electric"), "ev": ("fuels", "electric"), "evs": ("fuels", "electric"),
    "bev": ("fuels", "electric"), "diesel": ("fuels", "diesel"),
    "gas": ("fuels", "gas"), "gasoline": ("fuels", "gas"),
    "suv": ("body_styles", "SUV"), "suvs": ("body_styles", "SUV"),
    "crossover": ("body_styles", "SUV"), "crossovers": ("body_styles", "SUV"),
    "truck": ("body_styles", "truck"), "trucks": ("body_styles", "truck"),
    "pickup": ("body_styles", "truck"), "pickups": ("body_styles", "truck"),
    "sedan": ("body_styles", "sedan"), "sedans": ("body_styles", "sedan"),
    "minivan": ("body_styles", "minivan"), "minivans": ("body_styles", "minivan"),
    "van": ("body_styles", "minivan"), "wagon": ("body_styles", "wagon"),
    "chevy": ("makes", "Chevrolet"), "vw": ("makes", "Volkswagen"),
    "mach-e": ("models", "Mustang Mach-E"), "mach e": ("models", "Mustang Mach-E"),
}
# Makes sold new in the US and Mexico, so a question about one the lot has none of is still
# a stock question (answered "none of those here", with the nearest as not matching). Not
# the makes that are also everyday words ("mini", "lucid"): the lot's own stock names them.
KNOWN_MAKES = ("Acura", "Alfa Romeo", "Audi", "BMW", "Buick", "Cadillac", "Chevrolet",
               "Chrysler", "Dodge", "Fiat", "Ford", "Genesis", "GMC", "Honda", "Hyundai",
               "Infiniti", "Jaguar", "Jeep", "Kia", "Land Rover", "Lexus", "Lincoln", "Mazda",
               "Mercedes-Benz", "Mitsubishi", "Nissan", "Polestar", "Porsche", "Ram", "Rivian",
               "Subaru", "Tesla", "Toyota", "Volkswagen", "Volvo")
COLOR_WORDS = ("white", "black", "silver", "gray", "grey", "blue", "red", "green",
               "orange", "yellow", "brown", "beige", "gold")
# Spanish colour words, for the dealership's Spanish-speaking customers.
COLOR_ES = {"blanco": "white", "blanca": "white", "negro": "black", "negra": "black",
            "plata": "silver", "gris": "gray", "azul": "blue", "rojo": "red", "roja": "red",
            "verde": "green", "naranja": "orange", "amarillo": "yellow"}
AMOUNT = r"\$?\s?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s?(k|K|grand|thousand|mil)?"
# Drivetrains as customers write them, to the inventory's own names.
DRIVETRAINS = {"awd": "AWD", "all wheel drive": "AWD", "all-wheel drive": "AWD",
               "all-wheel-drive": "AWD", "4wd": "4WD", "4x4": "4WD", "four wheel drive": "4WD",
               "four-wheel drive": "4WD", "4 wheel drive": "4WD", "fwd": "FWD",
               "front wheel drive": "FWD", "front-wheel drive": "FWD", "rwd": "RWD",
               "rear wheel drive": "RWD", "rear-wheel drive": "RWD", "tracción integral": "AWD",
               "doble tracción": "4WD", "doble traccion": "4WD"}
_DRIVETRAIN = re.compile(r"(?<![\w-])(" + "|".join(re.escape(k) for k in
                         sorted(DRIVETRAINS, key=len, reverse=True)) + r")(?![\w-])", re.I)
YEAR = r"(19[89]\d|20[0-4]\d)"
DIGIT = re.compile(r"\d")


def _rule(pattern: str, flags: int = 0) -> Prechecked:
    """Each rule behind its pre-check: most questions lack the words it needs."""
    return Prechecked(re.compile(pattern, flags))


PRICE_MAX = _rule(rf"\b(?:under|below|less than|no more than|max(?:imum)?|up to|at most|"
                  rf"menos de|hasta|cheaper than|within|budget(?: is| of)?|cheaper\b.{{0,30}}?\bthan)"
                  rf"\s+{AMOUNT}(?!\s?(?:mi|miles))", re.I)
PRICE_MIN = _rule(rf"\b(?:over|above|more than|at least|starting at|from)\s+{AMOUNT}"
                  rf"(?!\s?(?:mi|miles))", re.I)
PRICE_AROUND = _rule(rf"\b(?:around|about|roughly|near|~)\s+{AMOUNT}(?!\s?(?:mi|miles))", re.I)
MILES_MAX = _rule(rf"\b(?:under|below|less than|fewer than|no more than|max(?:imum)?|"
                  rf"up to|at most|menos de)\s+{AMOUNT}\s?(?:mi\b|miles|mileage|millas)"
                  rf"|{AMOUNT}\s?(?:mi\b|miles|millas)\s+(?:or\s+(?:less|fewer|under|below)|"
                  rf"max(?:imum)?|tops|o\s+menos)", re.I)
PRICE_RANGE = _rule(rf"\b(?:between|from|entre|de)\s+{AMOUNT}\s*(?:and|to|-|–|y|a)\s*{AMOUNT}"
                    rf"(?!\s?(?:mi\b|miles|millas))", re.I)
MILES_MAX_2 = _rule(rf"\b(?:low miles|low mileage)\b|\bmileage\s+(?:under|below)\s+{AMOUNT}",
                    re.I)
YEAR_RANGE = _rule(rf"\b(?:between\s+)?{YEAR}\s*(?:-|–|to|through|and)\s*{YEAR}\b")
YEAR_MIN = _rule(rf"\b(?:{YEAR}\s+or\s+(?:newer|later)|(?:newer than|after)\s+{YEAR}|"
                 rf"(?:from|since)\s+{YEAR}\s+(?:on|onwards?|and up)\b|since\s+{YEAR}|"
                 rf"{YEAR}\s*\+)", re.I)
YEAR_MAX = _rule(rf"\b(?:{YEAR}\s+or\s+older|(?:older than|before)\s+{YEAR})", re.I)
YEAR_ONE = _rule(rf"\b{YEAR}\b")
NEW = _rule(r"\b(?:brand[- ]new|new)\b(?!\s+(?:one|ones|to|customers?)\b)", re.I)
USED = _rule(r"\b(?:used|pre-?owned|certified|second[- ]hand|usad[oa]s?|seminuev[oa]s?)\b",
             re.I)
NOT_FUEL_GAS = _rule(r"\b(?:on|save|saving|good)\s+gas\b|\bgas\s+mileage\b", re.I)


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


GENERIC_FIRST_WORDS = frozenset({"model", "new", "grand", "the", "super"})
_DIGIT_EDGE = re.compile(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])")
_DIGIT_GAP = re.compile(r"(?<=[a-z]) (?=\d)|(?<=\d) (?=[a-z])")


def _phrases(vocabulary: Mapping[str, Iterable[str]],
             synonyms: Mapping[str, tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(phrase, field, canonical value), longest first. Each name also as customers type
    it: without its hyphen ("F150", "CR V"), and a multi-word model by its distinctive
    first word ("Bolt" for "Bolt EUV")."""
    out: list[tuple[str, str, str]] = []
    for column, field in (("make", "makes"), ("model", "models"), ("body_style", "body_styles"),
                          ("fuel", "fuels")):
        values = list(vocabulary.get(column, ()))
        if column == "make":   # the lot's own spelling first
            known = {v.lower() for v in values}
            values += [m for m in KNOWN_MAKES if m.lower() not in known]
        firsts = [v.split()[0].lower() for v in values if " " in v]
        for v in values:
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


Matchers = list[tuple[str, re.Pattern[str], str, str]]


def matchers(vocabulary: Mapping[str, Iterable[str]],
             synonyms: Mapping[str, tuple[str, str]] = SYNONYMS) -> Matchers:
    """Each phrase's pattern, compiled once per vocabulary (the inventory keeps them until
    its stock changes): a name in the plural too ("Camrys", "F-150s", "Tacomas")."""
    return [(phrase, re.compile(rf"(?<![\w-]){re.escape(phrase)}(?:s|es)?(?![\w-])"), field,
             value) for phrase, field, value in _phrases(vocabulary, synonyms)]


# One branch per filter a question may state (hence its branch count).
def extract_one(text: str, vocabulary: Mapping[str, Iterable[str]],  # noqa: C901, PLR0912
                synonyms: Mapping[str, tuple[str, str]] = SYNONYMS,
                compiled: Matchers | None = None) -> Filters:
    low = f" {text.lower()} "
    plain = low if text.isascii() else None   # what the rules' pre-checks read
    found: dict[str, list[str]] = {"makes": [], "models": [], "body_styles": [], "fuels": []}
    taken: list[tuple[int, int]] = []
    for phrase, pattern, field, value in compiled if compiled is not None else \
            matchers(vocabulary, synonyms):
        if phrase not in low:   # the pattern needs the phrase itself: skip the regex
            continue
        for m in pattern.finditer(low):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue   # part of a longer phrase already read ("plug-in hybrid")
            taken.append((m.start(), m.end()))
            if value == "gas" and field == "fuels" and NOT_FUEL_GAS.search(text, plain):
                continue   # "good on gas" is about economy, not the fuel
            if value not in found[field]:
                found[field].append(value)
    f = Filters(makes=tuple(found["makes"]), models=tuple(found["models"]),
                body_styles=tuple(found["body_styles"]), fuels=tuple(found["fuels"]),
                colors=shades(low, vocabulary.get("exterior_color", ())),
                drivetrains=tuple(dict.fromkeys(DRIVETRAINS[m.group(1).lower()]
                                                for m in _DRIVETRAIN.finditer(low))))
    digits = DIGIT.search(text) is not None   # amounts and years need one: else skip them
    miles_spans = []
    for m in MILES_MAX.finditer(text, plain) if digits else ():
        number, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        f = replace(f, mileage_max=amount(number, unit))
        miles_spans.append(m.span())
    if (m2 := MILES_MAX_2.search(text, plain)) and f.mileage_max is None:
        f = replace(f, mileage_max=amount(m2.group(1), m2.group(2)) if m2.group(1) else 30000)
    for m in PRICE_MAX.finditer(text, plain) if digits else ():
        if not any(s <= m.start() < e for s, e in miles_spans):
            f = replace(f, price_max=amount(m.group(1), m.group(2)))
    for m in PRICE_RANGE.finditer(text, plain) if digits else ():
        low_end, high_end = amount(m.group(1), m.group(2) or m.group(4)), \
            amount(m.group(3), m.group(4))
        if 1000 <= low_end <= high_end and not (1980 <= high_end <= 2049 and not m.group(4)):
            f = replace(f, price_min=low_end, price_max=high_end)
    for pm in PRICE_MIN.finditer(text, plain) if digits else ():
        floor = amount(pm.group(1), pm.group(2))
        if floor >= 1000 and not (1980 <= floor <= 2049 and pm.group(2) is None):
            f = replace(f, price_min=floor)
    if digits and (m3 := PRICE_AROUND.search(text, plain)) and f.price_max is None:
        about = amount(m3.group(1), m3.group(2))
        if about >= 1000:
            f = replace(f, price_min=int(about * 0.9), price_max=int(about * 1.1))
    if digits and (yr := YEAR_RANGE.search(text, plain)):
        f = replace(f, year_min=int(yr.group(1)), year_max=int(yr.group(2)))
    elif digits and (ymin := YEAR_MIN.search(text, plain)):
        f = replace(f, year_min=int(next(g for g in ymin.groups() if g)))
    elif digits and (ymax := YEAR_MAX.search(text, plain)):
        f = replace(f, year_max=int(next(g for g in ymax.groups() if g)))
    elif digits and (one := YEAR_ONE.search(text, plain)):
        f = replace(f, year_min=int(one.group(1)), year_max=int(one.group(1)))
    if USED.search(text, plain):
        f = replace(f, condition="used")
    elif NEW.search(text, plain):
        f = replace(f, condition="new")
    return f


def extract(user_turns: list[str], vocabulary: Mapping[str, Iterable[str]],
            synonyms: Mapping[str, tuple[str, str]] = SYNONYMS,
            read: Callable[[str], Filters] | None = None) -> Filters:
    """Filters from the last user turn, with what earlier turns asked for kept where the last
    one says nothing of it ("and in red?" after "any RAV4 hybrids?"). `read` is
    extract_one for this vocabulary (the inventory passes one that remembers each text)."""
    if read is None:
        read = partial(extract_one, vocabulary=vocabulary, synonyms=synonyms,
                       compiled=matchers(vocabulary, synonyms))
    if len(user_turns) == 1:   # nothing earlier to carry over
        return read(user_turns[0])
    merged = Filters()
    for text in user_turns[-3:]:
        f = read(text)
        changes = {k: v for k, v in f.__dict__.items() if v not in (None, ())}
        if f.models and not f.makes:
            changes["makes"] = ()   # a new model: the earlier make need not hold
        merged = replace(merged, **changes)
    return merged
