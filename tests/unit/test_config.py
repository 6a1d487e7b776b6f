"""Configuration: the documented file is valid, and every mistake is named with key and file."""
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import os
import ssl

import pytest

from helpdesk.config import ConfigError, load_settings, parse_settings
from servers import skip_or_fail
from helpdesk.settings import Secrets, SipLogin

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_configuration_file_is_valid():
    settings = load_settings(ROOT / "config" / "helpdesk.toml")
    assert settings.answer_target_seconds == 30.0
    assert settings.opening_hours[0] == ((time(8), time(18)),)
    assert 5 not in settings.opening_hours and 6 not in settings.opening_hours
    assert settings.routing.mode == "dial" and settings.routing.answer_on_bridge
    assert len(settings.version) == 12 and settings.source.endswith("helpdesk.toml")


def test_a_split_day_and_a_closure_reach_the_calendar():
    settings = parse_settings({
        "hours": {"monday": ["08:00-12:30", "13:30-17:00"]},
        "closures": [{"date": "2026-11-30", "reason": "Training"}, {"from": "2026-12-07T08:00", "to": "2026-12-07T10:00"}],
    })
    london = ZoneInfo("Europe/London")
    assert settings.calendar.is_open(datetime(2026, 11, 23, 12, 0, tzinfo=london))
    assert not settings.calendar.is_open(datetime(2026, 11, 23, 13, 0, tzinfo=london))
    assert not settings.calendar.is_open(datetime(2026, 11, 30, 9, 0, tzinfo=london))
    assert not settings.calendar.is_open(datetime(2026, 12, 7, 9, 0, tzinfo=london))
    assert settings.calendar.is_open(datetime(2026, 12, 7, 10, 0, tzinfo=london))
    assert settings.closures[0].end - settings.closures[0].start == timedelta(days=1)


def test_a_closure_in_the_hour_the_clocks_repeat_is_taken_when_written_with_its_offset():
    hours = {"sunday": ["00:00-24:00"]}
    settings = parse_settings({"hours": hours, "closures": [{"from": "2026-10-25T01:30+00:00",
                                                              "to": "2026-10-25T03:00"}]}, source="t.toml")
    closure = settings.closures[0]
    assert closure.start.astimezone(ZoneInfo("UTC")) == datetime(2026, 10, 25, 1, 30, tzinfo=ZoneInfo("UTC"))
    assert not settings.calendar.is_open(datetime(2026, 10, 25, 1, 45, tzinfo=ZoneInfo("UTC")))  # 01:45 GMT
    assert settings.calendar.is_open(datetime(2026, 10, 25, 0, 45, tzinfo=ZoneInfo("UTC")))  # 01:45 BST


def test_a_day_open_until_midnight_is_written_24_00():
    settings = parse_settings({"hours": {"sunday": ["00:00-24:00"]}})
    assert settings.opening_hours[6][0][0] == time(0)


