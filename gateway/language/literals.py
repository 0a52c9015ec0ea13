"""What a regex needs to find before it can match: literal pre-checks for ASCII text.

A pattern such as `\\bmy\\s+score\\b` can only match a text that contains "score"; a
substring test says so in a fraction of the time the regex takes to scan and fail, and most
patterns fail on most questions. The pre-check is only ever a necessary condition: where it
passes, the regex still decides. It is derived from the pattern's own parse (the standard
library's, `re._parser`); a pattern it cannot read gets no pre-check, so it always runs.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

_c: Any
_p: Any
try:  # private, but stable since 3.11; without it every pattern simply runs
    _c = importlib.import_module("re._constants")
    _p = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover
    _c = _p = None

_REPEATS = frozenset(getattr(_c, n) for n in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
                     if _c is not None and hasattr(_c, n))


def needed(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Lowercase ASCII strings, at least one of which every match of `pattern` in an ASCII
    text contains (compared with the text lowercased); None when no such set is known."""
    if _p is None:
        return None
    try:
        return _best(_seq(_p.parse(pattern.pattern, pattern.flags)))
    except Exception:  # a parse this module does not follow: no pre-check, never wrong
        return None


def _best(options: Iterable[tuple[str, ...]]) -> tuple[str, ...] | None:
    """Of several conditions that all hold, the most selective: the longest shortest string."""
    best: tuple[str, ...] | None = None
    for alts in options:
        if best is None or min(map(len, alts)) > min(map(len, best)):
            best = alts
    return best


def _seq(items: Any) -> list[tuple[str, ...]]:
    """Every condition a sequence of parsed items imposes (each one must hold)."""
    found: list[tuple[str, ...]] = []
    run: list[str] = []

    def cut() -> None:
        if run:
            found.append(("".join(run),))
            run.clear()

    for op, av in items:
        if op == _c.LITERAL and av < 128:
            run.append(chr(av).lower())
            continue
        cut()
        sub: tuple[str, ...] | None = None
        if op == _c.SUBPATTERN:
            sub = _best(_seq(av[-1]))
        elif op == _c.BRANCH:
            branches = [_best(_seq(b)) or () for b in av[1]]
            if all(branches):
                sub = tuple(sorted({s for b in branches for s in b}))
        elif op in _REPEATS and av[0] >= 1:
            sub = _best(_seq(av[2]))
        if sub is not None and all(sub):
            found.append(sub)
    cut()
    return found


class Prechecked:
    """A compiled pattern behind its pre-check. `low` is the text lowercased when it is
    ASCII (any padding or extra text is fine: a pre-check may only pass too often), None
    otherwise: then the regex always runs."""

    __slots__ = ("need", "pattern")

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.need = needed(pattern)

    def may_match(self, low: str | None) -> bool:
        if low is None or self.need is None:
            return True
        for n in self.need:
            if n in low:
                return True
        return False

    def search(self, text: str, low: str | None) -> re.Match[str] | None:
        return self.pattern.search(text) if self.may_match(low) else None

    def finditer(self, text: str, low: str | None) -> Iterator[re.Match[str]]:
        return self.pattern.finditer(text) if self.may_match(low) else iter(())
