"""People who sign in: agents, managers, auditors and administrators."""
from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base, UTCDateTime

ROLES = ("agent", "manager", "auditor", "admin")
# Who may work the callback queue; admins may too, as they may do anything (User.has_role).
QUEUE_ROLES = ("agent", "manager")


class User(UserMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    # The agent's phone for "Call back now": +44..., sip:... or client:...
    phone: Mapped[str | None] = mapped_column(String(128))
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
