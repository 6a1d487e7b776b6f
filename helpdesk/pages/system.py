"""The System page, for administrators: whether every part of the help desk is working, and
what to do about one that is not (helpdesk.system_status)."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from callbacks.telephony import UnconfiguredTelephony
from helpdesk.clock import local
from helpdesk.pages.access import role_required
from helpdesk.system_status import ATTENTION, Setup, checks, read_facts
from helpdesk.voice.recovery import spool_for
from helpdesk.web import clock, database, settings
from metrics.evidence.manifest import software_version

bp = Blueprint("system", __name__, url_prefix="/admin")


@bp.get("/system")
@role_required("admin")
def page():
    now, desk = clock(), settings()
    with database().session() as session:
        facts = read_facts(session, desk, now)
    found = checks(facts, _setup(desk), desk)
    open_now = desk.calendar.is_open(now)
    try:
        next_opening = None if open_now else local(desk.calendar.next_opening(now))
    except ValueError:  # no opening hours for months: the configuration says so, and the page still shows
        next_opening = None
    return render_template("admin/system.html", checks=found, attention=sum(c.state == ATTENTION for c in found),
                           version=software_version(), desk=desk, shown_at=local(now), open_now=open_now,
                           next_opening=next_opening)


def _setup(desk) -> Setup:
    try:
        spool = spool_for(desk).counts()
    except OSError:
        spool = {}
    telephony = current_app.extensions["helpdesk.telephony"]
    config = current_app.config
    return Setup(spool=spool,
                 telephony_problem=telephony.message if isinstance(telephony, UnconfiguredTelephony) else None,
                 from_number=getattr(telephony, "from_number", "") or "",
                 sip_login=config.get("SIP_LOGIN") is not None,
                 sendgrid=bool(config.get("SENDGRID_INBOUND_SECRET")))
