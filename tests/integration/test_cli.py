"""The helpdesk command: migrations, configuration checks and start-up refusals."""
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import inspect

from sqlalchemy.engine import make_url

from helpdesk.cli import main
from helpdesk.db import make_engine
from helpdesk.migrate import alembic_config


def test_db_upgrade_creates_the_schema_and_is_repeatable(database_url):
    runner = CliRunner()
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    outputs = []
    for _ in range(2):
        result = runner.invoke(main, ["db", "upgrade"], env={"DATABASE_URL": database_url})
        assert result.exit_code == 0, result.output
        outputs.append(result.output.strip())
    # Which run did the work, and which did nothing, is plain from the output, and on which database.
    assert [output.splitlines()[0] for output in outputs] == [
        f"Migrated the database from an empty one to revision {head}.",
        f"The database is already at revision {head}: nothing to do."]
    where = make_url(database_url)
    shown = f"the SQLite file {where.database}" if where.get_backend_name() == "sqlite" else database_url
    assert [output.splitlines()[1] for output in outputs] == [f"Database: {shown}"] * 2
    engine = make_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"calls", "twilio_events", "enquiries", "reference_counters", "users"} <= tables
    current = runner.invoke(main, ["db", "current"], env={"DATABASE_URL": database_url})
    assert current.output.strip() == head