@pytest.mark.parametrize("data, message", [
    ({"hours": {"friday": ["9-17"]}}, "hours.friday has '9-17'"),
    ({"hours": {"friday": ["17:00-09:00"]}}, "hours.friday has '17:00-09:00': the closing time must be after"),
    ({"hours": {"monday": ["12:00-17:00", "08:00-13:00"]}},
     "hours.monday has overlapping intervals: 08:00-13:00 and 12:00-17:00"),
    ({"hours": {"funday": ["08:00-17:00"]}}, "hours.funday is not a weekday"),
    ({"hours": {"monday": "08:00-17:00"}}, "hours.monday must be a list"),
    ({"helpdesk": {"nation": "wales"}}, "helpdesk.nation must be one of"),
    ({"helpdesk": {"timezone": "Europe/Paris"}}, "helpdesk.timezone must be 'Europe/London'"),
    ({"answer": {"ring_period_seconds": 0}}, "answer.ring_period_seconds must be between"),
    ({"answer": {"max_rings": "ten"}}, "answer.max_rings must be a whole number"),
    ({"answer": {"max_rings": True}}, "answer.max_rings must be a whole number"),
    ({"routing": {"mode": "broadcast"}}, "routing.mode must be one of 'dial', 'queue'"),
    ({"routing": {"dial_targets": ["07700 900123"]}}, "routing.dial_targets has '07700 900123'"),
    ({"routing": {"dial_targets": []}}, "routing.dial_targets must name at least one target"),
    ({"routing": {"dial_timeout_seconds": 1}}, "routing.dial_timeout_seconds must be between 5 and 600"),
    ({"ivr": {"dwp_digit": "12"}}, "ivr.dwp_digit must be a single key"),
    ({"ivr": {"dwp_digit": "2"}}, "ivr.customer_digit must differ"),
    ({"callers": {"dwp_numbers": ["01234 567890"]}}, "callers.dwp_numbers has '01234 567890'"),
    ({"closures": [{"date": "2026-02-30"}]}, "closures[1].date has '2026-02-30', a date or time that cannot be read"),
    ({"closures": [{"from": "2026-12-24T12:00", "to": "2026-12-24 25:00"}]},
     "closures[1].to has '2026-12-24 25:00', a date or time that cannot be read"),
    ({"closures": [{"date": "2026-12-24", "from": "2026-12-24T12:00"}]}, "closures[1] has both 'date' and 'from'/'to'"),
    ({"closures": [{"date": "2026-12-24T13:00"}]},
     "closures[1].date has '2026-12-24T13:00', a date and time: 'date' closes a whole day, so use 'from' and 'to'"),
    ({"closures": [{"date": datetime(2026, 12, 24, 13, 0)}]},
     "closures[1].date has '2026-12-24 13:00:00', a date and time: 'date' closes a whole day"),
    ({"closures": [{"date": "2026-12-24 00:00"}]}, "closures[1].date has '2026-12-24 00:00', a date and time"),
    ({"closures": [{"from": "2026-03-29T01:30", "to": "2026-03-29T05:00"}]},
     "closures[1].from has '2026-03-29T01:30', which did not happen in the UK: the clocks went forward an hour "
     "then: write it with its offset, for example \"2026-03-29T01:30+01:00\""),
    ({"closures": [{"from": "2026-10-25T00:00", "to": "2026-10-25T01:30"}]},
     "closures[1].to has '2026-10-25T01:30', which happened twice in the UK: the clocks went back an hour then"),
    ({"closures": [{"date": "24 December 2026"}]}, "closures[1].date has '24 December 2026', a date or time that "
                                                   "cannot be read"),
    ({"callers": {"dwp_numbers": ["+4411420"]}}, "callers.dwp_numbers has '+4411420', which is not a whole number"),
    ({"callers": {"dwp_numbers": ["+441134960000", "+441134960000"]}}, "callers.dwp_numbers has '+441134960000' twice"),
    ({"routing": {"dial_targets": ["+447700900123", "client:a", "+447700900123"]}},
     "routing.dial_targets has '+447700900123' twice"),
    ({"routing": {"dial_targets": ["+44770090012345"]}}, "routing.dial_targets has '+44770090012345'"),
    ({"routing": {"dial_targets": ["sip:1001"]}}, "routing.dial_targets has 'sip:1001', which is not a SIP address: "
                                                  "write sip:, the extension or name, @ and the phone system's address"),
    ({"routing": {"dial_targets": ["sip:1001@pbx example.org"]}}, "has 'sip:1001@pbx example.org', which is not a SIP"),
    ({"routing": {"dial_targets": ["sips:1001@pbx.example.org"]}}, "has 'sips:1001@pbx.example.org', which is not a"),
    ({"routing": {"agents_numbers": ["0114 496 0099"]}}, "routing.agents_numbers has '0114 496 0099', which is not a"),
    ({"routing": {"agents_numbers": ["+441144960099"]},
      "webhooks": {"twilio_numbers": ["+441144960000", "+441144960099"]}},
     "routing.agents_numbers has +441144960099, which webhooks.twilio_numbers has as a number callers ring: the "
     "agents' numbers must be numbers of their own"),
    ({"routing": {"agents_apps": ["AP" + "A" * 32]}}, f"routing.agents_apps has 'AP{'A' * 32}', which is not a TwiML "
                                                      "App's SID (AP and 32 letters a-f and digits"),
    ({"routing": {"agents_apps": ["PN" + "a" * 32]}}, "which is not a TwiML App's SID"),
    ({"routing": {"agents_apps": ["AP" + "a" * 32, "AP" + "a" * 32]}}, f"routing.agents_apps has 'AP{'a' * 32}' twice"),
    ({"closures": [{"from": "2026-12-01T10:00"}]}, "closures[1] needs 'date', or both 'from' and 'to'"),
    ({"closures": [{"from": "2026-12-01T10:00", "to": "2026-12-01T09:00"}]}, "closures[1]: 'to' must be after 'from'"),
    ({"closures": [{"date": "2026-12-01", "why": "x"}]}, "closures[1] has unknown key 'why'"),
    ({"answr": {}}, "unknown table or key 'answr'"),
    ({"webhooks": {"spool": "x"}}, "webhooks.spool is not a known key"),
    ({"webhooks": {"spool_dir": " "}}, "webhooks.spool_dir must not be empty"),
    ({"webhooks": {"reconcile_after_minutes": 4}}, "webhooks.reconcile_after_minutes must be 0 (never) or at least 5"),
    ({"webhooks": {"reconcile_after_minutes": -1}}, "webhooks.reconcile_after_minutes must be between 0 and 1440"),
    ({"webhooks": {"reconcile_after_minutes": "15"}}, "webhooks.reconcile_after_minutes must be a"),
    ({}, "hours gives no opening hours on any day"),
    ({"hours": {"monday": [], "saturday": []}}, "hours gives no opening hours on any day"),
    ({"email": {"ack_within": 15}}, "email.ack_within is not a known key"),
    ({"routing": {"max_ring": 5}}, "routing.max_ring is not a known key"),
    ({"callback": {"within_minute": 60}}, "callback.within_minute is not a known key"),
    ({"helpdesk": {"nation": "scotland", "timezon": "Europe/London"}}, "helpdesk.timezon is not a known key"),
    ({"answer": {"max_rings": 10, "ring_periods": 3.0}}, "answer.ring_periods is not a known key"),
    ({"messages": {"out_of_hour": "Closed."}}, "messages.out_of_hour is not a known key"),
    ({"smtp": {"hostname": "mail"}}, "smtp.hostname is not a known key"),
    ({"scheduler": {"sweep": 60}}, "scheduler.sweep is not a known key"),
    ({"ivr": {"enable": True}}, "ivr.enable is not a known key"),
    ({"voicemail": {"max_length": 60}}, "voicemail.max_length is not a known key"),
    ({"callers": {"dwp_number": []}}, "callers.dwp_number is not a known key"),
    ({"supervisors": {"email": []}}, "supervisors.email is not a known key"),
    ({"email": {"addresses": ["desk@example.org\n"]}}, "email.addresses has 'desk@example.org\\n'"),
    ({"supervisors": {"emails": ["boss@example.org\nBcc: x@example.net"]}}, "supervisors.emails has"),
    ({"email": {"imap": {"hostname": "mail"}}}, "email.imap.hostname is not a known key"),
    ({"email": {"imap": 5}}, "email.imap must be a table, not 5"),
    ({"email": {"imap": {"host": "mail", "poll_second": 5}}}, "email.imap.poll_second is not a known key"),
    ({"routing": {"mode": "queue", "screen_calls": True}}, "routing.screen_calls works only with mode = 'dial'"),
    ({"routing": {"screen_calls": "yes"}}, "routing.screen_calls must be"),
    ({"routing": {"screen_calls": True, "screen_timeout_seconds": 1}}, "routing.screen_timeout_seconds must be"),
    ({"routing": {"screen_calls": True, "answer_on_bridge": False}}, "routing.screen_calls needs answer_on_bridge"),
    ({"messages": {"screen_prompt": " "}}, "messages.screen_prompt must not be empty"),
    ({"messages": {"out_of_hours": ""}}, "messages.out_of_hours must not be empty"),
    ({"retention": {"personal_data_days": 30}}, "retention.personal_data_days must be 0 (kept) or at least 31, not 30"),
    ({"retention": {"personal_data_days": -1}}, "retention.personal_data_days must be between 0 and 36500"),
    ({"retention": {"personal_data_days": "2 years"}}, "retention.personal_data_days must be a"),
    ({"web": {"proxies": 6}}, "web.proxies must be between 0 and 5, not 6"),
    ({"web": {"proxies": -1}}, "web.proxies must be between 0 and 5"),
    ({"web": {"proxies": "1"}}, "web.proxies must be a"),
    ({"web": {"forgotten_password_links": "yes"}}, "web.forgotten_password_links must be true or false"),
    ({"web": {"proxy": 1}}, "web.proxy is not a known key"),
    ({"web": {"two_step_for": ["admin", "administrator"]}},
     "web.two_step_for has 'administrator', which is not a role: give some of agent, manager, auditor, admin"),
    ({"web": {"two_step_for": "admin"}}, "web.two_step_for must be a list"),
    ({"web": {"two_step_for": [1]}}, "web.two_step_for must be a list of strings"),
    ({"retention": {"days": 400}}, "retention.days is not a known key"),
])
def test_an_invalid_value_is_named_with_its_key_and_file(data, message):
    with pytest.raises(ConfigError) as error:
        parse_settings(data, source="config/helpdesk.toml")
    assert str(error.value).startswith("config/helpdesk.toml: ")
    assert message in str(error.value)


