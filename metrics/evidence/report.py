"""report.pdf: a readable summary with the rules in words, the figures and the charts.

Drawn from aggregates only (the Summary and the Tally), never from rows. Real text with the
document's title and subject set, so screen readers and search can use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from helpdesk.config import WEEKDAYS, clock_text
from helpdesk.pages.format import format_compliance, format_minutes, lost_words
from helpdesk.settings import Settings
from metrics import compliance, handling
from metrics.evidence import charts
from metrics.evidence.fields import LONDON
from metrics.evidence.tally import LATE, LEAD_BUCKETS, NO_ATTEMPT, Tally
from metrics.evidence.summary import PeriodFigures, Summary
from metrics.evidence.words import (PROVISIONAL, callbacks_words, calls_words, emails_words, no_number_words,
                                    not_yet_due_words, outcomes_words, versions_words, withdrawn_words)

DAILY_TABLE_LIMIT = 62  # longer ranges list their days in summary.csv only


@dataclass(frozen=True)
class ReportFacts:
    first: date
    last: date
    generated_at: datetime
    generated_by: str  # "Alex Smith (auditor)"
    redaction: str
    include_notes: bool
    settings: Settings
    provisional: bool = False  # the period had not ended when the pack was made, or items in it were not yet due


def day_words(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def rules_in_words(settings: Settings) -> list[str]:
    """The rules that judged these figures, as an auditor would read them."""
    hours = []
    for index, day in enumerate(WEEKDAYS):
        intervals = settings.opening_hours.get(index, ())
        text = ", ".join(f"{clock_text(o)} to {clock_text(c)}" for o, c in intervals) or "closed"
        hours.append(f"{day.capitalize()} {text}")
    clock = ("opening hours only (time when the help desk is closed does not count)"
             if settings.callback.clock == "business" else "the wall clock (every hour counts)")
    nation = settings.nation.replace("-", " ").title().replace("And", "and")
    lines = [
        f"<b>Calls answered within {settings.max_rings} rings.</b> A call is met when a person answers within "
        f"{settings.answer_target_seconds:g} seconds ({settings.max_rings} rings of {settings.ring_period_seconds:g} "
        "seconds, UK ringing cadence). Calls outside opening hours, and calls where the caller hung up before the "
        "target, are not counted; a caller who hung up after it is a breach. Times come from Twilio's events "
        "for each call; where the last of those never reached the help desk, from Twilio's record of the call, "
        "to the second (from_twilio_api in calls.csv). A call that never reached the help desk at all, found "
        "afterwards in Twilio's call log (found_in_call_log in calls.csv), is a breach in hours unless Twilio's "
        "record shows an agent answered it."
        + (" Agents' phones must press 1 to take a call, and a call is answered when 1 is pressed, so an agent's "
           "voicemail never counts as an answer." if settings.routing.screen_calls else ""),
        f"<b>Callbacks within {format_minutes(settings.callback.within_minutes)}.</b> A callback is owed for every missed "
        "call with a caller number and for enquiries not concluded at once. It is met when the caller is first dialled "
        f"back within {format_minutes(settings.callback.within_minutes)} counted on {clock}. A call placed with \"Call back "
        "now\" rings the agent first and counts from when it dialled the caller. " + _retries(settings),
        _caller_types(settings),
        f"<b>Email acknowledgements.</b> Every email enquiry gets an acknowledgement with its reference; it is met "
        f"when sent within {settings.email.ack_within_minutes} minutes of receipt. One not sent by then is a breach.",
        f"<b>Opening hours</b> (UK time): {'; '.join(hours)}. "
        + (f"Bank holidays in {nation} close the help desk." if settings.bank_holidays
           else "The help desk is open on bank holidays too.")
        + (f" {len(settings.closures)} configured closure{'s close' if len(settings.closures) != 1 else ' closes'} "
           "it as well." if settings.closures else ""),
        "<b>Compliance</b> is met divided by countable. A period with nothing countable has no figure "
        "(\u201cNo data\u201d), never 0% or 100%. Each item belongs to the period of its contact: the call's "
        "arrival, the time the callback was owed from, or the email's receipt.",
    ]
    return lines


def _retries(settings: Settings) -> str:
    spacing = list(settings.callback.retry_spacing_minutes)
    tries = settings.callback.max_attempts
    if tries == 1:
        return "One attempt is made; if it does not reach the caller, the callback is closed as unreachable."
    gaps = ", then ".join(format_minutes(m) for m in spacing[:tries - 1])
    more = " (the last gap repeats)" if tries - 1 > len(spacing) else ""
    return (f"If an attempt does not reach the caller, another follows after {gaps}{more}, up to {tries} attempts "
            "in all; then the callback is closed as unreachable.")


def _caller_types(settings: Settings) -> str:
    known = len(settings.dwp_numbers)
    numbers = f"calling from a known DWP number ({known} configured)" if known else ""
    menu = (f"pressing {settings.ivr.dwp_digit} at the menu (customers press {settings.ivr.customer_digit})"
            if settings.ivr.enabled else "")
    if not numbers and not menu:
        return "<b>Caller types.</b> No DWP numbers and no menu were configured, so every caller is \"unknown\"."
    return (f"<b>Caller types.</b> A caller is DWP when {' or '.join(part for part in (numbers, menu) if part)}."
            + (" manifest.json lists the numbers." if known else ""))


def _figures_table(entries: list[PeriodFigures], first_column: str, styles, titles: dict[str, str]) -> Table:
    rows = [(entry.period.label if entry.level != "range" else "Whole period", entry.figures) for entry in entries]
    return _table(first_column, rows, compliance.RULES, styles, titles)


CALLER_RULES = ("answer_within_rings", "callback_within_3h")  # emails have no caller type
CALLER_TYPE_WORDS = {"dwp": "DWP", "customer": "Customers", "unknown": "Caller type unknown"}


def _caller_type_table(by_type: dict, styles, titles: dict[str, str]) -> Table:
    """The whole range's calls and callbacks by who was calling: DWP, customers, or not known."""
    rows = [(CALLER_TYPE_WORDS.get(kind, kind), figures) for kind, figures in by_type.items()]
    return _table("Whole period, by caller", rows, CALLER_RULES, styles, titles)


