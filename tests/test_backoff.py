"""The one backoff formula (asterisk_consul/backoff.py), with an injected random source: no
sleeps, no clock."""

from __future__ import annotations

import random

import pytest

from asterisk_consul.backoff import Backoff, jittered


def draws(*values):
    """A random source that returns these values, in turn."""
    values = iter(values)
    return lambda: next(values)


@pytest.mark.parametrize("draw,expected", [(0.0, 1.0), (0.5, 1.5), (0.999999, 2.0)])
def test_a_jittered_delay_lies_between_half_and_the_whole_step(draw, expected):
    assert jittered(2.0, lambda: draw) == pytest.approx(expected, abs=1e-5)


def test_the_steps_double_from_the_initial_delay_up_to_the_cap():
    backoff = Backoff(0.5, 4.0, rand=lambda: 0.999999)  # the top of each step
    delays = [backoff.next() for _ in range(7)]
    assert delays == pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0], abs=1e-5)


def test_the_lowest_draw_gives_half_of_each_step():
    backoff = Backoff(0.5, 4.0, rand=lambda: 0.0)
    assert [backoff.next() for _ in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]


def test_a_cap_for_one_delay_lowers_that_delay_only():
    backoff = Backoff(1.0, 30.0, rand=lambda: 0.999999)
    for _ in range(4):
        backoff.next()  # the step is now 16 s
    assert backoff.next(cap_s=3.0) == pytest.approx(3.0, abs=1e-5)
    assert backoff.next() == pytest.approx(30.0, abs=1e-4)


def test_reset_after_a_success_starts_again_from_the_initial_delay():
    backoff = Backoff(0.5, 30.0, rand=lambda: 0.999999)
    for _ in range(6):
        backoff.next()
    backoff.reset()
    assert backoff.next() == pytest.approx(0.5, abs=1e-5)


def test_many_failures_stay_at_the_cap_without_overflow():
    backoff = Backoff(0.5, 30.0, rand=lambda: 0.0)
    for _ in range(5000):
        delay = backoff.next()
    assert delay == 15.0


def test_a_fleet_failing_together_spreads_its_retries_over_the_step():
    """100 boxes whose agent failed at the same moment: their first retries fill [half, whole]
    of the step, none twice at the same instant, each half of the interval used."""
    source = random.Random(20)
    delays = [Backoff(2.0, 30.0, rand=source.random).next() for _ in range(100)]
    assert all(1.0 <= d <= 2.0 for d in delays)
    assert len({round(d, 6) for d in delays}) == 100
    assert sum(d < 1.5 for d in delays) > 30 and sum(d >= 1.5 for d in delays) > 30


def test_the_draw_is_the_only_source_of_variation():
    first = Backoff(0.5, 8.0, rand=draws(0.1, 0.7, 0.3))
    second = Backoff(0.5, 8.0, rand=draws(0.1, 0.7, 0.3))
    assert [first.next() for _ in range(3)] == [second.next() for _ in range(3)]
