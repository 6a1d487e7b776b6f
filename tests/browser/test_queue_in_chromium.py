"""The agents' callback queue in a real headless Chromium, against the app under gunicorn.

"Call back now" goes through the real TwilioTelephony to a Prism mock of Twilio's REST API
(TWILIO_API_BASE_URL), so the request the app sends is checked against Twilio's own OpenAPI
description. A small proxy in front of Prism sends repeated form keys as ``Key[]`` (Prism 5
reads no other array form, see tests/prism.py) and asks for generated answers, so every call
gets its own CallSid.
"""
from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
import requests
from twilio.request_validator import RequestValidator

from prism import PrismServer, bracket_list_fields
from servers import HOST
from tests.browser import axe
from tests.browser.conftest import BACKENDS, backend_database, sign_in_at
from tests.browser.tables import assert_cards, assert_tables, tables_as_laid_out

AGENT_PHONE = "+447700900555"
DESK = "+441134960000"
CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")


# --------------------------------------------------------------------------- Twilio's API, mocked


class TwilioApiProxy(ThreadingHTTPServer):
    """Forwards the app's Twilio REST requests to Prism and keeps what passed through."""

    daemon_threads = True

    def __init__(self, prism_url: str):
        super().__init__((HOST, 0), _ProxyHandler)
        self.prism_url = prism_url
        self.exchanges: list[tuple[str, dict[str, list[str]], int, dict]] = []  # path, form, status, answer

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
        form: dict[str, list[str]] = {}
        for key, value in parse_qsl(body, keep_blank_values=True):
            form.setdefault(key, []).append(value)
        data = bracket_list_fields({key: values if len(values) > 1 else values[0] for key, values in form.items()})
        answer = requests.post(self.server.prism_url + self.path, data=data, timeout=10, headers={
            "Authorization": self.headers.get("Authorization", ""), "Prefer": "dynamic=true"})
        try:
            parsed = answer.json()
        except ValueError:
            parsed = {}
        self.server.exchanges.append((self.path, form, answer.status_code, parsed))
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args):
        pass


# --------------------------------------------------------------------------- the app


@dataclass(frozen=True)
class Agent:
    username: str
    password: str
    display_name: str


@dataclass
class QueueApp:
    url: str
    database_url: str
    auth_token: str
    twilio: TwilioApiProxy
    agent: Agent

    def at(self, path: str) -> str:
        return self.url + path

    def signed_post(self, path: str, params: dict[str, str]) -> None:
        """A webhook as Twilio sends it, signed with the app's auth token."""
        url = self.url + path
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        response = requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
        assert response.status_code in (200, 204), f"{path}: {response.status_code} {response.text}"

    def missed_call(self, caller: str = "+447700900123") -> int:
        """A caller hangs up before anyone answers; returns the callback owed for it."""
        call_sid, now = "CA" + secrets.token_hex(16), datetime.now(timezone.utc)
        self.signed_post("/twilio/voice/incoming", _inbound(call_sid, caller))
        self.signed_post("/twilio/voice/dial-action", {"CallSid": call_sid, "DialCallStatus": "canceled"})
        self.signed_post("/twilio/voice/status", {"CallSid": call_sid, "CallStatus": "completed",
                                                  "Timestamp": format_datetime(now, usegmt=True)})
        return self.query("SELECT id FROM callbacks WHERE call_sid = :sid", sid=call_sid)[0][0]

    def answered_call(self, caller: str = "+447700900124") -> str:
        call_sid, now = "CA" + secrets.token_hex(16), datetime.now(timezone.utc)
        self.signed_post("/twilio/voice/incoming", _inbound(call_sid, caller))
        self.signed_post("/twilio/voice/agent-status", {
            "CallSid": "CA" + secrets.token_hex(16), "ParentCallSid": call_sid, "To": "client:agent-1",
            "CallStatus": "in-progress", "Timestamp": format_datetime(now, usegmt=True)})
        self.signed_post("/twilio/voice/status", {"CallSid": call_sid, "CallStatus": "completed",
                                                  "Timestamp": format_datetime(now + timedelta(seconds=60), usegmt=True)})
        return call_sid

    def email_enquiry(self, sender: str = "jo.bloggs@example.org") -> str:
        """An email enquiry as the intake stores it; returns its reference."""
        from callbacks.email.intake import store_inbound
        from helpdesk.config import parse_settings
        from helpdesk.db import Database

        raw = (f"From: {sender}\r\nTo: help@helpdesk.example.org\r\nSubject: My grant\r\n"
               f"Message-ID: <{secrets.token_hex(8)}@mail.example.org>\r\n\r\nHello.\r\n").encode()
        database = Database(self.database_url)
        try:
            with database.session() as session, session.begin():
                return store_inbound(session, raw, source="imap", received_at=datetime.now(timezone.utc),
                                     settings=parse_settings({"hours": {"monday": ["08:00-18:00"]}})).reference
        finally:
            database.dispose()

    def query(self, sql: str, **params) -> list[tuple]:
        from sqlalchemy import text

        from helpdesk.db import Database

        database = Database(self.database_url)
        try:
            with database.session() as session, session.begin():
                rows = list(session.execute(text(sql), params))
        finally:
            database.dispose()
        return rows

    def execute(self, sql: str, **params) -> None:
        from sqlalchemy import text

        from helpdesk.db import Database

        database = Database(self.database_url)
        try:
            with database.session() as session, session.begin():
                session.execute(text(sql), params)
        finally:
            database.dispose()


