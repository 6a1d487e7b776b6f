"""The report's charts, drawn with reportlab.graphics from aggregates (plain values only)."""
from __future__ import annotations

import math
from datetime import date

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors

WIDTH, HEIGHT = 460, 170
LINE = colors.HexColor("#1d70b8")  # GOV.UK blue: strong contrast on white
TARGET = colors.HexColor("#d4351c")
FONT = "Helvetica"


def _frame(title: str) -> Drawing:
    drawing = Drawing(WIDTH, HEIGHT)
    drawing.add(String(0, HEIGHT - 12, title, fontName="Helvetica-Bold", fontSize=10))
    return drawing


def _no_data(drawing: Drawing, message: str = "No data in this period.") -> Drawing:
    drawing.add(String(WIDTH / 2, HEIGHT / 2, message, fontName=FONT, fontSize=10, textAnchor="middle"))
    return drawing


def daily_compliance(title: str, days: list[tuple[date, float | None]], target: float = 1.0) -> Drawing:
    """Compliance per UK day as a percentage, with the target as a dashed line.

    Days with no data are left out of the line (a gap in the points), never drawn as 0 %.
    """
    drawing = _frame(title)
    # Consecutive days with data are joined; a day without data breaks the line.
    segments: list[list[tuple[int, float]]] = [[]]
    for index, (_, value) in enumerate(days):
        if value is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append((index, value * 100))
    segments = [segment for segment in segments if segment]
    if not segments:
        return _no_data(drawing)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 40, 30, WIDTH - 60, HEIGHT - 60
    last = max(len(days) - 1, 1)
    plot.data = [[(0, target * 100), (last, target * 100)], *segments]
    plot.lines[0].strokeColor = TARGET
    plot.lines[0].strokeDashArray = (4, 3)
    for number in range(1, len(segments) + 1):
        plot.lines[number].strokeColor = LINE
        plot.lines[number].strokeWidth = 1.5
        plot.lines[number].symbol = makeMarker("FilledCircle", size=3 if len(days) > 40 else 5)
    plot.yValueAxis.valueMin, plot.yValueAxis.valueMax, plot.yValueAxis.valueStep = 0, 100, 25
    plot.yValueAxis.labelTextFormat = "%d%%"
    plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = 0, last
    step = max(1, len(days) // 8)
    plot.xValueAxis.valueSteps = list(range(0, len(days), step))
    plot.xValueAxis.labelTextFormat = lambda index: f"{days[int(index)][0]:%d %b}" if 0 <= int(index) < len(days) else ""
    for axis in (plot.xValueAxis, plot.yValueAxis):
        axis.labels.fontName, axis.labels.fontSize = FONT, 7
    drawing.add(plot)
    drawing.add(String(WIDTH - 10, HEIGHT - 12, f"dashed: target {target:.0%}", fontName=FONT, fontSize=7,
                       textAnchor="end", fillColor=TARGET))
    return drawing


def nice_step(top: int) -> int:
    """A step of 1, 2 or 5 times a power of ten giving about five gridlines up to `top`."""
    raw = max(top / 5, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    return int(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def bars(title: str, categories: list[str], values: list[int], axis_label: str) -> Drawing:
    """A bar per category (counts), labelled with the count."""
    drawing = _frame(title)
    if not any(values):
        return _no_data(drawing)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 40, 40, WIDTH - 60, HEIGHT - 75
    chart.data = [values]
    chart.bars[0].fillColor = LINE
    chart.barLabelFormat = "%d"
    chart.barLabels.fontName, chart.barLabels.fontSize, chart.barLabels.nudge = FONT, 7, 6
    chart.categoryAxis.categoryNames = categories
    chart.categoryAxis.labels.fontName, chart.categoryAxis.labels.fontSize = FONT, 7
    chart.categoryAxis.labels.angle = 0 if len(categories) <= 12 and max(map(len, categories)) <= 5 else 20
    chart.categoryAxis.labels.boxAnchor = "n" if chart.categoryAxis.labels.angle == 0 else "ne"
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labels.fontName, chart.valueAxis.labels.fontSize = FONT, 7
    step = nice_step(max(values))
    chart.valueAxis.valueStep = step
    chart.valueAxis.valueMax = (max(values) // step + 1) * step
    drawing.add(chart)
    drawing.add(String(WIDTH - 10, HEIGHT - 12, axis_label, fontName=FONT, fontSize=7, textAnchor="end"))
    return drawing
