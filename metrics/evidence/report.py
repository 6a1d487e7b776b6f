"""report.pdf: a readable summary with the rules in words, the figures and the charts.

Drawn from aggregates only (the Summary and the Tally), never from rows. Real text with the
document's title and subject set, so screen readers and search can use it.
"""
from __future__ import annotations

from collections import Counter
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
from metrics import compliance
from metrics.evidence import charts
from metrics.evidence.fields import LONDON
from metrics.evidence.rows import LATE, LEAD_BUCKETS, NO_ATTEMPT, Tally
from metrics.evidence.summary import PeriodFigures, Summary

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


PROVISIONAL = ("Provisional: this period had not ended when the pack was made. Callbacks and acknowledgements "
               "not yet due, and calls still going on, are not counted yet, so these figures may still change. "
               "Export the period again once it is over for final figures.")


def _were(count: int) -> str:
    return f"{count:,} {'was' if count == 1 else 'were'}"


def not_yet_due_words(callbacks: int, acknowledgements: int) -> str:
    """Why a pack made after its period ended is still provisional: items owed in it not yet due."""
    items = [f"{callbacks:,} callback{'' if callbacks == 1 else 's'}"] if callbacks else []
    items += ([f"{acknowledgements:,} email acknowledgement{'' if acknowledgements == 1 else 's'}"]
              if acknowledgements else [])
    one = callbacks + acknowledgements == 1
    return (f"Provisional: {' and '.join(items)} owed in this period {'was' if one else 'were'} not yet due when the "
            f"pack was made, so the figures do not count {'it' if one else 'them'} yet and may still change. Export "
            "the period again once they are due for final figures.")


def calls_words(calls, titles: dict[str, str]) -> str:
    """How many calls came in, and which of them the ten-ring figures leave out, and why."""
    total = sum(calls.values())
    if not total:
        return "No call came in during this period."
    counted = sum(n for (_, was_counted, _), n in calls.items() if was_counted)
    outside = sum(n for (in_hours, _, _), n in calls.items() if not in_hours)
    left = Counter({outcome: n for (in_hours, was_counted, outcome), n in calls.items()
                    if in_hours and not was_counted})
    hung_up, waiting = left.pop("abandoned", 0), left.pop("in_progress", 0)
    reasons = [f"{outside:,} outside opening hours"] if outside else []
    reasons += [f"{hung_up:,} whose caller hung up within the target"] if hung_up else []
    reasons += [f"{waiting:,} still waiting, within the target, when the pack was made"] if waiting else []
    # None by the rules; said rather than lost, should it ever happen.
    reasons += [f"{sum(left.values()):,} for another reason"] if sum(left.values()) else []
    return (f"{total:,} call{'' if total == 1 else 's'} came in; {_were(counted)} counted for "
            f"\u201c{titles['answer_within_rings']}\u201d."
            + (f" Not counted: {'; '.join(reasons)}." if reasons else "")
            + " calls.csv lists every call (in_hours, counted, outcome).")


def outcomes_words(outcomes: Counter) -> str:
    """What agents recorded of the answered calls' enquiries: a callback is owed for one only when
    an agent says so, so an auditor should see how many have nothing recorded."""
    answered = sum(outcomes.values())
    if not answered:
        return ""
    return (f"Of {answered:,} answered call{'' if answered == 1 else 's'}, agents recorded "
            f"{outcomes['concluded']:,} as concluded on the call and {outcomes['callback_needed']:,} as needing a "
            f"callback; {outcomes['none_recorded']:,} {'has' if outcomes['none_recorded'] == 1 else 'have'} "
            "neither recorded, so no callback is owed for "
            f"{'it' if outcomes['none_recorded'] == 1 else 'them'} (calls.csv: enquiry_outcome).")


def versions_words(versions: dict, current: str) -> str:
    """When other configuration versions than the current one judged the period's calls or callbacks,
    say so: the rules in words describe the current version only. Nothing when only it did."""
    together = Counter()
    for counts in versions.values():
        together.update(counts)
    if set(together) <= {current}:
        return ""
    listed = ", ".join(f"{version or 'not recorded'} ({count:,})" for version, count in sorted(together.items()))
    return (f"These rules are configuration version {current}'s, in force when the pack was made. This period's "
            f"calls and callbacks were judged under these versions (how many under each): {listed}. calls.csv and "
            "callbacks.csv give each one's version (config_version); the rules of another version are in its "
            "configuration file.")