def test_check_config_names_the_file_and_key_of_a_mistake(tmp_path):
    bad = tmp_path / "helpdesk.toml"
    bad.write_text('[routing]\nmode = "broadcast"\n')
    result = CliRunner().invoke(main, ["check-config", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: routing.mode must be one of" in result.output
    assert "Traceback" not in result.output


WALES = """
[helpdesk]
nation = "england-and-wales"
[hours]
monday = ["08:00-18:00"]
tuesday = ["08:00-18:00"]
wednesday = ["08:00-18:00"]
thursday = ["08:00-18:00"]
friday = ["08:00-12:30", "13:00-18:00"]
[[closures]]
from = "2026-12-24T12:00"
to = "2026-12-25T00:00"
reason = "Christmas Eve afternoon"
[routing]
dial_targets = ["+447700900123", "client:agent-1"]
"""


def test_calendar_shows_the_hours_in_force_and_when_a_callback_would_be_due(tmp_path):
    config = tmp_path / "helpdesk.toml"
    config.write_text(WALES)
    result = CliRunner().invoke(main, ["calendar", "--from", "2026-12-24", "--days", "5",
                                       "--owed-from", "2026-12-24 11:55"], env={"HELPDESK_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1:6] == [
        "Thu 24 Dec 2026  08:00-12:00  (closure: Christmas Eve afternoon (24 Dec 12:00 to 25 Dec 00:00))",
        "Fri 25 Dec 2026  closed  (bank holiday: Christmas Day)",
        "Sat 26 Dec 2026  closed  (bank holiday: Boxing Day)",
        "Sun 27 Dec 2026  closed",
        "Mon 28 Dec 2026  closed  (bank holiday: Boxing Day (observed))",
    ]
    assert "due after 3 hours of opening time, at 10:55 on Tuesday 29 December 2026" in result.output
    friday = CliRunner().invoke(main, ["calendar", "--from", "2027-01-15", "--days", "1"],
                                env={"HELPDESK_CONFIG": str(config)})
    assert "Fri 15 Jan 2027  08:00-12:30, 13:00-18:00" in friday.output
    config.write_text('[hours]\nsaturday = ["00:00-24:00"]\n')
    whole = CliRunner().invoke(main, ["calendar", "--from", "2026-12-05", "--days", "1"],
                               env={"HELPDESK_CONFIG": str(config)})
    assert "Sat 05 Dec 2026  00:00-24:00" in whole.output, whole.output


@pytest.mark.parametrize("args, problem", [
    (["--from", "2026-13-01"], "'2026-13-01' is not a date"),
    (["--owed-from", "tomorrow"], "'tomorrow' is not a UK time"),
    (["--days", "0"], "--days"),
    (["--from", "20261023"], "'20261023' is not a date: use YYYY-MM-DD"),
    (["--from", "2026-W43-5"], "'2026-W43-5' is not a date"),
    (["--from", "9998-12-30", "--days", "3"], "'9998-12-30' is out of range: use a date up to 9998-12-28 for 3 days"),
    (["--from", "1899-12-31"], "'1899-12-31' is out of range: use a date from 1900 to 9998"),
    (["--owed-from", "2026-03-29 01:30"], "'2026-03-29 01:30' did not happen in the UK: the clocks went forward"),
    (["--owed-from", "9999-12-31 23:59"], "'9999-12-31 23:59' is not a UK time: use 'YYYY-MM-DD HH:MM', from 1900"),
    (["--owed-from", "0001-01-01 00:00"], "'0001-01-01 00:00' is not a UK time"),
])
def test_calendar_names_a_bad_option(args, problem):
    result = CliRunner().invoke(main, ["calendar", *args])
    assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output


def test_calendar_says_which_0130_it_takes_when_the_clocks_go_back(tmp_path):
    config = tmp_path / "helpdesk.toml"
    config.write_text('[hours]\nsunday = ["00:00-24:00"]\nmonday = ["00:00-24:00"]\n')
    result = CliRunner().invoke(main, ["calendar", "--from", "2026-10-25", "--days", "1", "--owed-from",
                                       "2026-10-25 01:30"], env={"HELPDESK_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert ("01:30 happened twice in the UK: the clocks went back an hour then: this is the first 01:30, "
            "British Summer Time.") in result.output


def test_calendar_says_bst_or_gmt_on_the_days_the_clocks_change(tmp_path):
    # Hours inside the repeated hour are open on both passes; a span ending as the clocks go back
    # ends at 02:00 BST, which the clocks then show as 01:00 GMT.
    config = tmp_path / "helpdesk.toml"
    config.write_text('[hours]\nsaturday = ["08:00-17:00"]\nsunday = ["01:30-02:00"]\n')
    october = CliRunner().invoke(main, ["calendar", "--from", "2026-10-24", "--days", "2"],
                                 env={"HELPDESK_CONFIG": str(config)})
    assert october.output.splitlines()[1:3] == [
        "Sat 24 Oct 2026  08:00-17:00",
        "Sun 25 Oct 2026  01:30 BST-02:00 BST, 01:30 GMT-02:00 GMT",
    ], october.output
    config.write_text('[hours]\nsunday = ["00:00-01:00", "03:00-04:15"]\n')
    march = CliRunner().invoke(main, ["calendar", "--from", "2026-03-29", "--days", "1"],
                               env={"HELPDESK_CONFIG": str(config)})
    # Open until the clocks go forward at 01:00 GMT (not "02:00", the same instant in BST).
    assert march.output.splitlines()[1] == "Sun 29 Mar 2026  00:00 GMT-01:00 GMT, 03:00 BST-04:15 BST", march.output
    config.write_text('[hours]\nsunday = ["01:30-04:15"]\n')
    march = CliRunner().invoke(main, ["calendar", "--from", "2026-03-29", "--days", "1"],
                               env={"HELPDESK_CONFIG": str(config)})
    assert march.output.splitlines()[1] == "Sun 29 Mar 2026  02:00 BST-04:15 BST", march.output


def test_check_config_warns_when_a_phones_voicemail_would_count_as_an_answer(tmp_path):
    config = tmp_path / "helpdesk.toml"
    config.write_text(WALES)
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code == 0
    assert ("warning: routing.dial_targets has phones (+447700900123) and routing.screen_calls is false: if a "
            "phone's own voicemail, or its phone system's, picks up, the call counts as answered.") in result.output
    config.write_text(WALES + "screen_calls = true\n")
    assert "routing.dial_targets" not in CliRunner().invoke(main, ["check-config", str(config)]).output
    # A desk phone on the provider's own phone system may have voicemail too; a Twilio Client has none.
    config.write_text(WALES.replace('"+447700900123"', '"sip:1001@pbx.example.org", "client:alice"'))
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert "warning: routing.dial_targets has phones (sip:1001@pbx.example.org) and" in result.output
    config.write_text(WALES.replace('"+447700900123"', '"client:alice"'))
    assert "routing.dial_targets" not in CliRunner().invoke(main, ["check-config", str(config)]).output


@pytest.mark.parametrize(("setting", "unused"), [
    ('agents_numbers = ["+441144960099"]', "the numbers are not used"),
    (f'agents_apps = ["AP{"5" * 32}"]', "the TwiML Apps' Voice URLs are not used"),
])
def test_check_config_warns_of_queue_modes_agents_settings_a_ring_group_does_not_use(tmp_path, setting, unused):
    config = tmp_path / "helpdesk.toml"
    key = setting.split(" = ")[0]
    config.write_text(WALES.replace('"+447700900123"', '"client:alice"') + setting + "\n")
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code == 0
    assert (f'warning: routing.{key} is set but routing.mode is "dial": agents take no calls from a queue, so '
            f"{unused}.") in result.output
    config.write_text(config.read_text() + 'mode = "queue"\n')
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code == 0 and f"routing.{key} is set but" not in result.output, result.output


def test_check_config_warns_when_the_agents_line_trusts_the_caller_id_alone(tmp_path):
    config = tmp_path / "helpdesk.toml"
    queue = WALES.replace('"+447700900123"', '"client:alice"') + 'mode = "queue"\n'
    config.write_text(queue + 'agents_numbers = ["+441144960099"]\n')
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code == 0
    assert ("warning: routing.agents_numbers is set and routing.agents_pin is false: a call to the agents' line is "
            "put through to a caller on its caller ID alone, which can be faked.") in result.output
    config.write_text(queue + 'agents_numbers = ["+441144960099"]\nagents_pin = true\n')
    assert "agents_pin" not in CliRunner().invoke(main, ["check-config", str(config)]).output
    config.write_text(queue)  # agents on Twilio Client apps alone: Twilio has checked who they are
    assert "agents_pin" not in CliRunner().invoke(main, ["check-config", str(config)]).output


def test_check_config_warns_when_calls_that_never_reached_the_app_would_not_be_looked_for(tmp_path):
    config = tmp_path / "helpdesk.toml"
    config.write_text(WALES + "screen_calls = true\n")
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code == 0 and "warning: webhooks.twilio_numbers is empty" in result.output
    config.write_text(WALES + 'screen_calls = true\n\n[webhooks]\ntwilio_numbers = ["+442920000000"]\n'
                      f'spool_dir = "{tmp_path}/spool"\n')
    assert "warning" not in CliRunner().invoke(main, ["check-config", str(config)]).output
    config.write_text(WALES + 'screen_calls = true\n\n[webhooks]\ntwilio_numbers = ["+442920000000"]\n'
                      f'spool_dir = "{tmp_path}/spool"\nreconcile_after_minutes = 0\n')
    assert "warning: webhooks.reconcile_after_minutes is 0, so the scheduler never asks Twilio" in CliRunner().invoke(
        main, ["check-config", str(config)]).output


def test_check_config_warns_when_mail_would_cross_the_network_unencrypted(tmp_path):
    config = tmp_path / "helpdesk.toml"
    quiet = WALES + f'screen_calls = true\n\n[webhooks]\ntwilio_numbers = ["+442920000000"]\nspool_dir = "{tmp_path}/spool"\n'
    config.write_text(quiet + '\n[smtp]\nhost = "mail.example.org"\nport = 25\nsecurity = "none"\n')
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code == 0
    assert ('warning: smtp.security is "none" and smtp.host (mail.example.org) is not this machine'
            in result.output)
    config.write_text(quiet + '\n[smtp]\nhost = "127.0.0.1"\nport = 25\nsecurity = "none"\n')
    assert "warning" not in CliRunner().invoke(main, ["check-config", str(config)]).output


def test_check_config_warns_when_supervisors_or_acknowledgements_could_not_be_emailed(tmp_path):
    config = tmp_path / "helpdesk.toml"
    quiet = WALES + f'screen_calls = true\n\n[webhooks]\ntwilio_numbers = ["+442920000000"]\nspool_dir = "{tmp_path}/spool"\n'
    supervisors = '\n[supervisors]\nemails = ["lead@provider.example.org"]\n'
    config.write_text(quiet + supervisors)
    assert ("warning: supervisors.emails is set but smtp.host is not: warnings and breaches will not be emailed."
            in CliRunner().invoke(main, ["check-config", str(config)]).output)
    config.write_text(quiet + supervisors + '\n[smtp]\nhost = "127.0.0.1"\n')
    assert ("warning: supervisors.emails is set but smtp.from_address is not, nor email.addresses"
            in CliRunner().invoke(main, ["check-config", str(config)]).output)
    # The first help desk address serves, as it does for acknowledgements.
    config.write_text(quiet + supervisors + '\n[smtp]\nhost = "127.0.0.1"\n\n[email]\naddresses = ["hd@provider.example.org"]\n')
    assert "warning" not in CliRunner().invoke(main, ["check-config", str(config)]).output
    config.write_text(quiet + '\n[email]\naddresses = ["hd@provider.example.org"]\n')
    assert ("warning: email.addresses is set but smtp.host is not: acknowledgements will not be emailed."
            in CliRunner().invoke(main, ["check-config", str(config)]).output)


def test_check_config_warns_of_environment_settings_that_are_set_but_unusable(tmp_path):
    config = tmp_path / "helpdesk.toml"
    quiet = WALES + f'screen_calls = true\n\n[webhooks]\ntwilio_numbers = ["+442920000000"]\nspool_dir = "{tmp_path}/spool"\n'
    config.write_text(quiet)
    twilio = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "t", "PUBLIC_BASE_URL": "https://h.example",
              "TWILIO_FROM_NUMBER": "+442920000000"}
    assert "warning" not in CliRunner().invoke(main, ["check-config", str(config)], env=twilio).output
    result = CliRunner().invoke(main, ["check-config", str(config)], env={**twilio, "TWILIO_ACCOUNT_SID": "12345"})
    assert result.exit_code == 0 and ('warning: "Call back now" will not work here: Twilio is not configured: '
                                      "TWILIO_ACCOUNT_SID is not an account SID") in result.output
    result = CliRunner().invoke(main, ["check-config", str(config)], env={**twilio, "TWILIO_FROM_NUMBER": "01144960000"})
    assert "Twilio is not configured: TWILIO_FROM_NUMBER" in result.output
    config.write_text(quiet + '\n[email.imap]\nhost = "imap.example.org"\n')
    result = CliRunner().invoke(main, ["check-config", str(config)], env={**twilio, "IMAP_USERNAME": "desk"})
    assert ("warning: email.imap.host is set (imap.example.org) but IMAP_USERNAME and IMAP_PASSWORD are not both "
            "set here") in result.output
    assert "warning" not in CliRunner().invoke(main, ["check-config", str(config)], env={
        **twilio, "IMAP_USERNAME": "desk", "IMAP_PASSWORD": "pw"}).output
    config.write_text(quiet)
    result = CliRunner().invoke(main, ["check-config", str(config)], env={**twilio, "SIP_PASSWORD": "pw"})
    assert result.exit_code == 0 and ("warning: the app will not start here: SIP_PASSWORD is set but SIP_USERNAME "
                                      "is not: set both") in result.output
    login = {"SIP_USERNAME": "desk", "SIP_PASSWORD": "trunk-password-8861"}
    assert "warning" not in CliRunner().invoke(main, ["check-config", str(config)], env={**twilio, **login}).output
    result = CliRunner().invoke(main, ["check-config", str(config)], env={
        **twilio, **login, "PUBLIC_BASE_URL": "http://helpdesk.example.org:8080"})
    assert ("warning: SIP_PASSWORD is set and PUBLIC_BASE_URL is http://helpdesk.example.org:8080: the ring group's "
            "TwiML gives it to Twilio unencrypted.") in result.output
    assert "trunk-password-8861" not in result.output
    for quiet_base in ("http://127.0.0.1:5000", "http://localhost:5000"):  # the demo's and a test's: no network
        assert "warning" not in CliRunner().invoke(main, ["check-config", str(config)], env={
            **twilio, **login, "PUBLIC_BASE_URL": quiet_base}).output
    config.write_text(quiet + "\n[scheduler]\nsweep_seconds = 300\n")
    assert ("warning: scheduler.lease_seconds (120) is not longer than scheduler.sweep_seconds (300)"
            in CliRunner().invoke(main, ["check-config", str(config)]).output)


def test_check_config_warns_of_a_spool_that_moves_with_the_working_directory_or_cannot_be_written(tmp_path):
    config = tmp_path / "helpdesk.toml"
    quiet = WALES + 'screen_calls = true\n\n[webhooks]\ntwilio_numbers = ["+442920000000"]\n'
    config.write_text(quiet + 'spool_dir = "spool"\n')
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code == 0
    assert (f'warning: webhooks.spool_dir "spool" is relative, so it is taken from each process\'s working directory '
            f"(here {Path.cwd() / 'spool'})") in result.output
    (tmp_path / "a-file").write_text("")
    config.write_text(quiet + f'spool_dir = "{tmp_path}/a-file/spool"\n')
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code == 0
    assert f"warning: webhooks.spool_dir: cannot write to {tmp_path}/a-file/spool" in result.output
    config.write_text(quiet + f'spool_dir = "{tmp_path}/new/spool"\n')
    assert "warning" not in CliRunner().invoke(main, ["check-config", str(config)]).output
    assert not (tmp_path / "new").exists()  # checking makes nothing
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for spool in ("a-file", "dangling", "dangling/spool"):  # as the server, which would refuse them, says
        config.write_text(quiet + f'spool_dir = "{tmp_path}/{spool}"\n')
        result = CliRunner().invoke(main, ["check-config", str(config)])
        assert f"warning: webhooks.spool_dir: cannot write to {tmp_path}/{spool} (" in result.output, spool
    config.write_text(quiet + f'spool_dir = "{tmp_path}/a-file"\n')
    assert "(not a directory)" in CliRunner().invoke(main, ["check-config", str(config)]).output


def test_run_refuses_to_start_without_its_secrets():
    result = CliRunner().invoke(main, ["run"], env={"SECRET_KEY": "", "TWILIO_AUTH_TOKEN": "", "PUBLIC_BASE_URL": ""})
    assert result.exit_code == 1
    assert "set SECRET_KEY, TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL" in result.output


def test_run_refuses_to_start_with_invalid_configuration(tmp_path):
    bad = tmp_path / "helpdesk.toml"
    bad.write_text('[hours]\nmonday = ["08:00-25:00"]\n')
    env = {"SECRET_KEY": "k" * 32, "TWILIO_AUTH_TOKEN": "t", "PUBLIC_BASE_URL": "https://x.example", "HELPDESK_CONFIG": str(bad),
           "DATABASE_URL": f"sqlite:///{tmp_path}/h.db"}
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 1
    assert f"{bad}: hours.monday has '08:00-25:00'" in result.output


def test_run_refuses_to_start_with_a_spool_it_cannot_write_to(tmp_path):
    # Else webhooks the database could not take would be lost, which is found only in an outage.
    (tmp_path / "a-file").write_text("")
    config = tmp_path / "helpdesk.toml"
    config.write_text(f'[hours]\nmonday = ["08:00-18:00"]\n\n[webhooks]\nspool_dir = "{tmp_path}/a-file/spool"\n')
    env = {"SECRET_KEY": "k" * 32, "TWILIO_AUTH_TOKEN": "t", "PUBLIC_BASE_URL": "https://x.example",
           "HELPDESK_CONFIG": str(config), "DATABASE_URL": f"sqlite:///{tmp_path}/h.db"}
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"webhooks.spool_dir: cannot write to {tmp_path}/a-file/spool (" in result.output
    assert "webhooks would be lost whenever the database could not take them" in result.output
    assert not (tmp_path / "h.db").exists()


def test_the_spool_check_a_server_makes_leaves_a_ready_spool_and_nothing_in_it(tmp_path):
    from helpdesk.spool import Spool
    from helpdesk.voice.recovery import spool_problem
    from tests.integration.conftest import make_settings

    settings = make_settings(webhooks={"spool_dir": str(tmp_path / "new" / "spool")})
    assert spool_problem(settings, create=False) is None and not (tmp_path / "new").exists()
    assert spool_problem(settings) is None
    assert (tmp_path / "new" / "spool").is_dir() and list((tmp_path / "new" / "spool").iterdir()) == []
    assert not Spool(tmp_path / "new" / "spool").has_waiting()


@pytest.mark.parametrize("command", [["scheduler"], ["run", "--port", "1"], ["db", "upgrade"], ["users", "list"]])
def test_a_bad_setting_in_the_database_url_is_named_in_one_line_by_every_command(tmp_path, command):
    config = tmp_path / "helpdesk.toml"
    config.write_text(f'[hours]\nmonday = ["08:00-18:00"]\n\n[webhooks]\nspool_dir = "{tmp_path}/spool"\n')
    env = {"SECRET_KEY": "k" * 32, "TWILIO_AUTH_TOKEN": "t", "PUBLIC_BASE_URL": "https://x.example",
           "HELPDESK_CONFIG": str(config), "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x?pool_size=many"}
    result = CliRunner().invoke(main, command, env=env)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "DATABASE_URL: pool_size must be a whole number, not 'many'" in result.output
    assert "cannot reach" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args, problem", [
    (["db", "upgrade", "--revision", " "], "Invalid value for --revision: give a revision, for example head"),
    (["calls", "unfinished", "--since", "0001-01-01"], "'0001-01-01' is out of range: use a date from 1900 to 9998"),
    (["calls", "missed", "--since", "2026-02-30"], "'2026-02-30' is not a date: use YYYY-MM-DD"),
    (["calls", "missed", "--since", "2026-11-24", "--until", "20261124"], "'20261124' is not a date"),
])
def test_a_bad_option_is_named_before_anything_is_touched(tmp_path, args, problem):
    url = f"sqlite:///{tmp_path / 'never-made.db'}"
    result = CliRunner().invoke(main, args, env={"DATABASE_URL": url})
    assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output
    assert not (tmp_path / "never-made.db").exists()


def test_db_upgrade_on_an_unreachable_database_says_so_without_a_traceback(tmp_path):
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.exit_code == 1
    assert "cannot reach the database: " in result.output and "Traceback" not in result.output
    assert "sqlalche.me" not in result.output and len(result.output.strip().splitlines()) == 1


def test_db_upgrade_from_an_older_schema_says_from_which_revision(tmp_path):
    from helpdesk.migrate import head, upgrade

    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(url, "0006")
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"DATABASE_URL": url})
    assert result.exit_code == 0
    assert result.output.strip() == (f"Migrated the database from revision 0006 to revision {head()}.\n"
                                     f"Database: the SQLite file {tmp_path}/old.db")


