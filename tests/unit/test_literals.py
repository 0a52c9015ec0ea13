"""Literal pre-checks in front of the intent rules and the search-filter rules: never a
reason to skip a match."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.inventory import extract
from gateway.language.literals import Prechecked, needed
from tests.unit.test_routing import C, S

PATTERNS = [p for i in S.intents.values() for p in i.patterns] + [
    v.pattern for v in vars(extract).values() if isinstance(v, Prechecked)]
ASCII = st.characters(min_codepoint=0, max_codepoint=127)


@pytest.mark.parametrize(("pattern", "want"), [
    (r"\bmy\s+score\b", ("score",)),
    (r"\b(credit|fico|beacon)\s+score\b", ("score",)),
    (r"\b(under|below|less than) \$?\d", ("below", "less than", "under")),
    (r"\b(mon|tues|wednes|thurs|fri|satur|sun)day\b", (
        "fri", "mon", "satur", "sun", "thurs", "tues", "wednes")),
    (r"\bcu[aá]nto\s+(de\s+)?enganche\b", ("enganche",)),   # á breaks the run: "cu" is shorter
    (r"(ab)+c", ("ab",)),
    (r"\bSHOW me\b", ("show me",)),                           # compared lowercased
])
def test_what_a_pattern_needs_is_read_from_its_parse(pattern, want):
    assert needed(re.compile(pattern, re.IGNORECASE)) == want


@pytest.mark.parametrize("pattern", [
    r"\d+", r"(a|\d)x?", r"(ab)?\d", r"[a-z]+", r"(?=loan)\w+", r"(ab)*c?", "é+",
])
def test_a_pattern_with_no_literal_it_always_needs_gets_no_pre_check(pattern):
    assert needed(re.compile(pattern)) is None


def test_a_keyword_with_letters_beyond_ascii_still_needs_its_ascii_part():
    """An intent's keywords are one regex: each keyword adds what ASCII text must hold for
    it, so "fınancing" (IGNORECASE pairs "ı" with "i") needs "nancing", not "financing"."""
    kw = re.compile(r"(?<!\w)(?:crédito|fınancing|loan)(?!\w)", re.IGNORECASE)
    assert needed(kw) == ("dito", "loan", "nancing")
    assert Prechecked(kw).search("what about FINANCING?", "what about financing?")


@pytest.mark.parametrize("pattern", [p for p in PATTERNS if needed(p) is not None],
                         ids=lambda p: p.pattern[:40])
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=25, deadline=None)
@given(data=st.data())
def test_every_match_of_a_configured_pattern_contains_what_it_needs(pattern, data):
    """Hypothesis writes ASCII texts the pattern matches: the pre-check must pass in each."""
    need = needed(pattern)
    assert need is not None
    # A literal such as the "á" of "[aá]" must be in the alphabet; the texts are ASCII
    extra = "".join(sorted({ch for ch in pattern.pattern if not ch.isascii()}))
    text = data.draw(st.from_regex(pattern, alphabet=st.characters(
        max_codepoint=127, include_characters=extra)).filter(str.isascii))
    assert any(n in text.lower() for n in need), (text, need)


def _by_regex(text: str) -> str:
    """The rules as written, every regex run: what the shortcuts must agree with."""
    best, best_score = None, 0
    for rule in C._rules:
        score = len(rule.keywords.pattern.findall(text)) if rule.keywords else 0
        score += sum(1 for p in rule.intent.patterns if p.search(text))
        if score and rule.intent.private:
            return rule.intent.name
        if score > best_score:
            best, best_score = rule.intent, score
    return (best or C.default).name


PIECES = st.sampled_from(
    [k for i in S.intents.values() for k in i.keywords]
    + ["score", "my score", "720 credit score", "/mo", "per month", "2019", "5pm", "10:30 am",
       "Saturday", "monday", "approved", "pre-approved", "owe $4", "we make $5", "HELLO", "hi",
       "show me", "under $3", "how many", "left", "do you still have", "any used", "looking for a",
       "what car should", "self-employed", "born in", "cuanto enganche", "gano 30", "ı", "İ",
       "\u212a", "\u017f", "é"])
TEXTS = st.lists(st.one_of(PIECES, st.text(ASCII, max_size=6)), max_size=8).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_the_classifier_agrees_with_running_every_regex(text):
    assert C._classify(text).name == _by_regex(text), text


# Patterns an operator might write: literals, classes, anchors, groups, alternations,
# every kind of repeat, lookarounds, atomic groups and inline case flags, nested.
_ATOMS = st.sampled_from(["a", "b", "ab", "car", "z", r"\d", r"\s", r"\w", ".", "[ab]",
                          "[^a]", r"\b", "^", "$", "é", "K", "s", " ", "-"])
_REGEX = st.recursive(_ATOMS, lambda inner: st.one_of(
    st.tuples(inner, inner).map("".join),
    st.lists(inner, min_size=1, max_size=3).map(lambda alts: "(" + "|".join(alts) + ")"),
    st.tuples(inner, st.sampled_from(["*", "+", "?", "{0,2}", "{1,2}", "{2}", "*?", "+?",
                                      "++", "?+"])).map(lambda t: f"(?:{t[0]}){t[1]}"),
    st.tuples(st.sampled_from(["(?=a)", "(?!ab)", "(?<=c)", "(?<!a)"]), inner).map("".join),
    inner.map(lambda r: f"(?i:{r})"),
    inner.map(lambda r: f"(?>{r})"),
), max_leaves=8)
_TEXT = st.lists(st.sampled_from(["a", "b", "ab", "car", "z", "K", "k", "s", "S", " ", "-",
                                  "1", "A", "CAR"]), max_size=4).map("".join)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300, deadline=None)
@given(_REGEX, st.sampled_from([0, re.IGNORECASE]), st.lists(_TEXT, min_size=20, max_size=20))
@example("(ab|car)z", 0, ["carz"])            # either branch
@example("car(?:ab)?z", 0, ["carz"])          # an optional part is not needed
@example("(?=ab)a", 0, ["ab"])                # nor what a lookahead reads
@example("(?i:CAR)", 0, ["car"])              # compared lowercased
def test_no_pattern_is_skipped_where_it_matches(source, flags, texts):
    """Whatever the pattern, a pre-check never skips an ASCII text the regex matches."""
    try:
        pattern = re.compile(source, flags)
    except re.error:
        return
    need = needed(pattern)
    for text in texts:
        if need is not None and pattern.search(text):
            assert any(n in text.lower() for n in need), (source, text, need)