def _inbound(call_sid: str, caller: str) -> dict[str, str]:
    return {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": caller, "To": DESK, "Caller": caller,
            "Called": DESK, "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}


@pytest.fixture(scope="module", params=BACKENDS)
def queue_app(request, tmp_path_factory, browser) -> Iterator[QueueApp]:
    """The app under gunicorn (open all hours), its Twilio REST API a Prism mock, and an agent with a
    phone, on each database."""
    directory = tmp_path_factory.mktemp("queue-app")
    with backend_database(request, directory) as database_url:
        yield from _queue_app(directory, database_url)


def _queue_app(directory, database_url: str) -> Iterator[QueueApp]:
    from sqlalchemy import text

    from helpdesk.db import Database
    from helpdesk.migrate import upgrade
    from helpdesk.users import add_user
    from live import LiveApp
    from tests.e2e.conftest import write_config

    upgrade(database_url)
    agent = Agent("queue.agent", secrets.token_urlsafe(16), "Quinn Agent")
    database = Database(database_url)
    try:
        with database.session() as session:
            add_user(session, agent.username, agent.password, "agent", agent.display_name)
        with database.session() as session, session.begin():
            session.execute(text("UPDATE users SET phone = :phone WHERE username = :name"),
                            {"phone": AGENT_PHONE, "name": agent.username})
    finally:
        database.dispose()

    auth_token, log = secrets.token_hex(16), ""
    with PrismServer() as prism:
        proxy = TwilioApiProxy(prism.url)
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        env = {
            "SECRET_KEY": secrets.token_hex(16), "TWILIO_AUTH_TOKEN": auth_token,
            "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_FROM_NUMBER": DESK, "TWILIO_API_BASE_URL": proxy.url,
            "HELPDESK_CONFIG": write_config(directory / "helpdesk.toml", routing_mode="dial", ivr=False),
        }
        try:
            with LiveApp(database_url, env, workers=2, migrate=False) as live:
                yield QueueApp(live.url, database_url, auth_token, proxy, agent)
                log = live.log_text()
        finally:
            proxy.shutdown()
            proxy.server_close()
    assert "Traceback" not in log, f"the app logged an error:\n{log[-3000:]}"


def sign_in(page, app: QueueApp) -> None:
    started = sign_in_at(page, app.url, app.agent.username, app.agent.password)
    assert started == "/queue", f"an agent should start on the queue, not {started}"


def item(page, callback_id: int):
    return page.locator(f"#callback-{callback_id}")


def flash(page) -> str:
    return " ".join(page.locator("main .notice").all_text_contents())


# --------------------------------------------------------------------------- the tests


def test_an_agent_claims_calls_back_and_sees_a_closed_item_leave_without_a_reload(page, browser, queue_app):
    first, second = queue_app.missed_call(), queue_app.missed_call()
    sign_in(page, queue_app)
    assert page.locator("h1").text_content() == "Callback queue"
    assert item(page, first).is_visible() and item(page, second).is_visible()
    assert "Nobody yet" in item(page, first).text_content()

    with page.expect_navigation():
        item(page, first).get_by_role("button", name=re.compile("^Claim")).click()
    assert "You have claimed HD-" in flash(page)
    assert "ClaimedbyYou" in re.sub(r"\s+", "", item(page, first).text_content())

    with page.expect_navigation():
        item(page, first).get_by_role("button", name=re.compile("^Call back now")).click()
    assert "Ringing your phone for HD-" in flash(page), flash(page)
    [(path, form, status, answer)] = [e for e in queue_app.twilio.exchanges if e[1].get("To") == [AGENT_PHONE]]
    assert status == 201 and path.endswith("/Calls.json"), (status, answer)
    assert form["From"] == [DESK] and form["Url"] == [queue_app.at(f"/twilio/voice/callback-connect?callback={first}")]
    attempts = queue_app.query("SELECT source, outcome, call_sid FROM callback_attempts WHERE callback_id = :id",
                               id=first)
    assert attempts == [("twilio", "placing", answer["sid"])] and CALL_SID.match(answer["sid"])
    # It rings the agent first: it is an attempt once Twilio dials the caller.
    assert "None yet" in item(page, first).text_content()

    # The page polls every second from now on; the second item is closed in another window.
    page.evaluate("window.__samePage = true; document.getElementById('queue-live').dataset.pollSeconds = '1'")
    other = browser.new_context(locale="en-GB", timezone_id="Europe/London")
    try:
        elsewhere = other.new_page()
        sign_in(elsewhere, queue_app)
        elsewhere.locator(f"#callback-{second}-close-panel summary").click()
        elsewhere.check(f"#callback-{second}-close-withdrawn")
        elsewhere.fill(f"#callback-{second}-close-note", "The caller emailed instead")
        with elsewhere.expect_navigation():
            elsewhere.click(f"#callback-{second}-close-submit")
        assert "is closed as withdrawn." in flash(elsewhere)
    finally:
        other.close()
    item(page, second).wait_for(state="detached", timeout=5000)
    assert page.evaluate("window.__samePage") is True, "the page was reloaded"
    assert page.locator("#queue-status").text_content().startswith("Queue updated: ")
    assert item(page, first).is_visible()


def test_what_an_agent_is_typing_and_their_focus_survive_the_live_updates(page, queue_app):
    callback = queue_app.missed_call()
    sign_in(page, queue_app)
    page.locator(f"#callback-{callback}-attempt-panel summary").click()
    note = page.locator(f"#callback-{callback}-attempt-note")
    note.click()
    page.keyboard.type("Rang twice, half way through typ")
    page.evaluate("window.__samePage = true; document.getElementById('queue-live').dataset.pollSeconds = '1'")
    queue_app.missed_call()  # something changes, so the update is announced
    from playwright.sync_api import expect  # imported here: without Playwright the fixtures skip the test

    expect(page.locator("#queue-status")).to_have_text(re.compile("^Queue updated: "), timeout=5000)
    page.wait_for_timeout(1500)  # at least one more swap while typing
    assert page.evaluate("document.activeElement.id") == f"callback-{callback}-attempt-note"
    page.keyboard.type("ing")
    assert note.input_value() == "Rang twice, half way through typing"
    assert page.locator(f"#callback-{callback}-attempt-panel").get_attribute("open") is not None
    assert page.evaluate("window.__samePage") is True


def test_a_script_in_a_note_stays_inert_text(page, queue_app):
    call_sid = queue_app.answered_call()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, queue_app)
    payload = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2; alert(1)">'
    page.locator(f"#call-{call_sid}-callback-panel summary").click()
    page.fill(f"#call-{call_sid}-note", payload)
    with page.expect_navigation():
        page.click(f"#call-{call_sid}-callback")
    assert "A callback is now owed for HD-" in flash(page)
    [(callback,)] = queue_app.query("SELECT id FROM callbacks WHERE call_sid = :sid", sid=call_sid)
    assert payload in item(page, callback).locator(".note dd").text_content()
    page.reload()
    page.wait_for_timeout(300)
    assert dialogs == [] and page.evaluate("typeof window.__xss") == "undefined"
    assert item(page, callback).locator(".note img, .note script").count() == 0


