"""The Users pages, for administrators: add a user, set a password for their next sign-in,
change a role or a phone, deactivate and reactivate, and see who changed what.

Each change goes through helpdesk.users, with the rules `helpdesk users` has, and is in the
audit log with the administrator's name. An administrator changes their own password on
Change password, and leaves their own role and deactivation to another administrator, so
that nobody locks themself out by a slip.
"""
from __future__ import annotations

import logging
import secrets
from datetime import datetime

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from helpdesk.access_tokens import live_tokens, revoke
from helpdesk.agents_pin import ASK, LOCK_AFTER, LOCKED, NOT_SET, state_of
from helpdesk.audit_log import user_sign_ins
from helpdesk.clock import local, uk_moment
from helpdesk.models import FormerPhone, User
from helpdesk.models.user import ROLES
from helpdesk.own_password import sentence
from helpdesk.pages.access import role_required
from helpdesk.pages.agents_pin import has_pin_page
from helpdesk.account_notices import EMAIL_CHANGED, PASSWORD_SET, TWO_STEP_OFF, Notice
from helpdesk.pages.format import format_date_time, masked_number_html, role_label
from helpdesk.pages.taken_by import shown_phone
from helpdesk.pages.two_step import role_must
from helpdesk.password_links import SENT, SENT_LIFETIME, make_link, pending_links, send_quietly
from helpdesk.user_rules import (MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, USERNAME, UserError, check_display_name,
                                 check_email, check_password, check_phone, normalise_username)
from helpdesk.users import (PHONE_FREED, PHONELESS_ROLES, Actor, EmailTaken, PhoneRefused, PhoneSinceRefused,
                            UsernameTaken, add_user, deactivate, list_users, reactivate, set_display_name, set_email,
                            set_password, set_phone, set_role, user_changes)
from helpdesk.web import clock, database, settings

log = logging.getLogger(__name__)
bp = Blueprint("admin", __name__, url_prefix="/admin")

ROLE_HINTS = {
    "agent": "Works the callback queue.",
    "manager": "Works the callback queue, and sees the calls, service levels, enquiries and evidence.",
    "auditor": "Sees the calls, service levels, enquiries and evidence, and changes nothing.",
    "admin": "Everything a manager can, and manages users. Not the Evidence page.",
}
USERNAME_RULE = "A username is 3 to 64 letters, digits, dots, hyphens or underscores."
# How a new user gets their first password: a link emailed to them, or one set here.
BY_LINK, BY_PASSWORD = "link", "password"
LONGEST_TEXT = 1000  # for a name or a phone number, far more than either needs
SAME_TWICE = "The password was not the same the second time. Type it again."


class Refused(Exception):
    """What is wrong with a form, by field id."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("; ".join(problems.values()))
        self.problems = problems


@bp.context_processor
def formats():
    return {"fmt_phone": lambda phone: shown_phone(phone, masked_number_html) if phone else "None",
            "fmt_when": format_date_time, "state_words": state_words}


def state_words(person: User, link=None) -> dict[str, str]:
    """What the list and a user's page say of whether they sign in, whose password they have, when
    they last signed in and whether they have two-step sign-in: the same words in both (`link`:
    their link to choose a password that still works, if any; helpdesk.password_links.pending_links)."""
    return {
        "signs_in": "Yes" if person.active else "No: deactivated",
        "password": ("Not chosen yet: they choose it with the link emailed to them" if person.must_change_password
                     and link is not None and link.kind == SENT
                     else "Set by an administrator: to be changed at their next sign-in" if person.must_change_password
                     else "Their own"),
        "last_signed_in": (format_date_time(person.last_signed_in_at) if person.last_signed_in_at
                           else "No sign-in recorded"),
        "two_step": ("On" if person.has_two_step
                     else "Not set up: their role must have it, so they set it up when they next sign in"
                     if role_must(person) else "Off"),
        "agents_pin": _pin_words(person),
    }


def _pin_words(person: User) -> str:
    """Their PIN for the agents' line, while the desk asks for PINs and they take callers."""
    if not has_pin_page(person):
        return ""
    return {NOT_SET: "Not set: their phone cannot take callers from the agents' line until they set one",
            LOCKED: f"Locked after {LOCK_AFTER} wrong PINs: they set a new one on Agents' line PIN, or "
                    f"'helpdesk users set-pin {person.username}' does",
            ASK: "Set"}[state_of(person)]


