"""Calls that never reached the help desk, told apart into spells by the calls that did."""
from datetime import datetime, timedelta, timezone

from helpdesk.pages.calls import Spell, spells

T = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


def at(*minutes: int) -> list[datetime]:
    return [T + timedelta(minutes=m) for m in minutes]


def test_no_calls_make_no_spells():
    assert spells([], at(1, 2)) == ()


def test_calls_with_nothing_heard_among_them_are_one_spell_however_far_apart():
    assert spells(at(0, 5, 300), []) == (Spell(T, T + timedelta(minutes=300), 3),)
    assert spells(at(0, 5, 300), at(-10, 301)) == (Spell(T, T + timedelta(minutes=300), 3),)


def test_a_call_heard_between_two_starts_a_new_spell():
    assert spells(at(0, 1, 2, 10), at(5)) == (
        Spell(T, T + timedelta(minutes=2), 3), Spell(T + timedelta(minutes=10), T + timedelta(minutes=10), 1))


def test_a_call_heard_at_the_same_instant_as_one_that_was_not_splits_nothing():
    assert spells(at(0, 10), at(0, 10)) == (Spell(T, T + timedelta(minutes=10), 2),)


def test_every_call_heard_between_each_pair_makes_a_spell_each():
    assert [s.calls for s in spells(at(0, 2, 4, 6), at(1, 3, 5))] == [1, 1, 1, 1]
