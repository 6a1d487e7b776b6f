"""Signing in and out, changing one's own password, and the start page that sends each role to its own page."""
from __future__ import annotations

import ipaddress
import logging
from datetime import datetime

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from helpdesk.clock import LONDON
from helpdesk.models import User
from helpdesk.own_password import PasswordNotChanged, TooManyWrongPasswords, change_own_password, password_confirmed
from helpdesk.pages.access import local_path, remember_new_password, remember_sign_in
from helpdesk.user_rules import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from helpdesk.users import (authenticate, begin_sign_in, finish_sign_in, sign_in_keys, sign_in_refused, signed_in,
                            signed_out, user_id_named)
from helpdesk.web import clock, database

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

WRONG = "Username or password is wrong."
# Where each role starts.
START_PAGES = {"admin": "managers.calls", "manager": "managers.calls", "auditor": "managers.calls",
               "agent": "agents.queue"}


TOO_LONG = "A password is at most 1,024 characters."


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired("Enter your username."), Length(max=64, message="A username is at most 64 characters.")])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=1024, message=TOO_LONG)])
    next = HiddenField()


class NewPasswordForm(FlaskForm):
    """A new password, typed twice (Choose your password, with an emailed link)."""

    new_password = PasswordField("New password", validators=[
        DataRequired("Enter a new password."), Length(max=1024, message=TOO_LONG)])
    new_password_again = PasswordField("New password again", validators=[
        DataRequired("Enter the new password again."), Length(max=1024, message=TOO_LONG)])


class PasswordForm(NewPasswordForm):
    """Change your password: the current one, then the new one twice."""

    current_password = PasswordField("Current password", validators=[
        DataRequired("Enter your current password."), Length(max=1024, message=TOO_LONG)])


def start_page(user) -> str | None:
    """The page a user's role starts on (None for a role with no pages, which no user can have)."""
    endpoint = START_PAGES.get(user.role)
    return url_for(endpoint) if endpoint else None


def client_address() -> str | None:
    """The address the request came from, for the audit log: behind proxies (web.proxies), the one
    the outermost heard; None if that is not an IP address (a proxy sending something else)."""
    try:
        return str(ipaddress.ip_address((request.remote_addr or "").strip()))
    except ValueError:
        return None


def confirm_password(password: str, page: str, check: bool = True) -> tuple[str | None, bool]:
    """What is wrong with the password the signed-in user typed on `page` (as the audit log names
    it) to confirm what they do there, or None; checked, and counted as a sign-in is, only when
    `check` (the rest of the form is right). With whether the sign-in limit was reached (a 429)."""
    if not password:
        return "Enter your password.", False
    if len(password) > MAX_PASSWORD_LENGTH:
        return "Your password is wrong.", False
    if not check:
        return None, False
    try:
        with database().session() as db_session:
            if password_confirmed(db_session, current_user, password, current_app.config["SECRET_KEY"], clock(),
                                  client_address(), page=page) is None:
                return "Your password is wrong.", False
    except TooManyWrongPasswords as refused:
        return (f"Too many wrong passwords for your username. Try again after "
                f"{refused.until.astimezone(LONDON):%H:%M}."), True
    return None, False


