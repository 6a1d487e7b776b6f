"""Pages for managers and auditors: the Calls page, and one enquiry's story."""
from __future__ import annotations

import re
from datetime import date, timedelta

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user

from callbacks.awaiting import OLDER_DAYS, awaiting_since
from helpdesk.clock import day_problem, iso_day, local
from helpdesk.models.user import QUEUE_ROLES
from helpdesk.pages import format as fmt
from helpdesk.pages import taken_by
from helpdesk.pages.access import role_required
from helpdesk.pages.calls import calls_page, has_clock_change
from helpdesk.pages.enquiry import enquiry_story, normal_reference
from helpdesk.web import clock, database, settings

bp = Blueprint("managers", __name__)

PER_PAGE = 200
_PAGE = re.compile(r"[0-9]{1,18}")


class BadQuery(ValueError):
    """A query parameter that cannot be used; the message is shown to the user."""


def _day(text: str | None) -> date:
    if not text:
        return local(clock()).date()
    day = iso_day(text)
    if day is not None:
        return day
    raise BadQuery(f"{fmt.quoted(text)} {day_problem(text)}.")


def _choice(value: str | None, allowed: dict[str, str], what: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise BadQuery(f"{fmt.quoted(value)} is not {what}. Choose one of: {', '.join(allowed.values())}.")
    return value


def _only(name: str, value: str | None, which: dict[str, str]) -> str | None:
    """A filter of a few choices (reached=no; recorded=no or late): `which` says what each lists."""
    if value and value not in which:
        uses = ", ".join(f"{name}={choice} for {listed}" for choice, listed in which.items())
        raise BadQuery(f"{fmt.quoted(value)} is not a choice here. Use {uses}, or leave it out for every call.")
    return value or None


def _page(text: str | None) -> int:
    if not text:
        return 1
    if not _PAGE.fullmatch(text) or int(text) < 1:
        raise BadQuery(f"{fmt.quoted(text)} is not a page number. Use a whole number from 1.")
    return int(text)


@bp.get("/calls")
@role_required("manager", "auditor")
def calls():
    """Calls on one UK day, newest first, with the day's answer figures."""
    args = request.args
    day = None
    try:
        day = _day(args.get("day"))
        outcome = _choice(args.get("outcome"), fmt.OUTCOMES, "an outcome")
        result = _choice(args.get("result"), fmt.SLA_RESULTS, "a result")
        reached = _only("reached", args.get("reached"), {"no": "the calls that never reached the help desk"})
        recorded = _only("recorded", args.get("recorded"), {
            "no": "the answered calls with no outcome recorded",
            "late": "the answered calls whose outcome was recorded over a day after the answer"})
        page = _page(args.get("page"))
    except BadQuery as problem:
        if day and args.get("day"):  # the day asked for was a day: only a filter was wrong
            back_href = url_for("managers.calls", day=day.isoformat())
            back_label = f"Show all calls on {fmt.format_day(day)}"
        else:
            back_href, back_label = url_for("managers.calls"), "Show today’s calls"
        return render_template("error.html", title="Cannot show these calls", message=str(problem),
                               back_href=back_href, back_label=back_label), 400

    per_page = int(current_app.config.get("CALLS_PER_PAGE", PER_PAGE))
    now = clock()
    with database().session() as session:
        listing = calls_page(session, day, settings=settings(), now=now, outcome=outcome, result=result,
                             unheard=reached == "no", recorded=recorded, page=page, per_page=per_page)
        takers = taken_by.answered_by_each(session, listing.calls, current_user.id)
    if page > listing.pages:
        message = f"There is no page {page}: this day has {listing.pages} page{'s' if listing.pages > 1 else ''}."
        return render_template("error.html", title="Page not found", message=message), 404

    filters = {"outcome": outcome, "result": result, "reached": reached, "recorded": recorded}

    def link(**changes) -> str:
        params = {"day": day.isoformat(), **filters, **changes}
        return url_for("managers.calls", **{k: v for k, v in params.items() if v})

    return render_template(
        "calls.html",
        listing=listing,
        day=day,
        day_words=fmt.format_day(day),
        filters=filters,
        fmt=fmt,
        with_zone=has_clock_change(day),
        max_rings=settings().max_rings,
        compliance=fmt.format_compliance(listing.summary.met, listing.summary.countable),
        previous_day=link(day=(day - timedelta(days=1)).isoformat(), page=None),
        next_day=link(day=(day + timedelta(days=1)).isoformat(), page=None),
        previous_page=link(page=page - 1) if page > 1 else None,
        next_page=link(page=page + 1) if page < listing.pages else None,
        never_reached_link=link(outcome=None, result=None, reached="no", recorded=None, page=None),
        no_outcome_link=link(outcome=None, result=None, reached=None, recorded="no", page=None),
        takers=takers,
        # The day's calls awaiting an outcome are still on the agents' page (callbacks.awaiting),
        # or on it when older calls are shown, for those who may see it.
        on_agents_page=day >= awaiting_since(settings(), now),
        older_href=url_for("agents.queue", older="yes") + "#awaiting"
        if current_user.has_role(*QUEUE_ROLES) and day >= local(now).date() - timedelta(days=OLDER_DAYS) else None,
    )


@bp.get("/enquiries")
@role_required("manager", "auditor")
def find_enquiry():
    """Look an enquiry up by its reference (HD-YYYY-NNNNNN)."""
    typed = request.args.get("reference")
    if typed is None:
        return render_template("enquiry_search.html")
    reference = normal_reference(typed[:100])
    if reference is None:
        return _not_a_reference(typed)
    return redirect(url_for("managers.enquiry", reference=reference))


def _not_a_reference(typed: str):
    problem = (f"{fmt.quoted(typed)} is not a reference. Give it as HD-YYYY-NNNNNN, for example HD-2026-000123."
               if typed.strip() else "Give a reference, for example HD-2026-000123.")
    return render_template("enquiry_search.html", typed=typed[:100], problem=problem), 400


@bp.get("/enquiries/<reference>")
@role_required("manager", "auditor")
def enquiry(reference: str):
    """An enquiry's story in time order: its calls or emails, what the rules made of them, its callbacks."""
    found = normal_reference(reference[:100])
    if found is None:
        return _not_a_reference(reference)
    if found != reference:
        return redirect(url_for("managers.enquiry", reference=found))
    with database().session() as session:
        story = enquiry_story(session, found, settings(), clock())
    if story is None:
        return render_template("enquiry_search.html", typed=found,
                               problem=f"There is no enquiry {found}."), 404
    return render_template("enquiry.html", story=story, fmt=fmt, show_notes=current_user.role != "auditor")
