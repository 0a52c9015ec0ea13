"""Personal data out before a message leaves the building; back in where the answer quotes it.

Pure and table-tested against `tests/data/pii_eval.jsonl` (hand-written conversations with
hard negatives). Each kind can be switched off in config (`privacy.redact`):

- EMAIL: addresses, also spelt out ("maria dot g at gmail dot com").
- PHONE: Google's libphonenumber (the `phonenumbers` port) finds US and international
  numbers (+44, +52) in any common format; a bare 7-digit run counts only after a phone
  cue word, so stock numbers stay. Numbers read out in words ("five five five ...", also
  in Spanish) are found too.
- CARD (13-19 digits passing Luhn), SSN (area/group/serial rules, or nine digits after
  "SSN"/"social"), DL (after "driver's licence"/"DL"), VIN (valid check digit, tied to a
  person: a VIN on the lot is not personal), PLATE (after "plate"/"tag"/"placa").
- DOB: a date after "born", "DOB", "date of birth", "birthday", "fecha de nacimiento".
- ADDRESS: a street number, up to four words and a street type, with unit, city, state
  and ZIP when present, confirmed by `usaddress` (a trained US address parser).
- NAME: after cue phrases ("my name is", "this is", "I'm", "me llamo", "soy", a sign-off
  like "thanks, Maria"), one to three name words, the first a known first name (Faker's
  English and Spanish name lists) or capitalised and not a common word. No model is
  downloaded, so a name with no cue is not found: the README gives the measured recall.
- BANK_ACCOUNT (digits after "account"/"acct"/"cuenta"), ROUTING (nine digits passing
  the ABA checksum after "routing"/"ABA").
- INCOME (an amount after "I make", "income", "salary", "gano" ... or with "a year"),
  CREDIT_SCORE (300-850 next to "score"/"FICO"/"puntaje").

Each value becomes a typed placeholder, the same value the same placeholder throughout a
conversation, and `Restorer` puts the values back into the streamed answer even when a
placeholder is split across chunks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.security import pii_shapes
from gateway.security.pii_kinds import KINDS, MONTHS, Found, strip_accents
from gateway.vin import valid as vin_valid

__all__ = ["KINDS", "Found", "Redactor", "Restorer", "find", "phone_digits", "redact_messages"]

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
EMAIL_SPOKEN = re.compile(r"\b[A-Za-z0-9._%+-]+(?:\s+dot\s+[A-Za-z0-9_%+-]+)*\s+(?:at|arroba)\s+"
                          r"[A-Za-z0-9-]+(?:\s+(?:dot|punto)\s+[A-Za-z]{2,6})+\b", re.I)
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
SSN = re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?!\d)")
SSN_WORDS = re.compile(r"\b(?:ssn|social security(?: number| no\.?| #)?|social|seguro social)\b"
                       r"\D{0,12}(\d{3}[- ]?\d{2}[- ]?\d{4})(?!\d)", re.I)
DL = re.compile(r"\b(?:driver'?s?\s+licen[cs]e(?:\s+(?:number|no\.?|#))?|DL(?:\s+(?:number|no\.?|#))?"
                r"|licen[cs]e\s+(?:number|no\.?|#)|licencia(?:\s+de\s+conducir)?)\s*"
                r"(?:is|es|:|#)?\s*([A-Z0-9][A-Z0-9-]{4,14})\b", re.I)
VIN = re.compile(r"\b[A-HJ-NPR-Z0-9]{17}\b")
PERSONAL = re.compile(r"\b(?:my|our|mine|i own|i have|trade[- ]?in|trading in|registered to|owner|"
                      r"my wife'?s|my husband'?s|owned|mi|tengo)\b", re.I)
PLATE = re.compile(r"\b(?:(?:licen[cs]e\s+)?plates?|tags?|placas?)(?:\s+(?:number|no\.?|#|is|es|"
                   r"reads?|says?))*\s*[:#]?\s*([A-Z0-9][A-Z0-9 -]{1,8}[A-Z0-9])\b", re.I)
DATE = (rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:19|20)?\d\d|(?:19|20)\d\d-\d\d-\d\d"
        rf"|{MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d\d"
        rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+|de\s+)?{MONTHS},?\s+(?:de\s+)?(?:19|20)\d\d)")
DOB = re.compile(rf"\b(?:born(?:\s+on)?|d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|birthday"
                 rf"|b-?day|fecha\s+de\s+nacimiento|naci(?:\s+el)?|nacimiento)\b\W{{0,12}}"
                 rf"(?:is\s+|es\s+|was\s+|on\s+|el\s+)?({DATE})", re.I)
STREET_TYPES = (r"(?:st|street|ave|avenue|rd|road|blvd|boulevard|dr|drive|ln|lane|ct|court|way|pl"
                r"|place|pkwy|parkway|hwy|highway|cir|circle|ter|terrace|trl|trail|loop|sq|square)")
ADDRESS = re.compile(
    rf"\b\d{{1,6}}[A-Za-z]?\s+(?:[NSEW]\.?\s+|north\s+|south\s+|east\s+|west\s+)?"
    rf"(?:[A-Za-z0-9'.-]+\s+){{0,3}}{STREET_TYPES}\b\.?(?:\s+\d{{1,4}}\b)?"
    rf"(?:,?\s+(?:apt|apartment|unit|suite|ste|#)\.?\s*#?\s*[A-Za-z0-9-]+)?"
    rf"(?-i:,?\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?,?\s+[A-Z]{{2}}(?:\s+\d{{5}}(?:-\d{{4}})?)?)?"
    rf"(?:\s+\d{{5}}(?:-\d{{4}})?)?", re.I)
# An address after these words is the dealership's (or another business's), not the
# customer's: "your dealership is at 1200 Lakeside Blvd".
_THEIRS = re.compile(r"\b(?:your|you(?:'re| are| guys)|dealership|showroom|store|lot|office|"
                     r"located|location|branch|su|ustedes)\b", re.I)
_MINE = re.compile(r"\b(?:my|i live|i'm at|we live|our|home|mi|vivo|casa)\b", re.I)
_NOT_IN_STREET_NAMES = frozenset("""your our their his her my the a an heading going coming
driving all any every this that""".split())
_NOT_STREET_WORDS = frozenset({"miles", "mile", "minutes", "min", "years", "year", "yrs", "k",
                               "thousand", "dollars", "bucks", "percent", "hours", "days",
                               "cars", "people", "seats", "doors", "kids", "months", "times"})
ACCOUNT = re.compile(r"\b(?:account|acct|cuenta|checking|savings)(?:\s+(?:number|no\.?|#|num|is|es|"
                     r"ending\s+in))*\s*[:#]?\s*(\d[\d -]{4,18}\d)\b", re.I)
ROUTING = re.compile(r"\b(?:routing|aba|rtn|ruta)(?:\s+(?:number|no\.?|#|num|is|es))*\s*[:#]?\s*"
                     r"(\d{9})\b", re.I)
MONEY = r"\$?\s?\d{1,3}(?:[,.]\d{3})+(?:\.\d\d)?|\$?\s?\d+(?:\.\d+)?\s?(?:k|K|grand|mil)?"
INCOME = re.compile(
    rf"\b(?:(?:i|we)\s+(?:make|earn|gross|bring\s+home)|(?:i'?m|we'?re)\s+making|making|earning|income(?:\s+is)?|salary(?:\s+is)?|"
    rf"take[- ]home(?:\s+is)?|gross(?:\s+is)?|gano|gana|ganamos|ganan|ingreso(?:s)?(?:\s+(?:es|son|de))?|"
    rf"sueldo(?:\s+(?:es|de))?)\s+(?:of\s+|about\s+|around\s+|like\s+|como\s+|unos\s+)?"
    rf"({MONEY})", re.I)
INCOME_PER = re.compile(rf"({MONEY})\s*(?:a|per|/)\s*(?:year|yr|annually)\b|({MONEY})\s+al\s+año"
                        rf"|({MONEY})\s+(?:in\s+|of\s+)?(?:income|salary|yearly|annual|gross)\b",
                        re.I)
SCORE = re.compile(r"\b(?:credit\s+score|score|fico|beacon|puntaje(?:\s+de\s+cr[eé]dito)?|"
                   r"cr[eé]dito|credit)\b\D{0,15}?\b([3-8]\d\d)\b"
                   r"|\b([3-8]\d\d)\s+(?:credit\s+)?(?:score|fico|beacon|puntaje)\b", re.I)
# Strong cues name a person for sure ("my name is", a sign-off); after weak ones ("I'm",
# "this is") the words must look like a name (a listed first name, or a capitalised pair).
NAME_CUE = re.compile(
    r"(?:(?P<strong>\bmy\s+name\s+is|\bmy\s+name'?s|\bname\s*:|\bme\s+llamo"
    r"|\bmi\s+nombre\s+es|\bcall\s+me|\bask\s+for|\bspeak\s+(?:to|with)"
    r"|\b(?:my|mi)\s+(?:wife|husband|son|daughter|mom|dad|mother|father|esposa|esposo|hijo|hija)"
    r"|(?:^|[.!?\n]\s*)(?:thanks|thank\s+you|gracias|regards|best|cheers)\s*[,!-]*|-+)"
    r"|\bthis\s+is|\bi'?m|\bi\s+am|\bit'?s|\bits|\bsoy|\bunder)"
    # The name words in a lookahead: the next cue may start inside them ("it's for my
    # daughter Ana" has two cues).
    r"(?=\s+((?:[A-Za-zÀ-ÿ][a-zà-ÿ'-]+|[A-Z]\.)(?:\s+(?:[A-Za-zÀ-ÿ][A-Za-zà-ÿ'-]+|[A-Z]\.)){0,2}))",
    re.I | re.M)
# With no cue at all: a listed first name followed by a capitalised surname.
NAME_PAIR = re.compile(r"\b([A-ZÀ-Ý][a-zà-ÿ'-]+)\s+((?:[A-ZÀ-Ý][a-zà-ÿ'-]+)(?:[\s-]+[A-ZÀ-Ý]"
                       r"[a-zà-ÿ'-]+)?)\b")
# First names that are also vehicle words: "Sierra Denali", "Santa Fe", "Grand Cherokee".
_CAR_WORDS = frozenset("""sierra santa grand cherokee mercedes austin lincoln jaguar dodge ram
jeep genesis royal rover range land model ford tesla toyota honda blue red white black silver
gray grey green metallic pearl""".split())
def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


def vin_ok(vin: str) -> bool:
    vin = vin.upper()
    return any(c.isdigit() for c in vin) and vin_valid(vin)



_PHONE_CUE = re.compile(r"\b(?:call|text|phone|cell|mobile|number|tel|whatsapp|reach|contact|"
                        r"llamar|llámame|llamame|celular|cel|tel[eé]fono|n[uú]mero|marca)\b", re.I)
_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3",
                "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
                "cero": "0", "uno": "1", "dos": "2", "tres": "3", "cuatro": "4", "cinco": "5",
                "seis": "6", "siete": "7", "ocho": "8", "nueve": "9"}
_SPOKEN_DIGITS = re.compile(r"\b(?:(?:" + "|".join(_DIGIT_WORDS) + r"|\d)[\s,-]+){6,14}"
                            r"(?:" + "|".join(_DIGIT_WORDS) + r"|\d)\b", re.I)


_NOT_EMAIL_WORDS = frozenset("""at to is es me email e-mail mail correo address my mi and or
send sent write from""".split())
_INTERNATIONAL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d+\)?){2,6}(?!\d)")


def aba_ok(digits: str) -> bool:
    """The ABA routing-number checksum (3-7-1 weights)."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    d = [int(c) for c in digits]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


