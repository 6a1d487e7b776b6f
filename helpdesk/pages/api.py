"""For scripts: an evidence pack downloaded with an access token (helpdesk.access_tokens).

    curl --fail-with-body --retry 5 -H "Authorization: Bearer $HELPDESK_TOKEN" -o pack.zip \\
        "https://helpdesk.example.org/api/evidence?from=2026-11-01&to=2026-11-30"

The token goes only in the Authorization header (RFC 6750), never in the address, which access
logs keep. No session cookie is read or written here, so a signed-in browser gets nothing
without a token. Answers other than the ZIP are one line of plain text saying what is wrong.
A pack is built for one request of a user's at a time (helpdesk.pack_builds): 429 with
Retry-After meanwhile, which curl's --retry honours.
"""
from __future__ import annotations

import logging

from flask import Blueprint, request

from helpdesk.access_tokens import TokenRefused, token_user
from helpdesk.clock import local
from helpdesk.own_password import sentence
from helpdesk.pack_builds import RETRY_AFTER_SECONDS, Busy, one_at_a_time
from helpdesk.pages.evidence import NotMade, pack_download, pack_export, pack_head
from helpdesk.web import clock, database, settings
from metrics.evidence.pack import Exporter

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")

# What /api/evidence takes in its address, and what each yes/no flag is in the pack's form.
DAYS = ("from", "to")
FLAGS = {"notes": "include_notes", "allow_empty": "allow_empty"}
NO_TOKEN = ("Send an access token in the Authorization header: “Authorization: Bearer hdt_...”. An auditor or a "
            "manager makes one on the Access tokens page.")


def _plain(status: int, message: str, headers: dict | None = None):
    return message + "\n", status, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store",
                                    **(headers or {})}


def _refused(message: str, presented: bool):
    """401: no token, or one that is no good (RFC 6750's challenge, `invalid_token` for the latter)."""
    challenge = 'Bearer realm="helpdesk"' + (', error="invalid_token"' if presented else "")
    return _plain(401, message, {"WWW-Authenticate": challenge})


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


@bp.get("/evidence")
def evidence_pack():
    """The masked evidence pack for `from` to `to` (UK dates, both included, at most a quarter) as
    a ZIP; `notes=yes` adds agents' notes, `allow_empty=yes` makes a pack of days when nothing
    came in. Audited as an export by the token's user, naming the token. One at a time for each
    user (helpdesk.pack_builds): 429 while another is being built. HEAD checks the token and the
    address, and builds nothing."""
    if "access_token" in request.args:
        return _plain(400, "Send the access token in the Authorization header, not in the address, where logs keep "
                           "it. Make a new token: this one may have been seen.")
    presented = _bearer()
    if presented is None:
        return _refused(NO_TOKEN, presented=False)
    try:
        with database().session() as db_session:
            user, token = token_user(db_session, presented, clock(), settings().web.two_step_for)
    except TokenRefused as refused:
        log.warning("access token refused%s: %s", "" if refused.token_id is None else f" (token {refused.token_id})",
                    refused)
        if refused.status == 401:
            return _refused(sentence(refused), presented=True)
        return _plain(refused.status, sentence(refused))
    unknown = sorted(set(request.args) - set(DAYS) - set(FLAGS))
    if unknown:
        return _plain(400, f"Unknown in the address: {', '.join(unknown)}. Give from, to, and if you want them "
                           "notes=yes and allow_empty=yes.")
    form = {name: request.args.get(name, "").strip() for name in DAYS}
    for name, key in FLAGS.items():
        value = request.args.get(name, "no").strip().lower()
        if value not in ("yes", "no"):
            return _plain(400, f"Give {name}=yes or {name}=no, not {value[:20]!r}.")
        form[key] = value == "yes"
    exporter = Exporter.of(user)
    try:
        export = pack_export(form, "token", (token.id, token.name))
        if request.method == "HEAD":
            return pack_head(export)
        with one_at_a_time(database(), user.id, clock()):
            response = pack_download(export, exporter)
    except NotMade as problem:
        return _plain(400, problem.sentence)
    except Busy as busy:
        log.info("evidence pack refused to access token %d: one already being built for its user", token.id)
        return _plain(429, f"A pack is already being built for you, asked for at "
                           f"{local(busy.started_at):%H:%M:%S} (UK time). Scripts get one pack at a time for each "
                           "person: wait until it has come, then ask again.",
                      {"Retry-After": str(RETRY_AFTER_SECONDS)})
    log.info("evidence pack downloaded with access token %d of user %s", token.id, user.username)
    return response
