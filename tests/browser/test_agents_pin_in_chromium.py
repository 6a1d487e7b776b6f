"""The Agents' line PIN page in a real headless Chromium, against the app under gunicorn in queue
mode with `routing.agents_pin`: an agent sets their PIN with the keyboard alone, a refused form
takes focus to its problems, axe-core finds nothing serious, and a phone's width needs no
sideways scroll."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.browser import axe
from tests.browser.conftest import BACKENDS, backend_database, sign_in_at

PHONE = "+447700900555"


@dataclass(frozen=True)
class PinApp:
    url: str
    database_url: str
    username: str
    password: str

    def at(self, path: str) -> str:
        return self.url + path


@pytest.fixture(scope="module", params=BACKENDS)
def pin_app(request, tmp_path_factory) -> Iterator[PinApp]:
    from helpdesk.db import Database
    from helpdesk.migrate import upgrade
    from helpdesk.users import add_user
    from live import LiveApp
    from tests.e2e.conftest import write_config

    directory = tmp_path_factory.mktemp("pin-app")
    with backend_database(request, directory) as database_url:
        upgrade(database_url)
        password = secrets.token_urlsafe(16)
        database = Database(database_url)
        try:
            with database.session() as session:
                add_user(session, "pat.agent", password, "agent", "Pat Agent", phone=PHONE)
        finally:
            database.dispose()
        config = directory / "helpdesk.toml"
        write_config(config, routing_mode="queue", ivr=False)
        config.write_text(config.read_text().replace('[routing]\n', '[routing]\nagents_pin = true\n'))
        env = {"SECRET_KEY": secrets.token_hex(16), "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
               "HELPDESK_CONFIG": str(config)}
        with LiveApp(database_url, env, workers=1, migrate=False) as live:
            yield PinApp(live.url, database_url, "pat.agent", password)
            log = live.log_text()
    assert "Traceback" not in log, f"the app logged an error:\n{log[-3000:]}"


def sign_in(page, app: PinApp) -> None:
    sign_in_at(page, app.url, app.username, app.password)


def stored_pin(app: PinApp) -> tuple[str | None, int]:
    from sqlalchemy import select

    from helpdesk.db import Database
    from helpdesk.models import User

    database = Database(app.database_url)
    try:
        with database.session() as session, session.begin():
            return session.execute(select(User.agents_pin_hash, User.agents_pin_failures)
                                   .where(User.username == app.username)).one()
    finally:
        database.dispose()


def test_an_agent_sets_their_pin_with_the_keyboard_after_correcting_the_form(page, pin_app):
    from playwright.sync_api import expect

    sign_in(page, pin_app)
    page.get_by_role("link", name="Agents' line PIN").click()
    assert page.locator("h1").text_content() == "Agents' line PIN"
    assert "You have no PIN yet" in page.locator("main").text_content()
    page.focus("#pin")
    page.keyboard.type("1234")
    page.keyboard.press("Tab")
    page.keyboard.type("1234")
    page.keyboard.press("Tab")
    page.keyboard.type(pin_app.password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    # Refused: the summary takes focus, and its link takes focus to the field.
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    assert page.title().startswith("Error: Agents' line PIN")
    assert page.input_value("#pin") == "" and page.input_value("#password") == ""
    summary.get_by_role("link").first.click()
    expect(page.locator("#pin")).to_be_focused()
    assert page.get_attribute("#pin", "aria-invalid") == "true"
    page.keyboard.type("739164")
    page.fill("#pin_again", "739164")
    page.fill("#password", pin_app.password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Your PIN for the agents' line is set." in page.locator("main .notice").first.text_content()
    assert "You have a PIN." in page.locator("main").text_content()
    pin_hash, failures = stored_pin(pin_app)
    assert pin_hash and "739164" not in pin_hash and failures == 0


def test_axe_core_finds_nothing_serious_on_the_pin_page_refused_or_not(page, pin_app):
    sign_in(page, pin_app)
    page.goto(pin_app.at("/account/agents-pin"))
    found = axe.blocking(axe.violations(page))
    assert not found, axe.describe(found)
    page.click("main button[type=submit]")  # nothing typed
    page.wait_for_load_state()
    assert page.locator(".error-summary li").count() == 2
    found = axe.blocking(axe.violations(page))
    assert not found, axe.describe(found)


def test_at_320_px_wide_the_pin_page_needs_no_sideways_scroll(page, pin_app):
    page.set_viewport_size({"width": 320, "height": 640})
    sign_in(page, pin_app)
    page.goto(pin_app.at("/account/agents-pin"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
