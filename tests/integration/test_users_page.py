"""The Users pages (/admin/users): administrators manage users from the web, and every change to a
user, from there or from `helpdesk users`, is in the audit log."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from html import unescape
import logging
import re

import pytest
from sqlalchemy import select
from werkzeug.routing.converters import NumberConverter

from callbacks.claims import claim
from helpdesk.clock import local
from helpdesk.models import Callback, FormerPhone, User
from helpdesk.pages.format import format_date_time
from helpdesk.web import RowId
from tests.integration.test_user_audit import TEMPORARY, audit_entries, user_named, works
from tests.integration.test_password_change import NEW
from tests.integration.test_queue_page import CELL_HEADING, miss_a_call, words
from tests.integration.test_users_and_login import PASSWORD, csrf_token, make_user, run_cli, sign_in



@pytest.fixture
def admin(client, db_session):
    """An administrator, signed in to `client`."""
    user = make_user(db_session, "dana", "admin", display_name="Dana Admin")
    sign_in(client, "dana")
    return user


def anchor(field: str) -> str:
    """Where the error summary's link for `field` leads: a choice's first option, as GOV.UK's radios."""
    return "role-agent" if field == "role" else field


def post(client, path: str, **form):
    return client.post(path, data={"csrf_token": csrf_token(client, "/admin/users"), **form})


def add(client, **form):
    data = {"username": "alex", "display_name": "Alex Smith", "role": "agent", "phone": "07700 900123",
            "password": TEMPORARY, "password_again": TEMPORARY}
    data.update(form)
    return post(client, "/admin/users/new", **data)


# --------------------------------------------------------------------------- who may see it


@pytest.mark.parametrize("role", ["agent", "manager", "auditor"])
def test_only_administrators_may_see_or_use_the_users_pages(client, db_session, role):
    make_user(db_session, "sam", role)
    sign_in(client, "sam")
    assert "/admin/users" not in client.get("/account/password").get_data(as_text=True)
    for path in ("/admin/users", "/admin/users/new", "/admin/users/1"):
        assert client.get(path).status_code == 403
    refused = add(client)
    assert refused.status_code == 403 and user_named(db_session, "alex") is None
    assert post(client, "/admin/users/1/deactivate").status_code == 403
    assert user_named(db_session, "sam").active


def test_signed_out_people_are_sent_to_sign_in(client, db_session):
    response = client.get("/admin/users")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]


def test_the_navigation_links_administrators_to_users(client, admin):
    page = client.get("/admin/users").get_data(as_text=True)
    assert '<a href="/admin/users" aria-current="page">Users</a>' in page


# --------------------------------------------------------------------------- the list

def users_list(client) -> str:
    """The Users list's words as a screen reader reads them: without the headings each card shows."""
    return words(client.get("/admin/users").get_data(as_text=True))


def test_the_list_shows_everyone_with_role_state_masked_phone_and_password(client, db_session, admin):
    make_user(db_session, "alex", "agent", display_name="Alex Smith", phone="+447700900123",
              now=datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc))
    make_user(db_session, "kim", "agent", phone="+447700900456")
    make_user(db_session, "sam", "auditor", temporary=True)
    from helpdesk.users import deactivate
    deactivate(db_session, "sam")
    with db_session.begin():  # a phone set before 0.26.0 kept since when: no time to show
        db_session.execute(User.__table__.update().where(User.username == "kim").values(phone_since=None))

    page = users_list(client)

    assert ("alex Alex Smith Agent •••••••• 123 Number ending 123 since 20 Nov 2026 09:30 GMT None Yes Their own"
            in page)
    assert "kim Agent •••••••• 456 Number ending 456 None Yes Their own" in page
    assert ("sam DWP auditor None None No: deactivated Set by an administrator: to be changed at their next sign-in"
            in page)
    assert "dana Dana Admin Administrator None None Yes Their own" in page
    assert "900123" not in page.replace("Number ending 123", "")