# Mail the intake took in that is not an enquiry, and is never acknowledged (callbacks.email.parse.classify).
NOT_ENQUIRIES = {"auto_reply": ("automatic reply", "automatic replies"), "bounce": ("bounce", "bounces"),
                 "list": ("from a mailing list", "from mailing lists"),
                 "own_address": ("from the help desk's own address",) * 2, "null_sender": ("with no sender",) * 2}


def emails_words(emails: Counter) -> str:
    """How many emails came in, which opened or joined enquiries, and which the figures leave out, and why."""
    total = sum(emails.values())
    if not total:
        return "No email came in during this period."
    opened, limited, joined = emails["new_enquiry"] + emails["rate_limited"], emails["rate_limited"], emails["joined"]
    text = f"{total:,} email{'' if total == 1 else 's'} came in: {opened:,} opened an enquiry"
    if limited:
        text += (f" ({limited:,} of them not acknowledged, and not counted, because the sender had passed the flood "
                 "guard's limit)")
    text += f" and {joined:,} joined one (a reply, not acknowledged again)."
    others = sorted((NOT_ENQUIRIES.get(decision, (decision,) * 2)[n != 1], n) for decision, n in emails.items()
                    if decision not in ("new_enquiry", "rate_limited", "joined") and n)
    if others:
        count = sum(n for _, n in others)
        text += (f" {_were(count)} not enquiries, so not acknowledged and not in emails.csv: "
                 + "; ".join(f"{n:,} {words}" for words, n in others) + ".")
    return text


def callbacks_words(tally: Tally) -> str:
    """Of the callbacks counted, how many reached the caller, and how many breaches a late entry corrected."""
    counted = sum(tally.lead.values())
    if not counted:
        return ""
    text = f"Of {counted:,} callback{'' if counted == 1 else 's'} counted, {tally.reached:,} reached the caller."
    if tally.corrected:
        text += (f" {_were(tally.corrected)} met only after a breach had been recorded: an attempt made in time "
                 "was entered after the deadline passed (callbacks.csv: breach_recorded with met; "
                 "callback_attempts.csv: recorded; the audit log names who entered "
                 f"{'it' if tally.corrected == 1 else 'each'}).")
    return text


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
    gaps = ", then ".join(f"{m} minutes" for m in spacing[:tries - 1])
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


def withdrawn_words(count: int) -> str:
    """Callbacks that left the figures by being withdrawn: an auditor should see how many."""
    if not count:
        return "No callback was withdrawn before its deadline was decided."
    return (f"{count:,} callback{' was' if count == 1 else 's were'} withdrawn before {'its' if count == 1 else 'their'} "
            "deadline was decided, so the callback figures do not count "
            f"{'it' if count == 1 else 'them'}. callbacks.csv lists {'it' if count == 1 else 'them'} (closed_outcome "
            "\u201cwithdrawn\u201d); the agent's reason is in the note, included when notes are.")


def no_number_words(count: int) -> str:
    """Callbacks that left the figures because there was nobody they could ring (none: nothing said)."""
    if not count:
        return ""
    them = "it" if count == 1 else "them"
    return (f"{count:,} callback{' was' if count == 1 else 's were'} closed as unreachable before "
            f"{'its' if count == 1 else 'their'} deadline was decided because there was no number to dial, so the "
            f"callback figures do not count {them} either. callbacks.csv lists {them} (closed_outcome "
            "\u201cunreachable\u201d, counted \u201cno\u201d).")


def restored_words(lost) -> str:
    """What a restore of the database took from the pack, for the report's opening."""
    return (lost_words(lost, "these figures and from every file of this pack")
            + " summary.csv marks each period it touches (lost_in_restore), and manifest.json lists "
            + ("the time" if len(lost) == 1 else "each time") + " in UTC (lost_in_restores).")


def _provisional_words(facts: ReportFacts, tally: Tally) -> str:
    if facts.generated_at < compliance.uk_midnight(facts.last + timedelta(days=1)):
        return PROVISIONAL
    return not_yet_due_words(tally.pending_callbacks, tally.pending_acks)


def write_report(path: Path, facts: ReportFacts, summary: Summary, tally: Tally, desk_name: str) -> None:
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
        story.append(Paragraph(escape(outcomes_words(tally.enquiry_outcomes)), styles["BodyText"]))
    if tally.lead:
        story.append(Paragraph(escape(callbacks_words(tally)), styles["BodyText"]))
    story.append(Paragraph(escape(emails_words(tally.emails)), styles["BodyText"]))
    story.append(Paragraph(escape(withdrawn_words(tally.withdrawn)), styles["BodyText"]))
    if tally.no_number:
        story.append(Paragraph(escape(no_number_words(tally.no_number)), styles["BodyText"]))

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
