"""The agents' callback queue page, through the Flask test client on SQLite and PostgreSQL."""
from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta, timezone
from threading import Barrier, Thread
from types import SimpleNamespace

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import OperationalError

from flask import render_template, url_for

from callbacks import queue, service
from callbacks.sweep import sweep
from callbacks.telephony import FakeTelephony
from helpdesk.clock import local
from helpdesk.models import AuditEntry, Callback, CallbackAttempt, Enquiry, FormerPhone, User
from helpdesk.users import add_user
from tests.integration.conftest import OPEN_TIME
from tests.integration.test_users_and_login import csrf_token, sign_in
from tests.integration.twilio_requests import inbound, post, sid, stamp

PASSWORD = "a-long-enough-password"
AGENT_PHONE = "+447700900555"


def at(hour: int, minute: int = 0) -> datetime:
    """A time on the test day (Tuesday 24 November 2026, GMT, so UK time = UTC)."""
    return OPEN_TIME.replace(hour=hour, minute=minute)


def miss_a_call(client, clock, n: int, arrived: datetime, caller: str = "+447700900123") -> None:
    clock.now = arrived
    post(client, "/twilio/voice/incoming", inbound(sid(n), caller=caller))
    post(client, "/twilio/voice/dial-action", {"CallSid": sid(n), "DialCallStatus": "canceled"})
    post(client, "/twilio/voice/status", {"CallSid": sid(n), "CallStatus": "completed",
                                          "Timestamp": stamp(arrived + timedelta(seconds=40))})


def answer_a_call(client, clock, n: int, arrived: datetime, caller: str = "+447700900123",
                  on: str = "client:agent-1") -> None:
    """Call `n` arrives at `arrived` and is answered 6 s later on the agent leg to `on`."""
    clock.now = arrived
    post(client, "/twilio/voice/incoming", inbound(sid(n), caller=caller))
    post(client, "/twilio/voice/agent-status", {"CallSid": sid(900 + n), "ParentCallSid": sid(n), "To": on,
                                                "CallStatus": "in-progress", "Timestamp": stamp(arrived + timedelta(seconds=6))})
    post(client, "/twilio/voice/status", {"CallSid": sid(n), "CallStatus": "completed",
                                          "Timestamp": stamp(arrived + timedelta(seconds=90))})


def add_agent(app, username: str, display_name: str, phone: str | None = AGENT_PHONE, role: str = "agent") -> int:
    with app.extensions["helpdesk.db"].session() as session:
        user_id = add_user(session, username, PASSWORD, role, display_name=display_name,
                           now=datetime.now(timezone.utc)).id
        with session.begin():
            session.execute(update(User).where(User.id == user_id).values(phone=phone))
    return user_id


def stored(db_session, model=Callback):
    """Every stored row, read afresh (ending any transaction a lazy load began)."""
    db_session.rollback()
    db_session.expire_all()
    with db_session.begin():
        return list(db_session.scalars(select(model).order_by(model.id)))


def reference(db_session, callback) -> str:
    db_session.rollback()
    with db_session.begin():
        return db_session.scalar(select(Enquiry.reference).where(Enquiry.id == callback.enquiry_id))


# The heading a cell of a table of cards shows on a narrow screen; hidden from screen readers.
CELL_HEADING = r'<span class="cell-heading" aria-hidden="true">([^<]*)</span>'


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def words(html: str) -> str:
    """The page's text as read: tags and runs of white space made one space, none before . , :, and
    without the headings a table's cards show in each cell (hidden from screen readers)."""
    return re.sub(r" ([.,:])", r"\1", " ".join(re.sub(r"<[^>]+>", " ", re.sub(CELL_HEADING, "", html)).split()))


def item(page: str, callback_id: int) -> str:
    """One callback's <li> from the page."""
    match = re.search(rf'<li class="queue-item[^"]*" id="callback-{callback_id}">(.*?)</li>', page, re.S)
    assert match, f"callback {callback_id} is not on the page"
    return match.group(0)


def act(client, path: str, **form):
    """POST a queue form with the page's CSRF token, following the redirect back to the queue."""
    return client.post(path, data={"csrf_token": csrf_token(client, "/queue"), **form}, follow_redirects=True)


@pytest.fixture
def telephony(app, clock):
    fake = FakeTelephony(clock=clock)
    app.extensions["helpdesk.telephony"] = fake
    return fake


@pytest.fixture
def alice(app, client):
    """Alice, an agent with a phone, signed in with the test client."""
    user_id = add_agent(app, "alice", "Alice Agent")
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    return user_id


@pytest.fixture
def three_callbacks(client, clock, db_session):
    """Owed in an order different from their due order; then the clock is at 13:25."""
    miss_a_call(client, clock, 2, at(10, 40))  # due 13:40: 15 minutes left, due soon
    miss_a_call(client, clock, 1, at(10, 0))  # due 13:00: 25 minutes overdue
    miss_a_call(client, clock, 3, at(11, 30))  # due 14:30: 1 h 5 min left
    clock.now = at(13, 25)
    # Plain values: ORM objects would reload (and on SQLite take the write lock) once expired.
    return {c.call_sid: SimpleNamespace(id=c.id, enquiry_id=c.enquiry_id) for c in stored(db_session)}


def test_open_callbacks_are_listed_earliest_due_first(alice, client, three_callbacks):
    page = text_of(client.get("/queue"))
    shown = [int(n) for n in re.findall(r'<li class="queue-item[^"]*" id="callback-(\d+)"', page)]
    expected = [three_callbacks[sid(n)].id for n in (1, 2, 3)]
    assert shown == expected
    assert "3 open callbacks: 1 overdue, 1 due soon." in words(page)


def test_overdue_and_due_soon_callbacks_are_marked_by_words_and_style(alice, client, three_callbacks):
    page = text_of(client.get("/queue"))
    overdue, soon, later = (item(page, three_callbacks[sid(n)].id) for n in (1, 2, 3))
    assert 'class="queue-item state-overdue"' in overdue and '<span class="flag flag-overdue">Overdue</span>' in overdue
    assert "Overdue by 25 min" in overdue and "Overdue by 25 minutes" in overdue  # shown, and for screen readers
    assert 'class="queue-item state-due-soon"' in soon and '<span class="flag flag-due-soon">Due soon</span>' in soon
    assert "15 min left" in soon and "15 minutes left" in soon
    assert 'class="queue-item state-on-time"' in later and "flag" not in later
    assert "1 h 5 min left" in later and "1 hour 5 minutes left" in later
    assert 'Due <time datetime="2026-11-24T14:30:00+00:00">14:30 today</time>' in later
    assert "Missed call – caller hung up" in later and "<dt>Caller type</dt><dd>Unknown</dd>" in later
    assert "•••••••• 123" in later and "+447700900123" not in page
    assert "Owed from 11:30 on Tuesday 24 November 2026; due after 3 hours of opening time" in later  # the explanation


def test_business_time_left_overnight_says_it_counts_opening_hours(alice, client, clock, db_session):
    miss_a_call(client, clock, 4, at(16, 30))  # 1 h 30 min today (closing at 18:00), 1 h 30 min tomorrow
    clock.now = at(17, 30)
    [callback] = stored(db_session)
    entry = item(text_of(client.get("/queue")), callback.id)
    assert "2 h of opening hours left" in entry and "2 hours of opening hours left" in entry
    assert "09:30 tomorrow" in entry and "state-on-time" in entry


def test_the_page_says_the_callback_window_counts_opening_hours_on_the_business_clock(alice, client, clock,
                                                                                     three_callbacks):
    page = " ".join(text_of(client.get("/queue")).split())
    assert "is owed a callback within 3 hours of opening time." in page


def test_a_withheld_caller_owed_a_callback_cannot_be_dialled(alice, client, clock, db_session):
    answer_a_call(client, clock, 5, at(10, 0), caller="anonymous")
    clock.now = at(10, 5)
    page = text_of(client.get("/queue"))
    assert f'id="call-{sid(5)}"' in page and "Withheld" in page
    done = act(client, f"/queue/calls/{sid(5)}/callback", note="Wants the grant form")
    assert 'A callback is now owed for <span class="reference">HD-2026-' in text_of(done)
    [callback] = stored(db_session)
    assert callback.caller_number is None and callback.reason == "not_concluded"
    entry = item(text_of(client.get("/queue")), callback.id)
    assert "Number withheld – cannot be dialled" in entry and "Not concluded on the call" in entry
    assert "Call back now" not in entry and "Wants the grant form" in entry
    assert f'id="call-{sid(5)}"' not in text_of(client.get("/queue"))  # no longer awaiting an outcome


def test_a_second_agent_is_told_who_has_already_claimed_the_callback(app, alice, client, three_callbacks, db_session):
    callback = three_callbacks[sid(3)]
    assert 'You have claimed <span class="reference">HD-2026-' in text_of(act(client, f"/queue/{callback.id}/claim"))
    bob = app.test_client()
    add_agent(app, "bob", "Bob Builder")
    sign_in(bob, "bob", PASSWORD)
    # Bob's page was loaded before Alice claimed it would still show Claim; his POST is refused.
    refused = text_of(act(bob, f"/queue/{callback.id}/claim"))
    assert "Alice Agent has already claimed this callback." in refused
    assert "Only Alice Agent can act on this callback while they hold it." in item(refused, callback.id)
    assert [c.claimed_by_id for c in stored(db_session) if c.id == callback.id] == [alice]
    released = text_of(act(client, f"/queue/{callback.id}/release"))
    assert 'You have released <span class="reference">HD-2026-' in released
    assert "Nobody yet" in item(released, callback.id)