def _table(first_column: str, rows: list[tuple[str, dict]], rules: tuple[str, ...], styles,
           titles: dict[str, str]) -> Table:
    """A grid of figures: a row per (label, figures by rule), a column per rule."""
    small = styles["BodyText"].clone("cell", fontSize=8, leading=10)
    cells = [[Paragraph(f"<b>{escape(text)}</b>", small) for text in [first_column] + [titles[r] for r in rules]]]
    for label, figures in rows:
        cells.append([Paragraph(escape(label), small)] + [
            Paragraph(f"{format_compliance(f.met, f.countable)}<br/>{f.met} met of {f.countable}, {f.breached} "
                      "breached", small) for f in (figures[rule] for rule in rules)])
    table = Table(cells, colWidths=[32 * mm] + [46 * mm] * len(rules), repeatRows=1, hAlign="LEFT")
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f3f2f1")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))
    return table


def _chart(drawing, description: str, styles) -> KeepTogether:
    caption = styles["BodyText"].clone("caption", fontSize=8, leading=10, textColor=colors.HexColor("#505a5f"))
    return KeepTogether([drawing, Paragraph(escape(description), caption), Spacer(1, 4 * mm)])


def restored_words(lost) -> str:
    """What a restore of the database took from the pack, for the report's opening."""
    return (lost_words(lost, "these figures and from every file of this pack")
            + " summary.csv marks each period it touches (lost_in_restore), and manifest.json lists "
            + ("the time" if len(lost) == 1 else "each time") + " in UTC (lost_in_restores).")


def _provisional_words(facts: ReportFacts, tally: Tally) -> str:
    if facts.generated_at < compliance.uk_midnight(facts.last + timedelta(days=1)):
        return PROVISIONAL
    return not_yet_due_words(tally.pending_callbacks, tally.pending_acks)