def _fold(word: str) -> str:
    """Lowercase without accents: "Tomás" and "tomas" are one name."""
    return strip_accents(word.lower())


def _first_names() -> frozenset[str]:
    """First names from a maintained package (Faker's English and Spanish lists)."""
    from faker.providers.person.en_US import Provider as EnUS
    from faker.providers.person.es_ES import Provider as EsES
    from faker.providers.person.es_MX import Provider as EsMX
    out: set[str] = set()
    for provider in (EnUS, EsMX, EsES):
        for attr in ("first_names", "first_names_male", "first_names_female"):
            out.update(_fold(n) for n in getattr(provider, attr, ()))
    return frozenset(out)


FIRST_NAMES = _first_names()
# Words that follow "I'm", "this is", "soy" ... and are not names.
_NOT_NAMES = frozenset("""a an the just not so very really also still here there back home
looking interested calling wondering trying hoping going thinking planning ready able new
sure glad happy sorry good fine ok okay well from in on at with about after before for to
currently available free busy open close near out off over done still already usually
buscando interesado interesada llamando una un el la muy aqui aquí de en con para por
car truck suv van sedan it its that this what how when why who which your you we they
first second looking-for trading leasing financing paying approved pre-approved
self employed retired married single and or but i my me we us our is was be will would
can could should have has had do does did no yes then than want need like love what when
where why how who which too much many some any all more most other again call text email
reach number phone cell tomorrow today tonight morning afternoon evening regards wishes
sincerely mr mrs ms mx dr sra srta""".split())


