"""Two-step sign-in on the pages (helpdesk.two_step): the code asked for after the password, and
each user's Two-step sign-in page, where they set it up, make new recovery codes or turn it off.

Between the password and the code, the session holds only who is signing in, with which
password, since when and where to go next: nobody is signed in until the code is right. A code
refused counts as a refused sign-in, under the same limit as wrong passwords; so does the
password itself, until the code is right, so a password known to someone else gives them no
more tries at the code than at the password.
"""
from __future__ import annotations

import logging

import segno
from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from helpdesk.account_notices import RECOVERY_CODE_USED, TWO_STEP_OFF, TWO_STEP_ON, Notice
from helpdesk.clock import LONDON
from helpdesk.models import User
from helpdesk.pages.access import password_mark
from helpdesk.pages.auth import client_address, complete_sign_in, start_page
from helpdesk.pages.format import format_moment
from helpdesk.own_password import TooManyWrongPasswords
from helpdesk.two_step import (BY_RECOVERY_CODE, CodeWrong, codes_left, make_new_codes, passed_counted,
                               still_to_set_up, turn_off, turn_on)
from helpdesk.two_step_rules import LONGEST_CODE, grouped, new_secret, setup_uri
from helpdesk.user_rules import UserError
from helpdesk.users import SIGN_IN_REFUSED, Actor, audit, from_address
from helpdesk.web import clock, database, settings

log = logging.getLogger(__name__)
bp = Blueprint("two_step", __name__)

_PENDING = "two_step_pending"
_NEW_SECRET = "two_step_new_secret"
# How long after the password the code may be given: then the password again.
PENDING_SECONDS = 300
# The Two-step sign-in page's two forms, each with its own code field.
_CODES, _OFF = "codes", "off"
TOO_LONG = f"A code is at most {LONGEST_CODE} characters."


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired("Enter the code."),
                                           Length(max=LONGEST_CODE, message=TOO_LONG)])


def role_must(user) -> bool:
    """Whether `user`'s role must have two-step sign-in ([web] two_step_for)."""
    return user.role in settings().web.two_step_for


def must_set_up(user) -> bool:
    """Whether `user` must set up two-step sign-in before anything else: their role must have it."""
    return still_to_set_up(user, settings().web.two_step_for)


def ask_for_code(user: User, next_path: str | None):
    """The password was right and `user` has two-step sign-in: ask for the code next."""
    session.clear()
    session[_PENDING] = {"user": user.id, "mark": password_mark(user), "at": clock().timestamp(),
                         "next": next_path or ""}
    return redirect(url_for("two_step.code"))


def _pending_user() -> tuple[User | None, dict]:
    """Who is between their password and their code, if they still are: within PENDING_SECONDS,
    active, and with the password they gave."""
    pending = session.get(_PENDING)
    if not isinstance(pending, dict) or not isinstance(pending.get("at"), (int, float)):
        return None, {}
    if clock().timestamp() - pending["at"] > PENDING_SECONDS:
        return None, {}
    with database().session() as db_session:
        user = db_session.get(User, pending.get("user")) if isinstance(pending.get("user"), int) else None
    if user is None or not user.active or password_mark(user) != pending.get("mark"):
        return None, {}
    return user, pending


@bp.route("/login/code", methods=["GET", "POST"])
def code():
    """The second step of signing in: a code from the app, or a recovery code."""
    user, pending = _pending_user()
    if user is None:
        if session.pop(_PENDING, None) is not None:
            flash("Sign in again: the code must come within 5 minutes of your password.", "info")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    if request.method in ("GET", "HEAD"):
        return _code_page(form, None)
    if not form.validate_on_submit():
        return _code_page(form, None), 400
    now = clock()
    with database().session() as db_session:
        try:
            how = passed_counted(db_session, user, form.code.data, current_app.config["SECRET_KEY"], now)
        except TooManyWrongPasswords as refused:
            log.warning("sign-in code refused unheard for user id %s: too many refused in a row", user.id)
            session.pop(_PENDING, None)
            flash(f"Too many wrong passwords or codes for your username. Sign in again after "
                  f"{refused.until.astimezone(LONDON):%H:%M}.", "error")
            return redirect(url_for("auth.login"))
        if how is None:
            with db_session.begin():
                audit(db_session, SIGN_IN_REFUSED, user, Actor(user.username, user.id), now, reason="wrong code",
                      **from_address(client_address()))
            log.info("sign-in code refused for user id %s", user.id)
        left = codes_left(db_session, user.id) if how == BY_RECOVERY_CODE else None
    if how is None:
        return _code_page(form, "That code is wrong, or has been used already. Type the code the app shows now."), 200
    signed_in = complete_sign_in(user, pending.get("next"), how)  # a new session: flash after it
    if how == BY_RECOVERY_CODE:
        _notify(user, RECOVERY_CODE_USED, left=left)
        flash(f"You signed in with a recovery code, which cannot be used again. You have {left} left: make new "
              "ones on Two-step sign-in if you need to.", "info")
    return signed_in


def _code_page(form: CodeForm, error: str | None):
    return render_template("two_step_code.html", form=form, error=error)


