"""The answer rule: rings and what counts (DESIGN.md, "Answer within ten rings")."""
from datetime import timedelta

import pytest

from helpdesk.rings import judge_answer, rings_for
from helpdesk.settings import Settings

TARGET = 30.0


@pytest.mark.parametrize(
    "seconds, rings",
    [(0.0, 1), (2.99, 1), (3.0, 2), (27.0, 10), (29.99, 10), (30.0, 11), (45.5, 16), (-0.4, 1)],
)
def test_a_call_is_answered_during_the_ring_its_answer_time_falls_in(seconds, rings):
    assert rings_for(seconds, 3.0) == rings


# Every ring period the configuration takes to one decimal (0.5 s to 10 s), in tenths.
PERIODS = [tenths / 10 for tenths in range(5, 101)]


def exact(tenths_of_a_period: int, period: float) -> float:
    """An answer time of exactly so many periods, as the projection computes it from two instants."""
    return timedelta(microseconds=tenths_of_a_period * round(period * 1_000_000)).total_seconds()


def test_an_answer_at_exactly_the_start_of_a_ring_falls_in_that_ring_for_every_period():
    """DESIGN.md: rings = floor(answer_seconds / period) + 1, exactly. In floating point
    2.4 s / 0.8 s was ring 3, and 33 s / 1.1 s ring 30."""
    wrong = [(period, n) for period in PERIODS for n in range(0, 121)
             if rings_for(exact(n, period), period) != n + 1
             or rings_for(exact(n, period) - 0.000001, period) != max(n, 1)]
    assert wrong == []


def test_an_answer_at_exactly_the_target_meets_it_for_every_period_and_ring_count():
    """In floating point 3 rings of 0.6 s made a target of 1.7999999999999998 s, which 1.8 s missed."""
    wrong = []
    for period in PERIODS:
        for max_rings in range(1, 101):
            target = Settings(ring_period_seconds=period, max_rings=max_rings).answer_target_seconds
            at = judge_answer(outcome="answered", in_hours=True, answer_seconds=exact(max_rings, period),
                              waited_seconds=None, target_seconds=target)
            after = judge_answer(outcome="answered", in_hours=True,
                                 answer_seconds=exact(max_rings, period) + 0.000001, waited_seconds=None,
                                 target_seconds=target)
            if (at.result, after.result) != ("met", "breached"):
                wrong.append((period, max_rings))
    assert wrong == []
    assert Settings(ring_period_seconds=0.6, max_rings=3).answer_target_seconds == 1.8


def test_north_american_cadence_gives_fewer_rings_for_the_same_wait():
    assert rings_for(30.0, 6.0) == 6


def test_an_answer_at_exactly_the_target_meets_it():
    judgement = judge_answer(outcome="answered", in_hours=True, answer_seconds=30.0, waited_seconds=30.0, target_seconds=TARGET)
    assert (judgement.countable, judgement.result) == (True, "met")


def test_an_answer_just_after_the_target_breaches_it():
    judgement = judge_answer(outcome="answered", in_hours=True, answer_seconds=30.5, waited_seconds=30.5, target_seconds=TARGET)
    assert (judgement.countable, judgement.result) == (True, "breached")


def test_calls_out_of_hours_are_not_counted_even_if_answered_late():
    judgement = judge_answer(outcome="answered", in_hours=False, answer_seconds=90.0, waited_seconds=90.0, target_seconds=TARGET)
    assert (judgement.countable, judgement.result) == (False, None)


def test_a_caller_who_hangs_up_before_the_target_is_left_out_of_the_denominator():
    judgement = judge_answer(outcome="abandoned", in_hours=True, answer_seconds=None, waited_seconds=12.0, target_seconds=TARGET)
    assert (judgement.countable, judgement.result) == (False, None)


def test_a_caller_who_hangs_up_after_the_target_is_a_breach():
    judgement = judge_answer(outcome="abandoned", in_hours=True, answer_seconds=None, waited_seconds=31.0, target_seconds=TARGET)
    assert (judgement.countable, judgement.result) == (True, "breached")


@pytest.mark.parametrize("outcome", ["no_answer", "voicemail", "failed"])
def test_a_call_no_person_answered_in_hours_is_a_breach(outcome):
    judgement = judge_answer(outcome=outcome, in_hours=True, answer_seconds=None, waited_seconds=20.0, target_seconds=TARGET)
    assert (judgement.countable, judgement.result) == (True, "breached")


def test_a_call_still_waiting_is_undecided_until_the_target_passes():
    waiting = judge_answer(outcome="in_progress", in_hours=True, answer_seconds=None, waited_seconds=10.0, target_seconds=TARGET)
    late = judge_answer(outcome="in_progress", in_hours=True, answer_seconds=None, waited_seconds=40.0, target_seconds=TARGET)
    assert (waiting.countable, waiting.result) == (False, None)
    assert (late.countable, late.result) == (True, "breached")


@pytest.mark.parametrize("outcome", ["abandoned", "in_progress"])
def test_a_wait_of_exactly_the_target_is_not_yet_a_breach_and_just_over_it_is(outcome):
    """As an answer at exactly 30.0 s meets the target, a caller who has waited exactly 30.0 s
    (and hung up, or is still waiting) has not yet been failed by it."""
    at_target = judge_answer(outcome=outcome, in_hours=True, answer_seconds=None, waited_seconds=TARGET,
                             target_seconds=TARGET)
    over = judge_answer(outcome=outcome, in_hours=True, answer_seconds=None, waited_seconds=TARGET + 0.001,
                        target_seconds=TARGET)
    assert (at_target.countable, at_target.result) == (False, None)
    assert (over.countable, over.result) == (True, "breached")


@pytest.mark.parametrize("outcome, countable", [("voicemail", True), ("no_answer", True), ("abandoned", False)])
def test_an_answer_time_given_for_a_call_no_person_answered_does_not_make_it_met(outcome, countable):
    """Only a person answering is an answer (a machine, e.g. voicemail, is not): the outcome decides."""
    judgement = judge_answer(outcome=outcome, in_hours=True, answer_seconds=5.0, waited_seconds=12.0,
                             target_seconds=TARGET)
    assert judgement.result != "met"
    assert judgement.countable is countable