# Words that end a name even when capitalised (start of a sentence, shouting).
_FUNCTION_WORDS = frozenset("""and or but i my me we is was are and y e o pero mi es and the a
to for at in on with from quiere quiero tiene tengo want wants need needs apt unit suite ste""".split())


def _name_ok(words: list[str], strong: bool) -> bool:
    first = words[0]
    low = _fold(first).strip(".")
    if low in _NOT_NAMES or low.isdigit():
        return False
    if low in FIRST_NAMES or (strong and (first[:1].isupper() or low.isalpha())):
        return True
    # Not a listed first name: believe it only capitalised, with a capitalised surname.
    return first[:1].isupper() and len(words) > 1 and words[1][:1].isupper() \
        and _fold(words[1]) not in _FUNCTION_WORDS


def phone_digits(number: str) -> str:
    """A number's last ten digits: how two spellings of one phone number compare."""
    return "".join(c for c in number if c.isdigit())[-10:]


def _common(word: str) -> bool:
    """A word that is no name, whatever its case."""
    folded = _fold(word).strip(".,'’")
    return folded in _NOT_NAMES or folded in _FUNCTION_WORDS or folded in _CAR_WORDS


def _looks_like_name(words: list[str]) -> bool:
    """Words with no cue before them: a listed first name that is no car word, or two or
    more capitalised words none of which is a common word."""
    folded = [_fold(w).strip(".,'’") for w in words]
    if any(f in _NOT_NAMES or f in _FUNCTION_WORDS or f.isdigit() for f in folded):
        return False
    if folded[0] in FIRST_NAMES and folded[0] not in _CAR_WORDS:
        return True
    return len(words) >= 2 and all(w[:1].isupper() for w in words) \
        and not any(f in _CAR_WORDS for f in folded)


