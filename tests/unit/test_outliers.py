"""Outlier detection per target, on a fake clock."""

from __future__ import annotations

from gateway.health.outliers import Outliers


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_three_failures_in_a_row_eject_for_longer_each_time_and_probation_is_one_strike():
    clock = Clock()
    o = Outliers(eject_after=3, base_s=10, clock=clock)
    assert o.failure("u", "no response headers within 2 s") is None
    assert o.failure("u", "no response headers within 2 s") is None
    why = o.failure("u", "no response headers within 2 s")
    assert why == "ejected by live traffic: no response headers within 2 s, 3 times in a row"
    assert o.ejected("u") == why and o.next_change() == 1010
    assert o.failure("u", "late news") is None, "already out: not counted again"
    clock.now = 1010.5
    assert o.ejected("u") is None, "time served: on probation"
    again = o.failure("u", "on-prem answered 500")
    assert again == "ejected by live traffic: on-prem answered 500, 4 times in a row"
    assert o.next_change() == 1010.5 + 20, "twice the base the second time"
    clock.now = 1100
    assert o.success("u") is True and o.ejected("u") is None
    assert o.failure("u", "x") is None, "a success forgets the past"


def test_targets_are_judged_apart_and_the_factor_is_capped():
    clock = Clock()
    o = Outliers(eject_after=1, base_s=10, clock=clock)
    o.failure("a", "refused")
    assert o.ejected("a") and o.ejected("b") is None
    for _ in range(10):
        clock.now += 1000
        o.failure("a", "refused")
    assert o.next_change() == clock.now + 50, "at most 5 x the base"