def test_each_users_row_is_headed_by_their_username_and_each_cell_names_its_column_for_a_card(
        client, db_session, admin):
    make_user(db_session, "alex", "agent", display_name="Alex Smith", phone="+447700900123")
    page = client.get("/admin/users").get_data(as_text=True)
    columns = re.findall(r'<th scope="col" role="columnheader">([^<]+)</th>', page)
    assert columns == ["Username", "Name", "Role", "Phone", "Email address", "Signs in", "Password", "Last signed in",
                       "Two-step sign-in"]
    body = page[page.index('<tbody role="rowgroup">'):page.index("</tbody>")]
    rows = re.findall(r'<tr role="row">(.*?)</tr>', body, re.S)
    assert len(rows) == 2 and all(re.findall(CELL_HEADING, row) == columns for row in rows)
    for username in ("alex", "dana"):
        assert re.search(r'<th scope="row" class="long-text" role="rowheader">' + CELL_HEADING
                         + rf'<a href="/admin/users/\d+">{username}</a></th>', body), username
    assert '<table class="cards" role="table">' in page


# --------------------------------------------------------------------------- adding


def test_an_administrator_adds_a_user_who_must_choose_their_own_password(app, client, db_session, admin):
    response = add(client)

    alex = user_named(db_session, "alex")
    assert response.status_code == 302 and response.headers["Location"] == f"/admin/users/{alex.id}"
    assert (alex.role, alex.display_name, alex.phone, alex.active, alex.must_change_password) == (
        "agent", "Alex Smith", "+447700900123", True, True)
    page = words(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "Added alex. Give them the password you chose" in page
    assert "added as Agent, with a password for their first sign-in only, with a phone, by dana" in page
    # They sign in with it, and are then asked to choose their own.
    theirs = app.test_client()
    assert sign_in(theirs, "alex", TEMPORARY).status_code == 302
    assert theirs.get("/queue").headers["Location"] == "/account/password"
    entry = audit_entries(db_session, "user.added")[-1]
    assert (entry.user_id, entry.actor) == (admin.id, "dana")
    assert json.loads(entry.detail) == {"user": "alex", "user_id": alex.id, "via": "web", "role": "agent",
                                        "temporary": True, "phone": True}
    assert TEMPORARY not in entry.detail


def test_every_problem_with_a_new_user_is_shown_at_its_field_and_nothing_is_added(client, db_session, admin):
    response = add(client, username="a b", display_name="Line\nbreak", role="boss", phone="not a phone",
                   password="short", password_again="short")

    html = response.get_data(as_text=True)
    page = words(html)
    assert response.status_code == 400 and "<title>Error: Add a user" in html
    for field, problem in (("username", "A username is 3 to 64 letters, digits, dots, hyphens or underscores."),
                           ("display_name", "The display name has a line break or a control character"),
                           ("role", "Choose a role."),
                           ("phone", "The phone must be a UK number, a number in international format or a desk phone&#39;s "
                                     "SIP address"),
                           ("password", "The password is too short: use at least 12 characters.")):
        assert f'<a href="#{anchor(field)}">{problem}' in html, field
        assert f'id="{field}-error"' in html, field
    assert 'value="short"' not in html and "short</" not in html  # a password is never sent back
    assert 'value="not a phone"' in html  # the rest is, to correct it
    assert user_named(db_session, "a b") is None and len(audit_entries(db_session)) == 1  # dana's
    assert "There is a problem" in page


@pytest.mark.parametrize("form, field, problem", [
    ({"username": ""}, "username", "Enter a username."),
    ({"username": "dana"}, "username", "There is already a user dana. Choose another username."),
    ({"username": "DANA"}, "username", "There is already a user dana. Choose another username."),
    ({"password": "", "password_again": ""}, "password", "Enter a password."),
    ({"password": "alex is my name ok", "password_again": "alex is my name ok"}, "password",
     "The password has the username in it"),
    ({"password_again": "something else entirely"}, "password_again",
     "The password was not the same the second time. Type it again."),
    ({"role": ""}, "role", "Choose a role."),
    ({"role": "auditor"}, "phone", "A DWP auditor answers no calls, so has no phone. Leave it empty."),
    ({"username": "x" * 5000}, "username", "A username is 3 to 64"),
    ({"password": "p" * 2000, "password_again": "p" * 2000}, "password", "That is too long: at most 1024"),
])
def test_a_new_user_is_refused_for_each_problem(client, db_session, admin, form, field, problem):
    response = add(client, **form)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'<a href="#{anchor(field)}">{problem}' in html
    assert user_named(db_session, "alex") is None
    assert [user.username for user in [user_named(db_session, "dana")]] == ["dana"]


def test_an_administrator_adds_a_user_with_a_phone_they_have_had_a_while(client, clock, db_session, admin):
    # Each refusal is at the time's field, keeps what was typed, and adds nobody.
    for form, problem in (
            ({"phone": "", "since": "2026-11-02T09:00"},
             "Enter their phone too, or leave this empty: it says since when they have had it."),
            ({"since": "2026-11-24T10:01"}, "The time they have had the phone from cannot be in the future."),
            ({"since": "2026-03-29T01:30"}, "“2026-03-29T01:30” did not happen in the UK: the clocks went forward an "
                                            "hour then."),
            ({"since": "last year"}, "“last year” is not a UK date and time")):
        refused = add(client, **form)
        html = unescape(refused.get_data(as_text=True))
        assert refused.status_code == 400, form
        assert f'<a href="#since">{problem}' in html and f'value="{form["since"]}"' in html
        assert user_named(db_session, "alex") is None
    # The error summary lists the problems in the page's order (the role before the phone and its time).
    html = unescape(add(client, username="", role="", phone="call me", since="soon", password="").get_data(
        as_text=True))
    order = ("username", "role-agent", "phone", "since", "password")
    assert [html.index(f'<a href="#{field}">') for field in order] == sorted(
        html.index(f'<a href="#{field}">') for field in order)

    added = add(client, since="2026-11-02T09:00")
    alex = user_named(db_session, "alex")
    assert added.status_code == 302 and alex.phone_since == datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    page = words(client.get(added.headers["Location"]).get_data(as_text=True))
    assert "Phone •••••••• 123 Number ending 123, theirs since 02 Nov 2026 09:00:00 GMT" in page
    assert ("added as Agent, with a password for their first sign-in only, with a phone, theirs since 02 Nov 2026 "
            "09:00:00 GMT, by dana") in page
    assert json.loads(audit_entries(db_session, "user.added")[-1].detail)["since"] == "2026-11-02T09:00:00+00:00"


# --------------------------------------------------------------------------- one user


def test_an_administrator_sets_a_password_for_a_users_next_sign_in_and_their_sessions_end(app, client, db_session,
                                                                                           admin):
    alex = make_user(db_session, "alex", "manager")
    theirs = app.test_client()
    sign_in(theirs, "alex")
    assert theirs.get("/calls").status_code == 200

    response = post(client, f"/admin/users/{alex.id}/password", password=TEMPORARY, password_again=TEMPORARY)

    assert response.status_code == 302, response.get_data(as_text=True)
    assert theirs.get("/calls").status_code == 302  # signed out
    assert works(db_session, "alex", TEMPORARY)
    assert user_named(db_session, "alex").must_change_password
    assert "Set a password for alex" in words(client.get(response.headers["Location"]).get_data(as_text=True))
    entry, = audit_entries(db_session, "user.password_set")
    assert entry.actor == "dana" and json.loads(entry.detail)["temporary"] is True


def test_a_refused_password_changes_nothing_and_is_not_sent_back(client, db_session, admin):
    alex = make_user(db_session, "alex", "manager")
    response = post(client, f"/admin/users/{alex.id}/password", password=TEMPORARY, password_again="other words")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and '<a href="#password_again">The password was not the same' in html
    assert TEMPORARY not in html
    assert works(db_session, "alex", PASSWORD)
    assert audit_entries(db_session, "user.password_set") == []


def test_an_administrator_changes_a_role_and_the_user_signs_in_again(app, client, db_session, admin):
    alex = make_user(db_session, "alex", "agent")
    theirs = app.test_client()
    sign_in(theirs, "alex")

    response = post(client, f"/admin/users/{alex.id}/role", role="manager")

    assert response.status_code == 302 and user_named(db_session, "alex").role == "manager"
    assert theirs.get("/queue").status_code == 302
    page = words(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "The role of alex is now Manager. They sign in again to act in it." in page
    assert "role changed from Agent to Manager, by dana" in page


def test_the_role_a_user_has_already_is_refused_at_its_field_in_the_pages_words(client, db_session, admin):
    sam = make_user(db_session, "sam", "auditor")

    refused = post(client, f"/admin/users/{sam.id}/role", role="auditor")

    html = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert '<a href="#role-agent">The role of sam is already DWP auditor. Choose another role.' in html
    assert "'sam'" not in unescape(html)  # not the command line's "'sam' has the role auditor already"
    assert audit_entries(db_session, "user.role_changed") == []


def test_a_role_change_to_auditor_gives_claimed_callbacks_back_and_says_so(client, clock, db_session, admin):
    alex = make_user(db_session, "alex", "agent")
    miss_a_call(client, clock, 1, clock.now)
    with db_session.begin():
        callback_id = db_session.scalar(select(Callback.id))
    claim(db_session, callback_id, alex.id, clock.now)

    assert post(client, f"/admin/users/{alex.id}/role", role="auditor").status_code == 302

    with db_session.begin():
        assert db_session.get(Callback, callback_id).claimed_by is None
    page = words(client.get(f"/admin/users/{alex.id}").get_data(as_text=True))
    assert "role changed from Agent to DWP auditor; 1 claimed callback back to the queue, by dana" in page


def test_an_administrator_sets_and_clears_a_phone(client, clock, db_session, admin):
    alex = make_user(db_session, "alex", "agent")

    set_at = clock.now
    assert post(client, f"/admin/users/{alex.id}/phone", phone="07700 900456", action="save").status_code == 302
    assert user_named(db_session, "alex").phone_since == set_at
    clock.advance(3600)
    assert user_named(db_session, "alex").phone == "+447700900456"
    refused = post(client, f"/admin/users/{alex.id}/phone", phone="12", action="save")
    assert refused.status_code == 400 and 'value="12"' in refused.get_data(as_text=True)
    empty = post(client, f"/admin/users/{alex.id}/phone", phone=" ", action="save")
    assert empty.status_code == 400 and "Enter a phone number or SIP address, or use Clear phone." in empty.get_data(as_text=True)
    assert user_named(db_session, "alex").phone == "+447700900456"
    assert post(client, f"/admin/users/{alex.id}/phone", phone="", action="clear").status_code == 302
    assert (user_named(db_session, "alex").phone, user_named(db_session, "alex").phone_since) == (None, None)
    # Kept, with when alex had it: calls answered on it then are still alex's.
    with db_session.begin():
        assert [(f.user_id, f.phone, f.since, f.until) for f in db_session.scalars(select(FormerPhone))] == [
            (alex.id, "+447700900456", set_at, set_at + timedelta(hours=1))]
    assert [json.loads(entry.detail)["phone"] for entry in audit_entries(db_session, "user.phone_changed")] == [
        True, False]
    assert all("900456" not in entry.detail for entry in audit_entries(db_session))


def test_an_administrator_gives_an_agent_a_desk_phones_sip_address(client, db_session, admin):
    alex = make_user(db_session, "alex", "agent")

    typed = " SIP:1001@PBX.Example.org;transport=tls "
    assert post(client, f"/admin/users/{alex.id}/phone", phone=typed, action="save").status_code == 302
    assert user_named(db_session, "alex").phone == "sip:1001@pbx.example.org;transport=tls"
    # An extension is no one's own number: shown as it is, where a number is masked.
    assert "Phone sip:1001@pbx.example.org;transport=tls, theirs since" in words(
        client.get(f"/admin/users/{alex.id}").get_data(as_text=True))
    assert "alex Agent sip:1001@pbx.example.org;transport=tls since" in users_list(client)

    refused = post(client, f"/admin/users/{alex.id}/phone", phone="sip:1001@", action="save")
    assert refused.status_code == 400
    assert ('<a href="#phone">The SIP address must be sip:, the extension or name, @ and the phone system&#39;s '
            "address, for example sip:1001@pbx.example.org") in refused.get_data(as_text=True)
    assert add(client, username="kim", phone="sip:+447700900123@10.0.0.5").status_code == 302
    assert user_named(db_session, "kim").phone == "sip:+447700900123@10.0.0.5"
    page = users_list(client)
    assert "kim Alex Smith Agent sip:•••••••• 123@10.0.0.5 since" in page and "900123" not in page


def former_phones(db_session) -> list[tuple]:
    with db_session.begin():
        return [(f.phone, f.since, f.until) for f in db_session.scalars(select(FormerPhone).order_by(FormerPhone.id))]


def test_an_administrator_says_since_when_a_user_has_had_their_phone(client, clock, db_session, admin):
    alex = make_user(db_session, "alex", "agent")
    nov = {day: datetime(2026, 11, day, 9, 0, tzinfo=timezone.utc) for day in (1, 2, 20)}  # 09:00 GMT
    path = f"/admin/users/{alex.id}/phone"

    assert post(client, path, phone="07700 900456", since="2026-11-02T09:00", action="save").status_code == 302
    assert user_named(db_session, "alex").phone_since == nov[2]
    # The same phone again changes only when they got it.
    assert post(client, path, phone="+447700900456", since="2026-11-01T09:00", action="save").status_code == 302
    assert (user_named(db_session, "alex").phone, user_named(db_session, "alex").phone_since) == (
        "+447700900456", nov[1])
    assert former_phones(db_session) == []

    # Each refusal is at the time's field, keeps what was typed, and changes nothing.
    for since, problem in (
            ("2026-10-31T09:00", "They have had the phone they have now since 01 Nov 2026 09:00:00 GMT: give a time "
                                 "after that, when they changed phone."),
            ("2026-11-24T10:01", "The time they have had the phone from cannot be in the future."),
            ("2026-03-29T01:30", "“2026-03-29T01:30” did not happen in the UK: the clocks went forward an hour then."),
            ("next week", "“next week” is not a UK date and time: use YYYY-MM-DD HH:MM, for example 2026-11-24 "
                          "09:00.")):
        refused = post(client, path, phone="07700 900789", since=since, action="save")
        html = unescape(refused.get_data(as_text=True))
        assert refused.status_code == 400, since
        assert f'<a href="#since">{problem}</a>' in html and f'value="{since}"' in html
        assert 'value="07700 900789"' in html
    assert user_named(db_session, "alex").phone == "+447700900456" and former_phones(db_session) == []

    # A new phone from a time: the one before was theirs until then.
    assert post(client, path, phone="07700 900789", since="2026-11-20 09:00", action="save").status_code == 302
    assert (user_named(db_session, "alex").phone, user_named(db_session, "alex").phone_since) == (
        "+447700900789", nov[20])
    assert former_phones(db_session) == [("+447700900456", nov[1], nov[20])]
    # Not back into the time they had that one.
    refused = post(client, path, phone="07700 900789", since="2026-11-19T09:00", action="save")
    assert refused.status_code == 400 and ("They had another phone until 20 Nov 2026 09:00:00 GMT: give a time from "
                                           "then on.") in unescape(refused.get_data(as_text=True))

    page = words(client.get(f"/admin/users/{alex.id}").get_data(as_text=True))
    assert "Phone •••••••• 789 Number ending 789, theirs since 20 Nov 2026 09:00:00 GMT" in page
    assert "Phones before •••••••• 456 Number ending 456, from 01 Nov 2026 09:00:00 GMT until 20 Nov 2026 09:00:00 GMT" in page
    assert "phone set, theirs since 20 Nov 2026 09:00:00 GMT, by dana" in page
    assert "phone unchanged, theirs since 01 Nov 2026 09:00:00 GMT, by dana" in page
    assert all("900456" not in entry.detail and "900789" not in entry.detail for entry in audit_entries(db_session))

    # Cleared, the time typed is not used: the phone was theirs until now.
    assert post(client, path, phone="", since="2026-11-21T09:00", action="clear").status_code == 302
    assert former_phones(db_session)[-1] == ("+447700900789", nov[20], clock.now)


def test_a_phone_in_another_scripts_digits_is_refused_as_no_phone_can_ring_it(client, db_session, admin):
    alex = make_user(db_session, "alex", "agent")
    arabic_indic = "+44\u0667\u0667\u0660\u0660\u0669\u0660\u0660\u0661\u0662\u0663"  # +447700900123

    refused = post(client, f"/admin/users/{alex.id}/phone", phone=arabic_indic, action="save")

    assert refused.status_code == 400 and '<a href="#phone">The phone must be' in refused.get_data(as_text=True)
    assert user_named(db_session, "alex").phone is None
    assert add(client, username="sam", phone=arabic_indic).status_code == 400


def test_an_administrator_deactivates_and_reactivates_a_user(app, client, db_session, admin):
    alex = make_user(db_session, "alex", "manager")
    theirs = app.test_client()
    sign_in(theirs, "alex")

    assert post(client, f"/admin/users/{alex.id}/deactivate").status_code == 302
    assert not user_named(db_session, "alex").active
    assert theirs.get("/calls").status_code == 302
    again = post(client, f"/admin/users/{alex.id}/deactivate")
    assert again.status_code == 409 and "'alex' is already deactivated." in unescape(again.get_data(as_text=True))

    assert post(client, f"/admin/users/{alex.id}/reactivate").status_code == 302
    assert user_named(db_session, "alex").active
    assert theirs.get("/calls").status_code == 302  # the session deactivated stays ended
    assert sign_in(theirs, "alex").status_code == 302 and theirs.get("/calls").status_code == 200
    assert [entry.action for entry in audit_entries(db_session)][-2:] == ["user.deactivated", "user.reactivated"]


def phone_refused(client, db_session, person: User, reason: str) -> None:
    """A phone posted all the same for `person`, who is given none (a page open from before), is
    refused for `reason`, and nothing changes: they have no phone, and one phone before."""
    refused = post(client, f"/admin/users/{person.id}/phone", phone="07700 900789", action="save")
    assert refused.status_code == 400 and reason in unescape(refused.get_data(as_text=True))
    assert user_named(db_session, person.username).phone is None and len(former_phones(db_session)) == 1


def test_deactivating_a_user_frees_their_phone_and_they_are_given_none_until_reactivated(client, clock, db_session,
                                                                                        admin):
    alex = make_user(db_session, "alex", "agent", phone="+447700900456", now=clock.now - timedelta(days=3))
    page = words(client.get(f"/admin/users/{alex.id}").get_data(as_text=True))
    assert ("did. Their phone is freed, for someone else: it stays in their phones, and the calls they answered on it "
            "still name them. Deactivate alex") in page

    done = post(client, f"/admin/users/{alex.id}/deactivate")
    assert done.status_code == 302
    page = words(client.get(done.headers["Location"]).get_data(as_text=True))
    assert ("Deactivated alex: they can no longer sign in. Callbacks they had claimed are back in the queue. Their "
            "phone is free for someone else: the calls they answered on it still name them, and calls answered on it "
            "from now on do not.") in page
    assert "Phone None Phones before •••••••• 456 Number ending 456, from " in page
    assert "A deactivated user has no phone: reactivate them first, then give them one here." in page
    assert f"/admin/users/{alex.id}/phone" not in page
    assert ("They can sign in again with the password they had. Their phone was freed when they were deactivated: once "
            "they are back, give it to them again above if they still have it.") in page
    assert "deactivated; phone freed, by dana" in page
    assert former_phones(db_session) == [("+447700900456", clock.now - timedelta(days=3), clock.now)]

    phone_refused(client, db_session, alex, "'alex' is deactivated: reactivate them first, then give them a phone.")

    assert post(client, f"/admin/users/{alex.id}/reactivate").status_code == 302
    assert post(client, f"/admin/users/{alex.id}/phone", phone="07700 900456", action="save").status_code == 302
    assert (user_named(db_session, "alex").phone, user_named(db_session, "alex").phone_since) == (
        "+447700900456", clock.now)


def test_making_a_user_a_dwp_auditor_frees_their_phone_and_an_auditor_is_given_none(client, clock, db_session, admin):
    alex = make_user(db_session, "alex", "agent", phone="+447700900456", now=clock.now - timedelta(days=3))
    page = words(client.get(f"/admin/users/{alex.id}").get_data(as_text=True))
    assert ("if the new role cannot work it. Made a DWP auditor, they have no phone: theirs is freed for someone "
            "else, and the calls they answered on it still name them. Change role") in page

    # Another role keeps the phone, and says nothing of it.
    done = post(client, f"/admin/users/{alex.id}/role", role="manager")
    page = words(client.get(done.headers["Location"]).get_data(as_text=True))
    assert "The role of alex is now Manager. They sign in again to act in it. ← Users" in page
    assert user_named(db_session, "alex").phone == "+447700900456" and former_phones(db_session) == []

    done = post(client, f"/admin/users/{alex.id}/role", role="auditor")
    assert done.status_code == 302
    page = words(client.get(done.headers["Location"]).get_data(as_text=True))
    assert ("The role of alex is now DWP auditor. They sign in again to act in it. Their phone is free for someone "
            "else: the calls they answered on it still name them, and calls answered on it from now on do not.") in page
    assert "Phone None Phones before •••••••• 456 Number ending 456, from " in page
    assert ("A DWP auditor answers no calls, so has no phone. Made an agent or manager, they can be given one here."
            in page)
    assert f"/admin/users/{alex.id}/phone" not in page and "Made a DWP auditor" not in page
    assert "role changed from Manager to DWP auditor; phone freed, by dana" in page
    assert former_phones(db_session) == [("+447700900456", clock.now - timedelta(days=3), clock.now)]

    phone_refused(client, db_session, alex, "'alex' is a DWP auditor, who answers no calls, so has no phone.")

    # Made an agent again, they have no phone until given one.
    assert post(client, f"/admin/users/{alex.id}/role", role="agent").status_code == 302
    page = words(client.get(f"/admin/users/{alex.id}").get_data(as_text=True))
    assert f"/admin/users/{alex.id}/phone" in unescape(client.get(f"/admin/users/{alex.id}").get_data(as_text=True))
    assert "role changed from DWP auditor to Agent, by dana" in page
    assert post(client, f"/admin/users/{alex.id}/phone", phone="07700 900456", action="save").status_code == 302
    assert user_named(db_session, "alex").phone == "+447700900456"


def test_administrators_leave_their_own_role_deactivation_and_password_to_others(client, db_session, admin):
    make_user(db_session, "erin", "admin")  # not the last administrator either
    page = client.get(f"/admin/users/{admin.id}").get_data(as_text=True)
    assert "This is you." in words(page) and f"/admin/users/{admin.id}/deactivate" not in page

    for path, form in (("role", {"role": "agent"}), ("deactivate", {}),
                       ("password", {"password": TEMPORARY, "password_again": TEMPORARY})):
        refused = post(client, f"/admin/users/{admin.id}/{path}", **form)
        assert refused.status_code == 400, path
    dana = user_named(db_session, "dana")
    assert (dana.role, dana.active, dana.must_change_password) == ("admin", True, False)
    assert works(db_session, "dana", PASSWORD)


def test_the_last_active_administrator_is_kept(client, db_session, admin):
    from helpdesk.user_rules import UserError
    from helpdesk.users import deactivate

    erin = make_user(db_session, "erin", "admin")
    assert post(client, f"/admin/users/{erin.id}/deactivate").status_code == 302
    # erin is gone; nobody can deactivate dana now (nor can she, from the pages).
    with pytest.raises(UserError, match="last active administrator"):
        deactivate(db_session, "dana")
    assert user_named(db_session, "dana").active


def test_an_unknown_user_is_not_found(client, admin):
    assert client.get("/admin/users/999999").status_code == 404
    assert post(client, "/admin/users/999999/deactivate").status_code == 404


@pytest.mark.parametrize("user_id", [str(2 ** 31), str(2 ** 63), "9" * 30, "\u0661"])
def test_an_id_no_user_can_have_is_not_found_rather_than_a_failure(client, db_session, admin, user_id):
    assert client.get(f"/admin/users/{user_id}").status_code == 404
    for action in ("role", "phone", "password", "deactivate", "reactivate", "tokens/1/revoke"):
        assert post(client, f"/admin/users/{user_id}/{action}", role="agent").status_code == 404, action
    assert user_named(db_session, "dana").active  # "\u0661" is a 1 in Arabic-Indic digits: dana's id
    assert post(client, f"/admin/users/{user_named(db_session, 'dana').id}/tokens/{user_id}/revoke").status_code == 404


def test_every_route_of_the_app_takes_a_rows_id_as_an_id(app):
    """A number in a path goes through `<id:...>`, never Flask's `<int:...>`, which passes 2**63
    to the database (a 500 there): checked over every route, so a new one cannot forget."""
    numbers = [(rule.rule, name) for rule in app.url_map.iter_rules()
               for name, converter in rule._converters.items() if isinstance(converter, NumberConverter)]
    ids = [rule.rule for rule in app.url_map.iter_rules() if any(isinstance(converter, RowId)
                                                                 for converter in rule._converters.values())]

    assert numbers == []
    assert "/admin/users/<id:user_id>/tokens/<id:token_id>/revoke" in ids and len(ids) > 10


def test_a_form_without_its_token_changes_nothing(client, db_session, admin):
    alex = make_user(db_session, "alex", "manager")
    response = client.post(f"/admin/users/{alex.id}/deactivate")
    assert response.status_code == 400 and user_named(db_session, "alex").active


def test_the_users_pages_log_no_password(client, db_session, admin, caplog):
    caplog.set_level(logging.DEBUG)
    add(client)
    alex = user_named(db_session, "alex")
    post(client, f"/admin/users/{alex.id}/password", password=NEW, password_again=NEW)
    assert TEMPORARY not in caplog.text and NEW not in caplog.text


def test_a_name_or_phone_far_too_long_is_refused_at_its_field(client, db_session, admin):
    response = add(client, display_name="n" * 200, phone="7" * 200_000)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert '<a href="#display_name">The display name is too long: use at most 128 characters.' in html
    assert '<a href="#phone">That is too long: at most 1000 characters.' in html
    assert user_named(db_session, "alex") is None


def test_the_pages_say_when_each_user_last_signed_in(app, client, clock, db_session, admin):
    alex = make_user(db_session, "alex", "agent")
    assert "alex Agent None None Yes Their own No sign-in recorded" in users_list(client)

    clock.advance(3600)
    sign_in(app.test_client(), "alex")
    when = format_date_time(clock.now)
    clock.advance(60)
    sign_in(app.test_client(), "alex", "not the password")  # refused: not a sign-in

    listed = users_list(client)
    assert f"alex Agent None None Yes Their own {when}" in listed
    assert f"Last signed in {when}" in words(client.get(f"/admin/users/{alex.id}").get_data(as_text=True))
    # And on the server: `helpdesk users list`, in UK time.
    listing = run_cli(app.config["DATABASE_URL"], "list").output
    assert f"last in {local(clock.now - timedelta(seconds=60)):%Y-%m-%d %H:%M}" in listing.splitlines()[0]


def test_an_administrator_changes_and_clears_a_users_name(client, db_session, admin):
    alex = make_user(db_session, "alex", "agent", display_name="Alex Smith")

    assert post(client, f"/admin/users/{alex.id}/name", display_name="Alex Jones").status_code == 302
    assert user_named(db_session, "alex").display_name == "Alex Jones"
    refused = post(client, f"/admin/users/{alex.id}/name", display_name="Tab\there")
    assert refused.status_code == 400
    assert '<a href="#display_name">The display name has a line break or a control character' in refused.get_data(
        as_text=True)
    assert post(client, f"/admin/users/{alex.id}/name", display_name="").status_code == 302
    assert user_named(db_session, "alex").display_name == ""
    page = words(client.get(f"/admin/users/{alex.id}").get_data(as_text=True))
    assert "name cleared, by dana" in page and "name changed, by dana" in page
    assert all("Alex" not in entry.detail for entry in audit_entries(db_session))