HOW_QUICKLY = (
    "Not targets: how the period's contacts were handled, beyond the rules. Times are clock time, nights and "
    "weekends included, as people waited, rounded up to the second or the minute. Each is the shortest time that "
    "half, or 9 in 10, of them took no longer than (nearest rank). From calls.csv (in_hours, outcome, "
    "answer_seconds), callbacks.csv (owed_from, first_attempt, reached; not the callbacks withdrawn because their "
    "call was answered after all) and emails.csv (received, acknowledged, first_answered), each time rounded up "
    "first, as shown. calls.csv gives answer times exactly; the other files give times to the millisecond, and a "
    "time a fraction of a millisecond over a whole second counts one second more here. manifest.json has the "
    "figures in seconds (how_quickly)."
)


def _handling_table(figures: handling.Handling, styles) -> Table:
    """The period's rates and times: a row per figure, under a row per group."""
    small = styles["BodyText"].clone("cell", fontSize=8, leading=10)
    cells, groups = [], []
    for group, rows in handling.lines(figures):
        groups.append(len(cells))
        cells.append([Paragraph(f"<b>{escape(group)}</b>", small), Paragraph("<b>Whole period</b>", small)])
        cells += [[Paragraph(escape(label), small), Paragraph(escape(value), small)] for label, value in rows]
    table = Table(cells, colWidths=[70 * mm, 46 * mm], hAlign="LEFT")
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        *[("BACKGROUND", (0, row), (-1, row), colors.HexColor("#f3f2f1")) for row in groups],
    ]))
    return table


# How to check the pack, for whoever reads this report (metrics.evidence.manifest writes SHA256SUMS).
CHECKING = ("To check that no file of this pack was changed: in its folder, run sha256sum -c SHA256SUMS (Linux) or "
            "shasum -a 256 -c SHA256SUMS (Mac); helpdesk evidence verify also checks it. The help desk can confirm "
            "that the SHA-256 of manifest.json, given in SHA256SUMS, is one it made.")