@bp.get("/account/two-step")
@login_required
def page():
    """Two-step sign-in: set it up (the QR code and key), or, once it is, its state."""
    if current_user.has_two_step:
        return _state_page()
    return _setup_page(CodeForm())


def _setup_page(form: CodeForm):
    secret = session.get(_NEW_SECRET)
    if not isinstance(secret, str) or len(secret) != 32:
        secret = session[_NEW_SECRET] = new_secret()
    uri = setup_uri(secret, current_user.username, settings().name)
    return render_template("two_step_setup.html", form=form, qr=qr_code(uri), key=grouped(secret),
                           must=must_set_up(current_user))


def qr_code(uri: str) -> str:
    """The key's QR code as inline SVG, 5 px a module, and with a viewBox, so that the stylesheet can
    shrink it to a screen narrower than that (a phone's at 320 px) rather than have it run off."""
    code = segno.make(uri, error="m")
    width, height = code.symbol_size(scale=5, border=4)
    svg = code.svg_inline(scale=5, border=4, dark="#0b0c0c", light="#ffffff", omitsize=True,
                          title="QR code to scan with the authenticator app")
    return svg.replace("<svg ", f'<svg width="{width}" height="{height}" ', 1)


@bp.post("/account/two-step/on")
@login_required
def set_up():
    """The code from the app shows it has the key: two-step sign-in is on; its recovery codes are
    shown, once."""
    form = CodeForm()
    secret = session.get(_NEW_SECRET)
    if current_user.has_two_step:
        return redirect(url_for("two_step.page"))
    if not form.validate_on_submit() or not isinstance(secret, str):
        return _setup_page(form), 400
    now = clock()
    try:
        with database().session() as db_session:
            codes = turn_on(db_session, current_user, secret, form.code.data, now, client_address())
    except CodeWrong:
        form.code.errors = ["That is not the code the app shows. Check that the app has the key above, and type "
                            "the code it shows now."]
        return _setup_page(form), 400
    except UserError:  # set up meanwhile, in another tab
        return redirect(url_for("two_step.page"))
    session.pop(_NEW_SECRET, None)
    _notify(current_user, TWO_STEP_ON)
    return render_template("two_step_codes.html", codes=codes, first=True, next=start_page(current_user))


@bp.post("/account/two-step/codes")
@login_required
def new_codes():
    """New recovery codes in place of the old ones, once a code shows it is the user."""
    if not current_user.has_two_step:
        return redirect(url_for("two_step.page"))
    refused = _confirm(_CODES)
    if refused is not None:
        return refused
    with database().session() as db_session:
        codes = make_new_codes(db_session, current_user, clock(), client_address())
    return render_template("two_step_codes.html", codes=codes, first=False, next=start_page(current_user))


@bp.post("/account/two-step/off")
@login_required
def off():
    """Turn two-step sign-in off (or, for a role that must have it, start again with a new phone)."""
    if not current_user.has_two_step:
        return redirect(url_for("two_step.page"))
    refused = _confirm(_OFF)
    if refused is not None:
        return refused
    try:
        with database().session() as db_session:
            turn_off(db_session, current_user.username, Actor(current_user.username, current_user.id), clock(),
                     client_address())
    except UserError:  # turned off meanwhile
        return redirect(url_for("two_step.page"))
    _notify(current_user, TWO_STEP_OFF, by_self=True)
    if role_must(current_user):
        flash("Two-step sign-in is off. Your role must have it: set it up again, with your new phone.", "success")
    else:
        flash("Two-step sign-in is off. You sign in with your password alone.", "success")
    return redirect(url_for("two_step.page"))


def _confirm(name: str):
    """None once the code typed in the form `name` (_CODES, _OFF) is the app's (or a recovery
    code), else the page saying why not. A wrong code counts as a refused sign-in, so a session
    left open cannot be used to guess codes."""
    form = CodeForm(prefix=name)
    if not form.validate_on_submit():
        return _state_page(name, form), 400
    try:
        with database().session() as db_session:
            how = passed_counted(db_session, current_user, form.code.data, current_app.config["SECRET_KEY"],
                                 clock())
    except TooManyWrongPasswords as refused:
        form.code.errors = [f"Too many wrong passwords or codes for your username. Try again after "
                            f"{refused.until.astimezone(LONDON):%H:%M}."]
        return _state_page(name, form), 429
    if how is None:
        form.code.errors = ["That code is wrong, or has been used already. Type the code the app shows now."]
        return _state_page(name, form), 400
    return None


def _state_page(posted_name: str | None = None, posted: CodeForm | None = None):
    """The page of a user with two-step sign-in: its two forms, the one posted with its problems."""
    forms = {name: posted if name == posted_name else CodeForm(prefix=name, formdata=None) for name in (_CODES, _OFF)}
    with database().session() as db_session:
        left = codes_left(db_session, current_user.id)
    return render_template("two_step.html", codes_form=forms[_CODES], off_form=forms[_OFF], left=left,
                           since=format_moment(current_user.two_step_since), must=role_must(current_user))


def _notify(user: User, kind: str, left: int | None = None, by_self: bool = False) -> None:
    if user.email:
        from helpdesk.pages.password_links import notify

        notify(Notice(kind, user.email, user.username, user.display_name, clock(), left=left, own=by_self))