def _by() -> Actor:
    return Actor(current_user.username, current_user.id)


def _user(user_id: int) -> User:
    with database().session() as db_session, db_session.begin():
        user = db_session.get(User, user_id)
        if user is None:
            abort(404)
        db_session.expunge(user)
    return user


def _text(name: str, longest: int) -> str:
    """A form field as typed, refused when longer than any value could be."""
    value = request.form.get(name, "")
    if len(value) > longest:
        raise Refused({name: f"That is too long: at most {longest} characters."})
    return value


def _new_password(username: str) -> str:
    """The password typed twice, checked against the password rules."""
    password = _text("password", MAX_PASSWORD_LENGTH)
    again = _text("password_again", MAX_PASSWORD_LENGTH)
    if not password:
        raise Refused({"password": "Enter a password."})
    try:
        check_password(password, username)
    except UserError as problem:
        raise Refused({"password": sentence(problem)}) from None
    if again != password:
        raise Refused({"password_again": SAME_TWICE})
    return password


@bp.get("/users")
@role_required("admin")
def users():
    with database().session() as db_session:
        people = list_users(db_session)
        changes = user_changes(db_session, limit=20)
        links = pending_links(db_session, clock())
    return render_template("admin/users.html", people=people, changes=changes, pending=links)


# The Add a user page's fields, in the page's order (the last two are the password, never sent back).
NEW_USER_FIELDS = ("username", "display_name", "role", "phone", "since", "email", "first", "password", "password_again")


@bp.route("/users/new", methods=["GET", "POST"])
@role_required("admin")
def new_user():
    if request.method in ("GET", "HEAD"):
        return _new_user_page({}, {})
    typed = {name: request.form.get(name, "") for name in NEW_USER_FIELDS[:-2]}
    try:
        user = _add(typed)
    except Refused as refused:
        return _new_user_page(typed, refused.problems), 400
    if typed["first"] != BY_LINK:
        flash(f"Added {user.username}. Give them the password you chose, in person or by phone: they choose their "
              "own when they first sign in.", "success")
    elif (failed := _email_link(user)) is None:
        flash(f"Added {user.username}, and emailed them a link to choose their password. It works for "
              f"{_days(SENT_LIFETIME)}.", "success")
    else:
        flash(f"Added {user.username}, but the email with the link could not be sent: {failed}. Send it again "
              "below, or set a password for them.", "error")
    return redirect(url_for("admin.user", user_id=user.id))


def mail_offered() -> bool:
    """Whether links can be emailed: there is a mail server to send them through."""
    return bool(settings().smtp.host)


def _days(lifetime) -> str:
    return f"{lifetime.days} days"


def _email_link(person: User) -> str | None:
    """Email `person` a new link to choose a password; None, or why it could not be sent."""
    from helpdesk.pages.password_links import mail_sender

    with database().session() as db_session:
        try:
            link = make_link(db_session, person, SENT, clock(), _by())
        except UserError as problem:
            return str(problem)
    return send_quietly(link, mail_sender(), settings(), current_app.config["PUBLIC_BASE_URL"],
                        sent_by=current_user.display_name or current_user.username)