def test_a_device_a_pipe_or_a_huge_file_is_refused_without_reading_it_all(tmp_path):
    with pytest.raises(ConfigError, match="/dev/zero: the configuration must be an ordinary file, not a directory"):
        load_settings("/dev/zero")
    pipe = tmp_path / "pipe.toml"
    os.mkfifo(pipe)
    with pytest.raises(ConfigError, match="must be an ordinary file, not a directory, device or pipe"):
        load_settings(pipe)  # opening a FIFO with no writer would wait for one
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="huge.toml: the configuration file is over 1 MB; is it the right file"):
        load_settings(huge)


def test_a_missing_file_or_broken_toml_is_named(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=f"^{tmp_path}/absent.toml: no configuration file there. Set HELPDESK_CONFIG"):
        load_settings(tmp_path / "absent.toml")
    monkeypatch.chdir(tmp_path)  # the default, config/helpdesk.toml, is looked for in the working directory
    monkeypatch.delenv("HELPDESK_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=f"^config/helpdesk.toml: no configuration file there, looked for in "
                                          f"{tmp_path}. Set HELPDESK_CONFIG to its path; 'helpdesk files --out DIR'"):
        load_settings()
    (tmp_path / "unreadable.toml").mkdir()
    with pytest.raises(ConfigError, match="must be an ordinary file"):
        load_settings(tmp_path / "unreadable.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[hours\nmonday = 1")
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML"):
        load_settings(broken)


