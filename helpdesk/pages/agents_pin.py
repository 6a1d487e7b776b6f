"""The Agents' line PIN page: someone who takes callers from the queue sets the PIN their phone
types on the agents' line (routing.agents_pin, helpdesk.agents_pin), or a new one once it is
locked. It asks for their password, counted as a sign-in is: a session left open on a shared
desk must not be enough to set a PIN that puts a phone through to callers.
"""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from helpdesk.account_notices import AGENTS_PIN_SET, Notice
from helpdesk.agents_pin import LOCK_AFTER, LONGEST, SHORTEST, pin_problem, set_pin, state_of
from helpdesk.models.user import QUEUE_ROLES
from helpdesk.own_password import sentence
from helpdesk.pages.auth import client_address, confirm_password
from helpdesk.pages.password_links import notify
from helpdesk.user_rules import UserError
from helpdesk.users import Actor
from helpdesk.web import clock, database, settings

bp = Blueprint("agents_pin", __name__)

PAGE = "Agents' line PIN"  # where a wrong password was typed, as the audit log says


def has_pin_page(user) -> bool:
    """Whether `user` has the page: the desk asks for PINs, and they take callers from the queue."""
    return settings().routing.agents_pin and user.has_role(*QUEUE_ROLES)


def queue_takers_only(view):
    @wraps(view)
    def checked(*args, **kwargs):
        if not has_pin_page(current_user):
            return render_template("forbidden.html"), 403
        return view(*args, **kwargs)

    return login_required(checked)


@bp.get("/account/agents-pin")
@queue_takers_only
def page():
    return _page({})


def _page(problems: dict[str, str], status: int = 200):
    return render_template("agents_pin.html", problems=problems, state=state_of(current_user), shortest=SHORTEST,
                           longest=LONGEST, lock_after=LOCK_AFTER), status


@bp.post("/account/agents-pin")
@queue_takers_only
def choose():
    """Set the PIN, typed twice, once the password is right."""
    pin, again, password = (request.form.get(name, "")[:64] for name in ("pin", "pin_again", "password"))
    problems = {}
    if not pin:
        problems["pin"] = "Enter a PIN."
    elif problem := pin_problem(pin):
        problems["pin"] = f"The PIN {problem}."
    elif again != pin:
        problems["pin_again"] = "The PINs do not match. Type the same PIN twice."
    # The password is checked (and counted) only for a form otherwise right.
    problem, blocked = confirm_password(password, PAGE, check=not problems)
    if problem:
        problems["password"] = problem
    if blocked:
        return _page(problems, 429)
    if problems:
        return _page(problems, 400)
    try:
        with database().session() as db_session:
            set_pin(db_session, current_user.username, pin, Actor(current_user.username, current_user.id), clock(),
                    client_address())
    except UserError as problem:
        return _page({"pin": sentence(problem)}, 400)
    if current_user.email:
        notify(Notice(AGENTS_PIN_SET, current_user.email, current_user.username, current_user.display_name, clock(),
                      own=True))
    flash("Your PIN for the agents' line is set. Type it, then #, when you call the agents' line.", "success")
    return redirect(url_for("agents_pin.page"))
