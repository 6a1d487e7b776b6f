"""The auditors' Evidence page: choose UK dates and download the evidence pack as a ZIP.

Auditors and managers only. Administrators are not let in here (unlike most pages): the
pack holds callers' data, and they can export from the command line, which asks for their
password and is audited the same way.
"""
from __future__ import annotations

import logging
import re
from datetime import timedelta
from functools import wraps

from flask import Blueprint, current_app, render_template, request, send_file
from flask_login import current_user, login_required

from helpdesk.clock import local
from helpdesk.models.user import EVIDENCE_ROLES
from helpdesk.own_password import sentence
from helpdesk.pages import format as fmt
from helpdesk.web import clock, database, settings
from metrics.evidence.download import export_zip, pack_name
from metrics.evidence.pack import EvidenceError, Exporter, ExportRequest, check_range, parse_day

log = logging.getLogger(__name__)
bp = Blueprint("evidence", __name__)

# A download is built inside the request, so it must finish well within a proxy's timeout
# (nginx waits 60 s by default). A quarter of a busy year's PostgreSQL (113,000 calls) took
# 28 s on two cores, a year 102 s; longer ranges are for the command line, or a pack a quarter.
MAX_DAYS = 92
# The page's script (static/evidence.js) sends a random id with the form; the ZIP comes with a
# cookie named this, "_" and the id, so the script knows the pack has come. A name for each id,
# as two tabs may download at once. The script reads the cookie, so not HttpOnly.
DOWNLOADED_COOKIE = "evidence_downloaded"
DOWNLOAD_ID = re.compile(r"[0-9a-f]{32}")


def auditors_only(view):
    """Only auditors and managers, exactly (administrators too get 403 here)."""

    @wraps(view)
    def checked(*args, **kwargs):
        if current_user.role not in EVIDENCE_ROLES:
            return render_template("forbidden.html"), 403
        return view(*args, **kwargs)

    return login_required(checked)


def _form_page(form: dict, error: str | None = None, status: int = 200, field: str | None = None):
    """The form; `error` what was wrong, shown at the top and at `field` (the input it is about)."""
    return render_template("evidence.html", form=form, error=error, error_field=field, max_days=MAX_DAYS, fmt=fmt,
                           ack_minutes=settings().email.ack_within_minutes,
                           callback_within=settings().callback.within_minutes, max_rings=settings().max_rings), status


@bp.get("/evidence")
@auditors_only
def page():
    """The form: this month so far by default."""
    today = local(clock()).date()
    form = {"from": today.replace(day=1).isoformat(), "to": today.isoformat(), "include_notes": False,
            "allow_empty": False}
    return _form_page(form)


@bp.post("/evidence/download")
@auditors_only
def download():
    """Build the pack for the chosen dates and send it as a ZIP; the export is audited. With the
    page's `download_id`, the ZIP sets a cookie named after it (DOWNLOADED_COOKIE + "_" + the id),
    for the page's script: one name for each download, so two tabs never read each other's."""
    values = request.form
    form = {"from": (values.get("from") or "").strip(), "to": (values.get("to") or "").strip(),
            "include_notes": values.get("include_notes") == "yes", "allow_empty": values.get("allow_empty") == "yes"}
    exporter = Exporter.of(current_user)
    try:
        response = pack_download(pack_export(form, "web"), exporter)
    except NotMade as problem:
        field = problem.field
        if field == "allow_empty" and form["allow_empty"]:
            field = None  # not about the form's fields at all
        return _form_page(form, problem.sentence, 400, field)
    download_id = values.get("download_id") or ""
    if DOWNLOAD_ID.fullmatch(download_id):  # the page's script waits for this (static/evidence.js)
        response.set_cookie(f"{DOWNLOADED_COOKIE}_{download_id}", "1", max_age=120, path="/evidence",
                            samesite="Strict", secure=current_app.config["SESSION_COOKIE_SECURE"], httponly=False)
    return response


class NotMade(EvidenceError):
    """A pack that could not be made; `field` is what it is about: from, to, or allow_empty (for
    nothing having come in on those days, or the export itself)."""

    def __init__(self, problem: EvidenceError, field: str):
        super().__init__(str(problem))
        self.field = field

    @property
    def sentence(self) -> str:
        return sentence(self)


def pack_export(form: dict, via: str, token: tuple[int, str] | None = None) -> ExportRequest:
    """The masked pack `form` asks for ("from", "to", "include_notes", "allow_empty"), checked;
    `via`: web or token, with the `token`'s id and name. NotMade says what is wrong."""
    field = "from"  # what an error is about, as the checks go on
    try:
        first = parse_day(form["from"], "first")
        field = "to"
        last = parse_day(form["to"], "last")
        if last - first >= timedelta(days=MAX_DAYS):
            raise EvidenceError(f"choose at most {MAX_DAYS} days here (a quarter), so the pack is ready in time; "
                                "for a longer range, download a pack for each quarter, or ask an administrator "
                                "of the help desk to export it on the server (‘helpdesk evidence export’)")
        export = ExportRequest(first, last, "masked", form["include_notes"], form["allow_empty"], via=via,
                               token=token)
        check_range(export)
    except EvidenceError as problem:
        raise NotMade(problem, field) from None
    return export


def pack_download(export: ExportRequest, exporter: Exporter):
    """The pack built and sent as a ZIP to download; the export is audited. NotMade (about
    "allow_empty") when it cannot be made: nothing came in on those days, or the export failed."""
    try:
        with database().session() as audit_session:
            archive, _ = export_zip(current_app.config["DATABASE_URL"], settings(), export, exporter, clock(),
                                    audit_session)
    except EvidenceError as problem:
        raise NotMade(problem, "allow_empty") from None
    return _no_store(send_file(archive, mimetype="application/zip", as_attachment=True,
                               download_name=f"{pack_name(export)}.zip"))


def pack_head(export: ExportRequest):
    """A HEAD request's answer: the download's headers, with nothing built (so no length given)
    and nothing audited. A script can ask this to check its token and dates."""
    response = current_app.response_class(None, mimetype="application/zip")
    response.automatically_set_content_length = False
    response.headers.set("Content-Disposition", "attachment", filename=f"{pack_name(export)}.zip")
    return _no_store(response)


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"  # callers' data: never kept by a browser or proxy
    return response