def test_the_version_changes_with_the_content(tmp_path):
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    one.write_text('[hours]\nmonday = ["08:00-18:00"]\n[answer]\nmax_rings = 10\n')
    two.write_text('[hours]\nmonday = ["08:00-18:00"]\n[answer]\nmax_rings = 9\n')
    assert load_settings(one).version != load_settings(two).version
    assert load_settings(one).version == load_settings(one).version


def test_secrets_come_from_the_environment_with_no_default_secret():
    secrets = Secrets.from_environ({"PUBLIC_BASE_URL": "https://desk.example.org/", "DATABASE_URL": ""})
    assert secrets.public_base_url == "https://desk.example.org"
    assert secrets.database_url == "sqlite:///helpdesk.db"
    assert secrets.secret_key is None and secrets.twilio_auth_token is None


def test_a_sip_login_is_both_or_neither_and_never_shows_its_password():
    assert SipLogin.from_environ({}) is None and SipLogin.problem({}) is None
    both = {"SIP_USERNAME": "helpdesk-trunk", "SIP_PASSWORD": "pass word with spaces inside"}
    assert SipLogin.problem(both) is None
    login = SipLogin.from_environ(both)
    assert (login.username, login.password) == ("helpdesk-trunk", "pass word with spaces inside")
    assert "pass word" not in repr(login) and "helpdesk-trunk" in repr(login)
    assert SipLogin.from_environ({"SIP_USERNAME": "helpdesk-trunk"}) is None  # half a login is none at all
    assert SipLogin.problem({"SIP_USERNAME": "helpdesk-trunk", "SIP_PASSWORD": ""}).startswith(
        "SIP_USERNAME is set but SIP_PASSWORD is not")


