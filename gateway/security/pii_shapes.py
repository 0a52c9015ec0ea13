"""More shapes of personal data, found after `pii.find`'s own: the ways people write their
identity that cue phrases alone miss. Pure; `pii.find` merges these with its own hits.

- SSN: the last four after "last four/4 of my social"; an ITIN (9XX-7X-XXXX and its
  ranges), which is a taxpayer id like an SSN.
- DL: "licencia de manejo", a state code before the number ("DL TX 12345678"), digits in
  groups ("14 392 881").
- DOB: any whole date whose year is a birth year (1920 to 15 years ago), with no cue
  needed: at a car dealership, such a date is somebody's birthday, not an appointment;
  also "nací el …" with its accent.
- ADDRESS: street types that come first ("Calle Juárez 118", "2203 Calle Ébano", "Rue …",
  "Avenida …"), post-office and rural-route boxes ("PO Box 44", "RR 4 Box 27", "HC 3 Box
  9"), county roads, each with the city, state and ZIP that follow.
- NAME: a title before a surname ("Mr. Boudreaux", "señor Ramírez"), "Last, First" at the
  start of a message, a name that opens a message with "here", a name alone at the end
  (a signature), and a name after a label ("contact:", "owner", "the name on the card is",
  "my husband's name,").
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from gateway.security.pii_kinds import MONTHS, Found

SSN_LAST4 = re.compile(r"\blast\s+(?:four|4)(?:\s+digits)?\s+(?:of\s+)?(?:my\s+|the\s+)?"
                       r"(?:social|ssn|ss#?|seguro(?:\s+social)?)(?:\s+(?:is|number|#|es))?\s*[:#]?\s*"
                       r"(\d{4})\b", re.I)
ITIN = re.compile(r"(?<!\d)9\d\d([- ]?)(?:5[0-9]|6[0-5]|7\d|8[0-8]|9[0-2]|9[4-9])\1\d{4}(?!\d)")
ITIN_CUE = re.compile(r"\b(?:itin|tax\s*id|taxpayer\s+id(?:entification)?)(?:\s+(?:number|no\.?|#|is|es))*"
                      r"\s*[:#]?\s*(\d{3}[- ]?\d{2}[- ]?\d{4})(?!\d)", re.I)
DL_MORE = re.compile(
    r"\b(?:licencia(?:\s+de\s+(?:conducir|manejo|manejar))?|driver'?s?\s+licen[cs]e|dl|"
    r"licen[cs]e)(?:\s+(?:number|no\.?|#|n[uú]mero|num|is|es))*\s*[:#]?\s*"
    r"(?:(?:[A-Z]{2})\s+)?((?:[A-Z]?\d[\d ]{4,12}\d)|[A-Z]\d{6,12})\b", re.I)
_DATE_NUM = re.compile(r"(?<![\d/.-])(\d{1,2})[/.-](\d{1,2})[/.-]((?:19|20)\d\d)(?![\d/.-])"
                       r"|(?<![\d-])((?:19|20)\d\d)-(\d\d)-(\d\d)(?!\d)")
_DATE_WORDS = re.compile(
    rf"\b(?:{MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+((?:19|20)\d\d)"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+|de\s+)?{MONTHS},?\s+(?:de\s+|del\s+)?((?:19|20)\d\d))\b",
    re.I)
_PLACE_TAIL = (r"(?:,?\s+(?:Col\.?|Colonia)\s+[A-ZÀ-Ý][\wÀ-ÿ]+(?:\s+[A-ZÀ-Ý][\wÀ-ÿ]+)?)?"
               r"(?:,?\s+[A-ZÀ-Ý][\wÀ-ÿ]+(?:\s+[A-ZÀ-Ý][\wÀ-ÿ]+)?)?"
               r"(?:,?\s+(?:[A-Z]{2}|[A-Z][a-z]{2,5}\.)(?=[\s,.]|$))?(?:,?\s+\d{5}(?:-\d{4})?)?")
_FIRST_TYPES = r"(?:calle|avenida|av\.|avda\.?|rue|camino|paseo|privada|boulevard|blvd\.?|callej[oó]n)"
ADDRESS_MORE = re.compile(
    rf"\b(?:\d{{1,6}}\s+{_FIRST_TYPES}\s+(?:[A-ZÀ-Ýa-zà-ÿ'.-]+\s?){{1,3}}?"
    rf"(?:,?\s+(?:apt|apartment|unit|suite|ste|#)\.?\s*#?\s*[A-Za-z0-9-]+)?"
    rf"|{_FIRST_TYPES}\s+(?:[A-ZÀ-Ý][\wÀ-ÿ'.-]+\s){{1,3}}\d{{1,6}}"
    rf"|(?:p\.?\s?o\.?\s+box|post\s+office\s+box|apartado(?:\s+postal)?)\s+\d{{1,6}}"
    rf"|(?:rr|r\.r\.|rural\s+route|hc|star\s+route)\s*\d{{1,4}},?\s+box\s+\d{{1,6}}"
    rf"|(?:county|country|co\.?)\s+(?:rd|road)\.?\s+\d{{1,5}})"
    rf"{_PLACE_TAIL}", re.I)

# Names.
_TITLE = re.compile(r"\b(?:mr|mrs|ms|miss|mx|dr|sr|sra|srta)\.?\s+|\b(?:se[nñ]or|se[nñ]ora|"
                    r"se[nñ]orita|don|doña)\s+", re.I)
_WORD = r"[A-ZÀ-Ý][a-zà-ÿ'’]+(?:-[A-ZÀ-Ý]?[a-zà-ÿ'’]+)*"
_ANY_WORD = r"[A-Za-zÀ-ÿ][A-Za-zà-ÿ'’]+(?:-[A-Za-zà-ÿ'’]+)*"
TITLED = re.compile(rf"(?:{_TITLE.pattern})((?:Mc|Mac|O'|De|Le|La)?{_WORD}(?:\s+{_WORD})?)")
LAST_FIRST = re.compile(rf"^\s*({_ANY_WORD},\s+{_ANY_WORD})(?=\s*[.—–-]|\s*$)", re.M)
HERE = re.compile(rf"(?:^|(?:hi|hey|hello|hola|buenas)[!,.]?\s+)(?:(?:it'?s|this\s+is)\s+)?"
                  rf"({_ANY_WORD}(?:\s+{_ANY_WORD}){{0,2}})\s+here\b", re.I | re.M)
SIGNATURE = re.compile(rf"(?:^|[.!?\n,]\s*|-\s*|(?:thx|thanks|ty|regards|best|cheers|gracias|"
                       rf"saludos|atentamente)[,.!]*\s+)({_ANY_WORD}(?:\s+{_ANY_WORD})?)"
                       rf"\s*[.!]*\s*$", re.I)
LABELLED = re.compile(
    rf"(?:\b(?:contact|owner|customer|buyer|co-?buyer|applicant|cliente|titular)\s*(?::|is|as|es)?\s*"
    rf"|\bname\s+on\s+(?:it|the\s+\w+)\s+is\s+|\b(?:'s|s)\s+name\s*(?:is|,)\s*"
    rf"|\b(?:application|solicitud)\s*:\s*)"
    rf"((?:Mc|Mac|O'|De|Le)?{_WORD}(?:,?\s+{_WORD}){{0,2}})")


def birth_year(year: int) -> bool:
    """A year somebody alive and old enough to buy a car was born in."""
    return 1920 <= year <= time.gmtime().tm_year - 15


def structured(text: str, on: frozenset[str]) -> list[Found]:
    """SSN, DL, DOB and ADDRESS shapes beyond pii.find's own."""
    hits: list[Found] = []
    if "SSN" in on:
        hits += [Found("SSN", m.start(1), m.end(1), m.group(1)) for m in SSN_LAST4.finditer(text)]
        hits += [Found("SSN", m.start(1), m.end(1), m.group(1)) for m in ITIN_CUE.finditer(text)]
        hits += [Found("SSN", m.start(), m.end(), m.group()) for m in ITIN.finditer(text)]
    if "DL" in on:
        for m in DL_MORE.finditer(text):
            value = m.group(1).rstrip()
            if sum(c.isdigit() for c in value) >= 5:
                hits.append(Found("DL", m.start(1), m.start(1) + len(value), value))
    if "DOB" in on:
        for m in _DATE_NUM.finditer(text):
            year = int(m.group(3) or m.group(4))
            if birth_year(year):
                hits.append(Found("DOB", m.start(), m.end(), m.group()))
        for m in _DATE_WORDS.finditer(text):
            if birth_year(int(m.group(1) or m.group(2))):
                hits.append(Found("DOB", m.start(), m.end(), m.group()))
    if "ADDRESS" in on:
        for m in ADDRESS_MORE.finditer(text):
            value = m.group().rstrip(",. ")
            hits.append(Found("ADDRESS", m.start(), m.start() + len(value), value))
    return hits


def names(text: str, looks_like_name: Callable[[list[str]], bool]) -> list[Found]:
    """NAME shapes beyond pii.find's cues; `looks_like_name(words)` is pii's own test
    (a listed first name, or capitalised words that are not common ones)."""
    hits: list[Found] = []
    for m in TITLED.finditer(text):
        hits.append(Found("NAME", m.start(1), m.end(1), m.group(1)))
    for m in LAST_FIRST.finditer(text):
        last, first = (w.strip() for w in m.group(1).split(","))
        if looks_like_name([first]) or looks_like_name([last]):
            hits.append(Found("NAME", m.start(1), m.end(1), m.group(1)))
    for pattern in (HERE, SIGNATURE, LABELLED):
        for m in pattern.finditer(text):
            words = m.group(1).replace(",", " ").split()
            if words and looks_like_name(words):
                hits.append(Found("NAME", m.start(1), m.end(1), m.group(1)))
    return hits