def test_the_queue_has_no_serious_or_critical_accessibility_violations(page, queue_app, tmp_path):
    overdue, soon = queue_app.missed_call(), queue_app.missed_call()
    now = datetime.now(timezone.utc)
    for callback, due in ((overdue, now - timedelta(minutes=25)), (soon, now + timedelta(minutes=10))):
        # As SQLAlchemy stores a UTC time in SQLite: naive text.
        queue_app.execute("UPDATE callbacks SET due_at = :due WHERE id = :id",
                          due=due.strftime("%Y-%m-%d %H:%M:%S.%f"), id=callback)
    withheld, awaiting = queue_app.answered_call(caller="anonymous"), queue_app.answered_call(caller="anonymous")
    failed_email, waiting_email = queue_app.email_enquiry(), queue_app.email_enquiry("sam@example.org")
    queue_app.execute("UPDATE email_acknowledgements SET status = 'failed', attempts = 8, next_attempt_at = NULL, "
                      "last_error = 'could not send' WHERE enquiry_id = (SELECT id FROM enquiries "
                      "WHERE reference = :reference)", reference=failed_email)
    sign_in(page, queue_app)
    emails = page.locator("#emails")
    assert emails.get_by_role("button", name=f"Try again to send the acknowledgement for {failed_email}").count() == 1
    assert emails.get_by_role("button", name=f"Mark as answered ({waiting_email})").count() == 1
    page.locator(f"#call-{withheld}-callback-panel summary").click()
    page.fill(f"#call-{withheld}-note", "Wants the grant form")  # required: what the callback is about
    with page.expect_navigation():
        page.click(f"#call-{withheld}-callback")
    [(withheld_callback,)] = queue_app.query("SELECT id FROM callbacks WHERE call_sid = :sid", sid=withheld)
    assert "Number withheld – cannot be dialled" in item(page, withheld_callback).text_content()
    assert item(page, withheld_callback).get_by_role("button", name=re.compile("^Call back now")).count() == 0
    assert page.locator(f"#call-{awaiting}-number").count() == 1  # a number can be given for a withheld caller
    assert item(page, overdue).locator(".flag").text_content() == "Overdue"
    assert item(page, soon).locator(".flag").text_content() == "Due soon"
    # Overdue and due soon differ by more than colour: the border style too.
    styles = [item(page, n).evaluate("e => getComputedStyle(e).borderLeftStyle") for n in (overdue, soon)]
    assert styles == ["solid", "dashed"]
    # For a person to look at, not asserted: in the test's own temporary directory (pytest keeps
    # the last three runs'), as each backend and each parallel worker takes its own picture.
    page.screenshot(path=tmp_path / "queue-page.png", full_page=True)
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    found = axe.violations(page)
    assert axe.blocking(found) == [], axe.describe(axe.blocking(found))
    small = page.evaluate("""() => [...document.querySelectorAll('main button, main summary, main input, main select')]
        .filter(e => e.type !== 'hidden').map(e => [e.id || e.textContent.trim(), e.getBoundingClientRect()])
        .filter(([, r]) => r.width < 24 || r.height < 24).map(([name]) => name)""")
    assert small == [], f"targets smaller than 24 by 24 px: {small}"