def _phones(text: str) -> list[Found]:
    import phonenumbers
    hits = []
    # Every number kept below has seven digits or more: a text with fewer (most turns)
    # skips libphonenumber, the costliest step of find().
    digits_in_text = sum(c.isdigit() for c in text)
    matches = phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.POSSIBLE) \
        if digits_in_text >= 7 else ()
    for m in matches:
        raw = m.raw_string
        digits = sum(c.isdigit() for c in raw)
        cue = bool(_PHONE_CUE.search(text[max(0, m.start - 40):m.start]))
        separated = any(c in raw for c in " .-()")
        # Ten or more digits is a phone number however written (over-redacting is the safe
        # side); seven only with a separator after a phone cue: a stock number is not one.
        if raw.startswith("+") or digits >= 10 or (digits == 7 and cue and separated):
            hits.append(Found("PHONE", m.start, m.end, raw))
    for intl in _INTERNATIONAL.finditer(text):  # shapes libphonenumber no longer accepts (+52 1)
        hits.append(Found("PHONE", intl.start(), intl.end(), intl.group()))
    for said in _SPOKEN_DIGITS.finditer(text):
        spoken = said.group()
        read = "".join(_DIGIT_WORDS.get(w.lower(), w) for w in re.findall(r"\w+", spoken))
        if len(read) in (7, 10, 11) and any(c.isalpha() for c in spoken):
            hits.append(Found("PHONE", said.start(), said.end(), spoken))
    return hits


