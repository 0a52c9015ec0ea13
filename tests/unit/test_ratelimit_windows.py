"""The in-process rate-limit windows: limits' moving-window rule, on a clock the test sets."""

from __future__ import annotations

from limits import parse

from gateway.security.ratelimit import LocalWindows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_window_admits_its_amount_then_refuses_until_the_oldest_hit_leaves_it():
    clock = Clock()
    w = LocalWindows(clock)
    three = parse("3/minute")
    for _ in range(3):   # at 0, 10 and 20 s
        assert w.hit(three, "ip:a") == (True, 0)
        clock.now += 10
    assert w.hit(three, "ip:a") == (False, 31)   # the first hit leaves the window at 60 s
    assert w.hit(three, "ip:b") == (True, 0)     # another bucket has its own window
    clock.now += 30.5                             # moving, not fixed: just past the first hit
    assert w.hit(three, "ip:a") == (True, 0)
    assert w.hit(three, "ip:a") == (False, 10)   # the second leaves at 70 s


def test_refused_hits_do_not_count_and_each_limit_has_its_own_window():
    clock = Clock()
    w = LocalWindows(clock)
    one, two = parse("1/second"), parse("2/minute")
    assert w.hit(one, "key:k") == (True, 0)
    for _ in range(5):
        assert w.hit(one, "key:k")[0] is False
    clock.now += 1.01
    assert w.hit(one, "key:k") == (True, 0)   # the refused ones never filled the window
    assert w.hit(two, "key:k") == (True, 0)   # same bucket, another limit: another window


def test_a_zero_limit_admits_nothing():
    w = LocalWindows(Clock())
    assert w.hit(parse("0/minute"), "ip:a") == (False, 61)


def test_idle_windows_are_swept_so_many_addresses_do_not_grow_memory():
    clock = Clock()
    w = LocalWindows(clock)
    limit = parse("5/minute")
    for i in range(1000):
        w.hit(limit, f"ip:10.0.{i // 256}.{i % 256}")
    assert len(w) == 1000
    clock.now += 61
    w.hit(limit, "ip:late")   # the first hit a whole period on sweeps the idle ones
    assert len(w) == 1
