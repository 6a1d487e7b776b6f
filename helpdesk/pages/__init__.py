"""People-facing pages: signing in, and one blueprint per audience.

`init_app` sets up Flask-Login and CSRF protection for every form. Webhooks are signed
by their sender (Twilio, SendGrid) instead and carry no CSRF token, so their blueprints
are left out by name: that holds whether they are registered before or after this runs.
"""
from __future__ import annotations

import logging

from flask import Flask, current_app, flash, g, redirect, render_template, request, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from helpdesk.models.user import EVIDENCE_ROLES
from helpdesk.pages.access import login_manager, page_headers, role_required, sign_in_first
from helpdesk.pages.format import role_label, unbroken_references
from helpdesk.voice.recovery import describe
from helpdesk.web import settings

log = logging.getLogger(__name__)

__all__ = ["init_app", "role_required", "csrf", "WEBHOOK_BLUEPRINTS"]

csrf = CSRFProtect()
# Blueprints that receive webhooks: their own signature check stands in for CSRF.
WEBHOOK_BLUEPRINTS = frozenset({"voice", "email"})
# Blueprints whose requests carry their own credentials (a signature, an access token): no session
# cookie is read or written for them.
SESSIONLESS_BLUEPRINTS = WEBHOOK_BLUEPRINTS | {"api"}
# The navigation: (endpoint, label, roles). Entries whose blueprint is not registered
# (yet) are left out, so later pages only need a line here.
NAVIGATION = (
    ("agents.queue", "Callback queue", ("agent", "manager")),
    ("managers.calls", "Calls", ("manager", "auditor")),
    ("service_levels.service_levels", "Service levels", ("manager", "auditor")),
    ("managers.find_enquiry", "Find an enquiry", ("manager", "auditor")),
    ("evidence.page", "Evidence", EVIDENCE_ROLES),
    ("audit.log", "Audit log", ("auditor",)),
    ("admin.users", "Users", ("admin",)),
    ("system.page", "System", ("admin",)),
)
# Links shown to exactly these roles: administrators are not let in to these pages either.
EXACT_ROLES = frozenset({"evidence.page"})


def _may_follow(endpoint: str, roles: tuple[str, ...]) -> bool:
    if endpoint in EXACT_ROLES:
        return current_user.role in roles
    return current_user.has_role(*roles)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, but none for webhooks or scripts, and the signer built once.

    Webhooks are stateless and signed by their sender, and scripts give an access token: they get
    Flask's null session, so no cookie is read or written for them. Flask builds the signer for
    every request, which cost more than reading an absent cookie.
    """

    def __init__(self):
        self._serializers: dict[tuple, object] = {}
        self._sessionless_paths: tuple[str, ...] | None = None

    def open_session(self, app: Flask, request):
        if self._sessionless_paths is None:  # on the first request, when every blueprint is registered
            self._sessionless_paths = tuple(f"{app.blueprints[name].url_prefix}/"
                                            for name in SESSIONLESS_BLUEPRINTS if name in app.blueprints)
        if request.path.startswith(self._sessionless_paths):
            return None  # Flask's null session
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask):
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if keys not in self._serializers:
            self._serializers[keys] = super().get_signing_serializer(app)
        return self._serializers[keys]


def navigation() -> list[dict]:
    """The links the signed-in user may follow, for the header."""
    from helpdesk.pages.two_step import must_set_up  # here: it imports helpdesk.pages' modules

    if not current_user.is_authenticated or current_user.must_change_password or must_set_up(current_user):
        return []  # nothing to follow before choosing a password or setting up two-step (own_password_first)
    return [
        {"href": url_for(endpoint), "label": label, "current": request.endpoint == endpoint}
        for endpoint, label, roles in NAVIGATION
        if endpoint in current_app.view_functions and _may_follow(endpoint, roles)
    ]


# What a user who must choose their own password may still do.
OWN_PASSWORD_FIRST_EXEMPT = frozenset({"auth.change_password", "auth.logout", "auth.login", "static",
                                       "links.forgotten", "links.open_link", "links.choose", "two_step.code"})
# What a user whose role must have two-step sign-in may do before they set it up.
TWO_STEP_FIRST_EXEMPT = OWN_PASSWORD_FIRST_EXEMPT | {"two_step.page", "two_step.set_up"}
# Forms for people who are not signed in (besides signing in): a form refused there is not
# because its sender was signed out meanwhile.
SIGNED_OUT_FORMS = ("links.forgotten", "links.choose", "two_step.code")
# Paths that answer machines (Twilio, SendGrid, Prometheus, load balancers, scripts), not people.
PLAIN_PREFIXES = ("/twilio/", "/email/", "/metrics", "/healthz", "/readyz", "/static/", "/api/")
HTTP_MESSAGES = {
    404: ("Page not found", "There is no page at this address. Check the address, or use the links above."),
    405: ("That cannot be done here", "This address does not take that kind of request. Go back to the page "
                                      "and use its buttons."),
    413: ("Too much was sent", "What was sent is larger than the help desk takes (1 MB). Send less at once."),
}


def _for_machines() -> bool:
    """Whether this request is a machine's (a webhook, /metrics, a health check, a static file),
    whose answers stay plain, rather than a person's page."""
    return request.path.startswith(PLAIN_PREFIXES) or bool(request.blueprints
                                                             and request.blueprints[-1] in WEBHOOK_BLUEPRINTS)


