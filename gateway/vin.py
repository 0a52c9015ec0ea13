"""VIN check digits (ISO 3779 / 49 CFR 565): the one place they are computed."""

from __future__ import annotations

VALUES = {**{str(d): d for d in range(10)},
          **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
          **dict(zip("JKLMN", range(1, 6), strict=True)), "P": 7, "R": 9,
          **dict(zip("STUVWXYZ", range(2, 10), strict=True))}
WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def check_digit(vin: str) -> str:
    total = sum(VALUES[c] * w for c, w in zip(vin.upper(), WEIGHTS, strict=True))
    return "X" if total % 11 == 10 else str(total % 11)


def valid(vin: str) -> bool:
    vin = vin.upper()
    if len(vin) != 17 or any(c in "IOQ" or c not in VALUES for c in vin):
        return False
    return vin[8] == check_digit(vin)