@pytest.mark.parametrize(("name", "value"), [("SIP_USERNAME", " helpdesk-trunk"), ("SIP_USERNAME", "helpdesk-trunk\n"),
                                             ("SIP_PASSWORD", "secret\r"), ("SIP_PASSWORD", "sec\x00ret"),
                                             ("SIP_PASSWORD", "secret\x7f"), ("SIP_PASSWORD", "secret\t")])
def test_a_sip_login_with_a_stray_space_or_control_character_is_named_and_not_shown(name, value):
    environ = {"SIP_USERNAME": "helpdesk-trunk", "SIP_PASSWORD": "secret", name: value}
    problem = SipLogin.problem(environ)
    assert problem.startswith(f"{name} has a space at its start or end, or a control character")
    assert value.strip() not in problem


def test_the_imap_ca_file_is_found_from_the_configuration_files_directory_and_checked(tmp_path):
    import shutil
    import subprocess

    openssl = shutil.which("openssl") or skip_or_fail("`openssl` is needed to make a test certificate")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "ca.pem"), "-days", "1",
                    "-subj", "/CN=imap.example.org"], check=True, capture_output=True)
    hours = {"monday": ["09:00-17:00"]}
    source = str(tmp_path / "helpdesk.toml")
    settings = parse_settings({"hours": hours, "email": {"imap": {"host": "imap.example.org", "ca_file": "ca.pem"}}},
                              source=source)
    assert settings.email.imap.ca_file == str(tmp_path / "ca.pem")
    assert settings.email.imap.ssl_context().cert_store_stats()["x509_ca"] == 1
    system = parse_settings({"hours": hours}, source=source).email.imap.ssl_context()
    assert system.verify_mode == ssl.CERT_REQUIRED and system.check_hostname  # the system's authorities
    (tmp_path / "not.pem").write_text("not a certificate\n")
    for name, problem in (("missing.pem", "which is not a file"), ("not.pem", "which holds no certificate in PEM form")):
        with pytest.raises(ConfigError, match=rf"helpdesk.toml: email.imap.ca_file names .*{name}, {problem}"):
            parse_settings({"hours": hours, "email": {"imap": {"ca_file": name}}}, source=source)