# One block per kind, in the order overlaps are settled (hence its size).
def find(text: str, kinds: frozenset[str] | None = None) -> list[Found]:  # noqa: C901, PLR0912, PLR0915
    """Every personal value in the text, non-overlapping, in order; only `kinds` if given.
    Pure."""
    on = frozenset(KINDS) if kinds is None else kinds
    hits: list[Found] = []
    if "EMAIL" in on:
        hits += [Found("EMAIL", m.start(), m.end(), m.group()) for m in EMAIL.finditer(text)]
        for m in EMAIL_SPOKEN.finditer(text):
            start = m.start()
            # Spoken, the local part may hold a space ("beto salinas at yahoo dot com").
            before = re.search(r"([a-z0-9]+)\s+$", text[max(0, start - 30):start])
            if before and before.group(1).lower() not in _NOT_EMAIL_WORDS:
                start -= len(before.group(0))
            hits.append(Found("EMAIL", start, m.end(), text[start:m.end()]))
    if "SSN" in on:
        hits += [Found("SSN", m.start(), m.end(), m.group()) for m in SSN.finditer(text)]
        hits += [Found("SSN", m.start(1), m.end(1), m.group(1)) for m in SSN_WORDS.finditer(text)]
    if "CARD" in on:
        for m in CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                hits.append(Found("CARD", m.start(), m.end(), m.group()))
    if "ROUTING" in on:
        hits += [Found("ROUTING", m.start(1), m.end(1), m.group(1))
                 for m in ROUTING.finditer(text) if aba_ok(m.group(1))]
    if "BANK_ACCOUNT" in on:
        for m in ACCOUNT.finditer(text):
            if 6 <= sum(c.isdigit() for c in m.group(1)) <= 17:
                hits.append(Found("BANK_ACCOUNT", m.start(1), m.end(1), m.group(1)))
    if "DL" in on:
        hits += [Found("DL", m.start(1), m.end(1), m.group(1)) for m in DL.finditer(text)
                 if any(c.isdigit() for c in m.group(1))]
    if "VIN" in on:
        for m in VIN.finditer(text.upper()):
            window = text[max(0, m.start() - 60):m.start()]
            if vin_ok(m.group()) and PERSONAL.search(window):
                hits.append(Found("VIN", m.start(), m.end(), text[m.start():m.end()]))
    if "PLATE" in on:
        for m in PLATE.finditer(text):
            value = m.group(1).strip()
            if any(c.isdigit() for c in value) and not re.fullmatch(r"(?:19|20)\d\d", value):
                hits.append(Found("PLATE", m.start(1), m.start(1) + len(value), value))
    if "DOB" in on:
        hits += [Found("DOB", m.start(1), m.end(1), m.group(1)) for m in DOB.finditer(text)]
    if "ADDRESS" in on:
        for m in ADDRESS.finditer(text):
            words = m.group().split()
            if len(words) > 1 and words[1].lower().strip(",.") in _NOT_STREET_WORDS:
                continue
            if any(_fold(w) in _NOT_IN_STREET_NAMES for w in words[1:-1]):
                continue   # "Route 66 heading your way": words no street name has
            window = text[max(0, m.start() - 40):m.start()]
            if _THEIRS.search(window) and not _MINE.search(window):
                continue
            import usaddress
            try:
                parts, kind = usaddress.tag(m.group())
            except usaddress.RepeatedLabelError:
                continue
            if kind == "Street Address" and "AddressNumber" in parts \
                    and ("StreetNamePostType" in parts or "StreetNamePreType" in parts):
                hits.append(Found("ADDRESS", m.start(), m.end(), m.group().rstrip(",. ")))
    hits += pii_shapes.structured(text, on)
    if "PHONE" in on:
        hits += _phones(text)
    if "CREDIT_SCORE" in on:
        for m in SCORE.finditer(text):
            g = 1 if m.group(1) else 2
            if 300 <= int(m.group(g)) <= 850:
                hits.append(Found("CREDIT_SCORE", m.start(g), m.end(g), m.group(g)))
    if "INCOME" in on:
        for m in INCOME.finditer(text):
            if any(c.isdigit() for c in m.group(1)):
                hits.append(Found("INCOME", m.start(1), m.end(1), m.group(1).strip()))
        for m in INCOME_PER.finditer(text):
            g = next(i for i in (1, 2, 3) if m.group(i))
            if any(c.isdigit() for c in m.group(g)):
                value = m.group(g).strip()
                start = m.start(g) + m.group(g).index(value)
                hits.append(Found("INCOME", start, start + len(value), value))
    if "NAME" in on:
        hits += _names(text)
    # Earlier kinds win overlaps (an SSN or card is not also a phone number).
    chosen: list[Found] = []
    for h in hits:
        if not any(h.start < c.end and c.start < h.end for c in chosen):
            chosen.append(h)
    return sorted(chosen, key=lambda f: f.start)