def _add(typed: dict[str, str]) -> User:
    problems: dict[str, str] = {}
    name = normalise_username(typed["username"])
    if not name:
        problems["username"] = "Enter a username."
    elif not USERNAME.match(name):
        problems["username"] = USERNAME_RULE
    for field, check in (("display_name", check_display_name), ("phone", check_phone), ("email", check_email)):
        try:
            check(_text(field, LONGEST_TEXT))
        except UserError as problem:
            problems[field] = sentence(problem)
        except Refused as refused:
            problems.update(refused.problems)
    if typed["role"] not in ROLES:
        problems["role"] = "Choose a role."
    elif typed["role"] in PHONELESS_ROLES and typed["phone"].strip() and "phone" not in problems:
        problems["phone"] = "A DWP auditor answers no calls, so has no phone. Leave it empty."
    since = _phone_since(typed, problems)
    if not mail_offered():
        typed["first"] = BY_PASSWORD  # the only way, and the page offers no choice
    if typed["first"] not in (BY_LINK, BY_PASSWORD):
        problems["first"] = "Choose how they get their first password."
    elif typed["first"] == BY_LINK and "email" not in problems and not typed["email"].strip():
        problems["email"] = "Enter their email address, to send the link to."
    password = ""
    if typed["first"] == BY_PASSWORD:
        try:
            password = _new_password(name)
        except Refused as refused:
            problems.update(refused.problems)
    else:
        password = secrets.token_urlsafe(32)  # nobody knows it: they choose their own with the link
    if problems:
        # In the page's order, for the error summary.
        raise Refused(dict(sorted(problems.items(), key=lambda item: NEW_USER_FIELDS.index(item[0])
                                  if item[0] in NEW_USER_FIELDS else len(NEW_USER_FIELDS))))
    with database().session() as db_session:
        try:
            return add_user(db_session, name, password, typed["role"], typed["display_name"], now=clock(),
                            phone=typed["phone"], temporary=True, by=_by(), email=typed["email"],
                            by_link=typed["first"] == BY_LINK, phone_since=since)
        except PhoneSinceRefused as problem:
            raise Refused({"since": sentence(problem)}) from None
        except PhoneRefused as problem:
            raise Refused({"phone": sentence(problem)}) from None
        except UsernameTaken:  # perhaps by someone else meanwhile
            raise Refused({"username": f"There is already a user {name}. Choose another username."}) from None
        except EmailTaken:
            raise Refused({"email": "Another user has that email address. Each user needs their own."}) from None
        except UserError as problem:  # checked above; said as it is, should a rule change
            raise Refused({"page": sentence(problem)}) from None


def _phone_since(typed: dict[str, str], problems: dict[str, str]) -> datetime | None:
    """"Theirs since" on the Add a user page, read; or None, with any problem in `problems`."""
    text = typed["since"].strip()[:LONGEST_TEXT]
    if not text:
        return None
    if not typed["phone"].strip():
        problems["since"] = "Enter their phone too, or leave this empty: it says since when they have had it."
        return None
    try:
        return _typed_time("since", text)
    except Refused as refused:
        problems.update(refused.problems)
        return None


def _typed_time(field: str, text: str) -> datetime:
    """A UK date and time as typed at `field`, or Refused saying why it cannot be read."""
    try:
        return uk_moment(text)
    except ValueError as problem:
        raise Refused({field: f"“{text}” {problem}."}) from None


def _new_user_page(typed: dict[str, str], problems: dict[str, str]):
    return render_template("admin/new_user.html", typed=typed, problems=problems, roles=ROLES, role_hints=ROLE_HINTS,
                           min_length=MIN_PASSWORD_LENGTH, mail_offered=mail_offered(), link_days=_days(SENT_LIFETIME))


@bp.get("/users/<id:user_id>")
@role_required("admin")
def user(user_id: int):
    return _user_page(_user(user_id))


