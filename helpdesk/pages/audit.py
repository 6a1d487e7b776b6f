"""The Audit log page, for DWP auditors and administrators: who did what, and when, over a
range of days, with a CSV file of the same entries."""
from __future__ import annotations

import csv
import io
import re
from datetime import date

from flask import Blueprint, Response, current_app, render_template, request, stream_with_context, url_for
from flask_login import current_user

from helpdesk.audit_log import CSV_COLUMNS, KINDS, PER_PAGE, all_entries, csv_row, default_first, entries_page
from helpdesk.models import User
from helpdesk.pages import format as fmt
from helpdesk.pages.access import role_required
from helpdesk.pages.managers import BadQuery, _choice, _day, _page
from helpdesk.web import database

bp = Blueprint("audit", __name__)

_USER_ID = re.compile(r"[0-9]{1,10}")
LARGEST_ID = 2**31 - 1  # the largest id PostgreSQL's integer holds


@bp.get("/audit")
@role_required("auditor")
def log():
    """The entries of a range of UK days, newest first, a page at a time."""
    try:
        query = _query()
        page = _page(request.args.get("page"))
    except BadQuery as problem:
        return render_template("error.html", title="Cannot show the audit log", message=str(problem),
                               back_href=url_for("audit.log"), back_label="Show the last 7 days"), 400
    first, last, kind, user = query
    per_page = int(current_app.config.get("AUDIT_PER_PAGE", PER_PAGE))
    with database().session() as session:
        listing = entries_page(session, first, last, kind=kind, user_id=user.id if user else None, page=page,
                               per_page=per_page)
    if page > listing.pages:
        message = f"There is no page {page}: these entries fill {listing.pages} page{'s' if listing.pages > 1 else ''}."
        return render_template("error.html", title="Page not found", message=message), 404
    filters = {"from": first.isoformat(), "to": last.isoformat(), "what": kind, "user": user.id if user else None}

    def link(endpoint="audit.log", **changes) -> str:
        return url_for(endpoint, **{k: v for k, v in {**filters, **changes}.items() if v})

    return render_template(
        "audit.html", listing=listing, first=first, last=last, kind=kind, kinds=KINDS, person=user, fmt=fmt,
        range_words=_range_words(first, last),
        user_page=current_user.role == "admin",
        csv_link=link("audit.download", page=None), everyone_link=link(user=None, page=None),
        previous_page=link(page=page - 1) if page > 1 else None,
        next_page=link(page=page + 1) if page < listing.pages else None)


@bp.get("/audit.csv")
@role_required("auditor")
def download():
    """Every entry the page's filters select, oldest first, as a CSV file."""
    try:
        first, last, kind, user = _query()
    except BadQuery as problem:
        return render_template("error.html", title="Cannot make the CSV file", message=str(problem),
                               back_href=url_for("audit.log"), back_label="Show the last 7 days"), 400
    name = f"audit-log-{first.isoformat()}-to-{last.isoformat()}.csv"

    def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        with database().session() as session:
            for entry in all_entries(session, first, last, kind=kind, user_id=user.id if user else None):
                writer.writerow(csv_row(entry))
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue()
    # Streamed: each row goes out as it is read (all_entries reads a batch at a time).
    return Response(stream_with_context(rows()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def _query() -> tuple[date, date, str | None, User | None]:
    """The range, the kind of entry and the user the address asks for, checked."""
    args = request.args
    last = _day(args.get("to"))
    first = _day(args.get("from")) if args.get("from") else default_first(last)
    if first > last:
        raise BadQuery(f"The first day, {fmt.format_day(first)}, is after the last, {fmt.format_day(last)}. "
                       "Choose a first day on or before the last.")
    kind = _choice(args.get("what"), {name: words for name, (words, _) in KINDS.items()}, "a kind of entry")
    return first, last, kind, _user(args.get("user"))


def _user(text: str | None) -> User | None:
    if not text:
        return None
    if not _USER_ID.fullmatch(text) or int(text) > LARGEST_ID:
        raise BadQuery(f"{fmt.quoted(text)} is not a user's number.")
    with database().session() as session, session.begin():
        user = session.get(User, int(text))
        if user is None:
            raise BadQuery(f"There is no user number {int(text)}.")
        session.expunge(user)
    return user


def _range_words(first: date, last: date) -> str:
    if first == last:
        return fmt.format_day(first)
    return f"{fmt.format_day(first)} to {fmt.format_day(last)}"