def test_two_agents_claiming_at_the_same_moment_get_one_winner_and_one_named_refusal(app, alice, client,
                                                                                   three_callbacks, db_session):
    callback_id = three_callbacks[sid(3)].id
    bob = app.test_client()
    bob_id = add_agent(app, "bob", "Bob Builder")
    sign_in(bob, "bob", PASSWORD)
    forms = {name: {"csrf_token": csrf_token(browser, "/queue")} for name, browser in (("alice", client), ("bob", bob))}
    barrier, pages = Barrier(2), {}

    def claim(name, browser):
        barrier.wait()
        pages[name] = text_of(browser.post(f"/queue/{callback_id}/claim", data=forms[name], follow_redirects=True))

    threads = [Thread(target=claim, args=pair) for pair in (("alice", client), ("bob", bob))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [holder] = [c.claimed_by_id for c in stored(db_session) if c.id == callback_id]
    winner, loser = ("alice", "bob") if holder == alice else ("bob", "alice")
    assert holder in (alice, bob_id)
    assert 'You have claimed <span class="reference">HD-2026-' in pages[winner]
    name = {"alice": "Alice Agent", "bob": "Bob Builder"}[winner]
    assert f"{name} has already claimed this callback." in pages[loser]


def test_call_back_now_rings_the_agent_and_records_an_attempt_with_the_call_sid(alice, client, telephony,
                                                                               three_callbacks, db_session):
    # The attempt counts once Twilio dials the caller (tests/integration/test_outbound_callbacks.py).
    callback = three_callbacks[sid(3)]
    page = text_of(act(client, f"/queue/{callback.id}/call"))
    assert 'Ringing your phone for <span class="reference">HD-2026-' in page
    [placed] = telephony.calls
    assert (placed.agent_phone, placed.caller_number, placed.callback_id) == (AGENT_PHONE, "+447700900123", callback.id)
    [attempt] = stored(db_session, CallbackAttempt)
    assert (attempt.callback_id, attempt.source, attempt.outcome) == (callback.id, "twilio", "placing")
    assert attempt.call_sid == placed.placed.call_sid and attempt.agent_id == alice
    [after] = [c for c in stored(db_session) if c.id == callback.id]
    assert (after.attempts_count, after.claimed_by_id, after.sla_result) == (0, alice, None)
    assert "It counts as an attempt once the caller is dialled." in page and "None yet" in item(page, callback.id)


def test_call_back_now_rings_an_agents_desk_phone_at_its_sip_address(app, alice, client, telephony, three_callbacks):
    from helpdesk.users import set_phone

    with app.extensions["helpdesk.db"].session() as session:
        set_phone(session, "alice", "sip:1001@pbx.example.org;transport=tls")
    callback = three_callbacks[sid(3)]
    assert 'Ringing your phone for <span class="reference">HD-2026-' in text_of(act(client, f"/queue/{callback.id}/call"))
    assert [placed.agent_phone for placed in telephony.calls] == ["sip:1001@pbx.example.org;transport=tls"]


def test_the_queue_says_how_a_call_back_now_call_is_going(alice, client, clock, telephony, three_callbacks):
    callback_id = three_callbacks[sid(3)].id

    def shown() -> str:
        return re.sub(r"\s+", " ", item(text_of(client.get("/queue")), callback_id))

    def twilio(path: str, **params) -> None:
        assert post(client, f"/twilio/voice/{path}?callback={callback_id}", params).status_code in (200, 204)

    act(client, f"/queue/{callback_id}/call")
    agent_leg = telephony.calls[0].placed.call_sid
    assert "Ringing the agent's phone: answer and press 1" in shown() and "None yet" in shown()
    twilio("callback-connect", CallSid=agent_leg, Digits="1")
    assert "Ringing the caller now." in shown() and "1 so far" in shown()
    twilio("callback-status", CallSid=sid(900), ParentCallSid=agent_leg, CallStatus="no-answer")
    assert "Call back now</dt>" not in shown() and "1 so far; next try" in shown()

    clock.advance(60)
    act(client, f"/queue/{callback_id}/call")
    twilio("callback-status", CallSid=telephony.calls[1].placed.call_sid, CallStatus="no-answer")
    assert "The last call did not reach the caller" in shown() and "1 so far" in shown()

    clock.advance(60)
    act(client, f"/queue/{callback_id}/call")
    clock.advance(121)  # never heard of again: not said to be ringing for ever
    assert "Call back now</dt>" not in shown()


@pytest.mark.parametrize("configured, phone, said", [
    (False, AGENT_PHONE, "Calling from this page is not set up, so call from your own phone and log each attempt."),
    (True, None, "Call back now rings your phone first, and yours is not set: ask an administrator to set it (a "
                 "number, or your desk phone's SIP address). Until then, call from another phone and log each "
                 "attempt."),
    (True, AGENT_PHONE, None),
], ids=["twilio-not-set-up", "no-phone", "can-call"])
def test_call_back_now_is_offered_only_where_the_app_can_place_calls_to_a_user_with_a_phone(
        app, client, clock, db_session, three_callbacks, configured, phone, said):
    if configured:
        app.extensions["helpdesk.telephony"] = FakeTelephony(clock=clock)
    add_agent(app, "alice", "Alice Agent", phone=phone)
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    page = text_of(client.get("/queue"))
    shown = words(page)
    buttons = re.findall(r'id="callback-\d+-call"', page)
    assert len(buttons) == (0 if said else 3)
    assert ("Calling from this page is not set up" in shown) is (not configured)
    assert ("Call back now rings your phone first" in shown) is (phone is None)
    if said:
        assert said in shown
    assert shown.count("Log an attempt") >= 3  # by hand, always
    live = words(text_of(client.get("/queue/items")))
    assert ("Call back now for HD-" in live) is (said is None)


@pytest.mark.parametrize("to, status, code, said, history", [
    # It wants a login, or refuses Twilio: the phone system refused it.
    ("sip:1001@pbx.example.org;transport=tls", "failed", "407",
     "the agent's desk phone did not ring, because its phone system refused the call (SIP 407). An administrator can "
     "see why in the app's log.", "Call back now: the desk phone's phone system refused the call (SIP 407)"),
    ("sip:1001@pbx.example.org;transport=tls", "failed", "403",
     "the agent's desk phone did not ring, because its phone system refused the call (SIP 403). An administrator can "
     "see why in the app's log.",
     "Call back now: the desk phone's phone system refused the call (SIP 403)"),
    # Cancelled after ringing out: not the phone system's doing.
    ("sip:1001@pbx.example.org;transport=tls", "no-answer", "487", "the agent's phone rang but was not answered.",
     "Call back now: the agent's phone was not answered"),
    # Only a SIP address's phone system refuses with a SIP code: a number's call failed.
    (AGENT_PHONE, "failed", "407", "Twilio could not call the agent's phone. An administrator can see why in "
     "Twilio's call log.", "Call back now: Twilio could not call the agent's phone"),
    (AGENT_PHONE, "busy", None, "the agent's phone was busy.", "Call back now: the agent's phone was busy"),
    # Cancelled before it ended any other way (the app does not cancel it): nothing more is known.
    (AGENT_PHONE, "canceled", None, "the agent's phone was not answered, or 1 was not pressed.",
     "Call back now: the caller was not dialled"),
], ids=["sip-407", "sip-403", "sip-487-no-answer", "number-failed", "busy", "canceled"])
def test_the_queue_says_why_call_back_now_did_not_dial_the_caller_from_the_agent_legs_end(
        alice, client, clock, db_session, telephony, three_callbacks, to, status, code, said, history):
    callback_id = three_callbacks[sid(3)].id
    act(client, f"/queue/{callback_id}/call")
    agent_leg = telephony.calls[0].placed.call_sid
    clock.advance(2)
    ended = {"CallSid": agent_leg, "CallStatus": status, "To": to} | ({"SipResponseCode": code} if code else {})
    assert post(client, f"/twilio/voice/callback-status?callback={callback_id}", ended).status_code == 204
    shown = words(item(text_of(client.get("/queue")), callback_id))
    assert f"The last call did not reach the caller: {said} It does not count as an attempt." in shown
    assert history in shown
    assert "None yet" in shown and "pbx.example.org" not in shown
    # Its webhooks blanked for personal data (helpdesk anonymise), it still says why.
    from helpdesk.blanked_events import blank_events

    with db_session.begin():
        assert blank_events(db_session, [agent_leg], apply=True) > 0
    again = words(item(text_of(client.get("/queue")), callback_id))
    assert f"The last call did not reach the caller: {said}" in again and history in again


@pytest.mark.parametrize("keys, said, history", [
    ((), "the agent's phone answered, but 1 was not pressed (if nobody picked it up, its voicemail did).",
     "Call back now: the agent's phone answered, but 1 was not pressed"),
    (("2",), "a key other than 1 was pressed on the agent's phone.", "Call back now: a key other than 1 was pressed"),
], ids=["voicemail", "another-key"])
def test_the_queue_says_when_the_agents_phone_answered_and_1_was_not_pressed(alice, client, clock, telephony,
                                                                             three_callbacks, keys, said, history):
    callback_id = three_callbacks[sid(3)].id
    act(client, f"/queue/{callback_id}/call")
    agent_leg = telephony.calls[0].placed.call_sid
    for path, params in [("callback-status", {"CallStatus": "in-progress"}), ("callback-connect", {}),
                         *[("callback-connect", {"Digits": key}) for key in keys],
                         ("callback-status", {"CallStatus": "completed", "CallDuration": "18"})]:
        clock.advance(5)
        response = post(client, f"/twilio/voice/{path}?callback={callback_id}", {"CallSid": agent_leg, **params})
        assert response.status_code in (200, 204), path
    shown = words(item(text_of(client.get("/queue")), callback_id))
    assert f"The last call did not reach the caller: {said} It does not count as an attempt." in shown
    assert history in shown and "None yet" in shown


def test_a_second_call_back_now_while_one_is_under_way_is_refused(alice, client, clock, telephony, three_callbacks,
                                                                  db_session):
    callback = three_callbacks[sid(3)]
    act(client, f"/queue/{callback.id}/call")
    clock.advance(30)
    page = text_of(act(client, f"/queue/{callback.id}/call"))  # a double click, or a second tab
    assert "A call for this callback is already under way." in page
    assert len(telephony.calls) == 1 and len(stored(db_session, CallbackAttempt)) == 1
    # A call that never reported back does not block the callback for good.
    clock.advance(91)
    rung = text_of(act(client, f"/queue/{callback.id}/call"))
    assert 'Ringing your phone for <span class="reference">HD-2026-' in rung
    assert len(telephony.calls) == 2 and len(stored(db_session, CallbackAttempt)) == 2


def test_two_call_back_now_clicks_at_the_same_moment_ring_the_agent_once(app, alice, client, telephony,
                                                                         three_callbacks, db_session):
    callback_id = three_callbacks[sid(3)].id
    tab = app.test_client()
    sign_in(tab, "alice", PASSWORD)
    forms = [{"csrf_token": csrf_token(browser, "/queue")} for browser in (client, tab)]
    barrier, pages = Barrier(2), []

    def click(browser, form):
        barrier.wait()
        pages.append(text_of(browser.post(f"/queue/{callback_id}/call", data=form, follow_redirects=True)))

    threads = [Thread(target=click, args=pair) for pair in zip((client, tab), forms)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(telephony.calls) == 1 and len(stored(db_session, CallbackAttempt)) == 1
    assert sorted("Ringing your phone" in page for page in pages) == [False, True]
    assert any("already under way" in page for page in pages)


def test_a_call_placed_that_cannot_be_recorded_says_so_rather_than_failing_the_page(alice, client, telephony,
                                                                                     three_callbacks, monkeypatch):
    def database_gone(*args, **kwargs):
        raise OperationalError("UPDATE callback_attempts", {}, Exception("database is locked"))

    monkeypatch.setattr(service, "call_placed", database_gone)
    response = act(client, f"/queue/{three_callbacks[sid(3)].id}/call")
    page = text_of(response)
    assert response.status_code == 200 and len(telephony.calls) == 1
    assert f"The call was placed (Twilio call {telephony.calls[0].placed.call_sid}) but could not be recorded." in page
    assert "Log the attempt by hand." in page


def test_call_back_now_on_a_callback_another_agent_holds_is_refused(app, alice, client, telephony, three_callbacks,
                                                                    db_session):
    callback_id = three_callbacks[sid(3)].id
    bob = app.test_client()
    add_agent(app, "bob", "Bob Builder")
    sign_in(bob, "bob", PASSWORD)
    act(bob, f"/queue/{callback_id}/claim")
    page = text_of(act(client, f"/queue/{callback_id}/call"))
    assert "Bob Builder has claimed this callback." in page
    assert telephony.calls == [] and stored(db_session, CallbackAttempt) == []


def test_a_call_twilio_refuses_records_nothing_and_shows_why(alice, client, telephony, three_callbacks, db_session):
    telephony.fail_with = "Twilio refused the call: The source phone number is not verified."
    callback = three_callbacks[sid(3)]
    page = text_of(act(client, f"/queue/{callback.id}/call"))
    assert "Twilio refused the call: The source phone number is not verified." in page
    assert stored(db_session, CallbackAttempt) == []
    [after] = [c for c in stored(db_session) if c.id == callback.id]
    assert (after.attempts_count, after.claimed_by_id, after.sla_result) == (0, None, None)


def test_an_agent_without_a_phone_is_told_to_ask_an_administrator(app, client, telephony, three_callbacks, db_session):
    add_agent(app, "carol", "Carol", phone=None)
    sign_in(client, "carol", PASSWORD)
    page = text_of(act(client, f"/queue/{three_callbacks[sid(3)].id}/call"))
    assert "Ask an administrator to set your phone: a number, or your desk phone's SIP address." in page
    assert telephony.calls == [] and stored(db_session, CallbackAttempt) == []


def test_a_manual_attempt_before_the_due_time_meets_the_target(alice, client, three_callbacks, db_session):
    callback = three_callbacks[sid(1)]  # due 13:00, now 13:25: the agent logs a call made at 12:50
    page = text_of(act(client, f"/queue/{callback.id}/attempts", started_at="2026-11-24T12:50",
                       outcome="no_answer", note="Rang out"))
    assert 'Attempt logged for <span class="reference">HD-2026-' in page
    [after] = [c for c in stored(db_session) if c.id == callback.id]
    # A time given to the minute is read as that minute's last second.
    assert after.sla_result == "met" and after.first_attempt_at == at(12, 50) + timedelta(seconds=59)
    assert after.next_attempt_at == at(13, 20) + timedelta(seconds=59)  # the first retry, 30 minutes on
    [attempt] = stored(db_session, CallbackAttempt)
    assert (attempt.source, attempt.outcome, attempt.note) == ("manual", "no_answer", "Rang out")
    entry = item(page, callback.id)
    assert "state-met" in entry and "Overdue" not in entry and "next try <time" in entry


def test_an_attempt_time_in_summer_is_read_as_uk_time(alice, client, clock, db_session):
    summer = datetime(2026, 7, 14, 9, 0, tzinfo=timezone.utc)  # 10:00 BST
    miss_a_call(client, clock, 6, summer)
    clock.now = summer + timedelta(hours=1)
    [callback] = stored(db_session)
    act(client, f"/queue/{callback.id}/attempts", started_at="2026-07-14T10:30", outcome="reached")
    [attempt] = stored(db_session, CallbackAttempt)
    assert attempt.started_at == datetime(2026, 7, 14, 9, 30, 59, tzinfo=timezone.utc)


def test_an_attempt_given_to_the_minute_never_meets_a_deadline_inside_that_minute(alice, client, clock, db_session):
    miss_a_call(client, clock, 7, OPEN_TIME + timedelta(seconds=10))  # owed from 10:00:10 + ringing
    [callback] = stored(db_session)
    db_session.rollback()
    clock.now = callback.due_at + timedelta(minutes=5)
    due_minute = local(callback.due_at).strftime("%Y-%m-%dT%H:%M")
    act(client, f"/queue/{callback.id}/attempts", started_at=due_minute, outcome="reached")
    [after] = stored(db_session)
    assert after.due_at.second != 59, "the deadline falls inside its minute"
    assert after.first_attempt_at == callback.due_at.replace(second=59, microsecond=0)
    assert after.sla_result != "met"  # the sweep records the breach


def test_an_attempt_logged_in_the_minute_it_was_made_is_taken_as_now(alice, client, clock, db_session):
    miss_a_call(client, clock, 8, OPEN_TIME + timedelta(seconds=10))
    [callback] = stored(db_session)
    db_session.rollback()
    clock.now = callback.owed_from + timedelta(seconds=5)  # the same minute the callback was owed
    page = text_of(act(client, f"/queue/{callback.id}/attempts",
                       started_at=local(clock.now).strftime("%Y-%m-%dT%H:%M"), outcome="reached"))
    assert "Attempt logged for" in page
    [after] = stored(db_session)
    assert after.first_attempt_at == clock.now and after.sla_result == "met"


@pytest.mark.parametrize("started_at", ["", "yesterday", "2026-02-30T10:00"])
def test_an_attempt_without_a_usable_time_is_refused_with_a_reason(alice, client, three_callbacks, db_session, started_at):
    page = text_of(act(client, f"/queue/{three_callbacks[sid(1)].id}/attempts", started_at=started_at,
                       outcome="reached"))
    assert "as a date and time" in page or "is not a date and time that exists" in page
    assert stored(db_session, CallbackAttempt) == []


def test_closing_as_unreachable_takes_the_callback_off_the_queue(alice, client, clock, three_callbacks, db_session):
    callback = three_callbacks[sid(2)]
    page = text_of(act(client, f"/queue/{callback.id}/close", outcome="unreachable"))
    assert "Record the attempts that did not reach the caller before closing as unreachable." in page
    act(client, f"/queue/{callback.id}/attempts", started_at=local(clock.now).strftime("%Y-%m-%dT%H:%M"),
        outcome="failed")
    page = text_of(act(client, f"/queue/{callback.id}/close", outcome="unreachable", note="Number not in service"))
    assert "is closed as unreachable." in page and f'id="callback-{callback.id}"' not in page
    [after] = [c for c in stored(db_session) if c.id == callback.id]
    assert (after.status, after.outcome, after.closed_by_id) == ("closed", "unreachable", alice)
    assert after.note.endswith("Number not in service")
    # Where it was said, a call made before it closed can still be logged (it left the list).
    assert f'action="/queue/{callback.id}/attempts"' in page and "Log an earlier call you have not logged yet" in page
    earlier = local(clock.now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M")
    page = text_of(act(client, f"/queue/{callback.id}/attempts", started_at=earlier, outcome="no_answer"))
    assert (f'Attempt logged for <span class="reference">{after.enquiry.reference}</span>: no answer.'
            in page), re.findall(r"notice[^>]*>([^<]*)", page)
    [logged] = [c for c in stored(db_session) if c.id == callback.id]
    assert (logged.status, logged.outcome, logged.attempts_count) == ("closed", "unreachable", 2)


def test_an_attempt_sent_twice_is_recorded_once(alice, client, clock, three_callbacks, db_session):
    callback = three_callbacks[sid(1)]
    clock.advance(600)
    when = local(clock.now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    act(client, f"/queue/{callback.id}/attempts", started_at=when, outcome="no_answer")
    page = text_of(act(client, f"/queue/{callback.id}/attempts", started_at=when, outcome="no_answer"))
    assert f"An attempt at {when[-5:]} is already recorded for this callback." in page
    assert len(stored(db_session, CallbackAttempt)) == 1
    [after] = [c for c in stored(db_session) if c.id == callback.id]
    assert after.attempts_count == 1


def test_resolving_without_reaching_the_caller_is_refused_with_the_reason(alice, client, three_callbacks):
    page = text_of(act(client, f"/queue/{three_callbacks[sid(2)].id}/close", outcome="resolved"))
    assert "Record the attempt that reached the caller before closing as resolved." in page


def test_a_script_in_a_note_is_shown_as_text(alice, client, clock, db_session):
    answer_a_call(client, clock, 7, at(10, 0))
    payload = '<script>window.__xss = 1</script><img src=x onerror="alert(1)">'
    act(client, f"/queue/calls/{sid(7)}/callback", note=payload)
    raw = client.get("/queue").get_data(as_text=True)
    assert payload not in raw and "<script>window.__xss" not in raw and "<img src=x" not in raw
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in raw


def test_concluded_on_the_call_owes_nothing_and_leaves_the_list(alice, client, clock, db_session):
    answer_a_call(client, clock, 8, at(10, 0))
    page = text_of(act(client, f"/queue/calls/{sid(8)}/concluded"))
    assert "is recorded as concluded on the call." in page and f'id="call-{sid(8)}"' not in page
    with db_session.begin():
        assert db_session.scalar(select(Enquiry.status).where(Enquiry.call_sid == sid(8))) == "concluded"
    assert stored(db_session) == []


def test_concluded_by_mistake_can_be_undone_by_its_agent_for_ten_minutes(app, alice, client, clock, db_session):
    answer_a_call(client, clock, 8, at(10, 0))
    clock.now = at(10, 5)
    page = text_of(act(client, f"/queue/calls/{sid(8)}/concluded"))
    assert "Pressed by mistake? You can undo it for 10 minutes." in page
    assert f'action="/queue/calls/{sid(8)}/undo-concluded"' in page and 'id="awaiting-undo"' in page
    # Another agent cannot take it back.
    add_agent(app, "bob", "Bob Agent")
    other = app.test_client()
    sign_in(other, "bob", PASSWORD)
    refused = text_of(act(other, f"/queue/calls/{sid(8)}/undo-concluded"))
    assert "Only the agent who recorded it as concluded can undo that." in refused
    clock.now = at(10, 15)  # ten minutes on: still in time
    undone = text_of(act(client, f"/queue/calls/{sid(8)}/undo-concluded"))
    assert "is no longer recorded as concluded: say whether it was, or that a callback is needed." in undone
    assert f'id="call-{sid(8)}"' in undone  # awaiting its outcome again
    with db_session.begin():
        assert db_session.execute(select(Enquiry.status, Enquiry.outcome_recorded_at)
                                  .where(Enquiry.call_sid == sid(8))).one() == ("open", None)
        assert db_session.scalar(select(AuditEntry.action).where(AuditEntry.action == "enquiry.concluded_undone"))
    # Concluded again (at 10:15), and over ten minutes later it stays concluded.
    act(client, f"/queue/calls/{sid(8)}/concluded")
    with db_session.begin():
        assert db_session.scalar(select(Enquiry.outcome_recorded_at).where(Enquiry.call_sid == sid(8))) == at(10, 15)
    clock.now = at(10, 26)
    late = text_of(act(client, f"/queue/calls/{sid(8)}/undo-concluded"))
    assert "over 10 minutes ago, so it can no longer be undone." in late


def test_each_concluded_is_in_the_audit_log_and_the_enquirys_story_with_its_undoing(app, alice, client, clock,
                                                                                     db_session):
    answer_a_call(client, clock, 8, at(10, 0))
    clock.now = at(10, 5)
    act(client, f"/queue/calls/{sid(8)}/concluded")
    clock.now = at(10, 7)
    act(client, f"/queue/calls/{sid(8)}/undo-concluded")
    clock.now = at(10, 9)
    act(client, f"/queue/calls/{sid(8)}/concluded")

    reference = next(enquiry.reference for enquiry in stored(db_session, Enquiry) if enquiry.call_sid == sid(8))
    assert [(entry.at, entry.actor, entry.action, json.loads(entry.detail).get("enquiry"))
            for entry in stored(db_session, AuditEntry) if entry.action.startswith("enquiry.")] == [
        (at(10, 5), "alice", "enquiry.concluded", reference),
        (at(10, 7), "alice", "enquiry.concluded_undone", reference),
        (at(10, 9), "alice", "enquiry.concluded", reference)]
    add_agent(app, "ada", "Ada Auditor", phone=None, role="auditor")
    adas = app.test_client()
    sign_in(adas, "ada", PASSWORD)
    story = words(text_of(adas.get(f"/enquiries/{reference}")))
    steps = re.findall(r"(?:Recorded as concluded on the call|Concluded undone) By [^.]*\.", story)
    assert steps == ["Recorded as concluded on the call By alice (audit log).", "Concluded undone By alice (audit log).",
                     "Recorded as concluded on the call By alice (audit log)."]
    audit_page = words(text_of(adas.get("/audit?what=enquiries&from=2026-11-24&to=2026-11-24")))
    assert audit_page.count(f"alice (Agent) Recorded as concluded on the call: {reference}") == 2, audit_page

    # One concluded before 0.27.0 has no audit entry: its story says the last, from the enquiry.
    answer_a_call(client, clock, 9, at(10, 10))
    act(client, f"/queue/calls/{sid(9)}/concluded")
    older = next(enquiry.reference for enquiry in stored(db_session, Enquiry) if enquiry.call_sid == sid(9))
    with db_session.begin():
        db_session.execute(delete(AuditEntry).where(AuditEntry.detail.contains(older)))
    story = words(text_of(adas.get(f"/enquiries/{older}")))
    assert re.findall(r"Recorded as concluded on the call By [^.]*\.", story) == [
        "Recorded as concluded on the call By Alice Agent."]


def test_a_missed_call_cannot_be_recorded_as_concluded_or_as_needing_a_callback(alice, client, clock, db_session):
    miss_a_call(client, clock, 9, at(10, 0))  # its callback is owed automatically
    for action in ("concluded", "callback"):
        page = text_of(act(client, f"/queue/calls/{sid(9)}/{action}"))
        assert "This call was not answered: its callback, if one is owed, is on the queue." in page
    with db_session.begin():
        assert db_session.scalar(select(Enquiry.status).where(Enquiry.call_sid == sid(9))) == "open"  # as it was
    [callback] = stored(db_session)
    assert (callback.reason, callback.status) == ("abandoned", "open")


def test_a_call_the_desk_has_no_record_of_cannot_be_recorded_as_concluded_or_as_needing_a_callback(
        alice, client, clock, db_session):
    answer_a_call(client, clock, 8, at(10, 0))
    for action in ("concluded", "callback"):
        page = text_of(act(client, f"/queue/calls/{sid(99)}/{action}", note="Grant form"))
        assert "There is no such call." in page
    assert stored(db_session) == []


def test_an_enquiry_concluded_once_is_not_concluded_again(alice, client, clock, db_session):
    answer_a_call(client, clock, 8, at(10, 0))
    act(client, f"/queue/calls/{sid(8)}/concluded")
    page = text_of(act(client, f"/queue/calls/{sid(8)}/concluded"))
    assert "This enquiry is already recorded as concluded." in page


def row_header(reference: str) -> str:
    """A reference as the agents' page's tables list it: its row's header, with the heading its card shows."""
    return (f'<th scope="row" role="rowheader"><span class="cell-heading" aria-hidden="true">Enquiry</span>'
            f'<span class="reference">{reference}</span></th>')


def table_rows(page: str, table_class: str, prefix: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """A table's rows in order, each as its id without the prefix and its cells: the heading its card
    shows, and its text."""
    table = page[page.index(f'<table class="calls {table_class} cards"'):]
    table = table[:table.index("</table>")]
    return [(found.group(1), [(heading.group(1) if (heading := re.search(CELL_HEADING, cell)) else "",
                               words(cell))
                              for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", found.group(2), re.S)])
            for found in re.finditer(rf'<tr id="{prefix}([^"]+)"[^>]*>(.*?)</tr>', table, re.S)]


def awaiting_rows(page: str) -> list[tuple[str, ...]]:
    """The answered calls awaiting an outcome, in order: each row's call and its cells' text."""
    return [(call, *(text for _, text in cells)) for call, cells in table_rows(page, "awaiting", "call-")]


def awaiting_caption(page: str) -> str:
    return words(re.search(r'<caption id="awaiting-caption">(.*?)</caption>', page, re.S).group(1))


def answered_on(client, clock, phones: dict[int, str]) -> str:
    """Call n answered on the phone phones[n] at 09:00 and 10n minutes; the agents' page at 11:00."""
    for n, phone in phones.items():
        answer_a_call(client, clock, n, at(9, 0) + timedelta(minutes=10 * n), on=phone)
    clock.now = at(11, 0)
    return text_of(client.get("/queue"))


def taken_by(page: str) -> list[tuple[str, str]]:
    """Each answered call awaiting an outcome on the agents' page: its SID and who answered it."""
    return [(row[0], row[-2]) for row in awaiting_rows(page)]


def test_answered_calls_the_agent_took_come_first_and_each_says_who_answered_it(app, alice, client, clock):
    add_agent(app, "bob", "Bob Agent", phone="+447700900666")
    add_agent(app, "carol", "Carol Agent", phone="+447700900777")
    add_agent(app, "dave", "Dave Agent", phone="+447700900777")  # a phone two share
    phones = {1: AGENT_PHONE, 2: "client:Alice", 3: "client:agent-1", 4: "+447700900666",
              5: "+447700900999", 6: "+447700900777"}
    page = answered_on(client, clock, phones)
    # Alice's own (on her phone, and on her Client identity) first, then the rest; newest first in each.
    assert taken_by(page) == [
        (sid(2), "You"), (sid(1), "You"), (sid(6), "Carol Agent or Dave Agent"), (sid(5), "•••••••• 999"),
        (sid(4), "Bob Agent"), (sid(3), "client:agent-1")]
    assert '<th scope="col" role="columnheader">Answered by</th>' in page
    assert awaiting_caption(page) == ("Calls answered yesterday or today whose enquiry is still open: 6. "
                                      "The 2 you answered come first. Times are UK time.")

    daves = app.test_client()
    sign_in(daves, "dave", PASSWORD)
    page = text_of(daves.get("/queue"))
    assert taken_by(page)[:2] == [
        (sid(6), "You or Carol Agent"), (sid(5), "•••••••• 999")]
    assert "The one you answered comes first." in awaiting_caption(page)


def test_a_sip_address_whose_user_part_is_an_agents_number_names_them_and_puts_theirs_first(app, alice, client, clock,
                                                                                           db_session):
    from tests.integration.test_calls_page import rows as calls_rows

    add_agent(app, "bob", "Bob Agent", phone="+447700900666")
    add_agent(app, "mona", "Mona Manager", phone=None, role="manager")
    phones = {1: f"sip:{AGENT_PHONE}@pbx.example.org;transport=tls", 2: "SIP:+447700900666@PBX.example.org",
              3: "sip:1001@pbx.example.org", 4: "sip:+447700900999@pbx.example.org",
              5: f"sip:{AGENT_PHONE}0@pbx.example.org", 6: f"sip:x{AGENT_PHONE}@pbx.example.org"}
    page = answered_on(client, clock, phones)
    assert taken_by(page) == [
        (sid(1), "You"), (sid(6), "sip:x•••••••• 555@pbx.example.org"), (sid(5), "sip:•••••••• 550@pbx.example.org"),
        (sid(4), "sip:•••••••• 999@pbx.example.org"), (sid(3), "sip:1001@pbx.example.org"), (sid(2), "Bob Agent")]
    assert "The one you answered comes first." in awaiting_caption(page)

    monas = app.test_client()
    sign_in(monas, "mona", PASSWORD)
    calls = calls_rows(monas.get("/calls?day=2026-11-24").get_data(as_text=True))
    assert [row[6] for row in calls][-2:] == ["Bob Agent", "Alice Agent"]
    first = next(enquiry for enquiry in stored(db_session, Enquiry) if enquiry.call_sid == sid(1))
    assert "Taken by Alice Agent (sip:•••••••• 555@pbx.example.org;transport=tls)." in text_of(
        monas.get(f"/enquiries/{first.reference}"))


def test_a_desk_phones_sip_address_names_its_agent_with_any_parameters_and_puts_their_calls_first(
        app, alice, client, clock):
    from helpdesk.users import set_phone

    with app.extensions["helpdesk.db"].session() as session:
        set_phone(session, "alice", "SIP:1001@PBX.example.org;transport=tls", now=at(8, 0))
    # An underscore is a wildcard to SQL's LIKE: bob's extension must not take 1071.
    add_agent(app, "bob", "Bob Agent", phone="sip:10_1@pbx.example.org")
    phones = {1: "sip:1001@pbx.example.org", 2: "SIP:1001@PBX.example.org;transport=udp",
              3: "sip:1001@pbx.example.org?X-Team=help-desk", 4: "sip:10011@pbx.example.org",
              5: "sip:1001@pbx.example.org.example.net", 6: "sip:1001@other.example.org",
              7: "sip:1071@pbx.example.org;transport=tls"}
    page = answered_on(client, clock, phones)
    assert taken_by(page) == [
        (sid(3), "You"), (sid(2), "You"), (sid(1), "You"), (sid(7), "sip:1071@pbx.example.org;transport=tls"),
        (sid(6), "sip:1001@other.example.org"), (sid(5), "sip:1001@pbx.example.org.example.net"),
        (sid(4), "sip:10011@pbx.example.org")]
    assert "The 3 you answered come first." in awaiting_caption(page)

    bobs = app.test_client()
    sign_in(bobs, "bob", PASSWORD)
    page = text_of(bobs.get("/queue"))
    assert [row[0] for row in awaiting_rows(page)] == [sid(n) for n in (7, 6, 5, 4, 3, 2, 1)]
    assert "you answered" not in awaiting_caption(page)


def test_a_phone_that_changed_hands_names_whoever_had_it_when_each_call_was_answered(app, alice, client, clock,
                                                                                    db_session):
    from helpdesk.users import set_phone
    from tests.integration.test_calls_page import rows as calls_rows

    add_agent(app, "bob", "Bob Agent", phone=None)
    add_agent(app, "mona", "Mona Manager", phone=None, role="manager")
    answer_a_call(client, clock, 1, at(9, 0), on=AGENT_PHONE)  # answered at 09:00:06, on Alice's phone
    with app.extensions["helpdesk.db"].session() as session:  # at 09:30 Bob takes it, Alice takes another
        set_phone(session, "alice", "+447700900444", now=at(9, 30))
        set_phone(session, "bob", AGENT_PHONE, now=at(9, 30))
    answer_a_call(client, clock, 2, at(9, 29) + timedelta(seconds=54), on=AGENT_PHONE)  # at 09:30:00: Bob's
    answer_a_call(client, clock, 3, at(10, 0), on=AGENT_PHONE)
    answer_a_call(client, clock, 4, at(10, 10), on="+447700900444")
    clock.now = at(11, 0)

    # Alice's, on either phone while it was hers, come first for her; Bob's for him.
    page = text_of(client.get("/queue"))
    assert taken_by(page) == [
        (sid(4), "You"), (sid(1), "You"), (sid(3), "Bob Agent"), (sid(2), "Bob Agent")]
    bobs = app.test_client()
    sign_in(bobs, "bob", PASSWORD)
    assert taken_by(text_of(bobs.get("/queue"))) == [
        (sid(3), "You"), (sid(2), "You"), (sid(4), "Alice Agent"), (sid(1), "Alice Agent")]

    # The Calls page and the enquiry's page name the same.
    monas = app.test_client()
    sign_in(monas, "mona", PASSWORD)
    calls = calls_rows(monas.get("/calls?day=2026-11-24").get_data(as_text=True))
    assert [row[6] for row in calls] == ["Alice Agent", "Bob Agent", "Bob Agent", "Alice Agent"]
    first = next(enquiry for enquiry in stored(db_session, Enquiry) if enquiry.call_sid == sid(1))
    assert "Taken by Alice Agent (•••••••• 555)." in text_of(monas.get(f"/enquiries/{first.reference}"))

    # Alice's phone before is kept, and when she had it (from before the time was kept).
    assert [(former.phone, former.since, former.until) for former in stored(db_session, FormerPhone)] == [
        (AGENT_PHONE, None, at(9, 30))]
    assert [(user.username, user.phone_since) for user in stored(db_session, User)] == [
        ("alice", at(9, 30)), ("bob", at(9, 30)), ("mona", None)]


def test_a_phone_set_after_calls_were_answered_on_it_names_its_user_once_told_since_when(app, alice, client, clock,
                                                                                        db_session):
    from helpdesk.users import set_phone
    from tests.integration.test_calls_page import rows as calls_rows

    add_agent(app, "bob", "Bob Agent", phone=None)
    add_agent(app, "mona", "Mona Manager", phone=None, role="manager")
    bobs_phone = "+447700900777"
    answer_a_call(client, clock, 1, at(8, 59), on=bobs_phone)  # answered at 08:59:06
    answer_a_call(client, clock, 2, at(9, 30), on=bobs_phone)
    clock.now = at(11, 0)
    monas, bobs = app.test_client(), app.test_client()
    sign_in(monas, "mona", PASSWORD)
    sign_in(bobs, "bob", PASSWORD)

    def answered_by() -> tuple[list[str], list[tuple[str, str]], str]:
        calls = calls_rows(monas.get("/calls?day=2026-11-24").get_data(as_text=True))
        queue_page = taken_by(text_of(bobs.get("/queue")))
        second = next(enquiry for enquiry in stored(db_session, Enquiry) if enquiry.call_sid == sid(2))
        story = text_of(monas.get(f"/enquiries/{second.reference}"))
        return [row[6] for row in calls], queue_page, story

    # Set now, the phone was nobody's when the calls were answered.
    with app.extensions["helpdesk.db"].session() as session:
        set_phone(session, "bob", bobs_phone, now=clock.now)
    calls, queue_page, story = answered_by()
    assert calls == ["•••••••• 777", "•••••••• 777"]
    assert queue_page == [(sid(2), "•••••••• 777"), (sid(1), "•••••••• 777")]
    assert "Taken on •••••••• 777." in story

    # Told he has had it since 09:00: the call answered since then is his, the one before is not.
    with app.extensions["helpdesk.db"].session() as session:
        set_phone(session, "bob", bobs_phone, now=clock.now, since=at(9, 0))
    calls, queue_page, story = answered_by()
    assert calls == ["Bob Agent", "•••••••• 777"]  # newest first
    assert queue_page == [(sid(2), "You"), (sid(1), "•••••••• 777")]
    assert "Taken by Bob Agent (•••••••• 777)." in story
    assert [user.phone_since for user in stored(db_session, User) if user.username == "bob"] == [at(9, 0)]
    assert stored(db_session, FormerPhone) == []


def test_a_leavers_phone_names_them_for_the_calls_they_took_and_nobody_after_until_it_is_given_on(
        app, alice, client, clock, db_session):
    from helpdesk.users import UserError, deactivate, reactivate, set_phone
    from tests.integration.test_calls_page import rows as calls_rows

    add_agent(app, "bob", "Bob Agent", phone=None)
    add_agent(app, "mona", "Mona Manager", phone=None, role="manager")
    answer_a_call(client, clock, 1, at(9, 0), on=AGENT_PHONE)  # Alice's, before she leaves at 09:30
    with app.extensions["helpdesk.db"].session() as session:
        assert deactivate(session, "alice", now=at(9, 30))[1]  # her phone freed
    answer_a_call(client, clock, 2, at(9, 40), on=AGENT_PHONE)  # on the phone she left behind
    with app.extensions["helpdesk.db"].session() as session:
        set_phone(session, "bob", AGENT_PHONE, now=at(10, 0))  # Bob is given it at 10:00
    answer_a_call(client, clock, 3, at(10, 10), on=AGENT_PHONE)
    clock.now = at(11, 0)
    monas, bobs = app.test_client(), app.test_client()
    sign_in(monas, "mona", PASSWORD)
    sign_in(bobs, "bob", PASSWORD)

    def answered_by() -> tuple[list[str], list[tuple[str, str]]]:
        calls = calls_rows(monas.get("/calls?day=2026-11-24").get_data(as_text=True))
        return [row[6] for row in calls], taken_by(text_of(bobs.get("/queue")))

    # Hers until she left, nobody's until Bob had it: never "Alice Agent or Bob Agent".
    assert answered_by() == (["Bob Agent", "•••••••• 555", "Alice Agent"],
                             [(sid(3), "You"), (sid(2), "•••••••• 555"), (sid(1), "Alice Agent")])
    assert [(former.user_id, former.phone, former.since, former.until)
            for former in stored(db_session, FormerPhone)] == [(1, AGENT_PHONE, None, at(9, 30))]
    assert [(user.username, user.phone, user.phone_since) for user in stored(db_session, User)] == [
        ("alice", None, None), ("bob", AGENT_PHONE, at(10, 0)), ("mona", None, None)]
    [left] = [entry for entry in stored(db_session, AuditEntry) if entry.action == "user.deactivated"]
    assert (left.at, json.loads(left.detail)["phone_freed"]) == (at(9, 30), True)

    # Deactivated, she is given no phone; reactivated, she has none until given one, and the calls stay as they were.
    with app.extensions["helpdesk.db"].session() as session:
        with pytest.raises(UserError, match="'alice' is deactivated: reactivate them first, then give them a phone"):
            set_phone(session, "alice", "+447700900444", now=at(10, 30))
        reactivate(session, "alice")
    assert [user.phone for user in stored(db_session, User)] == [None, AGENT_PHONE, None]
    assert answered_by()[0] == ["Bob Agent", "•••••••• 555", "Alice Agent"]


@pytest.mark.parametrize(("shown", "whose", "says"), [
    (2, "alice", "open: 3, 2 shown: the one you answered first, then the newest."),
    (2, "bob", "open: 3, newest 2 shown."),
    (3, "bob", "open: 3."),
])
def test_the_caption_says_how_the_answered_calls_shown_were_chosen(app, client, clock, monkeypatch, shown, whose, says):
    from callbacks import blueprint

    add_agent(app, "alice", "Alice Agent")
    add_agent(app, "bob", "Bob Agent", phone=None)
    for n in range(3):
        answer_a_call(client, clock, n, at(9, n), on=AGENT_PHONE if n == 0 else "client:agent-1")
    clock.now = at(10)
    monkeypatch.setattr(blueprint, "AWAITING_SHOWN", shown)
    sign_in(client, whose, PASSWORD)

    page = text_of(client.get("/queue"))

    assert awaiting_caption(page) == f"Calls answered yesterday or today whose enquiry is still {says} Times are UK time."
    assert len(awaiting_rows(page)) == shown


def test_an_agents_own_calls_are_shown_however_many_newer_calls_wait(alice, client, clock, db_session):
    from helpdesk.pages.taken_by import own_holdings, read_phone_book

    for n in range(5):
        answer_a_call(client, clock, n, at(9, n), on=AGENT_PHONE if n < 2 else "client:someone-else")
    db_session.rollback()
    user = next(user for user in stored(db_session, User) if user.username == "alice")

    with db_session.begin():
        book = read_phone_book(db_session)
    awaiting = queue.awaiting_outcome(db_session, at(9).date(), limit=3, yours=own_holdings(book, user.id))

    assert [call.call_sid for call in awaiting.calls] == [sid(1), sid(0), sid(4)]
    assert (awaiting.count, awaiting.yours) == (5, 2)
    nobodys = queue.awaiting_outcome(db_session, at(9).date(), limit=3)
    assert ([call.call_sid for call in nobodys.calls], nobodys.yours) == ([sid(4), sid(3), sid(2)], 0)


def test_with_no_call_saying_who_took_it_there_is_no_answered_by_column(alice, client, clock):
    clock.now = at(9, 0)
    post(client, "/twilio/voice/incoming", inbound(sid(1)))
    clock.now = at(9, 0) + timedelta(seconds=18)
    post(client, "/twilio/voice/dequeue", {"CallSid": sid(1), "QueueTime": "18", "DequeingCallSid": sid(901)})
    clock.now = at(10, 0)

    page = text_of(client.get("/queue"))

    assert [row[0] for row in awaiting_rows(page)] == [sid(1)]
    assert "Answered by" not in page


def test_answered_calls_awaiting_an_outcome_stay_listed_from_the_last_opening_day_before_today(
        app, alice, client, clock):
    answer_a_call(client, clock, 2, at(16, 0) - timedelta(days=4))  # Friday 20 November
    answer_a_call(client, clock, 1, at(17, 55) - timedelta(days=1))  # Monday 23, just before closing
    answer_a_call(client, clock, 3, at(9, 0))  # Tuesday 24 November, the test day
    clock.now = at(10, 0)

    def awaiting(page: str) -> tuple[list[str], str]:
        rows = re.findall(r'<tr id="call-(CA[0-9a-f]+)"', page)
        caption = re.search(r'<caption id="awaiting-caption">(.*?)</caption>', page, re.S)
        return rows, " ".join(re.sub(r"<[^>]+>", "", caption.group(1) if caption else "").split())

    page = text_of(client.get("/queue"))
    assert awaiting(page) == ([sid(3), sid(1)], "Calls answered yesterday or today whose enquiry is still "
                                                 "open: 2. Times are UK time.")
    assert re.search(rf'<tr id="call-{sid(1)}"[^>]*>\s*<td[^>]*>{CELL_HEADING}'
                     r'<time datetime="2026-11-23T17:55:00\+00:00">17:55 yesterday</time>', page)

    answer_a_call(client, clock, 4, at(17, 50) + timedelta(days=3))  # Friday 27 November
    clock.now = at(8, 30) + timedelta(days=6)  # Monday 30 November, before anyone has answered a call
    sign_in(client, "alice", PASSWORD)  # a session ends 12 hours after signing in
    page = text_of(client.get("/queue"))
    assert awaiting(page) == ([sid(4)], "Calls answered since Friday 27 November 2026 whose enquiry is still "
                                        "open: 1. Times are UK time.")
    act(client, f"/queue/calls/{sid(4)}/concluded")
    assert "No calls answered since Friday 27 November 2026 are waiting for an outcome." in text_of(
        client.get("/queue"))


def test_older_calls_with_no_outcome_are_shown_on_request_and_can_still_be_recorded(
        app, alice, client, clock, db_session):
    answer_a_call(client, clock, 1, at(11, 0) - timedelta(days=29))  # Monday 26 October: too old
    answer_a_call(client, clock, 2, at(11, 0) - timedelta(days=28))  # Tuesday 27 October
    answer_a_call(client, clock, 3, at(15, 0) - timedelta(days=10))  # Saturday 14 November
    answer_a_call(client, clock, 4, at(9, 0))  # today
    clock.now = at(10, 0)

    page = text_of(client.get("/queue"))
    assert [row[0] for row in awaiting_rows(page)] == [sid(4)]
    assert '<a href="/queue?older=yes#awaiting">Show older calls too</a>: those answered in the last 28 days ' \
           'whose outcome nobody recorded.' in page

    older = text_of(client.get("/queue?older=yes"))
    assert [row[0] for row in awaiting_rows(older)] == [sid(4), sid(3), sid(2)]
    assert awaiting_caption(older).startswith("Calls answered since Tuesday 27 October 2026 whose enquiry is still "
                                              "open: 3.")
    assert '<a href="/queue#awaiting">Show only the calls answered yesterday or today</a>' in older
    # The live list and every action keep the older calls shown.
    assert 'data-items-url="/queue/items?older=yes"' in older
    assert [row[0] for row in awaiting_rows(text_of(client.get("/queue/items?older=yes")))] == [sid(4), sid(3), sid(2)]
    assert f'action="/queue/calls/{sid(3)}/concluded?older=yes"' in older
    assert re.findall(r'href="(/queue[^"#]*only=[^"]*)"', older) == [  # the filters too
        "/queue?only=mine&older=yes", "/queue?only=free&older=yes"]

    token = csrf_token(client, "/queue?older=yes")
    done = client.post(f"/queue/calls/{sid(2)}/concluded?older=yes", data={"csrf_token": token})
    assert done.status_code == 302 and done.headers["Location"] == "/queue?older=yes#awaiting-said"
    owed = client.post(f"/queue/calls/{sid(3)}/callback?older=yes", data={"csrf_token": token, "note": "Forgot"},
                       follow_redirects=True)
    assert "That is already past: call them now." in words(text_of(owed))
    [callback] = stored(db_session)
    assert (callback.reason, callback.call_sid, callback.owed_from) == ("not_concluded", sid(3), at(15, 0) - timedelta(days=10))
    assert callback.due_at < clock.now
    # Both outcomes say when they were recorded, for the evidence pack: today, not the calls' days.
    assert {enquiry.call_sid: enquiry.outcome_recorded_at for enquiry in stored(db_session, Enquiry)
            if enquiry.outcome_recorded_at} == {sid(2): clock.now, sid(3): clock.now}
    assert [row[0] for row in awaiting_rows(text_of(client.get("/queue?older=yes")))] == [sid(4)]


def test_older_yes_is_the_only_value_that_shows_older_calls(alice, client, clock):
    answer_a_call(client, clock, 3, at(15, 0) - timedelta(days=10))
    clock.now = at(10, 0)
    for asked in ("no", "1", "YES", "<script>"):
        page = text_of(client.get("/queue", query_string={"older": asked}))
        assert "No calls answered yesterday or today are waiting for an outcome." in page
        assert 'data-items-url="/queue/items"' in page and "Show older calls too" in page


def test_the_sweeps_recent_warnings_and_breaches_are_shown(app, alice, client, clock, settings, three_callbacks, db_session):
    first = reference(db_session, three_callbacks[sid(1)])
    second = reference(db_session, three_callbacks[sid(2)])
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, clock.now)
    page = text_of(client.get("/queue"))
    notices = page[page.index('id="notices-title"'):page.index('id="queue-live"')]
    # 15 minutes were left when the sweep first saw the second: its 30-minute warning says so.
    assert (f'Breached: <span class="reference">{first}</span>' in notices
            and f'Due in 15 minutes: <span class="reference">{second}</span>' in notices)
    clock.now += timedelta(hours=25)
    sign_in(client, "alice", PASSWORD)  # a session ends 12 hours after signing in
    assert "No warnings or breaches in the last 24 hours." in text_of(client.get("/queue"))


def test_a_callback_still_counts_as_overdue_once_the_sweep_has_recorded_its_breach(app, alice, client, settings,
                                                                                  three_callbacks, clock):
    with app.extensions["helpdesk.db"].session() as session:
        assert (three_callbacks[sid(1)].id, "breach") in sweep(session, settings, clock.now).recorded
    page = text_of(client.get("/queue"))
    assert "3 open callbacks: 1 overdue, 1 due soon." in words(page)
    assert re.match(r'\s*<div class="queue-items" data-open="3" data-overdue="1"', text_of(client.get("/queue/items")))


def test_a_callback_tried_in_time_is_no_longer_counted_as_due_soon(alice, client, clock, three_callbacks):
    second = three_callbacks[sid(2)].id  # due 13:40: 15 minutes left
    act(client, f"/queue/{second}/attempts", started_at=local(clock.now).strftime("%Y-%m-%dT%H:%M"),
        outcome="no_answer")
    page = text_of(client.get("/queue"))
    assert "3 open callbacks: 1 overdue, 0 due soon." in words(page)
    assert "state-met" in item(page, second)


def test_the_items_route_returns_the_list_alone_for_the_live_update(alice, client, three_callbacks):
    response = client.get("/queue/items")
    fragment = text_of(response)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert re.match(r'\s*<div class="queue-items" data-open="3" data-overdue="1"\s+data-due-soon="1"', fragment)
    assert "<html" not in fragment and "<h1" not in fragment
    assert all(f'id="callback-{c.id}"' in fragment for c in three_callbacks.values())
    assert re.search(r'data-poll-seconds="15"', text_of(client.get("/queue")))


def test_the_pages_title_counts_what_is_overdue_and_due_soon_for_the_browsers_tab(alice, client, clock,
                                                                                  three_callbacks):
    def title() -> str:
        return re.search(r"<title>(.*?)</title>", text_of(client.get("/queue")), re.S).group(1)

    def fragment_title() -> str:
        return re.search(r'<div class="queue-items"[^>]* data-title="([^"]*)"', text_of(client.get("/queue/items")))[1]

    # Due 13:00, 13:40 and 14:30; warned 30 minutes before.
    assert title().startswith("(1 overdue, 1 due soon) Callback queue – ")
    assert fragment_title() == "(1 overdue, 1 due soon) Callback queue"
    clock.now = at(12, 45)
    assert title().startswith("(1 due soon) Callback queue – ") and fragment_title() == "(1 due soon) Callback queue"
    clock.now = at(14, 31)
    assert title().startswith("(3 overdue) Callback queue – ") and fragment_title() == "(3 overdue) Callback queue"
    clock.now = at(12, 0)
    assert title().startswith("Callback queue – ") and fragment_title() == "Callback queue"


def test_the_items_route_leaves_out_the_parts_the_page_already_shows_as_they_are(alice, client, three_callbacks):
    def parts(html: str) -> dict[str, str]:
        return dict(re.findall(r'<div class="(queue|awaiting|emails)-items"[^>]*? data-signature="([0-9a-f]+)"', html))

    everything = parts(text_of(client.get("/queue/items")))
    assert sorted(everything) == ["awaiting", "emails", "queue"]
    have = ",".join(f"{part}:{signature}" for part, signature in everything.items())
    response = client.get(f"/queue/items?have={have}")
    assert response.status_code == 200 and parts(text_of(response)) == {}
    assert 'id="callback-' not in text_of(response)
    # One changed (a claim): it alone comes back, with its new signature.
    act(client, f"/queue/{three_callbacks[sid(1)].id}/claim")
    changed = parts(text_of(client.get(f"/queue/items?have={have}")))
    assert list(changed) == ["queue"] and changed["queue"] != everything["queue"]
    # An old signature, a part it does not know, or nonsense: those parts come back whole.
    assert sorted(parts(text_of(client.get(f"/queue/items?have=emails:{'0' * 16},x:y,awaiting")))) == [
        "awaiting", "emails", "queue"]
    for nonsense in ("::::", "%00", "a" * 5000, ",,,"):
        response = client.get(f"/queue/items?have={nonsense}")
        assert response.status_code == 200 and sorted(parts(text_of(response))) == ["awaiting", "emails", "queue"]


def test_callbacks_owed_to_the_same_number_name_each_other(alice, client, clock, three_callbacks, db_session):
    """The three were missed from one number; a fourth from another number names none."""
    miss_a_call(client, clock, 4, at(11, 0), caller="+447700900456")
    clock.now = at(13, 25)
    first, second, third = (three_callbacks[sid(n)] for n in (1, 2, 3))
    [other] = [c for c in stored(db_session) if c.id not in {first.id, second.id, third.id}]
    refs = {c.id: reference(db_session, c) for c in (first, second, third)}
    page = text_of(client.get("/queue"))
    entry = item(page, first.id)
    assert "<dt>Same number</dt>" in entry
    assert (f'<a href="#callback-{second.id}"><span class="reference">{refs[second.id]}</span></a>, due <time '
            f'datetime="2026-11-24T13:40:00+00:00">13:40 today</time>; <a href="#callback-{third.id}"><span '
            f'class="reference">{refs[third.id]}</span></a>') in entry
    assert refs[first.id] not in re.search(r'<div class="same-number">.*?</div>', entry, re.S).group(0)  # not itself
    assert "One call back can serve them all: log it on each." in entry
    assert "Same number" not in item(page, other.id)
    # One not on the page is named, not linked to; once one is closed, the others stop naming it.
    assert f"{refs[third.id]}</a>" not in item(text_of(client.get("/queue?show=2")), first.id)
    act(client, f"/queue/{third.id}/attempts", started_at=local(clock.now).strftime("%Y-%m-%dT%H:%M"),
        outcome="failed")
    act(client, f"/queue/{third.id}/close", outcome="unreachable", note="Number not in service")
    entry = item(text_of(client.get("/queue?show=2")), first.id)
    assert refs[third.id] not in entry and "One call back can serve both: log it on each." in entry


def test_a_long_queue_shows_the_first_ones_with_a_link_to_more(app, alice, client, three_callbacks):
    page = text_of(client.get("/queue?show=2"))
    assert len(re.findall(r'<li class="queue-item', page)) == 2
    assert "Showing the first 2, earliest due first." in page and 'href="/queue?show=202"' in page


def listed(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<li class="queue-item[^"]*" id="callback-(\d+)"', page)]


def test_the_list_can_show_only_your_claims_or_those_nobody_has_claimed(app, alice, client, three_callbacks):
    first, second, third = (three_callbacks[sid(n)].id for n in (1, 2, 3))
    act(client, f"/queue/{third}/claim")
    bob = app.test_client()
    add_agent(app, "bob", "Bob Builder")
    sign_in(bob, "bob", PASSWORD)
    act(bob, f"/queue/{first}/claim")

    page = text_of(client.get("/queue?only=mine"))
    assert listed(page) == [third]
    assert re.search(r'<a href="/queue\?only=mine" id="queue-filter-mine" aria-current="page">Claimed by you \(1\)</a>',
                     page)
    assert ">All open (3)</a>" in page and ">Not claimed (1)</a>" in page
    assert "3 open callbacks: 1 overdue, 1 due soon." in words(page)
    assert listed(text_of(client.get("/queue?only=free"))) == [second]
    assert listed(text_of(bob.get("/queue?only=mine"))) == [first]
    assert listed(text_of(client.get("/queue?only=nonsense"))) == [first, second, third]
    # The live list keeps the filter, as does every form on the page.
    assert 'data-items-url="/queue/items?only=mine"' in page
    assert f'action="/queue/{third}/release?only=mine"' in page
    assert listed(text_of(client.get("/queue/items?only=free"))) == [second]


def test_an_action_comes_back_to_the_filtered_list(alice, client, three_callbacks):
    second = three_callbacks[sid(2)].id
    token = csrf_token(client, "/queue?only=free")
    response = client.post(f"/queue/{second}/claim?only=free&show=2", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/queue?show=2&only=free#")
    page = text_of(client.get(response.headers["Location"]))
    assert second not in listed(page)  # claimed, so no longer "not claimed"; what was said is at the top
    assert "You have claimed" in page and "It is now under “Claimed by you”." in page
    assert f'<a href="/queue?show=2&only=mine#callback-{second}" id="callback-{second}-link">Go to it</a>' in page


def test_an_empty_filter_says_so(alice, client, three_callbacks):
    page = text_of(client.get("/queue?only=mine"))
    assert listed(page) == [] and "You have not claimed any open callbacks." in page
    assert '<a href="/queue?only=free">See those not claimed</a>' in page


def test_a_long_filtered_list_links_to_more_of_the_same(alice, client, three_callbacks):
    page = text_of(client.get("/queue?only=free&show=2"))
    assert len(listed(page)) == 2
    assert "Showing the first 2 of 3, earliest due first." in page
    assert 'href="/queue?show=202&amp;only=free"' in client.get("/queue?only=free&show=2").get_data(as_text=True)


def test_a_form_sent_after_signing_out_in_another_tab_of_the_same_browser_says_so_too(
        app, alice, client, three_callbacks, db_session):
    """The same browser shares the session, so signing out cleared the form's token as well."""
    token = csrf_token(client, "/queue?only=mine")
    client.post("/logout", data={"csrf_token": csrf_token(client, "/queue")})
    first = three_callbacks[sid(1)].id
    response = client.post(f"/queue/{first}/claim?only=mine", data={"csrf_token": token},
                           headers={"Referer": "http://localhost/queue?only=mine"})
    assert response.status_code == 302, text_of(response)[:300]
    assert response.headers["Location"] == "/login?next=%2Fqueue%3Fonly%3Dmine"
    assert "You were signed out, so that was not done." in text_of(client.get(response.headers["Location"]))
    assert all(c.claimed_by_id is None for c in stored(db_session))
    # Signing out again from a stale page just goes to the sign-in page.
    again = client.post("/logout", data={"csrf_token": token})
    assert again.status_code == 302 and again.headers["Location"] == "/login"


def test_a_form_sent_after_signing_out_elsewhere_says_so_and_comes_back_to_the_queue_page(
        app, alice, client, three_callbacks, db_session):
    token = csrf_token(client, "/queue?only=mine")
    other_tab = app.test_client()
    sign_in(other_tab, "alice", PASSWORD)
    other_tab.post("/logout", data={"csrf_token": csrf_token(other_tab, "/queue")})
    first = three_callbacks[sid(1)].id
    response = client.post(f"/queue/{first}/claim?only=mine", data={"csrf_token": token},
                           headers={"Referer": "http://localhost/queue?only=mine"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fqueue%3Fonly%3Dmine"  # not the claim address
    assert "You were signed out, so that was not done." in text_of(client.get(response.headers["Location"]))
    assert all(c.claimed_by_id is None for c in stored(db_session))


def test_a_form_without_its_csrf_token_is_refused(alice, client, three_callbacks, db_session):
    response = client.post(f"/queue/{three_callbacks[sid(1)].id}/claim")
    assert response.status_code == 400
    assert all(c.claimed_by_id is None for c in stored(db_session))


@pytest.mark.parametrize("role,status", [("auditor", 403), ("manager", 200), ("admin", 200)])
def test_only_agents_managers_and_admins_see_the_queue(app, client, role, status):
    add_agent(app, "someone", "Someone", role=role)
    sign_in(client, "someone", PASSWORD)
    assert client.get("/queue").status_code == status
    assert client.get("/queue/items").status_code == status


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get("/queue")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_an_agent_signing_in_starts_on_the_queue(app, client):
    add_agent(app, "dave", "Dave")
    assert sign_in(client, "dave", PASSWORD).headers["Location"] == "/queue"
    assert 'href="/queue" aria-current="page"' in text_of(client.get("/queue"))


@pytest.mark.parametrize("callback_id", ["999999", str(2 ** 31), str(2 ** 63), "9" * 30, "\u0661\u0662"])
@pytest.mark.parametrize("action", ["claim", "release", "call", "attempts", "close"])
def test_an_id_no_row_can_have_is_a_404_not_a_failure(alice, client, three_callbacks, db_session, callback_id, action):
    before = [(c.id, c.status, c.claimed_by_id) for c in stored(db_session)]
    response = client.post(f"/queue/{callback_id}/{action}", data={"csrf_token": csrf_token(client, "/queue")})
    assert response.status_code == 404
    assert [(c.id, c.status, c.claimed_by_id) for c in stored(db_session)] == before


@pytest.mark.parametrize("path", [f"/queue/emails/{2 ** 63}/answered", f"/queue/emails/acknowledgements/{2 ** 64}/retry"])
def test_an_email_id_no_row_can_have_is_a_404(alice, client, path):
    response = client.post(path, data={"csrf_token": csrf_token(client, "/queue")})
    assert response.status_code == 404


@pytest.mark.parametrize("note", ["Rang\x00 twice", "No answer \x1b[31m", "x\x0by"])
def test_a_note_with_a_control_character_is_refused_and_nothing_is_stored(alice, client, three_callbacks, db_session,
                                                                          note):
    callback = three_callbacks[sid(2)]
    page = text_of(act(client, f"/queue/{callback.id}/close", outcome="withdrawn", note=note))
    assert "The note has a control character in it" in page
    [after] = [c for c in stored(db_session) if c.id == callback.id]
    assert after.status == "open"
    page = text_of(act(client, f"/queue/{callback.id}/attempts", started_at="", outcome="no_answer", note=note))
    assert stored(db_session, CallbackAttempt) == []


def test_a_note_of_the_longest_length_is_kept_and_a_longer_one_refused(alice, client, three_callbacks, db_session):
    callback = three_callbacks[sid(2)]
    page = text_of(act(client, f"/queue/{callback.id}/close", outcome="withdrawn", note="x" * 2001))
    assert "Keep the note to 2,000 characters or fewer." in page
    # 40 lines as a browser sends them (CRLF) and counts them (one character each): 2,000 in all.
    lines = "\r\n".join(["x" * 49] * 40)
    page = text_of(act(client, f"/queue/{callback.id}/close", outcome="withdrawn", note="Line one\r\n\tLine two" +
                       "x" * 1980))
    assert "is closed as withdrawn." in page
    [after] = [c for c in stored(db_session) if c.id == callback.id]
    assert after.status == "closed" and "Line one\n\tLine two" in after.note
    other = three_callbacks[sid(3)]
    page = text_of(act(client, f"/queue/{other.id}/close", outcome="withdrawn", note=lines))
    assert "is closed as withdrawn." in page
    [after] = [c for c in stored(db_session) if c.id == other.id]
    assert after.note == lines.replace("\r\n", "\n") and len(after.note) == 1999


def test_withdrawing_a_callback_needs_a_reason_in_the_note(alice, client, three_callbacks, db_session):
    callback = three_callbacks[sid(2)]
    page = text_of(act(client, f"/queue/{callback.id}/close", outcome="withdrawn", note="  "))
    assert "Say in the note why the callback is no longer needed." in page
    assert [c.status for c in stored(db_session) if c.id == callback.id] == ["open"]


def test_the_live_list_signed_out_is_a_401_and_leaves_no_message_for_the_next_page(client):
    for _ in range(3):
        response = client.get("/queue/items")
        assert response.status_code == 401 and response.get_data(as_text=True) == "You have been signed out.\n"
    with client.session_transaction() as session:
        assert not session.get("_flashes")


def test_the_attempt_that_uses_up_the_last_try_says_the_callback_is_closed(alice, client, clock, three_callbacks,
                                                                          db_session):
    callback = three_callbacks[sid(2)]
    messages = []
    for minutes_ago in (150, 60, 1):  # three tries (the settings' max_attempts), after 10:40 when it was owed
        when = local(clock.now - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M")
        page = text_of(act(client, f"/queue/{callback.id}/attempts", started_at=when, outcome="no_answer"))
        found = re.search(r"Attempt logged for (?:[^<]|<span class=\"reference\">|</span>)*", page)
        assert found, re.findall(r"notice[^>]*>([^<]*)", page)
        messages.append(re.sub(r"</?span[^>]*>", "", found.group(0)))  # each reference in its no-wrap span
    assert messages[0].endswith(": no answer.") and messages[1].endswith(": no answer.")
    assert messages[2].endswith("no answer. That was attempt 3 of 3, the last, so "
                                f"{messages[2].split()[3].rstrip(':')} is closed as unreachable.")
    [after] = [c for c in stored(db_session) if c.id == callback.id]
    assert (after.status, after.outcome) == ("closed", "unreachable")


def test_what_happened_on_an_attempt_must_be_chosen_not_taken_by_default(alice, client, three_callbacks, db_session):
    callback = three_callbacks[sid(2)]
    page = text_of(client.get("/queue"))
    select = re.search(rf'<select id="callback-{callback.id}-attempt-outcome"[^>]*>(.*?)</select>', page, re.S)
    first = re.search(r"<option([^>]*)>([^<]*)</option>", select.group(1))
    assert first.groups() == (' value="" selected', "Choose what happened") and "required" in select.group(0)
    page = text_of(act(client, f"/queue/{callback.id}/attempts", started_at="", outcome=""))
    assert "Choose what happened on the call." in page and stored(db_session, CallbackAttempt) == []


def test_a_manager_can_give_back_a_claim_an_agent_left_and_an_agent_cannot(app, alice, client, three_callbacks,
                                                                          db_session):
    callback_id = three_callbacks[sid(3)].id
    act(client, f"/queue/{callback_id}/claim")  # Alice claims it, then goes home
    bob = app.test_client()
    add_agent(app, "bob", "Bob Builder")
    sign_in(bob, "bob", PASSWORD)
    page = text_of(act(bob, f"/queue/{callback_id}/release", anyones="1"))
    assert "You have not claimed this callback." in page and "release-theirs" not in item(page, callback_id)
    assert [c.claimed_by_id for c in stored(db_session) if c.id == callback_id] == [alice]
    manager = app.test_client()
    add_agent(app, "morgan", "Morgan Manager", role="manager")
    sign_in(manager, "morgan", PASSWORD)
    page = text_of(manager.get("/queue"))
    assert "Release Alice Agent’s claim" in item(page, callback_id)
    page = text_of(act(manager, f"/queue/{callback_id}/release", anyones="1"))
    assert "; another agent can take it." in page
    assert [c.claimed_by_id for c in stored(db_session) if c.id == callback_id] == [None]


def test_deactivating_an_agent_gives_their_claims_back_to_the_queue(app, alice, client, three_callbacks, db_session):
    from helpdesk.users import deactivate

    for n in (1, 3):
        act(client, f"/queue/{three_callbacks[sid(n)].id}/claim")
    with app.extensions["helpdesk.db"].session() as session:
        deactivate(session, "alice")
    assert [c.claimed_by_id for c in stored(db_session)] == [None, None, None]


def test_what_an_action_said_is_shown_at_its_callback_and_the_page_opens_there(alice, client, three_callbacks):
    callback_id = three_callbacks[sid(3)].id
    token = csrf_token(client, "/queue")
    response = client.post(f"/queue/{callback_id}/claim", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"#callback-{callback_id}-said")
    here = item(text_of(client.get(response.headers["Location"])), callback_id)
    assert re.search(rf'<p class="notice notice-success item-message" id="callback-{callback_id}-said" '
                     r'tabindex="-1"\s+role="status">You have claimed <span class="reference">HD-', here)
    assert "item-message" not in text_of(client.get("/queue"))  # said once


@pytest.mark.parametrize("query", ["", "?show=2&only=free&older=yes"])
def test_each_callbacks_panels_are_as_their_template_renders_them(app, alice, client, clock, three_callbacks, query):
    """The page fills in one rendering of the panels for each callback (helpdesk.pages.stamp):
    each must be what the template gives for that callback, with its page's arguments."""
    page = client.get(f"/queue{query}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    shown = [int(n) for n in re.findall(r'<li class="queue-item[^"]*" id="callback-(\d+)">', page)]
    assert len(shown) == (2 if query else 3)
    args = dict(re.findall(r"([a-z]+)=([a-z0-9]+)", query))
    with app.test_request_context(f"/queue{query}"):
        for callback_id in shown:
            here = item(page, callback_id)
            panels = render_template(
                "queue/item_panels.html", key=f"callback-{callback_id}",
                reference=re.search(r"HD-\d{4}-\d{6}", here).group(),
                attempt_href=url_for("agents.log_attempt", callback_id=callback_id, **args),
                close_href=url_for("agents.close", callback_id=callback_id, **args),
                panel="", typed={}, token=token, now_input=local(clock.now).strftime("%Y-%m-%dT%H:%M"), queue=queue)
            assert panels in here
            assert ("&amp;only=free&amp;older=yes" in panels) is bool(query)


def test_a_refused_attempt_is_explained_at_its_callback_with_what_was_typed_kept(alice, client, clock,
                                                                                three_callbacks, db_session):
    callback_id = three_callbacks[sid(3)].id
    later = local(clock.now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(f"/queue/{callback_id}/attempts", data={
        "csrf_token": csrf_token(client, "/queue"), "started_at": later, "outcome": "no_answer",
        "note": "Rang twice.\r\nLeft a message."})
    assert response.status_code == 422
    here = item(text_of(response), callback_id)
    assert 'role="alert">An attempt cannot be in the future.</p>' in here
    assert f'id="callback-{callback_id}-attempt-panel" open data-typed>' in here
    assert f'value="{later}"' in here and '<option value="no_answer" selected>' in here
    assert ">Rang twice.\nLeft a message.</textarea>" in here.replace("\r\n", "\n")
    assert stored(db_session, CallbackAttempt) == []


def test_closing_says_so_at_the_top_once_the_callback_has_left_the_list(alice, client, three_callbacks):
    callback_id = three_callbacks[sid(3)].id
    act(client, f"/queue/{callback_id}/claim")
    page = text_of(act(client, f"/queue/{callback_id}/close", outcome="withdrawn", note="The caller emailed."))
    assert f'id="callback-{callback_id}"' not in page
    assert re.search(rf'<p class="notice notice-success item-message" id="callback-{callback_id}-said"[^>]*>'
                     r'<span class="reference">HD-\d{4}-\d{6}</span> is closed as withdrawn.</p>\s*<h1>', page)


@pytest.mark.parametrize("role, linked", [("agent", True), ("manager", True), ("admin", True), ("auditor", False)])
def test_the_header_links_to_the_queue_for_those_who_may_use_it(app, client, role, linked):
    add_agent(app, "someone", "Someone", role=role)
    sign_in(client, "someone", PASSWORD)
    page = text_of(client.get("/" if role == "agent" else "/calls", follow_redirects=True))
    assert ('href="/queue"' in page) is linked


def test_callback_needed_wants_what_it_is_about_and_takes_a_number_as_people_write_it(alice, client, clock,
                                                                                     db_session):
    answer_a_call(client, clock, 5, at(10, 0), caller="anonymous")
    clock.now = at(10, 5)
    page = text_of(act(client, f"/queue/calls/{sid(5)}/callback", note=" ", number="07700 900123"))
    assert "Say what the callback is about, so whoever calls back knows." in page and stored(db_session) == []
    page = text_of(act(client, f"/queue/calls/{sid(5)}/callback", note="Grant form", number="call me"))
    assert "That is not a phone number we can dial" in page and stored(db_session) == []
    act(client, f"/queue/calls/{sid(5)}/callback", note="Grant form", number="07700 900123")
    [callback] = stored(db_session)
    assert callback.caller_number == "+447700900123"


def test_callback_needed_with_only_spaces_for_a_number_calls_back_the_number_that_rang(alice, client, clock,
                                                                                      db_session):
    answer_a_call(client, clock, 5, at(10, 0), caller="+447700900456")
    clock.now = at(10, 5)
    page = text_of(act(client, f"/queue/calls/{sid(5)}/callback", note="Grant form", number="   "))
    assert 'A callback is now owed for <span class="reference">HD-2026-' in page and "not a phone number" not in page
    [callback] = stored(db_session)
    assert callback.caller_number == "+447700900456"


def test_a_colleague_sees_the_attempts_so_far_with_their_outcomes_agents_and_notes(app, alice, client, clock,
                                                                                   three_callbacks):
    callback_id = three_callbacks[sid(2)].id
    when = local(clock.now - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
    act(client, f"/queue/{callback_id}/attempts", started_at=when, outcome="no_answer",
        note="Rang twice. <b>Left</b> no message.")
    bob = app.test_client()
    add_agent(app, "bob", "Bob Builder")
    sign_in(bob, "bob", PASSWORD)
    raw = bob.get("/queue").get_data(as_text=True)
    here = item(raw, callback_id)
    assert "Attempts so far (1)" in here
    assert re.search(r"<li><time datetime=\"[^\"]+\">12:55 today</time>: No answer, by Alice Agent\. "
                     r"Rang twice\. &lt;b&gt;Left&lt;/b&gt; no message\.</li>", here), here
    assert "Attempts so far" not in item(text_of(bob.get("/queue")), three_callbacks[sid(3)].id)


def test_a_late_entered_earlier_attempt_is_listed_in_time_order_and_the_next_try_spaced_from_the_latest(
        app, alice, client, clock, three_callbacks, db_session):
    first = three_callbacks[sid(1)].id  # due 13:00; the clock is at 13:25
    act(client, f"/queue/{first}/attempts", started_at="2026-11-24T13:20", outcome="no_answer")
    act(client, f"/queue/{first}/attempts", started_at="2026-11-24T13:05", outcome="busy")  # entered second
    page = text_of(client.get("/queue"))
    history = re.search(r'id="callback-%d-history".*?</details>' % first, page, re.S).group(0)
    assert history.index("13:05") < history.index("13:20")
    [callback] = [c for c in stored(db_session) if c.id == first]
    assert callback.next_attempt_at == at(13, 20) + timedelta(seconds=59, minutes=60)  # from 13:20, the 2nd wait


def test_releasing_a_callback_closed_meanwhile_says_it_is_no_longer_open(app, alice, client, three_callbacks):
    first = three_callbacks[sid(1)].id
    act(client, f"/queue/{first}/claim")
    act(client, f"/queue/{first}/attempts", started_at="2026-11-24T13:20", outcome="reached")
    act(client, f"/queue/{first}/close", outcome="resolved")
    assert "This callback is no longer open." in text_of(act(client, f"/queue/{first}/release"))


@pytest.mark.parametrize("bobs", ["concluded", "callback"])
def test_two_agents_recording_one_calls_outcome_at_once_take_turns_and_the_second_is_told(
        app, alice, client, clock, db_session, bobs):
    bob = app.test_client()
    add_agent(app, "bob", "Bob Builder")
    sign_in(bob, "bob", PASSWORD)
    calls = range(21, 27)
    for n in calls:
        answer_a_call(client, clock, n, at(10, n))
    clock.now = at(11, 0)
    for n in calls:
        forms = {name: {"csrf_token": csrf_token(browser, "/queue"), "note": "Needs the grant team"}
                 for name, browser in (("alice", client), ("bob", bob))}
        barrier, pages = Barrier(2), {}

        def record(name, browser, action):
            barrier.wait()
            pages[name] = text_of(browser.post(f"/queue/calls/{sid(n)}/{action}", data=forms[name],
                                               follow_redirects=True))

        threads = [Thread(target=record, args=("alice", client, "callback")), Thread(target=record, args=("bob", bob, bobs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        owed = "A callback is now owed for"
        concluded = "is recorded as concluded on the call"
        succeeded = [name for name, page in pages.items() if owed in page or concluded in page]
        assert len(succeeded) == 1, pages  # the other was told what the first recorded
        db_session.rollback()
        with db_session.begin():
            enquiry = db_session.scalars(select(Enquiry).where(Enquiry.call_sid == sid(n))).one()
            callbacks = db_session.scalars(select(Callback).where(Callback.call_sid == sid(n))).all()
        if enquiry.status == "concluded":
            assert callbacks == [] and enquiry.closed_at is not None
        else:
            assert enquiry.status == "callback_owed" and enquiry.closed_at is None and enquiry.closed_by_id is None
            assert [c.reason for c in callbacks] == ["not_concluded"]


def test_a_callback_stored_by_a_colleague_in_the_same_instant_is_a_refusal_not_an_error(
        alice, client, clock, monkeypatch):
    from sqlalchemy.exc import IntegrityError

    answer_a_call(client, clock, 7, at(10, 0))

    def collide(*args, **kwargs):
        raise IntegrityError("INSERT INTO callbacks", {}, Exception("uq_callbacks_contact_key"))

    from callbacks import owed

    monkeypatch.setattr(owed, "record_not_concluded", collide)
    response = act(client, f"/queue/calls/{sid(7)}/callback", note="Needs the grant team")
    assert response.status_code == 422  # refused, as any refusal on the page, never a 500
    assert "A colleague has just recorded this call's outcome: see the queue." in text_of(response)
    assert "Needs the grant team" in text_of(response)  # what was typed is kept


def test_a_callback_needed_after_a_colleague_recorded_concluded_is_refused(app, alice, client, clock, db_session):
    answer_a_call(client, clock, 7, at(10, 0))
    clock.now = at(10, 5)
    act(client, f"/queue/calls/{sid(7)}/concluded")
    refused = act(client, f"/queue/calls/{sid(7)}/callback", note="Needs the grant team")
    assert "is already recorded as concluded on the call." in text_of(refused)
    assert stored(db_session) == []


def test_concluded_after_a_colleague_recorded_a_callback_needed_is_refused_and_the_callback_stays_owed(
        app, alice, client, clock, db_session):
    answer_a_call(client, clock, 7, at(10, 0))
    clock.now = at(10, 5)
    act(client, f"/queue/calls/{sid(7)}/callback", note="Needs the grant team")
    refused = text_of(act(client, f"/queue/calls/{sid(7)}/concluded"))
    assert "A callback is already owed for this enquiry." in refused
    [callback] = stored(db_session)
    assert (callback.status, callback.reason) == ("open", "not_concluded")
    with db_session.begin():
        assert db_session.scalar(select(Enquiry.status).where(Enquiry.call_sid == sid(7))) == "callback_owed"


def test_undo_pressed_twice_says_the_second_time_that_there_is_nothing_to_undo(alice, client, clock, db_session):
    answer_a_call(client, clock, 8, at(10, 0))
    clock.now = at(10, 5)
    act(client, f"/queue/calls/{sid(8)}/concluded")
    act(client, f"/queue/calls/{sid(8)}/undo-concluded")
    again = text_of(act(client, f"/queue/calls/{sid(8)}/undo-concluded"))
    assert "This enquiry is recorded as open, not concluded: there is nothing to undo." in again
    with db_session.begin():
        assert db_session.scalar(select(Enquiry.status).where(Enquiry.call_sid == sid(8))) == "open"


def test_a_breach_corrected_by_an_attempt_entered_late_says_so_on_the_page(app, alice, client, clock,
                                                                          three_callbacks, settings):
    first = three_callbacks[sid(1)].id  # due 13:00
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, at(13, 1))
    clock.now = at(13, 25)
    done = text_of(act(client, f"/queue/{first}/attempts", started_at="2026-11-24T12:55:00", outcome="no_answer"))
    assert ('It was made in time, so the breach recorded for <span class="reference">HD-2026-' in done
            and "is corrected to met." in done)
    assert "(corrected: an attempt in time was entered later)" in done


def test_an_attempt_time_in_the_clock_changes_is_refused_or_read_as_the_later_hour_once_it_has_come(app):
    from callbacks.callback_actions import _started_at
    from callbacks.owed import CallbackError

    now = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    with pytest.raises(CallbackError, match="did not happen in the UK: the clocks went forward"):
        _started_at("2026-03-29T01:30", now)
    # 01:30 happened twice on 25 October 2026 (BST, then GMT): the second, 01:30 GMT.
    assert _started_at("2026-10-25T01:30", now) == datetime(2026, 10, 25, 1, 30, 59, tzinfo=timezone.utc)
    assert _started_at("2026-10-25T00:30", now) == datetime(2026, 10, 24, 23, 30, 59, tzinfo=timezone.utc)
    # During the first 01:xx (BST) the second has not happened yet: the time is the first.
    first_pass = datetime(2026, 10, 25, 0, 40, 20, tzinfo=timezone.utc)  # 01:40:20 BST
    assert _started_at("2026-10-25T01:40", first_pass) == first_pass  # the minute it is: now
    assert _started_at("2026-10-25T01:30", first_pass) == datetime(2026, 10, 25, 0, 30, 59, tzinfo=timezone.utc)
    second_pass = datetime(2026, 10, 25, 1, 40, 20, tzinfo=timezone.utc)  # 01:40:20 GMT
    assert _started_at("2026-10-25T01:30", second_pass) == datetime(2026, 10, 25, 1, 30, 59, tzinfo=timezone.utc)
    # In the second pass, a time not yet reached is in the future, never read as the hour before.
    assert _started_at("2026-10-25T01:50", second_pass) == datetime(2026, 10, 25, 1, 50, 59, tzinfo=timezone.utc)


def test_more_notices_than_shown_says_how_many_there_were(app, alice, client, clock, db_session, settings):
    for n in range(1, 13):  # 12 missed calls, each breached: 12 notices, 10 shown
        miss_a_call(client, clock, 100 + n, at(9, 0) + timedelta(minutes=n))
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, at(12, 30))
    clock.now = at(12, 31)
    from callbacks import queue as queue_module

    with app.extensions["helpdesk.db"].session() as session:
        shown, total = queue_module.recent_notices(session, settings, clock.now, limit=10)
    assert (len(shown), total) == (10, 12)
    page = text_of(client.get("/queue"))
    assert "The latest" not in page  # 12 fit in the page's 20
    # The newest five at once; the other seven a click away, so that the open callbacks are not
    # two screens down on a phone.
    notices = page[page.index('id="notices-title"'):page.index('id="queue-live"')]
    first, _, rest = notices.partition('<details class="more-notices">')
    breaches = r'<li class="notice-breach">\s*<strong>Breached: <span class="reference">(HD-[0-9-]+)</span>'
    assert len(re.findall(breaches, first)) == 5 and len(re.findall(breaches, rest)) == 7
    assert "<summary>Show 7 more warnings and breaches</summary>" in rest
    assert re.findall(breaches, first + rest) == [f"HD-2026-{n:06d}" for n in range(12, 0, -1)], "newest first"


def test_five_notices_or_fewer_are_all_shown_at_once(app, alice, client, clock, db_session, settings):
    for n in range(1, 6):
        miss_a_call(client, clock, 100 + n, at(9, 0) + timedelta(minutes=n))
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, at(12, 30))
    clock.now = at(12, 31)
    page = text_of(client.get("/queue"))
    assert page.count('<li class="notice-breach">') == 5 and "more-notices" not in page