def _user_page(person: User, problems: dict[str, str] | None = None, typed: dict[str, str] | None = None):
    with database().session() as db_session:
        changes = user_changes(db_session, user_id=person.id)
        sign_ins = user_sign_ins(db_session, person.id)
        link = pending_links(db_session, clock(), person.id).get(person.id)
        tokens = live_tokens(db_session, person.id, clock())
        with db_session.begin():
            former = db_session.scalars(select(FormerPhone).where(FormerPhone.user_id == person.id)
                                        .order_by(FormerPhone.until.desc(), FormerPhone.id.desc())).all()
    return render_template("admin/user.html", person=person, problems=problems or {}, typed=typed or {},
                           former_phones=former,
                           changes=changes, sign_ins=sign_ins, since=local(person.created_at).date(), roles=ROLES,
                           role_hints=ROLE_HINTS, yourself=person.id == current_user.id, min_length=MIN_PASSWORD_LENGTH,
                           link=link, mail_offered=mail_offered(), link_days=_days(SENT_LIFETIME),
                           role_must_two_step=role_must(person), tokens=tokens,
                           phoneless_roles=PHONELESS_ROLES)


def _change(user_id: int, change, done: str):
    """Run `change(db_session, person)` for the user's page, and say `done` (with any sentence
    `change` returns after it); a UserError or Refused is shown at its field (`Refused`) or at the
    top (UserError), and nothing is changed."""
    person = _user(user_id)
    try:
        with database().session() as db_session:
            more = change(db_session, person)
    except Refused as refused:
        return _user_page(person, refused.problems, dict(request.form)), 400
    except UserError as problem:
        return _user_page(person, {"page": sentence(problem)}), 409
    flash(done.format(name=person.username) + (f" {more}" if more else ""), "success")
    return redirect(url_for("admin.user", user_id=user_id))


def _not_yourself(person: User, what: str) -> None:
    if person.id == current_user.id:
        raise Refused({"page": f"You cannot {what} yourself here. Another administrator can."})


@bp.post("/users/<id:user_id>/role")
@role_required("admin")
def change_role(user_id: int):
    role = request.form.get("role", "")

    def change(db_session, person):
        _not_yourself(person, "change the role of")
        if role not in ROLES:
            raise Refused({"role": "Choose a role."})
        if role == person.role:
            raise Refused({"role": f"The role of {person.username} is already {role_label(role)}. "
                                   "Choose another role."})
        _, freed = set_role(db_session, person.username, role, by=_by(), now=clock())
        return PHONE_FREED if freed else None

    return _change(user_id, change, f"The role of {{name}} is now {role_label(role)}. They sign in again to act in it."
                   if role in ROLES else "")


@bp.post("/users/<id:user_id>/name")
@role_required("admin")
def change_name(user_id: int):
    def change(db_session, person):
        try:
            set_display_name(db_session, person.username, _text("display_name", LONGEST_TEXT), by=_by())
        except UserError as problem:
            raise Refused({"display_name": sentence(problem)}) from None

    return _change(user_id, change, "Saved the name of {name}.")


@bp.post("/users/<id:user_id>/phone")
@role_required("admin")
def change_phone(user_id: int):
    typed_since = request.form.get("since", "").strip()[:LONGEST_TEXT]

    def setter(db_session, username, value, by):
        since = _typed_time("since", typed_since) if value and typed_since else None
        try:
            return set_phone(db_session, username, value, by=by, now=clock(), since=since)
        except PhoneSinceRefused as problem:
            raise Refused({"since": sentence(problem)}) from None

    return _save_or_clear(user_id, "phone", setter, "phone", "a phone number or SIP address", "Clear phone")


@bp.post("/users/<id:user_id>/email")
@role_required("admin")
def change_email(user_id: int):
    return _save_or_clear(user_id, "email", set_email, "email address", "an email address", "Clear email address")


def _save_or_clear(user_id: int, field: str, setter, what: str, a_value: str, clear_button: str):
    """A detail's form on a user's page: saved as typed, or cleared with its second button."""
    clear = request.form.get("action") == "clear"

    def change(db_session, person):
        value = "" if clear else _text(field, LONGEST_TEXT)
        if not clear and not value.strip():
            raise Refused({field: f"Enter {a_value}, or use {clear_button}."})
        try:
            changed = setter(db_session, person.username, value, by=_by())
        except EmailTaken:
            raise Refused({field: "Another user has that email address. Each user needs their own."}) from None
        except UserError as problem:
            raise Refused({field: sentence(problem)}) from None
        if field == "email" and person.email and changed.email != person.email:
            _tell(person.email, EMAIL_CHANGED, person)  # the old address: the new owner may not read it

    return _change(user_id, change, f"Cleared the {what} of {{name}}." if clear else f"Saved the {what} of {{name}}.")


