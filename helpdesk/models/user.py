"""People who sign in: agents, managers, auditors and administrators."""
from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, ForeignKey, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base, UTCDateTime

ROLES = ("agent", "manager", "auditor", "admin")
# Who may work the callback queue; admins may too, as they may do anything (User.has_role).
QUEUE_ROLES = ("agent", "manager")
# Who may download evidence packs, on the Evidence page or with an access token: exactly these
# (administrators export on the server, with their password).
EVIDENCE_ROLES = ("auditor", "manager")


class User(UserMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    # The agent's phone for "Call back now": +44..., sip:... or client:...
    phone: Mapped[str | None] = mapped_column(String(128))
    # Since when they have had it (None: since before 0.26.0 kept it, or no phone): a call
    # answered on it before then was not theirs. The phones they had before are FormerPhones.
    phone_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Goes up when the user signs out: every session signed in before then ends, on every
    # device, even if its cookie was copied.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The password was set by an administrator, who knows it: the user chooses their own at
    # their next sign-in before anything else (own_password_first in helpdesk.pages).
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When they last signed in (None: not since 0.17.0), for the Users page.
    last_signed_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where a link to choose a password is sent (helpdesk.password_links); stored in lower case,
    # one user to an address.
    email: Mapped[str | None] = mapped_column(String(254), index=True, unique=True)
    # Two-step sign-in (helpdesk.two_step): the authenticator app's key (None: not set up), since
    # when, and the last 30-second step whose code was taken (each is taken once only).
    two_step_secret: Mapped[str | None] = mapped_column(String(32))
    two_step_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    two_step_last_step: Mapped[int | None] = mapped_column(Integer)
    # The PIN for the agents' line (helpdesk.agents_pin), hashed as a password is (None: not set),
    # and the wrong PINs typed since the last right one: at helpdesk.agents_pin.LOCK_AFTER it is locked.
    agents_pin_hash: Mapped[str | None] = mapped_column(String(255))
    agents_pin_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def has_two_step(self) -> bool:
        return self.two_step_secret is not None

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    def has_role(self, *roles: str) -> bool:
        return self.role == "admin" or self.role in roles


class SignInFailure(Base):
    """A sign-in refused for a username (known or not), kept for a day to slow password guessing.

    `who` is never the name typed (people type passwords there): "user:<id>" for a user's
    name, else a digest of the name keyed with SECRET_KEY (helpdesk.users.sign_in_keys).
    """

    __tablename__ = "sign_in_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    who: Mapped[str] = mapped_column(String(64), index=True)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class PasswordLink(Base):
    """A link emailed to a user to choose a password (helpdesk.password_links), until it is used,
    replaced by a newer one or out of date.

    The link's secret is never stored: `digest` is its SHA-256. `password_mark` is the user's
    password (helpdesk.pages.access.password_mark) when the link was made: once the password
    changes, by the link or otherwise, the link no longer works.
    """

    __tablename__ = "password_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    # "sent": by an administrator; "asked": from the sign-in page's "Forgotten your password?"
    kind: Mapped[str] = mapped_column(String(8))
    password_mark: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RecoveryCode(Base):
    """A code to sign in once without the authenticator app (helpdesk.two_step), as a SHA-256 of
    it; `used_at` once it has been."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AccessToken(Base):
    """A token a script gives in place of a password and code, to download evidence packs
    (helpdesk.access_tokens), until it runs out or is revoked. Only its SHA-256 is stored;
    `hint` is its last four characters, so that its owner can tell which it is."""

    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PackBuild(Base):
    """An evidence pack being built for a user's script (helpdesk.pack_builds), so that each
    user has one at a time; `claim` is the request's, and the row goes when its pack is built."""

    __tablename__ = "pack_builds"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    claim: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FormerPhone(Base):
    """A phone a user had before (helpdesk.users.set_phone), and when: so that a call answered on
    it then is still theirs ("Answered by", helpdesk.pages.taken_by) after it changes hands."""

    __tablename__ = "former_phones"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    phone: Mapped[str] = mapped_column(String(128))
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: not known (before 0.26.0)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