def test_an_agent_claims_with_the_keyboard_and_sees_where_focus_is(page, queue_app):
    callback = queue_app.missed_call()
    sign_in(page, queue_app)
    page.focus("#queue-refresh")
    for _ in range(400):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == f"callback-{callback}-claim":
            break
    else:
        pytest.fail("Tab never reached the Claim button")
    shadow = page.evaluate("getComputedStyle(document.activeElement).boxShadow")
    assert shadow not in ("", "none"), "the focused button shows no focus indicator"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "You have claimed HD-" in flash(page)


def test_signed_out_elsewhere_the_live_list_says_so_once_and_stops_asking(page, queue_app):
    from playwright.sync_api import expect

    sign_in(page, queue_app)
    polled = []
    page.on("request", lambda request: polled.append(request.url) if "/queue/items" in request.url else None)
    page.context.clear_cookies()  # as signing out in another tab does
    page.evaluate("document.getElementById('queue-live').dataset.pollSeconds = '1'")
    expect(page.locator("#queue-status")).to_have_text(
        "You have been signed out. Reload the page to sign in again.", timeout=5000)
    asked = len(polled)
    page.wait_for_timeout(2500)
    assert len(polled) == asked, "the page went on polling after it was signed out"


def test_a_refused_attempt_is_said_where_the_agent_is_with_focus_on_it_and_the_note_kept(page, queue_app):
    for _ in range(12):  # enough callbacks that the last one is far down the page
        callback = queue_app.missed_call()
    sign_in(page, queue_app)
    item(page, callback).scroll_into_view_if_needed()
    page.locator(f"#callback-{callback}-attempt-panel summary").click()
    page.fill(f"#callback-{callback}-attempt-time", "2099-01-01T10:00")
    page.select_option(f"#callback-{callback}-attempt-outcome", "no_answer")
    page.fill(f"#callback-{callback}-attempt-note", "Rang twice.")
    with page.expect_navigation():
        page.click(f"#callback-{callback}-attempt-submit")
    said = page.locator(f"#callback-{callback}-said")
    assert said.text_content() == "An attempt cannot be in the future." and said.get_attribute("role") == "alert"
    assert page.evaluate("document.activeElement.id") == f"callback-{callback}-said"
    box, height = said.bounding_box(), page.evaluate("window.innerHeight")
    assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= height, (box, height)
    assert page.input_value(f"#callback-{callback}-attempt-note") == "Rang twice."
    assert page.input_value(f"#callback-{callback}-attempt-outcome") == "no_answer"
    # The live list does not wipe what the server put back (the note, the time, the choice).
    from playwright.sync_api import expect

    page.evaluate("window.__samePage = true; document.getElementById('queue-live').dataset.pollSeconds = '1'")
    queue_app.missed_call()  # something changes, so the list is swapped and the swap announced
    expect(page.locator("#queue-status")).to_have_text(re.compile("^Queue updated: "), timeout=5000)
    page.wait_for_timeout(1500)  # and at least one more swap
    assert page.evaluate("window.__samePage") is True
    assert page.input_value(f"#callback-{callback}-attempt-time") == "2099-01-01T10:00"
    assert page.input_value(f"#callback-{callback}-attempt-note") == "Rang twice."
    assert page.input_value(f"#callback-{callback}-attempt-outcome") == "no_answer"
    assert said.text_content() == "An attempt cannot be in the future."