def init_app(app: Flask) -> None:
    from callbacks import blueprint as agents
    from helpdesk.pages import access_tokens, admin, agents_pin, audit, auth, managers, password_links, system, two_step

    # CSRFProtect's own before_request is switched off: the hook below runs the same
    # check but skips webhook blueprints by name.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    app.session_interface = SessionInterface()

    @app.before_request
    def protect_forms():
        if not app.config["WTF_CSRF_ENABLED"] or request.endpoint is None:
            return None
        if request.blueprints and request.blueprints[-1] in WEBHOOK_BLUEPRINTS:
            return None
        csrf.protect()
        return None

    @app.before_request
    def own_password_first():
        """A user signed in with a password an administrator set chooses their own before
        anything else (signing out excepted); then one whose role must have two-step sign-in
        sets it up."""
        if request.endpoint is None or request.endpoint in OWN_PASSWORD_FIRST_EXEMPT or _for_machines():
            return None
        if current_user.is_authenticated and current_user.must_change_password:
            if request.method not in ("GET", "HEAD"):
                flash("Choose your own password first, so that nobody else knows it. That was not done.", "error")
            return redirect(url_for("auth.change_password"))
        if (request.endpoint not in TWO_STEP_FIRST_EXEMPT and current_user.is_authenticated
                and two_step.must_set_up(current_user)):
            if request.method not in ("GET", "HEAD"):
                flash("Set up two-step sign-in first: your role must have it. That was not done.", "error")
            return redirect(url_for("two_step.page"))
        return None

    @app.after_request
    def headers(response):
        """Every page for people gets page_headers, its error pages (404, 405...) included, as they
        show who is signed in; the static files and the machines' answers get nosniff."""
        if request.path.startswith(PLAIN_PREFIXES):
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            return response
        return page_headers(response)

    @app.errorhandler(CSRFError)
    def csrf_refused(error: CSRFError):
        if not current_user.is_authenticated and request.endpoint not in (None, "auth.login", *SIGNED_OUT_FORMS):
            # Signed out in another tab of this browser (which clears the form tokens with the
            # session) or timed out: say that, as for a form sent while signed out, not "expired".
            if request.endpoint == "auth.logout":
                return redirect(url_for("auth.login"))
            return sign_in_first()
        message = (
            "This form has expired or did not come from this site. "
            "Go back, reload the page and try again."
        )
        return render_template("error.html", title="Form not accepted", message=message), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        """Not found, wrong method, too large...: the site's own page, in plain words, for people.

        Webhooks, /metrics and the health checks keep their plain answers.
        """
        if error.code is None or error.code < 400 or _for_machines():
            return error
        title, message = HTTP_MESSAGES.get(error.code, (error.name, "Go back and try again."))
        if error.code == 404 and not current_user.is_authenticated:
            message = message.replace("use the links above", "sign in and use the links at the top")
        return render_template("error.html", title=title, message=message), error.code

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def database_not_answering(error):
        # One line in the log, not a traceback per page; webhooks have their own spool.
        log.error("%s %s: the database did not answer (%s)", request.method, request.path, describe(error))
        g._login_user = login_manager.anonymous_user()  # the page must not ask the database who is signed in
        if request.path.startswith("/api/"):  # a script: one line of plain text, as its other answers
            return ("The help desk's database is not answering just now. Try again in a minute.\n", 503,
                    {"Retry-After": "30", "Content-Type": "text/plain; charset=utf-8"})
        message = ("The help desk's database is not answering just now (it is busy, or cannot be reached), so "
                   "this page cannot be shown. Calls are "
                   "still answered, and kept until the database is back. Try again in a minute.")
        page = render_template("error.html", title="The database is not answering", message=message)
        return page, 503, {"Retry-After": "30"}

    app.jinja_env.filters["references"] = unbroken_references

    @app.context_processor
    def page_context():
        return {"desk_name": settings().name, "navigation": navigation, "role_label": role_label,
                "has_pin_page": agents_pin.has_pin_page}

    login_manager.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(password_links.bp)
    app.register_blueprint(two_step.bp)
    app.register_blueprint(access_tokens.bp)
    app.register_blueprint(agents_pin.bp)
    app.register_blueprint(managers.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(system.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(agents.bp)
