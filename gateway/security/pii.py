"""Personal data out before a message leaves the building; back in where the answer quotes it.

Pure and table-tested. Each kind is a pattern plus a check that cuts false alarms:
e-mail addresses; US phone numbers; card numbers (13-19 digits passing Luhn); US SSNs
(area/group/serial rules, or nine digits next to the words SSN / social security);
driver's licence numbers (after the words driver's licence / DL); VINs (17 characters,
valid check digit) when tied to a person ("my", "our", "trade-in", …) — a VIN on the
dealership's own lot is not personal. Each value becomes a typed placeholder, the same
value the same placeholder throughout a conversation, and `Restorer` puts the values
back into the streamed answer even when a placeholder is split across chunks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_VIN_MAP = {**{str(d): d for d in range(10)},
            **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
            **dict(zip("JKLMN", range(1, 6), strict=True)), "P": 7, "R": 9,
            **dict(zip("STUVWXYZ", range(2, 10), strict=True))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<![\w+])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?!\d)"
                   r"|(?<![\w+])\+?1?\d{10}(?!\d)")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
SSN = re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?!\d)")
SSN_WORDS = re.compile(r"\b(?:ssn|social security(?: number| no\.?| #)?)\b\D{0,12}(\d{9})(?!\d)",
                       re.I)
DL = re.compile(r"\b(?:driver'?s?\s+licen[cs]e(?:\s+(?:number|no\.?|#))?|DL(?:\s+(?:number|no\.?|#))?"
                r"|licen[cs]e\s+(?:number|no\.?|#))\s*(?:is|:|#)?\s*"
                r"([A-Z0-9][A-Z0-9-]{4,14})\b", re.I)
VIN = re.compile(r"\b[A-HJ-NPR-Z0-9]{17}\b")
PERSONAL = re.compile(r"\b(?:my|our|mine|i own|i have|trade[- ]?in|trading in|registered to|"
                      r"my wife'?s|my husband'?s|owned)\b", re.I)


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
    if len(vin) != 17 or any(c in "IOQ" for c in vin) or not any(c.isdigit() for c in vin):
        return False
    total = sum(_VIN_MAP[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    check = "X" if total % 11 == 10 else str(total % 11)
    return vin[8] == check


@dataclass(frozen=True, slots=True)
class Found:
    kind: str
    start: int
    end: int
    value: str


def find(text: str) -> list[Found]:
    """Every personal value in the text, non-overlapping, in order. Pure."""
    hits: list[Found] = []
    for m in EMAIL.finditer(text):
        hits.append(Found("EMAIL", m.start(), m.end(), m.group()))
    for m in SSN.finditer(text):
        hits.append(Found("SSN", m.start(), m.end(), m.group()))
    for m in SSN_WORDS.finditer(text):
        hits.append(Found("SSN", m.start(1), m.end(1), m.group(1)))
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            hits.append(Found("CARD", m.start(), m.end(), m.group()))
    for m in DL.finditer(text):
        if any(c.isdigit() for c in m.group(1)):
            hits.append(Found("DL", m.start(1), m.end(1), m.group(1)))
    for m in VIN.finditer(text.upper()):
        window = text[max(0, m.start() - 60):m.start()]
        if vin_ok(m.group()) and PERSONAL.search(window):
            hits.append(Found("VIN", m.start(), m.end(), text[m.start():m.end()]))
    for m in PHONE.finditer(text):
        hits.append(Found("PHONE", m.start(), m.end(), m.group()))
    # Earlier kinds win overlaps (an SSN or card is not also a phone number).
    chosen: list[Found] = []
    for h in hits:
        if not any(h.start < c.end and c.start < h.end for c in chosen):
            chosen.append(h)
    return sorted(chosen, key=lambda f: f.start)


@dataclass
class Redactor:
    """Placeholders for one conversation: the same value gets the same placeholder."""

    values: dict[str, str] = field(default_factory=dict)  # placeholder → value
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)

    def redact(self, text: str) -> str:
        out, last = [], 0
        for f in find(text):
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


_PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE|CARD|SSN|DL|VIN)_\d{1,3}\]")
_MAX_PLACEHOLDER = 12


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


def redact_messages(messages: Iterable[dict], redactor: Redactor) -> list[dict]:
    """Copies of the messages with personal values replaced (text content only)."""
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            m = {**m, "content": redactor.redact(c)}
        elif isinstance(c, list):
            m = {**m, "content": [{**p, "text": redactor.redact(p["text"])}
                                  if isinstance(p, dict) and isinstance(p.get("text"), str)
                                  else p for p in c]}
        out.append(m)
    return out