def test_db_upgrade_names_the_default_database_and_refuses_an_empty_database_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == (
        f"Database: the SQLite file {tmp_path}/helpdesk.db (DATABASE_URL is not set, so the default)")
    for command in (["db", "upgrade"], ["users", "add", "alex", "--role", "manager"], ["users", "list"]):
        result = CliRunner().invoke(main, command, env={"DATABASE_URL": " ", "HELPDESK_PASSWORD": "x" * 16})
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.output.strip() == ("Error: DATABASE_URL is set but empty: give the database's URL "
                                         "(postgresql://...), or unset it for the SQLite file helpdesk.db in the "
                                         "working directory"), command


def test_the_database_a_command_names_never_shows_its_password(monkeypatch):
    from helpdesk.migrate import database_words

    url = "postgresql://helpdesk:s3cret@db.internal/helpdesk"
    monkeypatch.setenv("DATABASE_URL", url)
    assert database_words(url) == "postgresql://helpdesk:***@db.internal/helpdesk"


@pytest.mark.parametrize("url, message", [
    ("nonsense://", "DATABASE_URL names a database this app does not use (nonsense)"),
    ("not a url at all", "DATABASE_URL is not a database URL: “not a url at all”"),
    ("sqlite:////no-such-directory/h.db", "the database file /no-such-directory/h.db does not exist"),
])
def test_db_current_names_what_is_wrong_with_database_url(url, message):
    result = CliRunner().invoke(main, ["db", "current"], env={"DATABASE_URL": url})
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_a_schema_from_a_newer_version_of_the_app_is_named_as_such_not_sent_to_db_upgrade(tmp_path):
    from sqlalchemy import text

    from helpdesk.migrate import head, upgrade

    url = f"sqlite:///{tmp_path}/newer.db"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    env = {"DATABASE_URL": url}
    current = CliRunner().invoke(main, ["db", "current"], env=env)
    assert current.output.strip() == f"0099 (newer than this version of the app, which goes up to {head()})"
    for command in (["db", "upgrade"], ["webhooks", "replay"], ["scheduler", "--once"]):
        result = CliRunner().invoke(main, command, env=env)
        assert result.exit_code == 1 and "Traceback" not in result.output, (command, result.output)
        assert "which this version of the app does not have: a newer version migrated it" in result.output