def test_new_emails_and_answered_calls_appear_without_a_reload_and_are_announced(page, queue_app):
    from playwright.sync_api import expect

    sign_in(page, queue_app)
    page.evaluate("window.__samePage = true; document.getElementById('queue-live').dataset.pollSeconds = '1'")
    reference = queue_app.email_enquiry()
    emails = page.locator("#emails")
    expect(emails.locator("th[scope=row]", has_text=reference)).to_be_visible(timeout=5000)
    expect(page.locator("#queue-status")).to_have_text(
        re.compile(r"^Queue updated: .*\d+ email enquir(y|ies) awaiting a response\.$"), timeout=5000)
    call_sid = queue_app.answered_call()
    expect(page.locator(f"#call-{call_sid}")).to_be_visible(timeout=5000)
    expect(page.locator("#queue-status")).to_have_text(
        re.compile(r"^Queue updated: \d+ answered calls? awaiting an outcome\.$"), timeout=5000)
    # Answered from another window: the row leaves this one.
    page.locator(f"#call-{call_sid}-concluded").focus()
    queue_app.execute("UPDATE enquiries SET status = 'closed' WHERE id = "
                      "(SELECT enquiry_id FROM calls WHERE call_sid = :sid)", sid=call_sid)
    page.locator(f"#call-{call_sid}").wait_for(state="detached", timeout=5000)
    assert page.evaluate("document.activeElement.closest('#awaiting') !== null"), "focus was lost with the row"
    assert "The item you were on has left the list" in page.locator("#queue-status").text_content()
    assert page.evaluate("window.__samePage") is True, "the page was reloaded"


