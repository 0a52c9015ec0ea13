"""What personal data the gateway finds: its kinds, and one value found."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum


class PiiKind(StrEnum):
    """One kind of personal value. Its value names its placeholders ([EMAIL_1]); `key` is
    how the config names it (`privacy.redact.email`). In the order overlaps are settled."""

    EMAIL = "EMAIL"
    SSN = "SSN"
    CARD = "CARD"
    ROUTING = "ROUTING"
    BANK_ACCOUNT = "BANK_ACCOUNT"
    DL = "DL"
    VIN = "VIN"
    PLATE = "PLATE"
    DOB = "DOB"
    ADDRESS = "ADDRESS"
    PHONE = "PHONE"
    CREDIT_SCORE = "CREDIT_SCORE"
    INCOME = "INCOME"
    NAME = "NAME"

    @property
    def key(self) -> str:
        return self.value.lower()


KINDS = tuple(k.value for k in PiiKind)
PII_KEYS = tuple(k.key for k in PiiKind)   # the config's names for them

# Month names, English and Spanish, for dates written in words.
MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|enero|febrero|marzo|"
          r"abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre)")


@dataclass(frozen=True, slots=True)
class Found:
    kind: str
    start: int
    end: int
    value: str


def strip_accents(word: str) -> str:
    """Without accents, as people type: "Nguyễn" as "Nguyen", "Tomás" as "Tomas"."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c)
                   ).replace("Đ", "D").replace("đ", "d")