@pytest.mark.parametrize("url, shown, hidden", [
    ("helpdesk:S3cretPw@127.0.0.1:5432/helpdesk", "is not a database URL: “helpdesk:***@127.0.0.1", "S3cretPw"),
    ("postgresql://helpdesk:S3cretPw@127.0.0.1:port/helpdesk", "has a port that is not a number", "S3cretPw"),
    ("postgresql+psycopg2://helpdesk:S3cretPw@127.0.0.1/helpdesk",
     "asks for the driver psycopg2, which this app does not use: write postgresql://", "S3cretPw"),
])
def test_a_malformed_database_url_is_named_without_its_password_or_a_traceback(url, shown, hidden):
    for command in (["db", "upgrade"], ["db", "current"], ["users", "list"], ["run"]):
        result = CliRunner().invoke(main, command, env={"DATABASE_URL": url, "SECRET_KEY": "k" * 32,
                                                        "TWILIO_AUTH_TOKEN": "t", "PUBLIC_BASE_URL": "https://h.example"})
        assert result.exit_code == 1 and "Traceback" not in result.output, (command, result.output)
        assert shown in result.output and hidden not in result.output, (command, result.output)


def test_db_current_says_when_the_schema_is_behind_this_version(tmp_path):
    from helpdesk.migrate import head, upgrade

    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(url, "0004")
    result = CliRunner().invoke(main, ["db", "current"], env={"DATABASE_URL": url})
    assert result.exit_code == 0
    assert result.output.strip() == f"0004 (run 'helpdesk db upgrade': this version needs {head()})"