def _who(user_id: int | None) -> str:
    """Whose sign-in, for the log: a user's id, never the name typed (people type passwords there)."""
    return "an unknown username" if user_id is None else f"user id {user_id}"


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form; on success, go to `next` (if on this site) or the role's page."""
    form = LoginForm()
    if request.method in ("GET", "HEAD"):  # HEAD: a link checker or monitor looking at the page
        if current_user.is_authenticated:
            return redirect(url_for("auth.home"))
        form.next.data = local_path(request.args.get("next")) or ""
        return _login_page(form, None)
    if not form.validate_on_submit():
        return _login_page(form, None), 400
    now = clock()
    with database().session() as db_session:
        keys = sign_in_keys(db_session, form.username.data, current_app.config["SECRET_KEY"])
        blocked = begin_sign_in(db_session, keys, now)
        if blocked is not None:
            log.warning("sign-in refused unheard for %s: too many refused in a row",
                        _who(user_id_named(db_session, form.username.data)))
            return _login_page(form, (
                f"Too many wrong passwords for this username. Try again after {blocked.astimezone(LONDON):%H:%M}, "
                "or ask an administrator to set a new password.")), 429
        user = authenticate(db_session, form.username.data, form.password.data)
        # With two-step sign-in, the password's try stays counted until the code is right.
        finish_sign_in(db_session, keys, succeeded=user is not None and not user.has_two_step)
        if user is None:
            log.info("sign-in refused for %s", _who(sign_in_refused(db_session, keys, form.username.data, now,
                                                                    client_address())))
    if user is None:
        return _login_page(form, WRONG), 200
    next_path = local_path(form.next.data)
    if user.has_two_step:
        from helpdesk.pages.two_step import ask_for_code

        return ask_for_code(user, next_path)
    return complete_sign_in(user, next_path)


def complete_sign_in(user: User, next_path: str | None, two_step: str | None = None):
    """Sign `user` in (their password right, and their code if they have two-step sign-in:
    `two_step` says how it was passed) and go on: to choose their own password or set up two-step
    sign-in if they must, else to `next_path` or their role's page."""
    from helpdesk.pages.two_step import must_set_up

    with database().session() as db_session:
        signed_in(db_session, user, clock(), client_address(), two_step)
    session.clear()  # nothing from before sign-in carries over (session fixation)
    session.permanent = True  # ends after PERMANENT_SESSION_LIFETIME without a request
    login_user(user)
    remember_sign_in(user)
    log.info("user %s signed in", user.username)
    if user.must_change_password:
        return redirect(url_for("auth.change_password"))
    if must_set_up(user):
        return redirect(url_for("two_step.page"))
    return redirect(local_path(next_path) or start_page(user) or url_for("auth.home"))


def _login_page(form: LoginForm, error: str | None):
    from helpdesk.pages.password_links import offered

    return render_template("login.html", form=form, error=error, forgotten_offered=offered())


@bp.post("/logout")
def logout():
    """Sign out (a POST form with a CSRF token, so no other site can sign people out)."""
    if current_user.is_authenticated:
        with database().session() as db_session:
            signed_out(db_session, current_user, clock(), client_address())
        log.info("user %s signed out", current_user.username)
    logout_user()
    session.clear()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.get("/")
def home():
    """Send people to the page for their role."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    target = start_page(current_user)
    if target is None:
        abort(403)
    return redirect(target)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change your own password: the current one, then the new one twice. Other sessions end."""
    form = PasswordForm()
    if request.method in ("GET", "HEAD"):
        return _password_page(form)
    if not form.validate_on_submit():
        return _password_page(form), 400
    with database().session() as db_session:
        try:
            change_own_password(db_session, current_user, form.current_password.data, form.new_password.data,
                                form.new_password_again.data, current_app.config["SECRET_KEY"], clock(),
                                client_address())
        except TooManyWrongPasswords as refused:
            return _password_page(form, blocked=refused.until), 429
        except PasswordNotChanged as refused:
            for name, problem in refused.problems.items():
                form[name].errors = [problem]
            return _password_page(form), 400
        user = db_session.get(User, current_user.id)
    # The old password's sessions end everywhere (helpdesk.pages.access.password_mark); this
    # one goes on, now marked with the new password.
    remember_new_password(user)
    if user.email:
        from helpdesk.account_notices import PASSWORD_CHANGED, Notice
        from helpdesk.pages.password_links import notify

        notify(Notice(PASSWORD_CHANGED, user.email, user.username, user.display_name, clock()))
    flash("Your password has been changed. If you were signed in anywhere else, you have been signed out there.",
          "success")
    return redirect(start_page(user) or url_for("auth.home"))


def _password_page(form: PasswordForm, blocked: datetime | None = None):
    blocked_at = blocked.astimezone(LONDON).strftime("%H:%M") if blocked is not None else None
    return render_template("change_password.html", form=form, blocked_at=blocked_at,
                           min_length=MIN_PASSWORD_LENGTH)
