"""Joins a resumed answer to the part the customer already has, so nothing is said twice.

When a tier drops mid-answer, the next one is asked to continue the partial text. Many
models don't: they answer again from the start (word for word, or in other words), or
repeat the last few words before going on. `Splice` reads the resumed output before any
of it is passed on and decides, once it has seen enough words, what it is:

- CONTINUES: new text after the partial one (a repeated tail is trimmed): passed on.
- RESTARTED: the partial answer again, word for word, then more: only what is new
  is passed on, once the output has caught up with what the customer has.
- DIVERGED: an answer of its own (it began again in other words, or began again word for
  word and then went another way). Gluing it on would give two answers in one, so it
  replaces the partial one: the caller sends a `restart` switch with the whole new text.

Words are compared case-folded, without punctuation, so "Sure, the" and "sure the" are the
same words. Pure: no I/O, no clock; tested with plain strings.

Where this sits in a turn: docs/design.md, "One turn".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_WORD = re.compile(r"\w+")

# Function words, English and Spanish: what two different sentences share anyway, so they
# don't count when telling "the same answer in other words" from "the rest of the answer".
_COMMON = frozenset("""
a an and are as at be but by can do for from has have i if in is it its me my of on or
our so that the their there this to up was we were what when which will with you your
al con de del el en es la las lo los mas más me mi mis no o para pero por que qué se si
sí su sus te tu tus un una uno y ya
""".split())


class Verdict(StrEnum):
    PENDING = "pending"        # not enough words yet to tell
    CONTINUES = "continues"    # the rest of the answer
    RESTARTED = "restarted"    # the partial answer again, then the rest: trimmed
    DIVERGED = "diverged"      # another answer: it replaces the partial one


@dataclass(frozen=True, slots=True)
class Spliced:
    verdict: Verdict
    text: str   # what to pass on now; for DIVERGED, the whole new answer so far


_PENDING = Spliced(Verdict.PENDING, "")


def _words(text: str) -> list[re.Match[str]]:
    return list(_WORD.finditer(text))


def _key(m: re.Match[str]) -> str:
    return m.group().casefold()


class Splice:
    """One resumed attempt's output, judged against the partial answer `partial`."""

    # Words read before a start that isn't the partial answer verbatim is judged: enough to
    # see past a preamble ("Sure, to put it another way:") to what it says.
    WINDOW = 10
    ECHO = 3          # verbatim words from the start that make it a restart, not a sentence
    SAME = 0.4        # share of its first words found in the partial's opening: said again

    def __init__(self, partial: str) -> None:
        self.partial = partial
        ws = _words(partial)
        self._p = [_key(m) for m in ws]
        # The partial may stop inside a word ("eng" of "engine"): its last word is a stem.
        self._p_cut = bool(ws) and ws[-1].end() == len(partial)
        self._p_tail = partial[ws[-1].end():] if ws else partial   # text after its last word
        self._buf = ""
        self.verdict = Verdict.PENDING
        self.trimmed = False   # it said the partial answer, or its end, again: cut out

    @property
    def settled(self) -> bool:
        return self.verdict is not Verdict.PENDING

    def feed(self, text: str) -> Spliced:
        """More output. Once settled, text passes through unchanged."""
        if self.settled:
            return Spliced(self.verdict, text)
        self._buf += text
        return self._judge(final=False)

    def end(self) -> Spliced:
        """The output ended: judge what there is."""
        if self.settled:
            return Spliced(self.verdict, "")
        return self._judge(final=True)

    def diverge(self) -> Spliced:
        """Judged now as an answer of its own (it went on to call tools)."""
        return self._settle(Verdict.DIVERGED, self._buf)

    # -- internals ----------------------------------------------------------

    def _judge(self, final: bool) -> Spliced:
        buf, p = self._buf, self._p
        ws = _words(buf)
        # A word at the very end may still be growing, unless the output has ended.
        whole = ws if final or not ws or ws[-1].end() < len(buf) else ws[:-1]
        out = [_key(m) for m in whole]
        if not p:
            return self._settle(Verdict.CONTINUES, buf)
        same = 0
        while same < len(out) and same < len(p) and self._match(out[same], same):
            same += 1
        if same == len(p) and same > 0:
            # Caught up: the partial answer again, word for word. Pass on what follows it
            # (once past the partial's own ending, ". " say, if the output has it too).
            if not final and self._in_tail(buf, whole[same - 1]):
                return _PENDING
            self.trimmed = True
            return self._settle(Verdict.RESTARTED, self._after(buf, whole[same - 1]))
        if same == len(out) and not final:
            return _PENDING   # so far the partial answer again: wait until it catches up
        if same >= min(self.ECHO, len(p)):
            # It began again word for word, then went another way (or stopped short).
            return self._settle(Verdict.DIVERGED, buf)
        # Not the partial answer from its start. Maybe its last words again, then more.
        tail = self._echoed_tail(out, final)
        if tail is None:
            return _PENDING
        if tail:
            if not final and self._in_tail(buf, whole[tail - 1]):
                return _PENDING
            self.trimmed = True
            return self._settle(Verdict.CONTINUES, self._after(buf, whole[tail - 1]))
        if len(out) < self.WINDOW and not final:
            return _PENDING
        return self._settle(Verdict.DIVERGED if self._said_again(out, buf) else Verdict.CONTINUES,
                            buf)

    def _match(self, word: str, i: int) -> bool:
        if word == self._p[i]:
            return True
        # The partial's last word, cut off mid-word, and the output says it whole.
        return i == len(self._p) - 1 and self._p_cut and word.startswith(self._p[i])

    def _echoed_tail(self, out: list[str], final: bool) -> int | None:
        """How many of the output's first words repeat the partial's last ones (0: none;
        None: can't tell yet). One word alone is not an echo, unless it completes a word
        the partial cut off."""
        p = self._p
        best = 0
        for k in range(min(len(p), self.WINDOW * 2), 0, -1):
            end = p[-k:]
            if len(out) >= k:
                if out[:k] == end or (self._p_cut and out[:k - 1] == end[:-1]
                                      and out[k - 1].startswith(end[-1])):
                    if k >= 2 or (self._p_cut and out[0] != p[-1]):
                        best = k
                        break
            elif not final and out and end[:len(out)] == out and k >= 2:
                return None   # so far the partial's last words: wait for the rest
        return best

    def _in_tail(self, buf: str, last: re.Match[str]) -> bool:
        """What follows the matched words is, so far, the start of the partial's ending."""
        rest = buf[last.end():]
        return len(rest) < len(self._p_tail) and self._p_tail.startswith(rest)

    def _after(self, buf: str, last: re.Match[str]) -> str:
        """What follows the matched words, past the partial's own trailing punctuation."""
        rest = buf[last.end():]
        if self._p_cut and last.group().casefold() != self._p[-1] \
                and last.group().casefold().startswith(self._p[-1]):
            rest = buf[last.start() + len(self._p[-1]):]   # the rest of the cut word
        tail = self._p_tail   # e.g. ". " after "truck": the customer has it already
        i = 0
        while i < len(rest) and i < len(tail) and rest[i] == tail[i]:
            i += 1
        return rest[i:]

    def _said_again(self, out: list[str], raw: str) -> bool:
        """Its first words are mostly the partial's opening ones: the same answer again.

        How it begins weighs in. A continuation of a sentence cut in its middle begins with
        a space, a small letter or punctuation; an answer begins with a capital ("Sure",
        "¡Claro!"). Begun like an answer after a cut sentence, two of the opening's words
        said again are enough; begun like the rest of a sentence, it takes three and most
        of what it says."""
        words = [w for w in out[:self.WINDOW] if w not in _COMMON]
        opening = {w for w in self._p[:self.WINDOW * 3] if w not in _COMMON}
        if len(words) < 2 or not opening:
            return False
        shared = sum(w in opening for w in words)
        begins_anew = raw[:1].isupper() or raw[:1] in "¡¿"
        cut_mid_sentence = self.partial.rstrip()[-1:] not in (".", "!", "?", ":")
        if begins_anew and cut_mid_sentence:
            return shared >= 2 and shared / min(len(words), len(opening)) >= self.SAME
        return shared >= 3 and shared / len(words) >= self.SAME

    def _settle(self, verdict: Verdict, text: str) -> Spliced:
        self.verdict = verdict
        self._buf = ""
        return Spliced(verdict, text)
