"""Who is signed in and what they may see: Flask-Login wiring and the role check."""
from __future__ import annotations

import hashlib
from datetime import timedelta
from functools import wraps
from typing import Callable
from urllib.parse import urlsplit

from flask import flash, g, redirect, render_template, request, session, url_for
from flask_login import LoginManager, current_user, login_required, login_url

from helpdesk.models import User
from helpdesk.web import clock, database

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Sign in to see that page."
login_manager.login_message_category = "info"

# The Flask session remembers which password the user signed in with, so changing a
# password (or deactivating the user) ends every session that used the old one.
_PASSWORD_KEY = "password_mark"


def password_mark(user: User) -> str:
    # The password, and how many times the user has signed out: either changing ends the session.
    return hashlib.sha256(f"{user.password_hash}:{user.session_epoch}".encode("utf-8")).hexdigest()[:32]


def remember_sign_in(user: User) -> None:
    """Keep in the session which password the user signed in with, and when."""
    session[_PASSWORD_KEY] = password_mark(user)
    session[_SIGNED_IN_KEY] = clock().timestamp()


def remember_new_password(user: User) -> None:
    """The user changed their password in this session: it goes on, marked with the new one (all
    others end), and still ends MOST_SIGNED_IN after signing in, not after the change."""
    session[_PASSWORD_KEY] = password_mark(user)


# However busy a session is (the queue page asks for its list every 15 seconds, and every
# request renews the 8-hour idle limit), it ends this long after signing in: a shift and more.
MOST_SIGNED_IN = timedelta(hours=12)
_SIGNED_IN_KEY = "signed_in_at"
ENDED = "You have been signed in for 12 hours, so you have been signed out. Sign in again."


@login_manager.unauthorized_handler
def sign_in_first():
    """Signed out: to the sign-in page, then back. A form sent while signed out (another tab signed
    out, or the session timed out) was not acted on: say so, and come back to the page it was sent
    from, not to its address, which answers only POST."""
    if request.method in ("GET", "HEAD"):
        flash(ENDED if g.get("session_ended") else login_manager.login_message, login_manager.login_message_category)
        return redirect(login_url(login_manager.login_view, request.full_path.rstrip("?")))
    flash("You were signed out, so that was not done. Sign in and do it again.", "error")
    back = local_path(urlsplit(request.referrer or "").path or None)
    query = urlsplit(request.referrer or "").query
    if not back:
        return redirect(url_for(login_manager.login_view))
    return redirect(login_url(login_manager.login_view, back + (f"?{query}" if query else "")))


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    try:
        key = int(user_id)
    except (TypeError, ValueError):
        return None
    with database().session() as db_session:
        user = db_session.get(User, key)
    if user is None or not user.active or session.get(_PASSWORD_KEY) != password_mark(user):
        return None
    signed_in_at = session.get(_SIGNED_IN_KEY)
    if not isinstance(signed_in_at, (int, float)):  # signed in before this was kept: count from now
        session[_SIGNED_IN_KEY] = clock().timestamp()
    elif clock().timestamp() - signed_in_at > MOST_SIGNED_IN.total_seconds():
        # Signed out: the sign-in keys go. Not the whole session, as a form made earlier in this
        # request (the sign-in form itself) has put its CSRF token there.
        for key in ("_user_id", "_fresh", "_id", "_remember", _PASSWORD_KEY, _SIGNED_IN_KEY):
            session.pop(key, None)
        g.session_ended = True
        return None
    return user


def role_required(*roles: str) -> Callable:
    """Only signed-in users with one of `roles` (admins always) see the view; others get 403."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def checked(*args, **kwargs):
            if not current_user.has_role(*roles):
                return render_template("forbidden.html"), 403
            return view(*args, **kwargs)

        return login_required(checked)

    return decorator


def local_path(target: str | None) -> str | None:
    """`target` if it is a path on this site, else None (so `next` cannot send people away)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def page_headers(response):
    """Headers for every people-facing page: no framing, no caching of personal data."""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response
