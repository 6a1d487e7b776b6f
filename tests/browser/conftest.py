"""Browser fixtures: the app under gunicorn, driven by a real headless Chromium (Playwright).

Playwright is used only as a driver: the browser is Debian's `chromium` (`playwright install`
is never needed). Locally a missing `chromium`, Playwright or axe-core skips the test with the
reason; with `CI=true` it fails (see `servers.skip_or_fail`).

* ``chromium_path`` (session): the Chromium program.
* ``browser`` (package): one headless Chromium for all of ``tests/browser``.
* ``page``: a fresh browser context (cookies, storage) per test, en-GB, Europe/London.
* ``live_app`` (package): the app under gunicorn on a migrated SQLite database, open all hours,
  with a manager and an agent (``live_app.manager``, ``live_app.agent``: ``.username``,
  ``.password``) and ``SIMULATED_CALLS`` calls played by the simulator. Shared by every test in
  ``tests/browser`` (started once, stopped when they are done): add data, never delete any;
  ``live_app.add_user(...)`` adds another user.
* ``sign_in``: ``sign_in(page, live_app.manager)`` signs in by filling the form (quick; not a
  keyboard test) and returns the path the app sent the user to.

Every test under ``tests/browser`` gets the ``browser`` marker (``-m "not browser"`` skips them).
"""
from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest

from servers import find_program, skip_or_fail

HERE = Path(__file__).resolve().parent

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_FALLBACKS = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
# We run as root in CI, hence --no-sandbox; the rest keep Chromium off the network and quiet.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_TIMEOUT_MS = 10_000

SIMULATED_CALLS = 12


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.path)).parents and not item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.browser)


# --------------------------------------------------------------------------- the browser


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's `chromium` (or `chromium-browser`); skipped locally, failed under CI, if missing."""
    for name in CHROMIUM_NAMES:
        found = find_program(name)
        if found:
            return found
    for candidate in CHROMIUM_FALLBACKS:
        if Path(candidate).is_file():
            return candidate
    skip_or_fail("`chromium` not found on PATH or in /usr/bin; install the Debian package `chromium`")


@pytest.fixture(scope="package")
def browser(chromium_path):
    """One headless Chromium for all of tests/browser, driven through Playwright's sync API."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the Python package `playwright` is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A page in a new context (no cookies from other tests), British English, UK time."""
    context = browser.new_context(locale="en-GB", timezone_id="Europe/London")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


# --------------------------------------------------------------------------- the app


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    role: str
    display_name: str = ""


@dataclass
class BrowserApp:
    url: str
    database_url: str
    manager: Login
    agent: Login
    # Simulated calls per UK day they arrived on (all on one day unless the run crossed midnight).
    calls_by_day: Counter = field(default_factory=Counter)
    log_text: Callable[[], str] | None = None  # gunicorn's log so far
    mailbox: object = None  # what the app's mail server (aiosmtpd on 127.0.0.1) received

    def at(self, path: str) -> str:
        return self.url + path

    @property
    def calls_day(self) -> date:
        """The UK day most simulated calls arrived on."""
        return self.calls_by_day.most_common(1)[0][0]

    def add_user(self, username: str, role: str, display_name: str = "", temporary: bool = False,
                 email: str | None = None) -> Login:
        """Another user who can sign in at once, with a random password (with `temporary`, one an
        administrator set, to be replaced at the first sign-in), and with `email` an address."""
        from helpdesk.db import Database
        from helpdesk.users import add_user

        login = Login(username, secrets.token_urlsafe(16), role, display_name)
        database = Database(self.database_url)
        try:
            with database.session() as session:
                add_user(session, login.username, login.password, role, display_name, temporary=temporary,
                         email=email)
        finally:
            database.dispose()
        return login