@bp.post("/users/<id:user_id>/link")
@role_required("admin")
def email_link(user_id: int):
    person = _user(user_id)
    if person.id == current_user.id:
        return _user_page(person, {"page": "Change your own password with Change password, at the top of the "
                                           "page."}), 409
    if not mail_offered():
        return _user_page(person, {"page": "Links cannot be emailed: no mail server is set up ([smtp] host)."}), 409
    failed = _email_link(person)
    if failed is not None:
        return _user_page(person, {"page": f"The link could not be sent: {failed}."}), 409
    flash(f"Emailed {person.username} a link to choose a new password. It works for {_days(SENT_LIFETIME)}; their "
          "password stays as it is until they use it.", "success")
    return redirect(url_for("admin.user", user_id=user_id))


@bp.post("/users/<id:user_id>/password")
@role_required("admin")
def change_password(user_id: int):
    def change(db_session, person):
        if person.id == current_user.id:
            raise Refused({"page": "Change your own password with Change password, at the top of the page."})
        set_password(db_session, person.username, _new_password(person.username), temporary=True, by=_by())
        _tell(person.email, PASSWORD_SET, person)

    return _change(user_id, change, "Set a password for {name}: give it to them in person or by phone. They choose "
                                    "their own when they next sign in, and are signed out everywhere until then.")


def _tell(to: str | None, kind: str, person: User) -> None:
    """Email `person` (at `to`, when they have an address) that an administrator changed `kind`."""
    from helpdesk.pages.password_links import notify

    if to:
        notify(Notice(kind, to, person.username, person.display_name, clock(),
                      by=current_user.display_name or current_user.username))


@bp.post("/users/<id:user_id>/two-step-off")
@role_required("admin")
def two_step_off(user_id: int):
    """For a user who has lost their phone and their recovery codes."""
    from helpdesk.two_step import turn_off

    def change(db_session, person):
        if person.id == current_user.id:
            raise Refused({"page": "Turn off your own two-step sign-in with Two-step sign-in, at the top of the page."})
        turn_off(db_session, person.username, by=_by(), now=clock())
        _tell(person.email, TWO_STEP_OFF, person)

    return _change(user_id, change, "Turned off two-step sign-in for {name}: they sign in with their password "
                                    "alone, or set it up again when they next sign in if their role must have it.")


@bp.post("/users/<id:user_id>/tokens/<id:token_id>/revoke")
@role_required("admin")
def revoke_token(user_id: int, token_id: int):
    """For a token that may have been seen, or a script no longer run."""
    def change(db_session, person):
        revoke(db_session, person, token_id, _by(), clock())

    return _change(user_id, change, "Revoked the access token of {name}: a script that gives it is refused from now "
                                    "on.")


@bp.post("/users/<id:user_id>/deactivate")
@role_required("admin")
def deactivate_user(user_id: int):
    def change(db_session, person):
        _not_yourself(person, "deactivate")
        _, freed = deactivate(db_session, person.username, by=_by(), now=clock())
        return PHONE_FREED if freed else None

    return _change(user_id, change, "Deactivated {name}: they can no longer sign in. Callbacks they had claimed are "
                                    "back in the queue.")


@bp.post("/users/<id:user_id>/reactivate")
@role_required("admin")
def reactivate_user(user_id: int):
    def change(db_session, person):
        reactivate(db_session, person.username, by=_by())

    return _change(user_id, change, "Reactivated {name}: they can sign in again with the password they had. If "
                                    "others might know it, set a new one below.")
