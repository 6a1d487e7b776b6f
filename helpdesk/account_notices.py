"""Emails telling a user that their password, email address, two-step sign-in or PIN for the
agents' line was changed, that a recovery code was used to sign in as them, that an access token
was made for them, or that their PIN was locked by wrong ones typed on a phone, so that
a change they did not make does not go unnoticed (NIST SP 800-63B asks for such a notice when an
authenticator changes, or a recovery code is used). Sent only to a user who has an address, and
only once [smtp] host is set.

A password chosen with an emailed link gets no notice: the link went to the same address.
An address changed is told to the old one, which the new owner of the account may not read.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from callbacks.smtp import MailError, MessageSender, ascii_domain, from_address, plain_message
from helpdesk.pages.format import format_moment
from helpdesk.settings import Settings

log = logging.getLogger(__name__)

PASSWORD_CHANGED, PASSWORD_SET, EMAIL_CHANGED = "password_changed", "password_set", "email_changed"
TWO_STEP_ON, TWO_STEP_OFF, RECOVERY_CODE_USED = "two_step_on", "two_step_off", "recovery_code_used"
TOKEN_MADE = "token_made"
AGENTS_PIN_SET, AGENTS_PIN_LOCKED = "agents_pin_set", "agents_pin_locked"


@dataclass(frozen=True)
class Notice:
    kind: str  # PASSWORD_CHANGED (by the user), PASSWORD_SET (by an administrator), EMAIL_CHANGED, TWO_STEP_...
    to: str
    username: str
    display_name: str
    at: datetime
    by: str | None = None  # the administrator, or None for the command line or the user themself
    own: bool = False  # done by the user themself (two-step sign-in turned off)
    left: int | None = None  # recovery codes still unused (RECOVERY_CODE_USED); wrong PINs (AGENTS_PIN_LOCKED)
    token: str | None = None  # the access token's name (TOKEN_MADE)


def message(notice: Notice, settings: Settings) -> EmailMessage:
    """The notice as an email, or MailError when there is no address to send from."""
    sender = from_address(settings)
    if not sender:
        raise MailError("there is no address to send from: set smtp.from_address")
    at = f"at {format_moment(notice.at)}"
    who = notice.by or "An administrator"
    desk = settings.name
    if notice.kind == PASSWORD_CHANGED:
        subject = f"Your password for {desk} was changed"
        said = (f"The password for your username {notice.username} on the {desk} pages was changed {at}, on the "
                "Change password page.\n\nIf that was you, there is nothing to do. If it was not, ask an "
                "administrator to set a new password for you at once: someone else knows yours.")
    elif notice.kind == PASSWORD_SET:
        subject = f"A new password was set for you on {desk}"
        said = (f"{who} set a new password for your username {notice.username} on the {desk} pages {at}, and "
                "you have been signed out everywhere. They give it to you in person or by phone, and you choose "
                "your own when you next sign in.\n\nIf you did not ask for this, tell another administrator.")
    elif notice.kind == TWO_STEP_ON:
        subject = f"Two-step sign-in is set up for you on {desk}"
        said = (f"Two-step sign-in was set up for your username {notice.username} on the {desk} pages {at}. From "
                "now on you give a code from your authenticator app after your password.\n\nIf that was not you, "
                "someone knows your password: tell an administrator at once.")
    elif notice.kind == TWO_STEP_OFF:
        subject = f"Two-step sign-in was turned off for you on {desk}"
        said = (f"{'You' if notice.own else who} turned off two-step sign-in for your username {notice.username} "
                f"on the {desk} pages {at}. If your role must have it, you set it up again when you next sign "
                "in.\n\nIf you did not do or ask for this, tell an administrator at once.")
    elif notice.kind == RECOVERY_CODE_USED:
        subject = f"A recovery code was used to sign in to {desk}"
        left = f"You have {notice.left} left." if notice.left is not None else ""
        said = (f"One of your recovery codes was used to sign in as {notice.username} on the {desk} pages {at}. "
                f"It cannot be used again. {left}\n\nIf that was not you, someone has your password and your "
                "recovery codes: tell an administrator at once.")
    elif notice.kind == TOKEN_MADE:
        subject = f"An access token was made for you on {desk}"
        said = (f"An access token named “{notice.token}” was made for your username {notice.username} on the "
                f"{desk} pages {at}. A script that gives it can download evidence packs as you.\n\nIf that was "
                "not you, revoke it on the Access tokens page and tell an administrator at once: someone knows your "
                "password.")
    elif notice.kind == AGENTS_PIN_SET:
        subject = f"Your PIN for the agents' line of {desk} was set"
        said = (f"{'You' if notice.own else who} set a new PIN for the agents' line for your username "
                f"{notice.username} on the {desk} pages {at}. You type it, then #, when you call the agents' line to "
                "take callers.\n\n"
                "If you did not do or ask for this, set a new one on the Agents' line PIN page and tell an "
                "administrator at once.")
    elif notice.kind == AGENTS_PIN_LOCKED:
        subject = f"Your PIN for the agents' line of {desk} is locked"
        said = (f"Your PIN for the agents' line (username {notice.username}) was typed wrong {notice.left} times "
                f"in a row on a phone that is yours, or pretends to be, and was locked {at}. Your phone cannot "
                "take callers until you set a new one on the Agents' line PIN page.\n\nIf those wrong PINs "
                "were not yours, tell an administrator: someone may be trying to take callers as you.")
    else:
        subject = f"Your email address for {desk} was changed"
        said = (f"{who} changed the email address for your username {notice.username} on the {desk} pages {at}. "
                "Links to choose a password no longer come to this address.\n\nIf you did not ask for this, tell "
                "an administrator.")
    return plain_message(sender, ascii_domain(notice.to), subject,
                         f"Hello {notice.display_name or notice.username},\n\n{said}\n\n{desk}\n")


def send(notice: Notice, sender: MessageSender, settings: Settings) -> None:
    """Send the notice, or raise MailError (its text holds no address)."""
    sender.send_message(message(notice, settings))
    log.info("notice sent to user %s: %s", notice.username, notice.kind)


def send_quietly(notice: Notice, sender: MessageSender, settings: Settings) -> str | None:
    """Send the notice; None, or why it could not be (logged): the change it tells of stands."""
    try:
        send(notice, sender, settings)
    except MailError as failed:
        log.error("notice to user %s (%s) not sent: %s", notice.username, notice.kind, failed)
        return str(failed)
    return None