def test_email_poll_names_a_ca_file_that_holds_no_certificate(tmp_path):
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    result = CliRunner().invoke(main, ["email", "poll", "--once", "--ca-file", str(not_pem)],
                                env={"DATABASE_URL": f"sqlite:///{tmp_path}/h.db"})
    assert result.exit_code == 2 and "holds no certificate in PEM form" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--port", "99999"], ["--port", "-1"], ["--workers", "0"]])
def test_run_refuses_a_port_or_worker_count_out_of_range(args):
    result = CliRunner().invoke(main, ["run", *args])
    assert result.exit_code == 2 and "is not in the range" in result.output


def test_simulate_agent_fails_when_every_round_failed():
    result = CliRunner().invoke(main, ["simulate-agent", "--url", "http://127.0.0.1:1", "--username", "alice",
                                       "--rounds", "2", "--interval", "0"], env={"HELPDESK_PASSWORD": "secret"})
    assert result.exit_code == 1 and "every round failed (2): see the reasons above" in result.output
    assert "round 1: cannot reach the help desk" in result.output


def test_run_refuses_a_secret_key_too_short_to_protect_sessions(tmp_path):
    from helpdesk.migrate import upgrade

    url = f"sqlite:///{tmp_path}/h.db"
    upgrade(url)
    env = {"SECRET_KEY": "changeme", "TWILIO_AUTH_TOKEN": "t", "PUBLIC_BASE_URL": "https://x.example", "DATABASE_URL": url}
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "SECRET_KEY is too short (8 characters): use at least 32 random characters" in result.output


