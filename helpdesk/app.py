"""The Flask application factory."""
from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any, Mapping
from urllib.parse import urlsplit

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from helpdesk import config_in_force
from helpdesk.config import ConfigError
from helpdesk.db import Database
from helpdesk.settings import Secrets, SipLogin
from helpdesk.web import RowId

log = logging.getLogger(__name__)

# Session cookies and form tokens are only as safe as this key: 32 characters is 128 bits of
# hexadecimal (secrets.token_hex(16)).
SECRET_KEY_MIN = 32


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: environment first, then `config` (tests), then the TOML settings."""
    app = Flask(__name__)
    app.url_map.converters["id"] = RowId
    secrets = Secrets.from_environ()
    app.config.update(
        SECRET_KEY=secrets.secret_key,
        DATABASE_URL=secrets.database_url,
        TWILIO_ACCOUNT_SID=secrets.twilio_account_sid,
        TWILIO_AUTH_TOKEN=secrets.twilio_auth_token,
        TWILIO_AUTH_TOKEN_SECONDARY=secrets.twilio_auth_token_secondary,
        PUBLIC_BASE_URL=secrets.public_base_url,
        # The password in SendGrid Inbound Parse's URL (callbacks/email/inbound.py).
        SENDGRID_INBOUND_SECRET=os.environ.get("SENDGRID_INBOUND_SECRET") or None,
        # What Twilio logs in to the phone system with, for SIP addresses it dials (or None).
        SIP_LOGIN=SipLogin.from_environ(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        # A session ends after 8 hours without a request (a shift), and a form's CSRF token lasts
        # as long as its session: a page left open all morning still submits.
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        WTF_CSRF_TIME_LIMIT=None,
        # The pages' forms are a few kilobytes; SendGrid's inbound posts and Twilio's webhooks set
        # their own limits (callbacks/email/inbound.py, helpdesk/voice/blueprint.py).
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    if config:
        app.config.update(config)
    # Cookies only over HTTPS whenever the public address is HTTPS (Flask's own default is
    # False, so set it here rather than with setdefault).
    secure = str(app.config["PUBLIC_BASE_URL"] or "").startswith("https://")
    for key in ("SESSION_COOKIE_SECURE", "REMEMBER_COOKIE_SECURE"):
        if key not in (config or {}):
            app.config[key] = secure
    if "DATABASE_URL" not in (config or {}) and (problem := Secrets.database_url_problem()):
        raise ConfigError(problem)
    if not app.config["SECRET_KEY"]:
        raise ConfigError("SECRET_KEY is not set: put a long random value in the environment")
    if "SECRET_KEY" not in (config or {}) and len(app.config["SECRET_KEY"]) < SECRET_KEY_MIN:
        raise ConfigError(f"SECRET_KEY is too short ({len(app.config['SECRET_KEY'])} characters): use at least "
                          f"{SECRET_KEY_MIN} random characters, such as the output of "
                          "python3 -c 'import secrets; print(secrets.token_hex(32))'")
    from callbacks.email.inbound import MIN_SECRET_LENGTH as SENDGRID_SECRET_MIN

    inbound = app.config.get("SENDGRID_INBOUND_SECRET")
    if inbound and "SENDGRID_INBOUND_SECRET" not in (config or {}) and len(inbound) < SENDGRID_SECRET_MIN:
        # Unset is allowed (no SendGrid); set but short would refuse every post, found only when mail comes.
        raise ConfigError(f"SENDGRID_INBOUND_SECRET is too short ({len(inbound)} characters): use at least "
                          f"{SENDGRID_SECRET_MIN} random characters, or leave it unset if SendGrid does not post here")
    if "SIP_LOGIN" not in (config or {}) and (problem := SipLogin.problem()):
        # Found otherwise only when the phone system refuses every call to a SIP address.
        raise ConfigError(problem)
    base = urlsplit(app.config["PUBLIC_BASE_URL"] or "")
    if app.config["PUBLIC_BASE_URL"] and (base.scheme not in ("http", "https") or not base.netloc
                                          or base.query or base.fragment):
        # Every webhook's signature is checked against this address: a wrong one refuses them all.
        raise ConfigError("PUBLIC_BASE_URL must be the address Twilio reaches the app at, such as "
                          "https://helpdesk.example.org")

    settings = app.config.get("SETTINGS") or config_in_force.load_for_app(app.config.get("HELPDESK_CONFIG"))
    app.extensions["helpdesk.settings"] = settings
    if settings.web.proxies:
        # The client's address from X-Forwarded-For, as the outermost proxy heard it (werkzeug
        # takes the entry that many from the end, which no client can put there), for the audit
        # log's sign-ins. Nothing else: the public address is PUBLIC_BASE_URL's.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.web.proxies, x_proto=0, x_host=0, x_port=0, x_prefix=0)
    Database(pages=True).init_app(app)

    from callbacks import outbound
    from callbacks.email import inbound as email_inbound
    from callbacks.telephony import telephony_from_app_config
    from helpdesk import health, pages, password_links
    from helpdesk.pages import api, evidence, service_levels
    from helpdesk.voice import blueprint as voice
    from metrics import blueprint as metrics_endpoint
    from metrics import http as metrics_http

    # Links to choose a password are emailed through this; tests put a FakeSender here instead.
    app.extensions["helpdesk.mail"] = app.config.get("MAIL_SENDER") or password_links.smtp_sender(settings)
    # "Call back now" places calls through this; tests put a FakeTelephony here instead.
    app.extensions["helpdesk.telephony"] = telephony_from_app_config(app.config)
    metrics_http.init_app(app)  # first, so its timer starts before any other request hook
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics_endpoint.bp)
    outbound.nest_in(voice.bp)  # /twilio/voice/callback-*: the voice blueprint's signature check
    app.register_blueprint(voice.bp)
    app.register_blueprint(email_inbound.bp)  # "email": exempt from CSRF in helpdesk/pages (WEBHOOK_BLUEPRINTS)
    pages.init_app(app)
    app.register_blueprint(service_levels.bp)
    app.register_blueprint(evidence.bp)
    app.register_blueprint(api.bp)  # "api": no session (helpdesk/pages, SESSIONLESS_BLUEPRINTS)
    return app