def test_polls_after_the_first_bring_only_the_lists_that_changed(page, queue_app):
    from playwright.sync_api import expect

    first = queue_app.missed_call()
    sign_in(page, queue_app)
    answers = []
    page.on("response", lambda response: answers.append((response.url, response.text()))
            if "/queue/items" in response.url else None)
    page.evaluate("window.__samePage = true; document.getElementById('queue-live').dataset.pollSeconds = '1'")
    # Three polls, a second apart; on a busy machine (parallel test workers) they may take longer.
    for _ in range(60):
        if len(answers) >= 3:
            break
        page.wait_for_timeout(250)
    assert len(answers) >= 3
    # The first poll brings every list (and swaps each in); the next ones say what the page
    # shows, and an unchanged list is not sent again.
    assert "have=" not in answers[0][0] and 'class="queue-items"' in answers[0][1]
    later = answers[1:]
    assert all("have=queue%3A" in url and "awaiting%3A" in url and "emails%3A" in url for url, _ in later)
    assert all("queue-items" not in text and "emails-items" not in text for _, text in later)
    assert item(page, first).count() == 1
    second = queue_app.missed_call()
    item(page, second).wait_for(state="attached", timeout=5000)
    assert item(page, first).count() == 1
    expect(page.locator("#queue-status")).to_have_text(re.compile(r"^Queue updated: \d+ open"), timeout=5000)
    assert page.evaluate("window.__samePage") is True, "the page was reloaded"


def test_when_the_button_an_agent_is_on_goes_focus_stays_at_its_callback_and_says_so(page, queue_app):
    """Claimed in another window (a colleague's claim is the same): the Claim button goes, the callback stays."""
    from playwright.sync_api import expect

    callback = queue_app.missed_call()
    sign_in(page, queue_app)
    page.locator(f"#callback-{callback}-claim").focus()
    page.evaluate("document.getElementById('queue-live').dataset.pollSeconds = '1'")
    queue_app.execute("UPDATE callbacks SET claimed_by_id = (SELECT id FROM users WHERE username = :name) "
                      "WHERE id = :id", name=queue_app.agent.username, id=callback)
    expect(page.locator("#queue-status")).to_contain_text("The item you were on has changed", timeout=5000)
    assert page.evaluate("document.activeElement.id") == f"callback-{callback}-title"
    box, height = page.locator(f"#callback-{callback}-title").bounding_box(), page.evaluate("window.innerHeight")
    assert box is not None and 0 <= box["y"] < height, "focus went somewhere off screen"


def test_an_agent_can_pause_the_live_updates_and_resume_them(page, queue_app):
    from playwright.sync_api import expect

    sign_in(page, queue_app)
    pause = page.locator("#queue-pause")
    assert pause.is_visible() and pause.get_attribute("aria-pressed") == "false"
    pause.focus()
    page.keyboard.press("Enter")
    assert pause.get_attribute("aria-pressed") == "true"
    expect(page.locator("#queue-status")).to_have_text(re.compile("^Live updates paused"))
    polled = []
    page.on("request", lambda request: polled.append(request.url) if "/queue/items" in request.url else None)
    page.evaluate("document.getElementById('queue-live').dataset.pollSeconds = '1'")
    callback = queue_app.missed_call()
    page.wait_for_timeout(2500)
    assert polled == [] and item(page, callback).count() == 0, "the list changed while paused"
    page.keyboard.press("Enter")
    assert pause.get_attribute("aria-pressed") == "false"
    item(page, callback).wait_for(state="attached", timeout=5000)


