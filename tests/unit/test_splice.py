"""Splice: a resumed answer joined to the partial one, never said twice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.routing.splice import Splice, Verdict

PARTIAL = "The 2022 Toyota Tacoma is priced at $31,500 and has 28,000 miles. It comes with"
REST = " a tow package, a backup camera and heated seats. Want to book a test drive?"


def run(partial: str, output: str, chunks: int = 1) -> tuple[Verdict, str]:
    """Feed `output` in pieces of `chunks` characters (0: all at once), then end it."""
    s = Splice(partial)
    size = chunks or len(output) or 1
    said = [s.feed(output[i:i + size]).text for i in range(0, len(output), size)]
    said.append(s.end().text)
    return s.verdict, "".join(said)


@pytest.mark.parametrize("chunks", [0, 1, 3, 7])
def test_a_tier_that_continues_is_passed_on_whole(chunks):
    assert run(PARTIAL, REST, chunks) == (Verdict.CONTINUES, REST)


@pytest.mark.parametrize("chunks", [0, 1, 4])
def test_a_tier_that_starts_again_word_for_word_gives_only_what_is_new(chunks):
    verdict, said = run(PARTIAL, PARTIAL + REST, chunks)
    assert verdict is Verdict.RESTARTED
    assert said == REST
    assert PARTIAL + said == PARTIAL + REST


def test_case_and_punctuation_do_not_hide_a_restart():
    again = "the 2022 Toyota Tacoma is priced at $31,500, and has 28,000 miles! It comes with"
    verdict, said = run(PARTIAL, again + REST)
    assert (verdict, said) == (Verdict.RESTARTED, REST)


def test_a_restart_that_goes_another_way_replaces_the_partial_answer():
    other = "The 2022 Toyota Tacoma is a reliable midsize pickup with plenty of room."
    verdict, said = run(PARTIAL, other)
    assert verdict is Verdict.DIVERGED
    assert said == other, "the whole new answer, to replace what the customer has"


def test_the_same_answer_in_other_words_replaces_the_partial_answer():
    other = ("Sure! That Toyota Tacoma from 2022 costs $31,500 with 28,000 miles on it, "
             "and it has a tow package.")
    assert run(PARTIAL, other) == (Verdict.DIVERGED, other)


def test_repeating_the_last_words_then_going_on_is_trimmed():
    verdict, said = run(PARTIAL, "It comes with" + REST)
    assert (verdict, said) == (Verdict.CONTINUES, REST)
    verdict, said = run(PARTIAL, "it comes with" + REST, chunks=2)
    assert (verdict, said) == (Verdict.CONTINUES, REST)


def test_a_word_cut_in_half_is_finished_once():
    partial = "It has a 3.5-litre V6 eng"
    assert run(partial, "ine and a six-speed gearbox, rated to tow 6,400 pounds.")[1] == \
        "ine and a six-speed gearbox, rated to tow 6,400 pounds."
    assert run(partial, "engine and a six-speed gearbox, rated to tow 6,400 pounds.")[1] == \
        "ine and a six-speed gearbox, rated to tow 6,400 pounds."
    assert run(partial, partial + "ine and a six-speed gearbox.")[1] == \
        "ine and a six-speed gearbox."


def test_the_partial_answers_own_punctuation_is_not_said_twice():
    partial = "We have two in stock. "
    assert run(partial, "We have two in stock. Both are silver.") == \
        (Verdict.RESTARTED, "Both are silver.")


SPANISH = "La Honda CR-V de 2021 cuesta 27.900 dólares y tiene 35.000 millas. Además trae"
RESTO = " cámara de reversa, asientos de piel y garantía de fábrica. ¿Quiere agendar una prueba?"


def test_spanish_answers_are_joined_the_same_way():
    assert run(SPANISH, RESTO) == (Verdict.CONTINUES, RESTO)
    assert run(SPANISH, SPANISH + RESTO, chunks=5) == (Verdict.RESTARTED, RESTO)
    other = "¡Claro! Esa Honda CR-V 2021 tiene un precio de 27.900 dólares con 35.000 millas."
    assert run(SPANISH, other) == (Verdict.DIVERGED, other)


def test_a_short_continuation_is_judged_when_it_ends():
    s = Splice(PARTIAL)
    assert s.feed(" a tow").verdict is Verdict.PENDING
    end = s.end()
    assert (end.verdict, end.text) == (Verdict.CONTINUES, " a tow")


def test_an_output_that_stops_inside_the_partial_answer_replaces_it():
    short = "The 2022 Toyota Tacoma is priced at $31,500."
    assert run(PARTIAL, short) == (Verdict.DIVERGED, short)


def test_nothing_is_passed_on_until_it_is_judged():
    s = Splice(PARTIAL)
    for word in PARTIAL.split(" ")[:-1]:
        assert s.feed(word + " ").text == "", "the partial answer again is held back"
    assert not s.settled


def test_once_judged_text_passes_through_unchanged():
    s = Splice(PARTIAL)
    s.feed(REST[:-10])
    assert s.settled
    assert s.feed(" The 2022 Toyota Tacoma").text == " The 2022 Toyota Tacoma"


words = st.lists(st.sampled_from(["truck", "blue", "miles", "Tacoma", "$30,000", "and", "the",
                                  "seats", "tow", "camera", ".", ",", "2021"]),
                 min_size=0, max_size=30)


@given(partial=words, output=words, cuts=st.lists(st.integers(0, 200), max_size=8))
def test_how_the_output_is_cut_into_tokens_never_changes_the_result(partial, output, cuts):
    p, out = " ".join(partial), " ".join(output)
    whole = run(p, out)
    s = Splice(p)
    said, at = [], 0
    for cut in sorted({min(c, len(out)) for c in cuts}):
        said.append(s.feed(out[at:cut]).text)
        at = cut
    said.append(s.feed(out[at:]).text)
    said.append(s.end().text)
    assert (s.verdict, "".join(said)) == whole
    if whole[0] is Verdict.DIVERGED:
        assert whole[1] == out, "a replacement is the whole new answer"
    else:
        assert out.endswith(whole[1]), "what is passed on is the output, or its end"


def test_a_continuation_that_names_the_same_car_again_is_still_a_continuation():
    partial = "The 2022 Tacoma is priced at"
    rest = " $31,500, and it is the best Tacoma from 2022 we have on the lot right now."
    assert run(partial, rest) == (Verdict.CONTINUES, rest)
    partial = "We have the 2022 Tacoma in stock."
    rest = "The Tacoma has a tow package, and the 2022 model year added a bigger screen."
    assert run(partial, rest) == (Verdict.CONTINUES, rest), "a new sentence after a whole one"


def test_a_short_cut_answer_said_again_after_a_preamble_is_replaced():
    partial = "The 2022 Tacoma is priced at"
    other = "Sure! That Tacoma from 2022 costs $31,500 and it is priced to sell."
    assert run(partial, other) == (Verdict.DIVERGED, other)