def test_the_app_refuses_an_empty_database_url_rather_than_use_the_default(monkeypatch):
    from helpdesk.app import create_app
    from helpdesk.config import ConfigError

    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    with pytest.raises(ConfigError, match="DATABASE_URL is set but empty"):
        create_app()


def test_run_refuses_a_sendgrid_secret_too_short_to_be_accepted(tmp_path):
    from helpdesk.migrate import upgrade

    url = f"sqlite:///{tmp_path}/h.db"
    upgrade(url)
    env = {"SECRET_KEY": "k" * 32, "TWILIO_AUTH_TOKEN": "t", "PUBLIC_BASE_URL": "https://x.example", "DATABASE_URL": url,
           "SENDGRID_INBOUND_SECRET": "short"}
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "SENDGRID_INBOUND_SECRET is too short (5 characters): use at least 16 random characters" in result.output


@pytest.mark.parametrize("base", ["notaurl", "helpdesk.example.org", "ftp://helpdesk.example.org",
                                  "https://helpdesk.example.org/?x=1"])
def test_run_refuses_a_public_base_url_twilio_cannot_use(tmp_path, base):
    from helpdesk.migrate import upgrade

    url = f"sqlite:///{tmp_path}/h.db"
    upgrade(url)
    env = {"SECRET_KEY": "k" * 32, "TWILIO_AUTH_TOKEN": "t", "PUBLIC_BASE_URL": base, "DATABASE_URL": url}
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 1 and "PUBLIC_BASE_URL must be the address Twilio reaches the app at" in result.output