def test_a_desk_open_on_bank_holidays_keeps_its_hours_on_them():
    hours = {day: ["08:00-18:00"] for day in ("monday", "tuesday", "wednesday", "thursday", "friday")}
    christmas = datetime(2026, 12, 25, 10, 0, tzinfo=ZoneInfo("Europe/London"))  # a Friday
    closed = parse_settings({"hours": hours}, source="t.toml")
    assert closed.bank_holidays and not closed.calendar.is_open(christmas)
    assert closed.calendar.holiday_name(christmas.date()) == "Christmas Day"
    open_ = parse_settings({"helpdesk": {"bank_holidays": False}, "hours": hours}, source="t.toml")
    assert open_.calendar.is_open(christmas) and open_.calendar.holiday_name(christmas.date()) is None
    with pytest.raises(ConfigError, match="t.toml: helpdesk.bank_holidays must be true or false"):
        parse_settings({"helpdesk": {"bank_holidays": "no"}, "hours": hours}, source="t.toml")


def test_take_in_from_is_a_date_written_either_way_and_anything_else_is_named():
    import tomllib
    from datetime import date

    hours = {"monday": ["09:00-17:00"]}
    assert parse_settings({"hours": hours}, source="t.toml").email.imap.take_in_from is None
    for written in ("take_in_from = 2026-12-07", 'take_in_from = "2026-12-07"', 'take_in_from = " 2026-12-07 "'):
        imap = tomllib.loads(written)
        assert parse_settings({"hours": hours, "email": {"imap": imap}}, source="t.toml").email.imap.take_in_from \
            == date(2026, 12, 7)
    for written, problem in (('"07/12/2026"', "must be a date such as \"2026-12-07\", not '07/12/2026'"),
                             ("2026-12-07T09:00:00", "must be a date such as 2026-12-07, without a time"),
                             ("20261207", "must be a date such as 2026-12-07, not 20261207")):
        with pytest.raises(ConfigError) as error:
            parse_settings({"hours": hours, "email": {"imap": tomllib.loads(f"take_in_from = {written}")}},
                           source="helpdesk.toml")
        assert str(error.value).startswith(f"helpdesk.toml: email.imap.take_in_from {problem}")


def test_a_ring_group_may_ring_sip_addresses_with_parameters_and_headers():
    targets = ["SIP:1001@PBX.example.org:5061;transport=tls", "sip:alice@helpdesk.sip.twilio.com?X-Team=help-desk",
               "sip:+447700900123@10.0.0.5", "client:agent-1", "+447700900001"]
    settings = parse_settings({"hours": {"monday": ["09:00-17:00"]}, "routing": {"dial_targets": targets}},
                              source="t.toml")
    # Dialled as written, but for a SIP address's scheme and host (in lower case, as SIP compares them).
    assert list(settings.routing.dial_targets) == ["sip:1001@pbx.example.org:5061;transport=tls", *targets[1:]]
    with pytest.raises(ConfigError, match="routing.dial_targets has 'sip:1001@pbx.example.org' twice"):
        parse_settings({"hours": {"monday": ["09:00-17:00"]},
                        "routing": {"dial_targets": ["sip:1001@pbx.example.org", "SIP:1001@PBX.example.org"]}})


def test_unlimited_domains_are_mail_domains():
    hours = {"monday": ["09:00-17:00"]}
    settings = parse_settings({"hours": hours, "email": {"unlimited_domains": ["DWP.gov.uk", "@example.org"]}},
                              source="t.toml")
    assert settings.email.unlimited_domains == ("dwp.gov.uk", "example.org")
    with pytest.raises(ConfigError, match=r"t.toml: email.unlimited_domains has 'not a domain', which is not a mail"):
        parse_settings({"hours": hours, "email": {"unlimited_domains": ["not a domain"]}}, source="t.toml")


def test_personal_data_is_kept_unless_a_retention_period_is_set():
    hours = {"hours": {"monday": ["08:00-18:00"]}}
    assert parse_settings(hours).retention.personal_data_days == 0
    assert parse_settings({**hours, "retention": {"personal_data_days": 31}}).retention.personal_data_days == 31
    assert load_settings(ROOT / "config" / "helpdesk.toml").retention.personal_data_days == 0
