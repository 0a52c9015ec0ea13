"""What personal data the gateway finds: its kinds, and one value found."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("EMAIL", "SSN", "CARD", "ROUTING", "BANK_ACCOUNT", "DL", "VIN", "PLATE", "DOB",
         "ADDRESS", "PHONE", "CREDIT_SCORE", "INCOME", "NAME")

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
