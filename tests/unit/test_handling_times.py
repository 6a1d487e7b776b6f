"""How quickly contacts were handled: nearest ranks, spreads and the words for them (pure)."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, strategies as st

from helpdesk.pages.format import shown_seconds, within_words
from metrics.handling import HALF, NINE_TENTHS, Handling, Spread, lines, rank, ranked_counts, spread


@pytest.mark.parametrize(("count", "half", "nine_tenths"), [
    (1, 1, 1), (2, 1, 2), (3, 2, 3), (4, 2, 4), (9, 5, 9), (10, 5, 9), (11, 6, 10), (20, 10, 18), (21, 11, 19),
    (100, 50, 90), (101, 51, 91),
])
def test_nearest_rank_in_whole_numbers(count, half, nine_tenths):
    # 0.9 * 10 is 9.000000000000002 in floating point, whose ceiling is 10: whole numbers give 9.
    assert rank(count, HALF) == half
    assert rank(count, NINE_TENTHS) == nine_tenths


def test_no_items_have_no_rank():
    with pytest.raises(ValueError):
        rank(0, HALF)
    with pytest.raises(ValueError):
        ranked_counts([], HALF)
    assert spread(Counter()) == Spread(0, None, None)


@given(st.lists(st.integers(min_value=0, max_value=10**6).map(float), min_size=1, max_size=200))
def test_the_ranked_time_is_the_shortest_that_enough_items_took_no_longer_than(times):
    found = spread(Counter(times))
    assert found.count == len(times)
    for share, value in ((0.5, found.half), (0.9, found.nine_tenths)):
        assert value in times  # one of the items' own times
        assert sum(1 for t in times if t <= value) >= share * len(times)
        # and nothing shorter would do: fewer than that share took less
        assert sum(1 for t in times if t < value) < share * len(times)


def test_a_spread_of_counts_in_any_order():
    times = [float(n) for n in range(1, 21)]
    shuffled = times[:]
    random.Random(7).shuffle(shuffled)
    assert spread(Counter(shuffled)) == spread(Counter(times)) == Spread(20, 10.0, 18.0)
    assert ranked_counts([(1.0, 4), (2.0, 5), (3.0, 1)], NINE_TENTHS) == 2.0


@given(st.lists(st.floats(min_value=0, max_value=10**6, allow_nan=False), min_size=1, max_size=100))
def test_rounding_as_shown_keeps_the_order_of_times(times):
    # So the nearest rank of the shown times is the shown nearest rank.
    ordered = sorted(times)
    assert [shown_seconds(t) for t in ordered] == sorted(shown_seconds(t) for t in times)
    for t in times:
        assert shown_seconds(t) >= t and shown_seconds(shown_seconds(t)) == shown_seconds(t)


@pytest.mark.parametrize(("seconds", "words"), [
    (None, "No data"), (0.0, "0 seconds"), (0.4, "1 second"), (1.0, "1 second"), (7.2, "8 seconds"),
    (59.0, "59 seconds"), (59.5, "1 minute"), (60.0, "1 minute"), (61.0, "2 minutes"),
    (3 * 3600 + 4 * 60 + 10, "3 hours 5 minutes"), (3 * 3600, "3 hours"), (62 * 3600 + 1, "62 hours 1 minute"),
])
def test_within_words_round_up_so_that_within_stays_true(seconds, words):
    assert within_words(seconds) == words


def test_lines_give_the_same_labels_whatever_the_figures():
    empty = Handling(0, 0, 0, Spread(0), 0, 0, Spread(0), Spread(0), 0, Spread(0))
    busy = Handling(200, 190, 6, Spread(190, 8.2, 21.0), 12, 9, Spread(11, 1500.0, 9000.0), Spread(40, 30.0, 95.0), 41,
                    Spread(20, 7200.0, 90000.0))
    labels = [[label for label, _ in rows] for _, rows in lines(empty)]
    assert labels == [[label for label, _ in rows] for _, rows in lines(busy)]
    shown = {label: value for _, rows in lines(busy) for label, value in rows}
    assert shown["Calls"] == "200"
    assert shown["Answered"] == "190 (95.0%)"
    assert shown["Caller hung up before an answer"] == "6 (3.0%)"
    assert shown["No answer, voicemail or failed"] == "4 (2.0%)"
    assert shown["First attempt made"] == "11 (91.7%)"
    assert shown["Caller reached"] == "9 (75.0%)"
    assert shown["Acknowledgement sent"] == "40 (97.6%)"
    assert shown["Marked as answered"] == "20 (48.8%)"
    groups = dict(lines(busy))
    assert dict(groups["Calls in opening hours"])["Half answered within"] == "9 seconds"
    assert dict(groups["Calls in opening hours"])["9 in 10 answered within"] == "21 seconds"
    assert dict(groups["Callbacks"])["Half had a first attempt within"] == "25 minutes"
    assert dict(groups["Callbacks"])["9 in 10 had a first attempt within"] == "2 hours 30 minutes"
    assert dict(groups["Email enquiries"])["Half answered within"] == "2 hours"
    assert dict(groups["Email enquiries"])["9 in 10 answered within"] == "25 hours"
    # nothing to divide by: a count, not "0 (No data)"
    assert {label: value for _, rows in lines(empty) for label, value in rows}["Answered"] == "0"
    assert dict(dict(lines(empty))["Callbacks"])["Half had a first attempt within"] == "No data"
