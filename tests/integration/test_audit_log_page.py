"""The Audit log page (/audit), for DWP auditors and administrators, its CSV file, and a user's
sign-ins on their page."""
from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callbacks.owed import CALLBACK_NEEDED, record_audit
from helpdesk import audit_log
from helpdesk.clock import local, now_utc
from helpdesk.db import make_engine
from helpdesk.models import AuditEntry
from helpdesk.retention import Removal, record_removal
from helpdesk.subject_access import Found, record_search
from helpdesk.users import Actor, command_line, set_role
from tests.integration.test_evidence_page import download, seed
from tests.integration.test_queue_page import words
from tests.integration.test_sign_in_audit import person
from tests.integration.test_users_and_login import PASSWORD, csrf_token, sign_in

SYSTEM_USER = command_line().name  # who runs the tests, as `helpdesk users` records them
CSV_HEADER = ["at_utc", "at_uk", "by", "by_user_id", "by_role", "by_role_now", "action", "what", "enquiry", "about_user_id",
              "detail"]


def today() -> str:
    """Changes to users are recorded at the real time, not the test clock's (helpdesk.users.audit)."""
    return local(now_utc()).date().isoformat()


def page(client, path: str = "/audit", status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    return unescape(response.get_data(as_text=True))


TBODY = '<tbody role="rowgroup">'


def rows_of(page_text: str) -> list[str]:
    """The table's rows, as text without markup (and without the headings of its cards), in order."""
    body = page_text.split(TBODY, 1)[1].split("</tbody>", 1)[0] if TBODY in page_text else ""
    return [words(row) for row in body.split('<tr role="row">')[1:]]


@pytest.fixture
def auditor(client, db_session, clock):
    user = person(db_session, clock, "ali", "auditor")
    sign_in(client, "ali")
    return user


# --------------------------------------------------------------------------- who may see it


@pytest.mark.parametrize("role", ["agent", "manager"])
def test_agents_and_managers_may_not_see_the_audit_log(client, db_session, clock, role):
    person(db_session, clock, "sam", role)
    sign_in(client, "sam")
    assert client.get("/audit").status_code == 403
    assert client.get("/audit.csv").status_code == 403
    assert 'href="/audit"' not in client.get("/account/password").get_data(as_text=True)


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_auditors_and_administrators_see_it_in_the_navigation(client, db_session, clock, role):
    person(db_session, clock, "sam", role)
    sign_in(client, "sam")
    assert '<a href="/audit" aria-current="page">Audit log</a>' in page(client)


def test_signed_out_people_are_sent_to_sign_in(client):
    for path in ("/audit", "/audit.csv"):
        response = client.get(path)
        assert response.status_code == 302 and "/login?next=" in response.headers["Location"]


# --------------------------------------------------------------------------- what it shows


def test_each_kind_of_entry_is_shown_in_words(client, db_session, clock, settings):
    seed(db_session, settings)
    person(db_session, clock, "morgan", "manager")
    sign_in(client, "morgan")
    download(client)  # an evidence pack from the Evidence page
    client.post("/logout", data={"csrf_token": csrf_token(client, "/calls")})
    set_role(db_session, "morgan", "agent")  # on the server
    dana = person(db_session, clock, "dana", "admin")
    with db_session.begin():
        record_audit(db_session, dana.id, clock.now, CALLBACK_NEEDED, {"enquiry": "HD-2026-000042", "callback_id": 7})
    record_search(db_session, user_id=dana.id, username="dana", who="phone number ending 123",
                  found=Found("phone number +447700900123", {"calls": [{}, {}], "enquiries": [{}]}), wrote=None,
                  now=clock.now)
    record_removal(db_session, taken={"before": "2026-05-01", "setting": "retention.personal_data_days = 200"},
                   removal=Removal(calls=40, events=300), user_id=None, username="helpdesk", now=clock.now)
    sign_in(client, "dana", "not dana's password")
    sign_in(client, "dana")
    text = "\n".join(rows_of(page(client, f"/audit?from=2026-11-24&to={today()}")))
    for expected in (
            "dana (Administrator) Signed in",
            "dana (Administrator) Sign-in refused: wrong password",
            "The help desk Personal data removed: before 2026-05-01: 340 rows",
            "dana (Administrator) Searched for a person's data: the phone number ending 123: 3 rows found",
            "dana (Administrator) Callback needed recorded: HD-2026-000042 HD-2026-000042",
            f"{SYSTEM_USER}, on the server User changed: morgan: role changed from Manager to Agent morgan",
            "morgan (Manager) Signed out",  # their role then: now an agent
            "morgan (Manager) Evidence pack exported: 2026-11-23 to 2026-11-24, masked, no notes, from the Evidence page",
            "morgan (Manager) Signed in",
            f"{SYSTEM_USER}, on the server User changed: dana: added as Administrator dana"):
        assert expected in text, f"{expected!r} not in:\n{text}"
    # Newest first.
    assert text.index("dana (Administrator) Signed in") < text.index("morgan (Manager) Signed in")
    html = page(client)
    assert '<a href="/enquiries/HD-2026-000042"><span class="reference">HD-2026-000042</span></a>' in html
    # Each reference kept on one line, in what was done as in its link.
    assert 'Callback needed recorded: <span class="reference">HD-2026-000042</span></td>' in html
    assert f'<a href="/admin/users/{dana.id}">dana</a>' in html  # administrators follow a user to their page


def test_each_entry_says_the_role_its_user_had_then_and_an_older_one_the_role_they_have_now(
        app, client, db_session, clock, auditor):
    dana = person(db_session, clock, "dana", "admin")
    alex = person(db_session, clock, "alex", "agent")
    with db_session.begin():
        record_audit(db_session, alex.id, clock.now, CALLBACK_NEEDED, {"enquiry": "HD-2026-000042", "callback_id": 7})
    set_role(db_session, "alex", "manager", by=Actor("dana", dana.id))
    with db_session.begin():
        record_audit(db_session, alex.id, clock.now + timedelta(seconds=1), CALLBACK_NEEDED,
                     {"enquiry": "HD-2026-000043", "callback_id": 8})
        # As an entry written before 0.19.0 is: no role recorded.
        older = AuditEntry(at=clock.now - timedelta(hours=1), user_id=alex.id, actor="alex", action=CALLBACK_NEEDED,
                           detail=json.dumps({"enquiry": "HD-2026-000041"}))
        db_session.add(older)
        db_session.flush()
        db_session.execute(update(AuditEntry).where(AuditEntry.id == older.id).values(actor_role=None))
    text = "\n".join(rows_of(page(client, "/audit?what=enquiries")))
    assert "alex (Manager) Callback needed recorded: HD-2026-000043" in text
    assert "alex (Agent) Callback needed recorded: HD-2026-000042" in text
    assert "alex (now Manager) Callback needed recorded: HD-2026-000041" in text
    table = list(csv.reader(io.StringIO(client.get("/audit.csv?what=enquiries").get_data(as_text=True))))
    rows = [dict(zip(CSV_HEADER, row)) for row in table[1:]]
    assert [(row["enquiry"], row["by_role"], row["by_role_now"]) for row in rows] == [
        ("HD-2026-000041", "", "manager"), ("HD-2026-000042", "agent", "manager"),
        ("HD-2026-000043", "manager", "manager")]
    with db_session.begin():  # the role is stored as the entry is: nothing reads it back from the user
        stored = dict(db_session.execute(select(AuditEntry.action, AuditEntry.actor_role)
                                         .where(AuditEntry.action == "user.role_changed")).all())
    assert stored == {"user.role_changed": "admin"}  # dana's, who changed it


def test_a_system_user_named_helpdesk_is_not_taken_for_the_help_desk_itself(client, db_session, clock, auditor):
    person(db_session, clock, "alex", "agent", by=Actor("helpdesk"))  # the service account, on the server
    record_removal(db_session, taken={"before": "2026-05-01"}, removal=Removal(calls=1), user_id=None,
                   username="helpdesk", now=clock.now)  # the scheduler
    text = "\n".join(rows_of(page(client)))
    assert "helpdesk, on the server User changed: alex: added as Agent" in text
    assert "The help desk Personal data removed: before 2026-05-01: 1 row" in text


def test_auditors_see_who_a_change_was_about_without_a_link_to_the_users_pages(client, db_session, clock, auditor):
    person(db_session, clock, "alex", "agent")
    html = page(client)
    assert "/admin/users" not in html and "added as Agent" in html


def test_the_days_are_uk_days_and_other_days_are_left_out(client, db_session, clock, auditor):
    alex = person(db_session, clock, "alex", "agent")
    # 23:30 UTC on 30 June is 00:30 on 1 July in the UK (BST).
    moments = (datetime(2026, 6, 30, 22, 59, tzinfo=timezone.utc), datetime(2026, 6, 30, 23, 30, tzinfo=timezone.utc),
               datetime(2026, 7, 1, 22, 59, tzinfo=timezone.utc), datetime(2026, 7, 1, 23, 0, tzinfo=timezone.utc))
    with db_session.begin():
        for number, at in enumerate(moments, 1):
            record_audit(db_session, alex.id, at, CALLBACK_NEEDED, {"enquiry": f"HD-2026-00000{number}"})
    text = page(client, "/audit?from=2026-07-01&to=2026-07-01")
    assert [row.split(" BST ")[0] for row in rows_of(text)] == ["01 Jul 2026 23:59:00", "01 Jul 2026 00:30:00"]
    assert ": 2 entries. Times are UK time." in " ".join(text.split())


def test_what_narrows_to_one_kind(client, db_session, clock, auditor):
    person(db_session, clock, "alex", "agent")
    signed = rows_of(page(client, "/audit?what=sign-ins"))
    assert signed and all("Signed in" in row for row in signed)
    changed = rows_of(page(client, "/audit?what=users"))
    assert changed and all("User changed" in row for row in changed)
    assert any("alex: added as Agent" in row for row in changed)
    assert rows_of(page(client, "/audit?what=restores")) == []
    assert "Nothing was recorded" in page(client, "/audit?what=restores")


def test_one_users_entries_are_what_they_did_and_what_was_done_to_them(client, db_session, clock):
    dana = person(db_session, clock, "dana", "admin")
    alex = person(db_session, clock, "alex", "agent")
    person(db_session, clock, "sam", "agent")
    sign_in(client, "alex")
    with db_session.begin():
        record_audit(db_session, alex.id, clock.now, CALLBACK_NEEDED, {"enquiry": "HD-2026-000042", "callback_id": 7})
    client.post("/logout", data={"csrf_token": csrf_token(client, "/queue")})
    set_role(db_session, "alex", "manager", by=Actor("dana", dana.id))
    sign_in(client, "dana")
    rows = rows_of(page(client, f"/audit?user={alex.id}&from=2026-11-24&to={today()}"))
    assert len(rows) == 5, rows  # added, signed in, callback needed, signed out, role changed
    assert not any("sam" in row for row in rows) and not any("dana (Administrator) Signed in" in row for row in rows)
    assert "Only what alex did" in page(client, f"/audit?user={alex.id}")


def test_pages_of_entries(app, client, db_session, clock, auditor):
    app.config["AUDIT_PER_PAGE"] = 2
    for name in ("alex", "sam", "kim"):
        person(db_session, clock, name, "agent")
    first = page(client, "/audit?what=users")  # ali, alex, sam and kim added
    assert "4 entries, page 1 of 2" in " ".join(first.split())
    assert 'href="/audit?from=2026-11-18&to=2026-11-24&what=users&page=2"' in first.replace("&amp;", "&")
    second = rows_of(page(client, "/audit?what=users&page=2"))
    assert len(second) == 2 and "alex: added as Agent" in second[0] and "ali: added as DWP auditor" in second[1]
    assert "There is no page 3" in page(client, "/audit?what=users&page=3", 404)
    assert "There is no page" in page(client, "/audit?page=999999999999999999", 404)


@pytest.mark.parametrize("query, problem", [
    ("from=yesterday", "is not a date"),
    ("to=2026-02-30", "is not a date"),
    ("from=1899-12-31", "“1899-12-31” is out of range: use a date from 1900 to 9998."),
    ("from=2026-11-25&to=2026-11-24", "is after the last"),
    ("what=everything", "is not a kind of entry"),
    ("user=alex", "is not a user's number"),
    ("user=99999999999", "is not a user's number"),
    ("user=4242", "There is no user number 4242"),
    ("page=0", "is not a page number"),
])
def test_a_query_it_cannot_use_is_a_400_with_the_reason(client, db_session, auditor, query, problem):
    assert problem in page(client, f"/audit?{query}", 400)
    if query.startswith("page="):
        return  # the file is not paged
    response = client.get(f"/audit.csv?{query}")
    assert response.status_code == 400 and problem in unescape(response.get_data(as_text=True))


# --------------------------------------------------------------------------- the CSV file


def test_the_csv_file_has_every_entry_oldest_first_with_its_detail(app, client, db_session, clock, auditor):
    app.config["AUDIT_PER_PAGE"] = 1  # the file is not paged
    person(db_session, clock, "alex", "agent", by=Actor("=HYPERLINK(evil)"))
    clock.advance(60)
    sign_in(app.test_client(), "alex", "not the password")
    response = client.get("/audit.csv?from=2026-11-24&to=2026-11-24")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="audit-log-2026-11-24-to-2026-11-24.csv"'
    assert response.headers["Cache-Control"] == "no-store"
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert table[0] == CSV_HEADER
    rows = [dict(zip(CSV_HEADER, row)) for row in table[1:]]
    assert [row["action"] for row in rows] == ["user.added", "user.signed_in", "user.added", "user.sign_in_refused"]
    added_alex, refused = rows[2], rows[3]
    assert added_alex["by"] == "'=HYPERLINK(evil), on the server"  # a spreadsheet shows it, and runs nothing
    assert added_alex["what"] == "User changed: alex: added as Agent" and added_alex["by_user_id"] == ""
    assert refused["what"] == "Sign-in refused: wrong password, from 127.0.0.1"
    assert refused["by_role"] == refused["by_role_now"] == "agent"
    assert refused["at_utc"] == (clock.now).isoformat() and refused["at_uk"] == "2026-11-24T10:01:00+00:00"
    assert json.loads(refused["detail"])["reason"] == "wrong password"
    assert refused["about_user_id"] == refused["by_user_id"] != ""


def test_a_path_of_bytes_that_are_not_utf8_is_in_the_csv_file_escaped(client, db_session, clock, auditor):
    # `--out` as the shell gave it: Python keeps a byte that is not UTF-8 as half a surrogate pair.
    out = Path(os.fsdecode(b"/srv/sar/SAR-2026-017-caf\xe9"))
    record_search(db_session, user_id=auditor.id, username="ali", who="phone number ending 123",
                  found=Found("phone number +447700900123", {"calls": [{}]}), wrote=out, now=clock.now)
    response = client.get("/audit.csv?what=personal-data")
    rows = [dict(zip(CSV_HEADER, row)) for row in csv.reader(io.StringIO(response.get_data(as_text=True)))][1:]
    assert [row["what"] for row in rows] == [
        "Searched for a person's data: the phone number ending 123: 1 row found; a copy written on the server"]
    assert json.loads(rows[0]["detail"])["copy_written_to"] == str(out)
    assert json.loads(rows[0]["detail"])["searched_for"] == "phone number ending 123"


def test_an_empty_range_gives_a_csv_file_with_its_header_only(client, db_session, auditor):
    response = client.get("/audit.csv?from=2020-01-01&to=2020-01-31")
    assert list(csv.reader(io.StringIO(response.get_data(as_text=True)))) == [CSV_HEADER]


def test_the_csv_file_reads_in_batches_with_none_left_out_or_repeated(monkeypatch, client, db_session, clock, auditor):
    monkeypatch.setattr(audit_log, "BATCH", 2)
    alex = person(db_session, clock, "alex", "agent")
    with db_session.begin():  # the same moment for several entries, and ids not in the order of time
        for number, seconds in enumerate((5, 5, 5, 0, 5, 9, 0), 1):
            record_audit(db_session, alex.id, clock.now - timedelta(seconds=seconds), CALLBACK_NEEDED,
                         {"enquiry": f"HD-2026-00000{number}"})
    response = client.get("/audit.csv?what=enquiries")
    rows = [dict(zip(CSV_HEADER, row)) for row in csv.reader(io.StringIO(response.get_data(as_text=True)))][1:]
    assert [row["enquiry"][-1] for row in rows] == ["6", "1", "2", "3", "5", "4", "7"]


def test_a_csv_file_downloaded_slowly_does_not_stop_webhooks_writing(app, client, db_session, clock, auditor):
    alex = person(db_session, clock, "alex", "agent")
    with db_session.begin():
        for number in range(3):
            record_audit(db_session, alex.id, clock.now, CALLBACK_NEEDED, {"enquiry": f"HD-2026-00000{number}"})
    response = client.get("/audit.csv", buffered=False)
    chunks = iter(response.response)
    next(chunks), next(chunks)  # the browser has taken the first lines, and waits
    engine = make_engine(app.config["DATABASE_URL"], wait_seconds=1)
    try:
        with Session(engine) as other, other.begin():  # as a webhook does, giving up after a second
            record_audit(other, None, clock.now, CALLBACK_NEEDED, {"enquiry": "HD-2026-000009"})
    finally:
        engine.dispose()
        response.close()


# --------------------------------------------------------------------------- a user's page


def test_a_users_page_shows_their_sign_ins_and_links_to_their_audit_log(client, db_session, clock):
    person(db_session, clock, "dana", "admin")
    alex = person(db_session, clock, "alex", "agent")
    sign_in(client, "alex", "not the password")
    sign_in(client, "alex")
    client.post("/logout", data={"csrf_token": csrf_token(client, "/queue")})
    sign_in(client, "dana")
    html = page(client, f"/admin/users/{alex.id}")
    section = " ".join(html.split("<h2>Signing in and out</h2>", 1)[1].split())
    assert section.index("Signed out") < section.index("Signed in") < section.index("Sign-in refused: wrong password")
    assert f'href="/audit?user={alex.id}&from=2026-11-24"' in section.replace("&amp;", "&")
    assert "No sign-in recorded." in page(client, f"/admin/users/{person(db_session, clock, 'kim', 'agent').id}")
    assert PASSWORD not in html