def test_the_tabs_title_counts_the_overdue_callbacks_and_a_tab_out_of_sight_still_updates_it(page, queue_app):
    from playwright.sync_api import expect

    sign_in(page, queue_app)
    counts, desk = page.locator(".queue-items"), page.title().split(" – ", 1)[1]
    overdue, soon = int(counts.get_attribute("data-overdue")), int(counts.get_attribute("data-due-soon"))
    urgent = ", ".join([f"{overdue} overdue"] * bool(overdue) + [f"{soon} due soon"] * bool(soon))
    assert page.title() == (f"({urgent}) Callback queue – " if urgent else "Callback queue – ") + desk
    polled = []
    page.on("request", lambda request: polled.append(request.url) if "/queue/items" in request.url else None)
    # The agent works in another tab: this one is out of sight, and asks only once its minute is up.
    page.evaluate("window.__samePage = true; Object.defineProperty(document, 'hidden', {get: () => true}); "
                  "var live = document.getElementById('queue-live'); live.dataset.hiddenPollSeconds = '600'; "
                  "live.dataset.pollSeconds = '1'")
    callback = queue_app.missed_call()
    queue_app.execute("UPDATE callbacks SET due_at = :due WHERE id = :id", id=callback,
                      due=(datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S.%f"))
    page.wait_for_timeout(2500)
    assert polled == [], "a tab out of sight asked every second"
    page.evaluate("document.getElementById('queue-live').dataset.hiddenPollSeconds = '1'")
    expect(page).to_have_title(re.compile(rf"^\({overdue + 1} overdue(, \d+ due soon)?\) Callback queue – "),
                               timeout=8000)
    assert page.title().endswith(f" – {desk}") and polled
    # Out of sight, the times left need no bringing up to date: each ask says what the page has,
    # so only a list that changed comes back.
    assert all("have=queue%3A" in url and "awaiting%3A" in url and "emails%3A" in url for url in polled), polled
    assert page.evaluate("window.__samePage") is True, "the page was reloaded"


def test_at_320_px_wide_no_reference_or_masked_number_is_broken_across_two_lines(page, queue_app):
    """"HD-2026-" at the end of one line and "000263" on the next once read as two references, and
    "••••••••" above "980" as no number at all."""
    missed, awaiting = queue_app.missed_call(), queue_app.answered_call()
    page.set_viewport_size({"width": 320, "height": 640})
    sign_in(page, queue_app)
    shown = page.evaluate("""() => [...document.querySelectorAll('main .reference, main .masked')]
        .map(reference => [reference.textContent, reference.getClientRects().length])""")
    assert all(lines == 1 for _, lines in shown), shown
    assert sum("•" in text for text, _ in shown) >= 2, shown
    # What an action says names the reference whole too.
    with page.expect_navigation():
        page.click(f"#callback-{missed}-claim")
    said = page.evaluate(f"""() => [...document.querySelectorAll('#callback-{missed}-said .reference')]
        .map(reference => reference.getClientRects().length)""")
    assert said == [1], said
    assert item(page, missed).locator(".reference").count() >= 1
    assert page.locator(f"#call-{awaiting} .reference").count() == 1
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the queue scrolls {overflow} px sideways at 320 px"


@pytest.mark.parametrize("width", [320, 390, 768])
def test_on_a_phone_or_an_upright_tablet_each_answered_call_and_email_is_a_card_with_its_buttons_in_view(
        page, queue_app, width):
    """The tables of answered calls and emails were wider than a phone: an agent scrolled each row
    sideways to reach its buttons. In a box narrower than 60rem each row is a card, every cell under
    its column's heading, and the table is still a table to a screen reader."""
    awaiting, email = queue_app.answered_call(), queue_app.email_enquiry()
    page.set_viewport_size({"width": width, "height": 800})
    sign_in(page, queue_app)
    tables = tables_as_laid_out(page)
    assert [table["id"] for table in tables] == ["awaiting-caption", "emails-caption"], tables
    assert_cards(tables)
    targets = page.evaluate("""() => [...document.querySelectorAll('main table button, main table summary')]
        .map(e => [e.id || e.textContent.trim(), e.getBoundingClientRect().left, e.getBoundingClientRect().right])""")
    assert len(targets) >= 4 and all(left >= 0 and right <= width for _, left, right in targets), targets
    for target in (f"#call-{awaiting}-concluded", f"#call-{awaiting}-callback-panel summary"):
        page.locator(target).scroll_into_view_if_needed()
        assert page.locator(target).is_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the queue scrolls {overflow} px sideways at {width} px"
    # To assistive technology, still two tables of rows of cells, each cell's heading hidden from it.
    tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
    roles = [node["role"]["value"] for node in tree if not node.get("ignored")]
    rows = sum(len(table["rows"]) for table in tables)
    assert roles.count("table") == 2 and roles.count("row") == rows + 2 and roles.count("rowheader") == rows, roles
    assert roles.count("columnheader") == len(tables[0]["columns"]) + len(tables[1]["columns"]), roles
    headings = sum(len(row) for table in tables for row in table["rows"])
    assert page.locator(".cell-heading[aria-hidden=true]").count() == headings
    assert page.get_by_role("row", name=re.compile(re.escape(email))).count() == 1
    # Opened on a card, the callback form fits it too.
    page.locator(f"#call-{awaiting}-callback-panel summary").click()
    fields = page.evaluate(f"""() => [...document.querySelectorAll(
        '#call-{awaiting} textarea, #call-{awaiting} input:not([type=hidden]), #call-{awaiting} button')]
        .map(e => e.getBoundingClientRect().right)""")
    assert fields and max(fields) <= width, fields
    found = axe.violations(page)
    assert axe.blocking(found) == [], axe.describe(axe.blocking(found))


def test_on_a_wide_screen_the_answered_calls_and_emails_are_tables_with_their_column_headers(page, queue_app):
    queue_app.answered_call()
    queue_app.email_enquiry()
    page.set_viewport_size({"width": 1280, "height": 800})
    sign_in(page, queue_app)
    tables = tables_as_laid_out(page)
    assert len(tables) == 2
    assert_tables(tables)
    assert page.evaluate("getComputedStyle(document.querySelector('table.awaiting')).display") == "table"


def test_on_a_phone_the_open_callbacks_are_not_two_screens_down_under_the_warnings(page, queue_app):
    """Twenty warnings and breaches, each three lines at 320 px, put the open callbacks' heading
    over 2,000 px down. The newest five are shown; the rest are a click away."""
    now = datetime.now(timezone.utc)
    for n in range(10):  # a warning and a breach for each of ten callbacks
        callback = queue_app.missed_call()
        for kind, seconds in (("warning_10", 2 * n + 1), ("breach", 2 * n)):
            # As SQLAlchemy stores a UTC time in SQLite: naive text.
            recorded = (now - timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")
            queue_app.execute("INSERT INTO callback_notices (callback_id, kind, fell_due_at, recorded_at) "
                              "VALUES (:callback, :kind, :at, :at)", callback=callback, kind=kind, at=recorded)
    page.set_viewport_size({"width": 320, "height": 640})
    sign_in(page, queue_app)
    notices = page.locator(".queue-notices li")
    assert notices.count() == 20 and [notices.nth(n).is_visible() for n in (0, 4, 5, 19)] == [True, True, False, False]
    heading = page.locator("#open-title").bounding_box()["y"] + page.evaluate("window.scrollY")
    assert heading < 1400, f"the open callbacks' heading is {heading:.0f} px down at 320 px"
    more = page.locator(".more-notices summary")
    assert more.text_content() == "Show 15 more warnings and breaches"
    more.focus()
    page.keyboard.press("Enter")
    assert notices.nth(19).is_visible()