@pytest.mark.parametrize("verbose, level", [([], "WARNING"), (["--verbose"], "NOTSET")])
def test_twilio_request_details_apscheduler_jobs_and_alembic_plugins_are_logged_only_with_verbose(tmp_path, verbose, level):
    import logging

    names = ("twilio.http_client", "apscheduler.scheduler", "alembic.runtime.plugins")
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET)
    shipped = Path(__file__).resolve().parents[2] / "config" / "helpdesk.toml"
    assert CliRunner().invoke(main, [*verbose, "check-config", str(shipped)]).exit_code == 0
    assert [logging.getLevelName(logging.getLogger(name).level) for name in names] == [level] * 3


def test_files_writes_the_operating_files_and_never_overwrites_an_edited_one_unasked(tmp_path):
    import subprocess

    from helpdesk.shipped import shipped_files

    root = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(["git", "ls-files", "config", "metrics/alerts", ":(glob)metrics/dashboards/*.json"], cwd=root,
                             capture_output=True, text=True, check=True).stdout.split()
    assert sorted(shipped_files()) == sorted(set(tracked) - {"config/demo.toml"})  # a new file is shipped too
    out = tmp_path / "deploy"
    first = CliRunner().invoke(main, ["files", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert f"wrote {out}/config/helpdesk.toml" in first.output and "11 files of helpdesk-sla " in first.output
    assert (out / "config/helpdesk.toml").read_bytes() == (root / "config/helpdesk.toml").read_bytes()
    again = CliRunner().invoke(main, ["files", "--out", str(out)])
    assert again.exit_code == 0 and "wrote" not in again.output and f"unchanged {out}/config/prometheus.yml" in again.output
    (out / "config/helpdesk.toml").write_text("# mine\n")
    (out / "metrics/alerts/helpdesk.rules.yml").unlink()
    refused = CliRunner().invoke(main, ["files", "--out", str(out)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert (f"{out} already has 1 of these files with other content (config/helpdesk.toml): nothing written"
            in refused.output)
    assert (out / "config/helpdesk.toml").read_text() == "# mine\n"
    assert not (out / "metrics/alerts/helpdesk.rules.yml").exists()
    replaced = CliRunner().invoke(main, ["files", "--out", str(out), "--overwrite"])
    assert replaced.exit_code == 0 and f"wrote {out}/config/helpdesk.toml" in replaced.output
    assert f"wrote {out}/metrics/alerts/helpdesk.rules.yml" in replaced.output
    assert (out / "config/helpdesk.toml").read_bytes() == (root / "config/helpdesk.toml").read_bytes()
    (tmp_path / "a-file").write_text("")
    blocked = CliRunner().invoke(main, ["files", "--out", str(tmp_path / "a-file" / "deploy")])
    assert blocked.exit_code != 0 and "Traceback" not in blocked.output


def test_files_replaces_a_link_rather_than_writing_through_it_and_stays_out_of_its_sources(tmp_path):
    from helpdesk.shipped import config_dir

    root = Path(__file__).resolve().parents[2]
    mine = tmp_path / "etc" / "helpdesk.toml"
    mine.parent.mkdir()
    mine.write_text("# the site's own\n")
    out = tmp_path / "deploy"
    assert CliRunner().invoke(main, ["files", "--out", str(out)]).exit_code == 0
    (out / "config/helpdesk.toml").unlink()
    (out / "config/helpdesk.toml").symlink_to(mine)
    refused = CliRunner().invoke(main, ["files", "--out", str(out)])
    assert refused.exit_code == 1 and "(config/helpdesk.toml)" in refused.output
    replaced = CliRunner().invoke(main, ["files", "--out", str(out), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert mine.read_text() == "# the site's own\n"
    assert not (out / "config/helpdesk.toml").is_symlink()
    assert (out / "config/helpdesk.toml").read_bytes() == (root / "config/helpdesk.toml").read_bytes()
    assert sorted(p.name for p in (out / "config").iterdir() if p.name.startswith(".")) == []  # no temporary left
    for inside in (config_dir(), config_dir() / "deploy", root / "metrics" / "alerts"):
        result = CliRunner().invoke(main, ["files", "--out", str(inside)])
        assert result.exit_code == 2 and "where the files come from" in result.output
    assert not (config_dir() / "deploy").exists()
    result = CliRunner().invoke(main, ["files", "--out", ""])
    assert result.exit_code == 2 and "name a directory" in result.output


def test_version_says_which_release_this_is():
    from importlib.metadata import version

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output == f"helpdesk {version('helpdesk-sla')}\n"