def write_report(path: Path, facts: ReportFacts, summary: Summary, tally: Tally, desk_name: str,
                 quick: handling.Handling) -> None:
    """Write the PDF report for one pack."""
    styles = getSampleStyleSheet()
    settings = facts.settings
    title = f"Service level evidence: {facts.first:%d %B %Y} to {facts.last:%d %B %Y}"
    story = [
        Paragraph(escape(f"{desk_name}: service level evidence"), styles["Title"]),
        Paragraph(escape(f"Period: {day_words(facts.first)} to {day_words(facts.last)} inclusive, UK time "
                         "(Europe/London)."), styles["BodyText"]),
        Paragraph(escape(f"Generated {facts.generated_at.astimezone(LONDON):%d %B %Y at %H:%M %Z} by "
                         f"{facts.generated_by}. Configuration version {settings.version}. "
                         + ("Caller numbers and email addresses are masked. " if facts.redaction == "masked"
                            else "Caller numbers and email addresses are shown in full. ")
                         + ("Notes are included." if facts.include_notes else "Notes are left out.")),
                  styles["BodyText"]),
        Paragraph(escape(CHECKING), styles["BodyText"]),
        *([Paragraph(escape(_provisional_words(facts, tally)), styles["BodyText"])] if facts.provisional else []),
        *([Paragraph("<b>Lost in a restore.</b> " + escape(restored_words(summary.whole.lost)), styles["BodyText"])]
          if summary.whole.lost else []),
        Paragraph("Rules in force", styles["Heading2"]),
        *[Paragraph(line, styles["BodyText"]) for line in rules_in_words(settings)],
        *([Paragraph(escape(text), styles["BodyText"])] if (text := versions_words(tally.versions, settings.version))
          else []),
        Paragraph("Figures", styles["Heading2"]),
    ]
    if not any(f.countable for f in summary.whole.figures.values()):
        story.append(Paragraph("<b>No data:</b> nothing in this period counted for any rule.", styles["BodyText"]))
    titles = compliance.rule_titles(settings)
    story += [_figures_table([summary.whole] + summary.months, "Month", styles, titles), Spacer(1, 4 * mm)]
    if summary.by_caller_type:
        story += [_caller_type_table(summary.by_caller_type, styles, titles), Spacer(1, 4 * mm)]
    if len(summary.weeks) > 1:
        story += [_figures_table(summary.weeks, "ISO week", styles, titles), Spacer(1, 4 * mm)]
    if len(summary.days) <= DAILY_TABLE_LIMIT:
        story += [_figures_table(summary.days, "Day", styles, titles)]
    else:
        story.append(Paragraph("Each day's figures are in summary.csv and the Summary sheet.", styles["BodyText"]))
    story.append(Paragraph("What came in, and what the figures leave out", styles["Heading2"]))
    story.append(Paragraph(escape(calls_words(tally.calls, titles)), styles["BodyText"]))
    if tally.enquiry_outcomes:
        story.append(Paragraph(escape(outcomes_words(tally.enquiry_outcomes, tally.outcomes_late,
                                                     tally.outcomes_undated)), styles["BodyText"]))
    if tally.lead:
        story.append(Paragraph(escape(callbacks_words(tally)), styles["BodyText"]))
    story.append(Paragraph(escape(emails_words(tally.emails, tally.awaiting_emails)), styles["BodyText"]))
    story.append(Paragraph(escape(withdrawn_words(tally.withdrawn)), styles["BodyText"]))
    if tally.no_number:
        story.append(Paragraph(escape(no_number_words(tally.no_number)), styles["BodyText"]))

    story += [Paragraph("How quickly", styles["Heading2"]), Paragraph(escape(HOW_QUICKLY), styles["BodyText"]),
              _handling_table(quick, styles), Spacer(1, 4 * mm)]

    story.append(Paragraph("Charts", styles["Heading2"]))
    days = [entry.first_day for entry in summary.days]
    for rule in compliance.RULES:
        series = [(day, entry.figures[rule].compliance) for day, entry in zip(days, summary.days)]
        with_data = [entry.figures[rule] for entry in summary.days if entry.figures[rule].countable > 0]
        lowest = min(with_data, key=lambda f: f.compliance, default=None)
        description = (f"{titles[rule]}: compliance each day against the 100% target; "
                       f"{len(with_data)} of {len(series)} days have data"
                       + (f", lowest {format_compliance(lowest.met, lowest.countable)}." if lowest else "."))
        story.append(_chart(charts.daily_compliance(f"{titles[rule]}, each day", series),
                            description, styles))

    over = f"over {settings.max_rings}"
    categories = [str(n) for n in range(1, settings.max_rings + 1)] + [over, "not answered"]
    values = [tally.rings.get(n, 0) for n in range(1, settings.max_rings + 1)]
    values += [sum(count for rings, count in tally.rings.items() if rings > settings.max_rings),
               tally.unanswered_breaches]
    story.append(_chart(
        charts.bars("Counted calls by the ring they were answered on", categories, values, "calls"),
        "Counted calls by ring: " + "; ".join(f"{c}: {v}" for c, v in zip(categories, values)) + ".", styles))

    lead_categories = [label for label, _ in LEAD_BUCKETS] + [LATE, NO_ATTEMPT]
    lead_values = [tally.lead.get(label, 0) for label in lead_categories]
    story.append(_chart(
        charts.bars("Callbacks by time to spare at the first attempt", lead_categories, lead_values, "callbacks"),
        "Decided callbacks by how long before the deadline the first attempt was made (wall-clock time): "
        + "; ".join(f"{c}: {v}" for c, v in zip(lead_categories, lead_values)) + ".", styles))

    document = SimpleDocTemplate(
        str(path), pagesize=A4, title=title, author=facts.generated_by, subject="Help desk service level evidence",
        creator="helpdesk-sla", leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm, bottomMargin=15 * mm,
        lang="en-GB",
    )
    document.build(story, onFirstPage=_footer, onLaterPages=_footer)


def _footer(canvas, document) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 8)
    canvas.drawRightString(A4[0] - 15 * mm, 8 * mm, f"Page {document.page}")
    canvas.restoreState()
