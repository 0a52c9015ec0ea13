"""More shapes of personal data, found after `pii.find`'s own: the ways people write their
identity that cue phrases alone miss. Pure; `pii.find` merges these with its own hits.

- SSN: the last four after "last four/4 of my social"; an ITIN (9XX-7X-XXXX and its
  ranges), which is a taxpayer id like an SSN.
- DL: "licencia de manejo", a state code before the number ("DL LA 00771234"), digits in
  groups ("22 610 907").
- DOB: any whole date whose year is a birth year (1920 to 15 years ago), with no cue
  needed: at a car dealership, such a date is somebody's birthday, not an appointment;
  also "nací el …" with its accent.
- ADDRESS: street types that come first ("Calle Olmo 27", "815 Avenida Central",
  "Rue …"), post-office and rural-route boxes ("PO Box 3071", "RR 2 Box 15", "HC 1 Box
  40"), county roads, each with the city, state and ZIP that follow.
- NAME: a title before a surname ("Dr. Okafor", "señora Quintero"), "Last, First" at the
  start of a message or after a label, a name that opens a message with "here", a name
  after a sign-off ("thanks so much, Ines", "-Bo", "Regards,\nAda Ruiz") or alone at the
  end, a name after a label ("contact:", "owner", "cardholder", "registered to", "the name
  on the card is", "my husband's name,"), and a Vietnamese name, family name first
  ("Trương Văn Bình").
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable

from gateway.security.pii_kinds import MONTHS, Found, strip_accents

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

# Names. The cue words in any case, the name words capitalised (`_WORD`) unless noted.
_TITLE = re.compile(r"\b(?:mr|mrs|ms|miss|mx|dr|sr|sra|srta)\.?\s+|\b(?:se[nñ]or|se[nñ]ora|"
                    r"se[nñ]orita|don|doña)\s+", re.I)
# A capitalised name word, with the prefixes surnames take: McAllister, O'Hara, DeLuca.
_WORD = r"(?:Mc|Mac|O['’]|D['’]|De|Le|La|Di|Van)?[A-ZÀ-Ý][a-zà-ÿ'’]+(?:-[A-ZÀ-Ý]?[a-zà-ÿ'’]+)*"
_ANY_WORD = r"[A-Za-zÀ-ÿ][A-Za-zà-ÿ'’]+(?:-[A-Za-zà-ÿ'’]+)*"
TITLED = re.compile(rf"(?i:{_TITLE.pattern})({_WORD}(?:\s+{_WORD})?)")
# After an abbreviated title the surname may be typed in lowercase ("ask for mrs. ortiz");
# "miss" and "don" are English words too, so only the abbreviations count here.
TITLED_LOWER = re.compile(rf"\b(?i:mrs|mr|ms|sra|srta)\.?\s+({_ANY_WORD})")
LAST_FIRST = re.compile(rf"^\s*({_ANY_WORD},\s+{_ANY_WORD})(?=\s*[.—–-]|\s*$)", re.M)
HERE = re.compile(rf"(?:^|[.!?]\s+|(?:hi|hey|hello|hola|buenas)[!,.]?\s+)(?:(?:it'?s|this\s+is)"
                  rf"\s+)?({_ANY_WORD}(?:\s+{_ANY_WORD}){{0,2}})\s+here\b", re.I | re.M)
# A sign-off before a name says it is one ("thx, Ana", "-Tre", "Regards,\nAna Díaz"); a
# name alone at the end of a message has to look like one.
SIGNED = re.compile(rf"(?:(?:^|[\s.!?,])-+\s*|\b(?i:(?:thx|thanks|thank\s+you)(?:\s+(?:so|very)"
                    rf"\s+much|\s+a\s+lot|\s+again)?|ty|regards|best|cheers|sincerely|"
                    rf"gracias|saludos|atentamente)[,.!]*\s+)"
                    rf"({_WORD}(?:[ \t]+{_WORD}){{0,2}})[ \t]*[.!]*[ \t]*(?:$|\n)", re.M)
SIGNATURE = re.compile(rf"(?:^|[.!?\n,]\s*)({_ANY_WORD}(?:\s+{_ANY_WORD})?)\s*[.!]*\s*$",
                       re.I)
LABELLED = re.compile(
    rf"(?:\b(?i:contact|owner|customer|buyer|co-?buyer|co-?signer|applicant|(?:policy|account|"
    rf"card)\s*holder|driver|registered\s+to|in\s+the\s+name\s+of|under\s+the\s+name|"
    rf"sign(?:ed)?\s+(?:it\s+)?as|a\s+nombre\s+de|cliente|titular)\s*"
    rf"(?i::|is|as|es)?\s*|\b(?i:name\s+on\s+(?:it|the\s+\w+)\s+is)\s+"
    rf"|\b(?i:'s|s)\s+(?i:name)\s*(?i:is|,)\s*|\b(?i:application|solicitud)\s*:\s*)"
    rf"({_WORD}(?:,?\s+{_WORD}){{0,2}})")


# Vietnamese names put the family name first ("Nguyen Van An"): one of the common family
# names, then one or two capitalised words (two after a two-letter one, "Le" being French
# too). Faker's vi_VN list, and the common family names it lacks.
def _vietnamese() -> tuple[frozenset[str], frozenset[str]]:
    """Family names, and the middle names ("Văn", "Thị") that follow them, with and
    without accents."""
    from faker.providers.person.vi_VN import Provider
    family = (*Provider.last_names, "Phan", "Huỳnh", "Võ", "Đỗ", "Hồ", "Ngô", "Lý", "Trương",
              "Đinh", "Lâm")
    middle = {w for n in Provider.middle_names for w in n.split()}
    return frozenset(family), frozenset(strip_accents(w).lower() for w in middle)


FAMILY_FIRST, MIDDLE_NAMES = _vietnamese()
_FOLDED_FAMILY = "|".join(sorted({re.escape(n) for f in FAMILY_FIRST
                                  for n in (f, strip_accents(f))}, key=len, reverse=True))
VIET_ORDER = re.compile(rf"\b({_FOLDED_FAMILY})\s+({_WORD})(?:\s+({_WORD}))?\b")
# Capitalised words a sign-off may end with that are not a name.
_NOT_SIGNED = frozenset("""the team sales service scout lakeside motors dealership again
everyone all you much so in advance""".split())


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


def names(text: str, looks_like_name: Callable[[list[str]], bool],
          common: Callable[[str], bool]) -> list[Found]:
    """NAME shapes beyond pii.find's cues; `looks_like_name(words)` is pii's own test
    (a listed first name, or capitalised words that are not common ones), `common(word)`
    its list of words that are not names ("you", "have")."""
    hits: list[Found] = []
    for m in TITLED.finditer(text):
        hits.append(Found("NAME", m.start(1), m.end(1), m.group(1)))
    for m in TITLED_LOWER.finditer(text):
        if not common(m.group(1)):
            hits.append(Found("NAME", m.start(1), m.end(1), m.group(1)))
    for m in LAST_FIRST.finditer(text):
        last, first = (w.strip() for w in m.group(1).split(","))
        if looks_like_name([first]) or looks_like_name([last]):
            hits.append(Found("NAME", m.start(1), m.end(1), m.group(1)))
    for m in SIGNED.finditer(text):   # a cue that names a person for sure
        words = m.group(1).split()
        if not any(w.lower() in _NOT_SIGNED for w in words):
            hits.append(Found("NAME", m.start(1), m.end(1), m.group(1)))
    for m in VIET_ORDER.finditer(text):
        given = [w for w in (m.group(2), m.group(3)) if w]
        if (len(m.group(1)) > 2 or len(given) == 2) and not any(
                common(w) and strip_accents(w).lower() not in MIDDLE_NAMES for w in given):
            hits.append(Found("NAME", m.start(), m.end(), m.group()))
    for pattern in (HERE, SIGNATURE, LABELLED):
        for m in pattern.finditer(text):
            words = m.group(1).replace(",", " ").split()
            if words and looks_like_name(words):
                hits.append(Found("NAME", m.start(1), m.end(1), m.group(1)))
    return hits