def _calls_by_day(database_url: str) -> Counter:
    from sqlalchemy import select

    from helpdesk.clock import local
    from helpdesk.db import Database
    from helpdesk.models import Call

    database = Database(database_url)
    try:
        with database.session() as session:
            arrivals = list(session.scalars(select(Call.arrived_at)))
    finally:
        database.dispose()
    return Counter(local(moment).date() for moment in arrivals)


BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


@contextmanager
def backend_database(request, directory) -> Iterator[str]:
    """An empty database of the kind `request.param` names, for as long as the fixture lasts."""
    if request.param == "sqlite":
        yield f"sqlite:///{directory}/helpdesk.db"
        return
    from tests.conftest import _fresh_postgres_database

    with _fresh_postgres_database(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture(scope="package", params=BACKENDS)
def live_app(request, tmp_path_factory) -> Iterator[BrowserApp]:
    """The app under gunicorn (open all hours) with two users and simulated calls, on each database."""
    directory = tmp_path_factory.mktemp("browser-app")
    with backend_database(request, directory) as database_url:
        yield from _live_app(directory, database_url)


def _live_app(directory, database_url: str) -> Iterator[BrowserApp]:
    from helpdesk.db import Database
    from helpdesk.migrate import upgrade
    from helpdesk.simulator import RequestsTransport, Simulator, TrafficProfile, run_traffic
    from helpdesk.users import add_user
    from live import LiveApp
    from tests.e2e.conftest import write_config
    from tests.unit.test_notify import SmtpServer

    upgrade(database_url)
    manager = Login("morgan.manager", secrets.token_urlsafe(16), "manager", "Morgan Manager")
    agent = Login("abi.agent", secrets.token_urlsafe(16), "agent", "Abi Agent")
    database = Database(database_url)
    try:
        for login in (manager, agent):
            with database.session() as session:
                add_user(session, login.username, login.password, login.role, login.display_name)
    finally:
        database.dispose()

    auth_token = secrets.token_hex(16)
    config = write_config(directory / "helpdesk.toml", routing_mode="dial", ivr=True)
    mail = SmtpServer()
    with open(config, "a") as file:  # for links to choose a password
        file.write(f'\n[smtp]\nhost = "127.0.0.1"\nport = {mail.port}\nsecurity = "none"\n'
                   'from_address = "helpdesk@example.org"\n')
    env = {"SECRET_KEY": secrets.token_hex(16), "TWILIO_AUTH_TOKEN": auth_token, "HELPDESK_CONFIG": config}
    with mail, LiveApp(database_url, env, workers=2, migrate=False) as live:
        # Some answered within ten rings, some late, some abandoned or never answered.
        profile = TrafficProfile(seed=20261124, answer_median=20, abandon_rate=0.2, no_answer_rate=0.1)
        transport = RequestsTransport()
        try:
            simulator = Simulator(live.url, auth_token, transport=transport, speed=0)
            result = run_traffic(simulator, profile, calls=SIMULATED_CALLS, rate_per_second=None, concurrency=4)
        finally:
            transport.close()
        assert result.summary.errors == 0, [trace.errors for trace in result.traces if trace.errors]
        yield BrowserApp(
            url=live.url, database_url=database_url, manager=manager, agent=agent,
            calls_by_day=_calls_by_day(database_url), log_text=live.log_text, mailbox=mail.mailbox,
        )
    log = live.log_text()
    assert "Traceback" not in log, f"the app logged an error during the browser tests:\n{log[-3000:]}"


def sign_in_at(page, base_url: str, username: str, password: str) -> str:
    """Sign in through the form of the app at `base_url`; returns the page's path afterwards."""
    from urllib.parse import urlsplit

    page.goto(base_url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator(".account strong").count() == 1, f"{username} did not get signed in"
    return urlsplit(page.url).path


@pytest.fixture
def sign_in(live_app):
    """``sign_in(page, login)``: sign in through the form; returns the page's path afterwards."""
    return lambda page, login: sign_in_at(page, live_app.url, login.username, login.password)
