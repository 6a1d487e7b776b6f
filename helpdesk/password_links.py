"""Links emailed to users to choose a password: sent by an administrator (to a new user, or one
who has forgotten theirs), or asked for on the sign-in page.

A link holds a random secret; the database keeps only its SHA-256, so a copy of the database
(a backup, say) opens nothing. A link works once, only until it runs out (SENT_LIFETIME,
ASKED_LIFETIME), only while it is the user's newest, and only while the user has the password
they had when it was made: choosing a password with it, or any other change of password, ends
it. Asking for links is limited (ASKED_LIMIT an hour for each user), and the sign-in page says
the same whether or not a link was sent, so it does not tell which usernames or addresses exist.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from callbacks.smtp import MailError, MessageSender, ascii_domain, from_address, plain_message
from helpdesk.models import PasswordLink, User
from helpdesk.own_password import PasswordNotChanged, sentence
from helpdesk.settings import Settings
from helpdesk.user_rules import LONGEST_EMAIL, USERNAME, UserError, check_password, normalise_username
from helpdesk.users import PASSWORD_CHOSEN_WITH_LINK, PASSWORD_LINK_SENT, Actor, audit, forget_failures_of
from helpdesk.users import from_address as address_detail

log = logging.getLogger(__name__)

SENT, ASKED = "sent", "asked"
SENT_LIFETIME = timedelta(days=3)  # long enough to be read after a weekend
ASKED_LIFETIME = timedelta(hours=1)
LIFETIMES = {SENT: SENT_LIFETIME, ASKED: ASKED_LIFETIME}
ASKED_LIMIT = 3  # links asked for one user within ASKED_WINDOW; more are not sent
ASKED_WINDOW = timedelta(hours=1)
LINK_PATH = "/password/link/"
# A link's secret is 43 characters (token_urlsafe(32)); anything longer is no link, and is not
# kept in the session.
LONGEST_TOKEN = 100
_LINK_SECRET = re.compile(re.escape(LINK_PATH) + r"[^\s?#\"']*")


class LinkNotValid(Exception):
    """The link is unknown, used, replaced by a newer one, out of date, or its user cannot sign in."""


@dataclass(frozen=True)
class Link:
    """A link just made, with its secret (never stored)."""

    token: str
    kind: str
    expires_at: datetime
    username: str
    display_name: str
    role: str
    email: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def hide_secret(text: str) -> str:
    """`text` (an access log's request line, say) with any link's secret replaced by "[secret]"."""
    return _LINK_SECRET.sub(LINK_PATH + "[secret]", text) if LINK_PATH in text else text


def password_mark(password_hash: str) -> str:
    """Which password the user has: a link works only while it is the one they had when it was made."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:32]


def make_link(session: Session, user: User, kind: str, now: datetime, by: Actor, address: str | None = None) -> Link:
    """A new link for `user`, who must be active and have an email address, replacing any earlier
    one; recorded in the audit log (by `by`, from `address`). Owns the transaction."""
    token = secrets.token_urlsafe(32)
    expires_at = now + LIFETIMES[kind]
    with session.begin():
        user = session.get(User, user.id, populate_existing=True)
        if user is None:
            raise UserError("there is no such user")
        if not user.active:
            raise UserError(f"{user.username} is deactivated, so cannot sign in")
        if not user.email:
            raise UserError(f"{user.username} has no email address to send a link to")
        # Links out of date for a day are of no use to anybody: cleared as new ones are made.
        session.execute(delete(PasswordLink).where(PasswordLink.expires_at < now - timedelta(days=1)))
        session.add(PasswordLink(user_id=user.id, digest=digest(token), kind=kind,
                                 password_mark=password_mark(user.password_hash), created_at=now,
                                 expires_at=expires_at))
        audit(session, PASSWORD_LINK_SENT, user, by, now, asked=kind == ASKED, expires=expires_at.isoformat(),
              **address_detail(address))
        link = Link(token, kind, expires_at, user.username, user.display_name, user.role, user.email)
    log.info("password link made for user %s (%s)", user.username, kind)
    return link


def ask_for_link(session: Session, typed: str, now: datetime, address: str | None = None) -> Link | None:
    """A link for the user with this username or email address, asked for on the sign-in page;
    None (and nothing said of why) when there is no such active user with an address, or when
    ASKED_LIMIT links were asked for them within ASKED_WINDOW."""
    user = user_for(session, typed)
    if user is None or not user.active or not user.email:
        return None
    with session.begin():
        asked = session.scalar(select(func.count()).select_from(PasswordLink).where(
            PasswordLink.user_id == user.id, PasswordLink.kind == ASKED, PasswordLink.created_at > now - ASKED_WINDOW))
    if asked >= ASKED_LIMIT:
        log.warning("password link not sent for user id %s: %d asked for within the hour", user.id, asked)
        return None
    return make_link(session, user, ASKED, now, Actor(user.username, user.id), address)


def user_for(session: Session, typed: str) -> User | None:
    """The user with this username, or this email address (any case); None for neither."""
    typed = typed.strip()
    with session.begin():
        if "@" in typed:
            if len(typed) > LONGEST_EMAIL or "\x00" in typed:
                return None
            return session.scalar(select(User).where(User.email == typed.lower()))
        name = normalise_username(typed)
        return session.scalar(select(User).where(User.username == name)) if USERNAME.match(name) else None


def live_link(session: Session, token: str, now: datetime) -> tuple[PasswordLink, User]:
    """The link with this secret and its user, or LinkNotValid. In the caller's transaction."""
    if not token or len(token) > LONGEST_TOKEN:
        raise LinkNotValid("no such link")
    link = session.scalar(select(PasswordLink).where(PasswordLink.digest == digest(token)))
    if link is None:
        raise LinkNotValid("no such link")
    user = session.get(User, link.user_id)
    newest = session.scalar(select(func.max(PasswordLink.id)).where(PasswordLink.user_id == link.user_id))
    if not _works(link, user, newest, now):
        raise LinkNotValid("the link is out of date, used or replaced")
    return link, user


def _works(link: PasswordLink, user: User | None, newest_id: int | None, now: datetime) -> bool:
    """Whether `link` still works: in date, its user active, the user's newest link (`newest_id`),
    and the user's password still the one they had when it was made."""
    return (now < link.expires_at and user is not None and user.active and link.id == newest_id
            and link.password_mark == password_mark(user.password_hash))


def choose_password(session: Session, token: str, new: str, again: str, now: datetime, secret: str | bytes,
                    address: str | None = None) -> User:
    """Give the link's user the password `new`, typed twice (`again`). Raises LinkNotValid, or
    PasswordNotChanged with the problem at its field ("new_password" or "new_password_again").

    The link, and any other the user has, then stops working; so do sessions signed in with the
    old password (helpdesk.pages.access.password_mark), and the user's run of wrong passwords
    at sign-in is forgotten.
    """
    with session.begin():
        _, user = live_link(session, token, now)
        username, old_hash = user.username, user.password_hash
    try:
        check_password(new, username)
    except UserError as problem:
        raise PasswordNotChanged({"new_password": sentence(problem)}) from None
    if again != new:
        raise PasswordNotChanged({"new_password_again": "The password was not the same the second time. "
                                                        "Type it again."})
    with session.begin():
        _, user = live_link(session, token, now)
        # Only over the password the link was checked against: one chosen meanwhile (with this
        # link in another tab, or set by an administrator) is not overwritten.
        changed = session.execute(update(User).where(User.id == user.id, User.password_hash == old_hash)
                                  .values(password_hash=generate_password_hash(new), must_change_password=False)
                                  ).rowcount
        if not changed:
            raise LinkNotValid("the password was changed meanwhile")
        session.execute(delete(PasswordLink).where(PasswordLink.user_id == user.id))
        forget_failures_of(session, user, secret)
        audit(session, PASSWORD_CHOSEN_WITH_LINK, user, Actor(user.username, user.id), now,
              **address_detail(address))
    log.info("user %s chose a password with an emailed link", username)
    return user


def pending_links(session: Session, now: datetime, user_id: int | None = None) -> dict[int, PasswordLink]:
    """Each user's link that still works, by user id (for one user, with `user_id`), for the Users pages."""
    # Every link, not only those in date: a newer one out of date still replaces an older one.
    # Few are kept (make_link deletes those a day out of date).
    query = select(PasswordLink, User).join(User, User.id == PasswordLink.user_id).order_by(PasswordLink.id)
    if user_id is not None:
        query = query.where(PasswordLink.user_id == user_id)
    with session.begin():
        newest = {user.id: (link, user) for link, user in session.execute(query)}  # in id order: the last wins
        working = {who: link for who, (link, user) in newest.items() if _works(link, user, link.id, now)}
        for link in working.values():
            session.expunge(link)
    return working


def link_url(base_url: str | None, token: str) -> str:
    """The link's address: PUBLIC_BASE_URL's, never the Host a request named (which anybody can
    set, to have a link sent that leads to their own site)."""
    if not base_url:
        raise MailError("PUBLIC_BASE_URL is not set, so there is no address for the link: set it to the address "
                        "people reach the app at")
    return f"{base_url.rstrip('/')}{LINK_PATH}{token}"


def message(link: Link, settings: Settings, base_url: str | None, sent_by: str | None = None) -> EmailMessage:
    """The email with the link: plain text, in the user's name; MailError if it cannot be made."""
    from helpdesk.pages.format import format_moment, role_label

    sender = from_address(settings)
    if not sender:
        raise MailError("there is no address to send from: set smtp.from_address")
    url = link_url(base_url, link.token)
    name = link.display_name or link.username
    if link.kind == SENT:
        subject = f"Choose your password for {settings.name}"
        opening = (f"{sent_by or 'An administrator'} has sent you this link to choose a password for the "
                   f"{settings.name} pages. Your username is {link.username}, and your role is "
                   f"{role_label(link.role)}.")
        closing = ("If it runs out before you use it, ask an administrator for another. If you were not "
                   "expecting this email, you can ignore it.")
    else:
        subject = f"Choose a new password for {settings.name}"
        opening = (f"Someone, probably you, asked for a link to choose a new password for the username "
                   f"{link.username} on the {settings.name} pages.")
        closing = "If it was not you who asked, ignore this email: your password stays as it is."
    body = (f"Hello {name},\n\n{opening}\n\nChoose your password here:\n{url}\n\n"
            f"The link works once, until {format_moment(link.expires_at)}. {closing}\n\n{settings.name}\n")
    return plain_message(sender, ascii_domain(link.email), subject, body)


def send(link: Link, sender: MessageSender, settings: Settings, base_url: str | None,
         sent_by: str | None = None) -> None:
    """Send the link to the user's address, or raise MailError (its text holds no address)."""
    sender.send_message(message(link, settings, base_url, sent_by))
    log.info("password link sent to user %s", link.username)


def send_quietly(link: Link, sender: MessageSender, settings: Settings, base_url: str | None,
                 sent_by: str | None = None) -> str | None:
    """Send the link; None, or why it could not be (logged). The link stands: another can be sent."""
    try:
        send(link, sender, settings, base_url, sent_by)
    except MailError as failed:
        log.error("password link for user %s not sent: %s", link.username, failed)
        return str(failed)
    return None


def smtp_sender(settings: Settings) -> MessageSender:
    """The configured SMTP server, credentials from the environment (callbacks/smtp.py)."""
    from callbacks.smtp import SmtpSender

    return SmtpSender.from_settings(settings, os.environ)

