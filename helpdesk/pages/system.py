"""The System page, for administrators: whether every part of the help desk is working, and
what to do about one that is not (helpdesk.system_status)."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from helpdesk.clock import local
from helpdesk.pages.access import role_required
from helpdesk.system_status import ATTENTION, checks, read_facts, setup_of
from helpdesk.web import clock, database, settings
from metrics.evidence.manifest import software_version

bp = Blueprint("system", __name__, url_prefix="/admin")


@bp.get("/system")
@role_required("admin")
def page():
    now, desk = clock(), settings()
    with database().session() as session:
        facts = read_facts(session, desk, now)
    found = checks(facts, setup_of(desk, current_app.config, current_app.extensions["helpdesk.telephony"]), desk)
    open_now = desk.calendar.is_open(now)
    try:
        next_opening = None if open_now else local(desk.calendar.next_opening(now))
    except ValueError:  # no opening hours for months: the configuration says so, and the page still shows
        next_opening = None
    return render_template("admin/system.html", checks=found, attention=sum(c.state == ATTENTION for c in found),
                           version=software_version(), desk=desk, shown_at=local(now), open_now=open_now,
                           next_opening=next_opening)

