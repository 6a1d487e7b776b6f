"""Choosing a password with an emailed link (helpdesk.password_links): asking for one on the
sign-in page ("Forgotten your password?"), and the page a link opens.

A link's address holds its secret. Opening it keeps the secret in the session and goes on to
/password/choose at once, so the secret is not left in the browser's history, nor in the
Referer of a page after it.
"""
from __future__ import annotations

import threading

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from helpdesk.own_password import PasswordNotChanged
from helpdesk.pages.auth import NewPasswordForm, client_address
from helpdesk.password_links import (ASKED_LIFETIME, LONGEST_TOKEN, LinkNotValid, ask_for_link, choose_password,
                                     live_link, send_quietly)
from helpdesk.user_rules import LONGEST_EMAIL, MIN_PASSWORD_LENGTH
from helpdesk.web import clock, database, settings

bp = Blueprint("links", __name__, url_prefix="/password")

_TOKEN_KEY = "password_link"
NOT_VALID = ("This link no longer works: it has been used, it has run out, or a newer one was sent. Ask for a new "
             "one, or ask an administrator.")


class ForgottenForm(FlaskForm):
    who = StringField("Username or email address", validators=[
        DataRequired("Enter your username or email address."),
        Length(max=LONGEST_EMAIL, message=f"That is too long: at most {LONGEST_EMAIL} characters.")])


def offered() -> bool:
    """Whether the sign-in page offers "Forgotten your password?": switched on, and mail can be sent."""
    return settings().web.forgotten_password_links and bool(settings().smtp.host)


def mail_sender():
    """Where the app's mail goes: the configured SMTP server (tests put a FakeSender here)."""
    return current_app.extensions["helpdesk.mail"]


def notify(notice) -> None:
    """Email `notice` (helpdesk.account_notices) in the background, once a mail server is set up."""
    from helpdesk.account_notices import send_quietly

    if not settings().smtp.host:
        return
    current, sender = settings(), mail_sender()
    in_background(lambda: send_quietly(notice, sender, current))


def in_background(work) -> None:
    """Run `work` after the answer, so that how long sending takes does not tell who has an account
    (tests set MAIL_IN_BACKGROUND to False)."""
    if current_app.config.get("MAIL_IN_BACKGROUND", True):
        threading.Thread(target=work, name="account-mail", daemon=True).start()
    else:
        work()


@bp.route("/forgotten", methods=["GET", "POST"])
def forgotten():
    if not offered():
        abort(404)
    form = ForgottenForm()
    if request.method in ("GET", "HEAD"):
        return render_template("password_forgotten.html", form=form, sent=False)
    if not form.validate_on_submit():
        return render_template("password_forgotten.html", form=form, sent=False), 400
    with database().session() as db_session:
        link = ask_for_link(db_session, form.who.data, clock(), client_address())
    if link is not None:
        current, base_url, sender = settings(), current_app.config["PUBLIC_BASE_URL"], mail_sender()
        in_background(lambda: send_quietly(link, sender, current, base_url))
    # The same whether or not a link was sent.
    return render_template("password_forgotten.html", form=form, sent=True,
                           minutes=int(ASKED_LIFETIME.total_seconds() // 60))


@bp.get("/link/<token>")
def open_link(token: str):
    """A link from an email: keep its secret in the session, and go on to choose a password."""
    session[_TOKEN_KEY] = token[:LONGEST_TOKEN]
    return redirect(url_for("links.choose"))


@bp.route("/choose", methods=["GET", "POST"])
def choose():
    token = session.get(_TOKEN_KEY) or ""
    # The page is drawn after the transaction: drawing it may read who is signed in, which on
    # SQLite needs the one connection this holds.
    try:
        with database().session() as db_session, db_session.begin():
            _, user = live_link(db_session, token, clock())
            username, must_change = user.username, user.must_change_password
    except LinkNotValid:
        session.pop(_TOKEN_KEY, None)
        return render_template("password_choose.html", form=None, problem=NOT_VALID), 404
    form = NewPasswordForm()
    page = {"username": username, "first": must_change, "min_length": MIN_PASSWORD_LENGTH}
    if request.method in ("GET", "HEAD"):
        return render_template("password_choose.html", form=form, problem=None, **page)
    if not form.validate_on_submit():
        return render_template("password_choose.html", form=form, problem=None, **page), 400
    try:
        with database().session() as db_session:
            choose_password(db_session, token, form.new_password.data, form.new_password_again.data, clock(),
                            current_app.config["SECRET_KEY"], client_address())
    except LinkNotValid:
        session.pop(_TOKEN_KEY, None)
        return render_template("password_choose.html", form=None, problem=NOT_VALID), 404
    except PasswordNotChanged as refused:
        for name, problem in refused.problems.items():
            form[name].errors = [problem]
        return render_template("password_choose.html", form=form, problem=None, **page), 400
    # Whoever was signed in in this browser is not any more: the new password is for signing in.
    if current_user.is_authenticated:
        logout_user()
    session.clear()
    flash(f"Your password is set. Sign in as {username} with it. If you were signed in anywhere else, you have "
          "been signed out there.", "success")
    return redirect(url_for("auth.login"))