def _names(text: str) -> list[Found]:
    """Every NAME any rule finds, the longest first: of two overlapping readings the
    fuller one wins ("Whitfield, Margaret" over "Margaret")."""
    hits: list[Found] = []
    for m in NAME_CUE.finditer(text):
        group = m.lastindex or 0
        words = m.group(group).split()
        strong = m.group("strong") is not None
        known = _fold(words[0]).strip(".,") in FIRST_NAMES
        # Keep the name words: stop at the first word that is not one. After a listed
        # first name a lowercase word may be the surname ("maria gonzalez").
        kept = [words[0].rstrip(",.")]
        for w in words[1:]:
            if kept[-1] != words[len(kept) - 1]:   # the previous word ended the phrase
                break
            folded = _fold(w).strip(",.")
            if w[:1].isupper() and folded not in _FUNCTION_WORDS:
                pass       # a capitalised word after a name: part of it ("Van", "De")
            elif folded in _NOT_NAMES or folded in _FUNCTION_WORDS or not (
                    known or folded in FIRST_NAMES or strong):
                break
            kept.append(w.rstrip(",."))
        if _name_ok(kept, strong):
            value = " ".join(kept)
            hits.append(Found("NAME", m.start(group), m.start(group) + len(value), value))
    for m in NAME_PAIR.finditer(text):
        first = _fold(m.group(1))
        if first in FIRST_NAMES and first not in _CAR_WORDS \
                and _fold(m.group(2).split()[0]) not in _FUNCTION_WORDS | _CAR_WORDS:
            hits.append(Found("NAME", m.start(), m.end(), m.group()))
    hits += pii_shapes.names(text, _looks_like_name, _common)
    return sorted(hits, key=lambda f: f.start - f.end)


@dataclass
class Redactor:
    """Placeholders for one conversation: the same value gets the same placeholder."""

    kinds: frozenset[str] | None = None  # None: every kind
    # The business's own numbers (its last ten digits): not personal, kept as written.
    keep_phones: frozenset[str] = frozenset()
    values: dict[str, str] = field(default_factory=dict)  # placeholder → value
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Values redacted per kind (for the audit: counts, never the values)."""
        out: dict[str, int] = {}
        for kind, _ in self._by_value:
            out[kind] = out.get(kind, 0) + 1
        return out

    def redact(self, text: str) -> str:
        out, last = [], 0
        for f in find(text, self.kinds):
            if f.kind == "PHONE" and self.keep_phones and phone_digits(f.value) in self.keep_phones:
                continue
            key = (f.kind, f.value)
            if key not in self._by_value:
                n = sum(1 for k in self._by_value if k[0] == f.kind) + 1
                placeholder = f"[{f.kind}_{n}]"
                self._by_value[key] = placeholder
                self.values[placeholder] = f.value
            out += [text[last:f.start], self._by_value[key]]
            last = f.end
        out.append(text[last:])
        return "".join(out)


_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(KINDS) + r")_\d{1,3}\]")
_MAX_PLACEHOLDER = max(len(k) for k in KINDS) + 6


class Restorer:
    """Put values back into a streamed answer; holds back a partial placeholder at a chunk end."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        cut = text.rfind("[")
        if cut != -1 and "]" not in text[cut:] and len(text) - cut < _MAX_PLACEHOLDER:
            self._held, text = text[cut:], text[:cut]
        else:
            self._held = ""
        return _PLACEHOLDER.sub(lambda m: self.values.get(m.group(), m.group()), text)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return _PLACEHOLDER.sub(lambda m: self.values.get(m.group(), m.group()), text)


def redact_messages(messages: Iterable[dict], redactor: Redactor,
                    ours: frozenset[str] = frozenset(), our_prefixes: tuple[str, ...] = ()
                    ) -> list[dict]:
    """Copies of the messages with personal values replaced (text content only). The
    gateway's own system messages — `ours` (its system prompt), or starting with one of
    `our_prefixes` (the stock it grounds the models in) — hold no customer data and are not
    scanned."""
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, str) and (c in ours or (m.get("role") == "system" and our_prefixes
                                                 and c.startswith(our_prefixes))):
            pass
        elif isinstance(c, str):
            m = {**m, "content": redactor.redact(c)}
        elif isinstance(c, list):
            m = {**m, "content": [{**p, "text": redactor.redact(p["text"])}
                                  if isinstance(p, dict) and isinstance(p.get("text"), str)
                                  else p for p in c]}
        out.append(m)
    return out
