"""The report's charts: no data is never drawn as 0 %, gaps break the line, axes step nicely."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import String

from metrics.evidence import charts

DAYS = [date(2026, 11, 23) + timedelta(days=n) for n in range(5)]


def texts(drawing) -> list[str]:
    return [shape.text for shape in drawing.contents if isinstance(shape, String)]


def plot(drawing) -> LinePlot:
    return next(shape for shape in drawing.contents if isinstance(shape, LinePlot))


def test_a_rule_with_no_data_on_any_day_says_so_instead_of_drawing_zero():
    drawing = charts.daily_compliance("Emails acknowledged, each day", [(day, None) for day in DAYS])
    assert "No data in this period." in texts(drawing)
    assert not any(isinstance(shape, LinePlot) for shape in drawing.contents)


def test_a_day_without_data_breaks_the_line_and_the_target_is_drawn_across():
    values = [1.0, 0.5, None, 0.75, None]
    lines = plot(charts.daily_compliance("Calls, each day", list(zip(DAYS, values)))).data
    assert lines[0] == [(0, 100.0), (4, 100.0)]  # the target, dashed
    assert lines[1:] == [[(0, 100.0), (1, 50.0)], [(3, 75.0)]]


@pytest.mark.parametrize("top, step", [(1, 1), (7, 2), (12, 5), (100, 20), (22637, 5000)])
def test_bar_chart_steps_are_one_two_or_five_times_a_power_of_ten(top, step):
    assert charts.nice_step(top) == step


def test_bars_with_nothing_to_count_say_no_data():
    assert "No data in this period." in texts(charts.bars("Callbacks", ["Late", "No attempt"], [0, 0], "callbacks"))
