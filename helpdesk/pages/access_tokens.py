"""Access tokens (helpdesk.access_tokens) on the pages: an auditor or a manager makes one for a
script that downloads evidence packs, sees it once, and revokes those they no longer use.

Making one asks for the user's password, counted as a sign-in is: a session left open on a
shared desk must not be enough to take away a token that works for months.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from helpdesk.access_tokens import (DEFAULT_DAYS, LIFETIMES, LONGEST_NAME, MOST_LIVE, check_days, check_name,
                                    live_tokens, make_token, revoke)
from helpdesk.account_notices import TOKEN_MADE, Notice
from helpdesk.clock import local
from helpdesk.own_password import sentence
from helpdesk.pages.auth import client_address, confirm_password
from helpdesk.pages.evidence import MAX_DAYS, auditors_only
from helpdesk.pages.format import format_date_time, format_moment
from helpdesk.user_rules import UserError
from helpdesk.users import Actor
from helpdesk.web import clock, database

log = logging.getLogger(__name__)
bp = Blueprint("tokens", __name__)

PAGE = "Access tokens"  # where a wrong password was typed, as the audit log says


@bp.get("/account/tokens")
@auditors_only
def page():
    """The user's tokens still working, and the form to make one."""
    return _page({"days": str(DEFAULT_DAYS)}, {})


def _page(typed: dict[str, str], problems: dict[str, str], status: int = 200):
    with database().session() as db_session:
        tokens = live_tokens(db_session, current_user.id, clock())
    return render_template("access_tokens.html", tokens=tokens, typed=typed, problems=problems, lifetimes=LIFETIMES,
                           most=MOST_LIVE, longest=LONGEST_NAME, example=_example(),
                           fmt_when=format_date_time), status


@bp.post("/account/tokens")
@auditors_only
def make():
    """Make a token once the password is right; it is shown once, on the page this answers."""
    typed = {"name": request.form.get("name", "")[:LONGEST_NAME * 4], "days": request.form.get("days", "")}
    password = request.form.get("password", "")
    problems = {}
    for field, check in (("name", check_name), ("days", check_days)):
        try:
            check(typed[field])
        except UserError as problem:
            problems[field] = sentence(problem)
    # The password is checked (and counted) only for a form otherwise right.
    problem, blocked = confirm_password(password, PAGE, check=not problems)
    if problem:
        problems["password"] = problem
    if blocked:
        return _page(typed, problems, 429)
    if problems:
        return _page(typed, problems, 400)
    try:
        with database().session() as db_session:
            made = make_token(db_session, current_user, typed["name"], typed["days"], clock(), client_address())
    except UserError as problem:  # as many as they may have, or one of that name
        return _page(typed, {"name": sentence(problem)}, 400)
    if current_user.email:
        from helpdesk.pages.password_links import notify

        notify(Notice(TOKEN_MADE, current_user.email, current_user.username, current_user.display_name, clock(),
                      token=made.token.name))
    return render_template("access_token_made.html", secret=made.secret, token=made.token, fmt_when=format_moment,
                           example=_example())


@dataclass(frozen=True)
class Example:
    """What the pages' curl example asks for: last month's pack, from where the app is."""

    base_url: str
    first: date
    last: date
    max_days: int = MAX_DAYS


def _example() -> Example:
    """Last month's pack, at PUBLIC_BASE_URL, or without it the address this page was asked at
    (an example only: nothing is sent there)."""
    last = local(clock()).date().replace(day=1) - timedelta(days=1)
    return Example(current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/"), last.replace(day=1), last)


@bp.post("/account/tokens/<id:token_id>/revoke")
@auditors_only
def revoke_own(token_id: int):
    try:
        with database().session() as db_session:
            token = revoke(db_session, current_user, token_id, Actor(current_user.username, current_user.id), clock(),
                           client_address())
    except UserError as problem:
        flash(sentence(problem), "error")
    else:
        flash(f"Revoked the access token “{token.name}”: a script that gives it is refused from now on.", "success")
    return redirect(url_for("tokens.page"))
