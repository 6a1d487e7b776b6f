"""`helpdesk audit-log`: the Audit log page on the server, in words or as the page's CSV file."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from callbacks.owed import CALLBACK_NEEDED, record_audit
from helpdesk import cli_audit
from helpdesk.cli import main as helpdesk_cli
from helpdesk.clock import LONDON, local
from helpdesk.users import Actor, set_role
from tests.integration.test_audit_log_page import CSV_HEADER, SYSTEM_USER, today
from tests.integration.test_sign_in_audit import person
from tests.integration.test_users_and_login import PASSWORD, csrf_token, sign_in


def audit_log(url: str, *args: str):
    return CliRunner().invoke(helpdesk_cli, ["audit-log", *args], env={"DATABASE_URL": url})


def story(migrated_url, client, db_session, clock):
    """alex, an agent, signs in, records a callback as needed and signs out; dana, an
    administrator, then makes alex a manager."""
    dana = person(db_session, clock, "dana", "admin")
    alex = person(db_session, clock, "alex", "agent")
    sign_in(client, "alex")
    clock.advance(60)
    with db_session.begin():
        record_audit(db_session, alex.id, clock.now, CALLBACK_NEEDED, {"enquiry": "HD-2026-000042", "callback_id": 7})
    clock.advance(60)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/queue")})
    set_role(db_session, "alex", "manager", by=Actor("dana", dana.id))
    return dana, alex


def test_it_lists_entries_newest_first_in_words_with_uk_times(migrated_url, client, db_session, clock):
    story(migrated_url, client, db_session, clock)
    result = audit_log(migrated_url, "--from", "2026-11-24", "--to", today())
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    said = [line.split("  ", 1)[1] for line in lines]
    assert said[:4] == ["dana (Administrator)  User changed: alex: role changed from Agent to Manager",
                        "alex (Agent)  Signed out from 127.0.0.1",
                        "alex (Agent)  Callback needed recorded: HD-2026-000042",
                        "alex (Agent)  Signed in from 127.0.0.1"]
    assert f"{SYSTEM_USER}, on the server  User changed: alex: added as Agent" in said
    signed_in = lines[3].split("  ", 1)[0]
    assert signed_in == f"{(clock.now - timedelta(seconds=120)).astimezone(LONDON):%Y-%m-%d %H:%M:%S %Z}"
    assert signed_in.endswith(" GMT")


def test_what_and_user_narrow_it_as_on_the_page(migrated_url, client, db_session, clock):
    story(migrated_url, client, db_session, clock)
    person(db_session, clock, "sam", "agent")
    every_day = ("--from", "2026-11-24", "--to", today())
    sign_ins = audit_log(migrated_url, *every_day, "--what", "sign-ins").output.splitlines()
    assert [line.split("  ", 1)[1] for line in sign_ins] == ["alex (Agent)  Signed out from 127.0.0.1",
                                                          "alex (Agent)  Signed in from 127.0.0.1"]
    alex = audit_log(migrated_url, *every_day, "--user", "ALEX").output
    assert len(alex.splitlines()) == 5 and "sam" not in alex  # added, signed in, callback, signed out, role changed
    nobody = audit_log(migrated_url, "--user", "nobody")
    assert nobody.exit_code == 1 and "there is no user 'nobody'" in nobody.output


def test_control_characters_are_not_sent_to_the_terminal(migrated_url, db_session, clock):
    person(db_session, clock, "alex", "agent", by=Actor("root\x1b[2J\x07"))  # LOGNAME with an escape sequence
    result = audit_log(migrated_url, "--from", "2026-11-24", "--to", today())
    assert "root?[2J?, on the server  User changed: alex: added as Agent" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output


def test_more_entries_than_the_limit_says_how_many_and_how_to_see_them(migrated_url, client, db_session, clock):
    story(migrated_url, client, db_session, clock)
    result = audit_log(migrated_url, "--from", "2026-11-24", "--to", today(), "--limit", "2")
    lines = result.output.splitlines()
    assert len(lines) == 3 and "Signed out" in lines[1]
    assert lines[2] == (f"The newest 2 of 6 entries from 2026-11-24 to {today()}: give --limit or a shorter range "
                        "for the rest, or --csv for all of them.")


def test_a_range_with_no_entries_says_so(migrated_url, client, db_session, clock):
    story(migrated_url, client, db_session, clock)
    result = audit_log(migrated_url, "--from", "2026-01-01", "--to", "2026-01-31")
    assert result.exit_code == 0 and result.output == "No entries from 2026-01-01 to 2026-01-31.\n"
    assert audit_log(migrated_url, "--from", "2026-01-05", "--to", "2026-01-05").output == "No entries from 2026-01-05.\n"


def test_bad_options_are_refused_naming_the_problem(migrated_url):
    cases = {
        ("--from", "yesterday"): "'yesterday' is not a date: use YYYY-MM-DD",
        ("--to", "1899-12-31"): "'1899-12-31' is out of range",
        ("--from", "2026-11-25", "--to", "2026-11-24"): "2026-11-25 is after --to 2026-11-24",
        ("--what", "everything"): "'everything' is not one of 'sign-ins', 'users'",
        ("--limit", "0"): "0 is not in the range 1<=x<=100000",
    }
    for args, problem in cases.items():
        result = audit_log(migrated_url, *args)
        assert result.exit_code == 2 and problem in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_the_csv_file_is_the_pages(app, migrated_url, client, db_session, clock, tmp_path):
    story(migrated_url, client, db_session, clock)
    day = f"{local(clock.now):%Y-%m-%d}"
    auditor = app.test_client()
    person(db_session, clock, "ali", "auditor")
    sign_in(auditor, "ali")
    from_page = auditor.get(f"/audit.csv?from=2026-11-20&to={today()}").get_data(as_text=True)
    out = tmp_path / "audit.csv"
    result = audit_log(migrated_url, "--from", "2026-11-20", "--to", today(), "--csv", str(out))
    assert result.exit_code == 0, result.output
    written = out.read_text(encoding="utf-8")
    table = list(csv.reader(io.StringIO(written)))
    assert table[0] == CSV_HEADER and len(table) == 1 + 8  # dana, alex, ali added; alex's 4; ali signed in
    assert result.output == f"Wrote 8 entries to {out}.\n"
    assert written == from_page.replace("\r\n", "\n") or written == from_page
    assert [row[6] for row in table[1:]][:3] == ["user.added", "user.added", "user.signed_in"]  # oldest first
    assert day in table[1][1]

    again = audit_log(migrated_url, "--from", "2026-11-20", "--csv", str(out))
    assert again.exit_code == 1 and "exists already: give a new file name" in again.output
    assert out.read_text(encoding="utf-8") == written  # not overwritten
    to_stdout = audit_log(migrated_url, "--from", "2026-11-20", "--to", today(), "--csv", "-")
    assert to_stdout.exit_code == 0 and to_stdout.output.replace("\r\n", "\n") == written.replace("\r\n", "\n")


def test_a_database_failing_part_of_the_way_leaves_no_csv_file(migrated_url, client, db_session, clock, tmp_path,
                                                              monkeypatch):
    story(migrated_url, client, db_session, clock)
    real = cli_audit.all_entries

    def fails_after_two(*args, **kwargs):
        for number, entry in enumerate(real(*args, **kwargs)):
            if number == 2:
                raise OperationalError("SELECT ... FROM audit_log", {}, Exception("the database went away"))
            yield entry

    monkeypatch.setattr(cli_audit, "all_entries", fails_after_two)
    out = tmp_path / "audit.csv"
    result = audit_log(migrated_url, "--from", "2026-11-20", "--to", today(), "--csv", str(out))
    assert result.exit_code == 1 and "the database went away" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_a_database_not_upgraded_is_named_as_such(database_url):
    from helpdesk.migrate import head, upgrade

    upgrade(database_url, "0017")
    for command in (["audit-log"], ["users", "add", "alex", "--role", "agent"], ["users", "list"]):
        result = CliRunner().invoke(helpdesk_cli, command, env={"DATABASE_URL": database_url,
                                                                "HELPDESK_PASSWORD": PASSWORD})
        assert result.exit_code == 1 and "Traceback" not in result.output, (command, result.output)
        assert result.output == (f"Error: the database's schema is at revision 0017, and this version needs {head()}: "
                                 "run 'helpdesk db upgrade' first\n"), command
