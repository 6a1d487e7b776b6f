"""The scheduler: leases, the job, emails from the database, two schedulers at once, `helpdesk scheduler` and `run`."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from threading import Condition, Event, Lock, Thread
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from click.testing import CliRunner
from sqlalchemy import func, select

import callbacks.notify as notify
import callbacks.scheduler as scheduler_module
from callbacks.notify import FakeNotifier, SmtpNotifier
from callbacks.scheduler import JOB_ID, LEASE, SweepJob, build_scheduler, make_holder
from callbacks.sweep import acquire_lease
from helpdesk.cli import main
from helpdesk.config import load_settings
from helpdesk.db import Database
from helpdesk.migrate import upgrade
from helpdesk.models import Callback, CallbackNotice, SchedulerLease
from servers import free_port, own_postgres_server, wait_for_url
from tests.integration.conftest import OPEN_TIME, FakeClock, make_settings
from tests.integration.test_sweep import CALLER, DUE, at, owe
from tests.unit.test_notify import SUPERVISORS, SmtpServer

ROOT = Path(__file__).resolve().parents[2]
T = OPEN_TIME
KINDS = ("warning_30", "warning_10", "breach")


@pytest.fixture
def database(migrated_url):
    database = Database(migrated_url)
    yield database
    database.dispose()


def mail_settings(server: SmtpServer | None = None, **tables):
    smtp = {"host": "127.0.0.1", "port": server.port if server else 25, "security": "none",
            "from_address": "alerts@helpdesk.example.org"}
    return make_settings(supervisors={"emails": list(SUPERVISORS)}, smtp=smtp, **tables)


def job_for(database: Database, settings, clock, holder: str = "scheduler-a", notifier=None) -> SweepJob:
    return SweepJob(settings=settings, database=database, notifier=notifier, clock=clock, holder=holder)


def all_notices(database: Database) -> list[CallbackNotice]:
    with database.session() as session:
        return list(session.scalars(select(CallbackNotice).order_by(CallbackNotice.id)))


def lease_row(database: Database) -> SchedulerLease | None:
    with database.session() as session:
        return session.get(SchedulerLease, LEASE)


# --------------------------------------------------------------------------- the lease


def test_a_second_scheduler_cannot_take_an_unexpired_lease_but_can_take_an_expired_one(database):
    def take(holder: str, seconds_later: int) -> bool:
        with database.session() as session:
            return acquire_lease(session, LEASE, holder, T + timedelta(seconds=seconds_later), 120)

    assert take("a", 0)
    assert not take("b", 119)
    assert take("a", 60)  # renewed: now held until T + 180 s
    assert not take("b", 150)
    assert not take("b", 180)  # expires at 180 s, not before
    assert take("b", 181)
    assert not take("a", 182)
    assert lease_row(database).holder == "b"


def test_a_released_lease_can_be_taken_at_once(database):
    settings = make_settings()
    first = job_for(database, settings, FakeClock(), holder="a")
    assert first().held
    first.release()
    assert job_for(database, settings, FakeClock(T + timedelta(seconds=1)), holder="b")().held


def test_acquire_lease_with_an_ordinary_session_refuses_a_second_holder(database):
    with database.session() as session:
        assert acquire_lease(session, LEASE, "a", T, 120)
    with database.session() as session:
        assert not acquire_lease(session, LEASE, "b", T + timedelta(seconds=1), 120)


def test_the_holder_names_host_process_and_a_random_part():
    first, second = make_holder(), make_holder()
    assert first.split(":")[1] == str(os.getpid()) and first != second and len(first) <= 128


# --------------------------------------------------------------------------- the job


def test_a_scheduler_without_the_lease_records_nothing(database):
    settings = make_settings()
    owe(database, settings, 1)
    clock = FakeClock(DUE + timedelta(hours=1))
    assert job_for(database, settings, clock, holder="a")().held
    with database.session() as session:
        session.execute(CallbackNotice.__table__.delete())
        session.commit()
    run = job_for(database, settings, clock, holder="b")()
    assert (run.held, run.recorded, run.failed) == (False, 0, False)
    assert all_notices(database) == []


def test_a_standby_scheduler_says_once_that_it_stands_by_and_when_it_takes_over(database, caplog):
    import logging

    settings = make_settings()
    clock = FakeClock(DUE)
    active, standby = job_for(database, settings, clock, holder="a"), job_for(database, settings, clock, holder="b")
    caplog.set_level(logging.INFO, logger="callbacks.scheduler")
    assert active().held
    for _ in range(3):
        assert not standby().held
    # Who holds it, and until when (the active one's run plus scheduler.lease_seconds, UK time).
    until = (DUE + timedelta(seconds=settings.scheduler.lease_seconds)).astimezone(ZoneInfo("Europe/London"))
    assert caplog.text.count(f"the lease for the callback sweep is held by a until {until:%H:%M:%S}: this one "
                             "stands by") == 1
    assert "took over" not in caplog.text
    active.release()
    assert standby().held and standby().held
    assert caplog.text.count("took over the callback sweep: the other scheduler's lease lapsed or was released") == 1


def test_a_failing_run_is_logged_without_personal_data_and_the_next_run_works(database, monkeypatch, caplog):
    settings = make_settings()
    callback_id = owe(database, settings, 1)
    job = job_for(database, settings, FakeClock(DUE + timedelta(minutes=1)))
    real_sweep = scheduler_module.sweep

    def broken(*args):
        raise ValueError(f"cannot judge the callback from {CALLER} for bob@example.org")

    monkeypatch.setattr(scheduler_module, "sweep", broken)
    with caplog.at_level(logging.ERROR, logger="callbacks.scheduler"):
        run = job()
    assert run.failed and run.held
    [record] = caplog.records
    assert "the callback sweep failed" in record.getMessage() and "ValueError" in record.getMessage()
    assert CALLER not in caplog.text and "bob@example.org" not in caplog.text and "[number]" in caplog.text
    # Kept with the job's lease for the System page, as the log says it.
    failed_at, failure = kept_failure(database, "sweep")
    assert failed_at == DUE + timedelta(minutes=1)
    assert failure.startswith("ValueError: cannot judge the callback from [number]") and CALLER not in failure
    monkeypatch.setattr(scheduler_module, "sweep", real_sweep)
    run = job()
    assert (run.failed, run.recorded) == (False, 1)
    assert [(n.callback_id, n.kind) for n in all_notices(database)] == [(callback_id, "breach")]
    assert kept_failure(database, "sweep") == (None, None)  # the run that worked cleared it


def kept_failure(database, lease: str) -> tuple:
    with database.session() as session, session.begin():
        return tuple(session.execute(select(SchedulerLease.failed_at, SchedulerLease.failure)
                                     .where(SchedulerLease.name == lease)).one())


def test_a_failure_kept_from_before_a_restart_is_cleared_by_the_next_run_that_works(database, monkeypatch):
    settings = make_settings()
    clock = FakeClock(DUE)

    def broken(*args):
        raise RuntimeError("the sweep broke")

    monkeypatch.setattr(scheduler_module, "sweep", broken)
    assert job_for(database, settings, clock)().failed
    assert kept_failure(database, "sweep")[1].startswith("RuntimeError: the sweep broke")
    monkeypatch.undo()
    restarted = job_for(database, settings, clock)  # a new process: it does not know a failure is kept
    assert not restarted().failed
    assert kept_failure(database, "sweep") == (None, None)


def test_a_run_against_a_database_without_its_tables_fails_without_raising(tmp_path, caplog):
    job = job_for(Database(f"sqlite:///{tmp_path}/empty.db"), make_settings(), FakeClock())
    with caplog.at_level(logging.ERROR, logger="callbacks.scheduler"):
        run = job()
    job.database.dispose()
    assert run.failed and "OperationalError" in caplog.text


def test_the_background_scheduler_sweeps_at_start_and_releases_its_lease_on_shutdown(app, clock, settings):
    database = app.extensions["helpdesk.db"]
    callback_id = owe(database, settings, 1)
    clock.now = DUE + timedelta(hours=5)  # the server was down when the callback fell due
    scheduler = build_scheduler(app, background=True, clock=clock, notifier=FakeNotifier())
    job = scheduler.get_job(JOB_ID)
    assert isinstance(scheduler, BackgroundScheduler) and scheduler.timezone == ZoneInfo("Europe/London")
    assert job.trigger.interval == timedelta(seconds=settings.scheduler.sweep_seconds)
    assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)
    assert abs(job.next_run_time - datetime.now(timezone.utc)) < timedelta(seconds=5)  # runs at start
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while not all_notices(database) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.shutdown()
    assert [(n.callback_id, n.kind, n.fell_due_at) for n in all_notices(database)] == [(callback_id, "breach", DUE)]
    assert lease_row(database).expires_at < datetime(2000, 1, 1, tzinfo=timezone.utc)  # released


# --------------------------------------------------------------------------- emails from the database


def notice_of(database: Database, callback_id: int, kind: str) -> CallbackNotice:
    with database.session() as session:
        return session.scalars(select(CallbackNotice).where(CallbackNotice.callback_id == callback_id,
                                                            CallbackNotice.kind == kind)).one()


def test_each_notice_is_emailed_once_to_the_supervisors_through_a_real_smtp_server(database):
    with SmtpServer() as server:
        settings = mail_settings(server)
        callback_id = owe(database, settings, 123)
        clock = FakeClock(DUE + timedelta(minutes=1))
        job = job_for(database, settings, clock, notifier=SmtpNotifier.from_settings(settings, {}))
        assert job().emailed == 1
        clock.advance(60)
        assert job().emailed == 0
        [(sender, recipients, message)] = server.mailbox.messages
    assert recipients == list(SUPERVISORS) and message["To"] == ", ".join(SUPERVISORS)
    assert message["Subject"] == "Callback HD-2026-000123 breached the 3-hour target"
    body = message.get_content()
    assert "HD-2026-000123" in body and "13:00 on Tuesday 24 November 2026 (UK time)" in body
    assert "number ending 123" in body and CALLER not in body and "7700900" not in body
    notice = notice_of(database, callback_id, "breach")
    assert (notice.emailed_at, notice.email_error) == (DUE + timedelta(minutes=1), None)


def test_a_failing_mail_server_leaves_the_notice_unsent_with_its_error_and_a_later_run_sends_it(database, caplog):
    with SmtpServer() as server:
        settings = mail_settings(server)
        callback_id = owe(database, settings, 124)
        clock = FakeClock(at(12, 31))
        job = job_for(database, settings, clock, notifier=SmtpNotifier.from_settings(settings, {}))
        server.mailbox.reply = "451 4.3.0 Mailbox temporarily unavailable"
        with caplog.at_level(logging.WARNING, logger="callbacks.notify"):
            run = job()
        assert (run.recorded, run.emailed, run.failed) == (1, 0, False)
        notice = notice_of(database, callback_id, "warning_30")
        assert notice.emailed_at is None
        assert notice.email_error == f"127.0.0.1:{server.port} answered 451: 4.3.0 Mailbox temporarily unavailable"
        assert "will try again" in caplog.text and CALLER not in caplog.text
        server.mailbox.reply = None
        clock.advance(60)
        assert job().emailed == 1
        # Recorded at 12:31 for 13:00, sent later: it says what was left when it was recorded.
        assert [m["Subject"] for _, _, m in server.mailbox.messages] == ["Callback HD-2026-000124 due in 29 minutes"]
    notice = notice_of(database, callback_id, "warning_30")
    assert (notice.emailed_at, notice.email_error) == (at(12, 32), None)


@pytest.mark.parametrize("tables", [{}, {"supervisors": {"emails": list(SUPERVISORS)}}],
                         ids=["no-supervisors", "no-mail-server"])
def test_without_supervisors_or_a_mail_server_notices_are_left_for_the_page_and_this_is_logged_once(
        database, monkeypatch, caplog, tables):
    monkeypatch.setattr(notify, "_said_page_only", set())
    settings = make_settings(**tables)
    owe(database, settings, 1)
    notifier, clock = FakeNotifier(), FakeClock(DUE + timedelta(minutes=1))
    job = job_for(database, settings, clock, notifier=notifier)
    with caplog.at_level(logging.INFO, logger="callbacks.notify"):
        assert job().recorded == 1
        clock.advance(60)
        job()
    assert notifier.attempts == 0
    assert [n.emailed_at for n in all_notices(database)] == [None]
    assert sum("shown on the Callback queue page only" in r.getMessage() for r in caplog.records) == 1


def test_notices_recorded_over_a_day_before_the_supervisors_could_be_emailed_are_never_sent(database):
    # Months of notices recorded without supervisors.emails would otherwise all go out at once
    # when it is set; a day's are still sent.
    notifier = FakeNotifier()
    settings = make_settings()
    owe(database, settings, 1)
    owe(database, settings, 2)
    clock = FakeClock(DUE + timedelta(minutes=1))
    assert job_for(database, settings, clock, notifier=notifier)().recorded == 2
    with database.session() as session, session.begin():
        old = session.scalars(select(CallbackNotice).order_by(CallbackNotice.id)).first()
        old.recorded_at -= timedelta(hours=24, seconds=1)
    clock.advance(60)
    run = job_for(database, mail_settings(), clock, notifier=notifier)()
    assert run.emailed == 1 and [m.subject for m in notifier.sent] == ["Callback HD-2026-000002 breached the 3-hour target"]
    assert [n.emailed_at is None for n in all_notices(database)] == [True, False]
    assert [n.email_error for n in all_notices(database)] == [None, None]  # never tried: mail was off


def test_a_notice_that_failed_to_send_for_a_day_is_given_up_once_and_said(database, caplog):
    notifier = FakeNotifier()
    notifier.fail("connection refused")
    settings = mail_settings()
    owe(database, settings, 1)
    clock = FakeClock(DUE + timedelta(minutes=1))
    job = job_for(database, settings, clock, notifier=notifier)
    assert job().recorded == 1
    [notice] = all_notices(database)
    assert notice.emailed_at is None and notice.email_error
    clock.advance(24 * 3600 - 60)
    job()
    assert all_notices(database)[0].email_error != notify.GAVE_UP  # a day old to the second: still tried
    tried = notifier.attempts
    clock.advance(61)
    with caplog.at_level(logging.WARNING, logger="callbacks.notify"):
        job()
        job()
    assert notifier.attempts == tried and all_notices(database)[0].email_error == notify.GAVE_UP
    said = [r.getMessage() for r in caplog.records if "within a day" in r.getMessage()]
    assert said == ["1 notice could not be emailed to the supervisors within a day and will not be tried again "
                    "(they are on the Callback queue page)"]


# --------------------------------------------------------------------------- two schedulers, one PostgreSQL


class SharedClock:
    def __init__(self, start: datetime):
        self._now, self._lock = start, Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime) -> None:
        with self._lock:
            self._now = now


def test_two_schedulers_on_one_postgresql_record_and_email_every_warning_and_breach_exactly_once(postgres_url):
    upgrade(postgres_url)
    # A 10-second lease and a clock that moves a minute at a time: at every step the lease has
    # lapsed, so the two schedulers race for it, and a run can still be going when the other starts.
    settings = mail_settings(scheduler={"lease_seconds": 10})
    setup = Database(postgres_url)
    callbacks = {owe(setup, settings, n, owed_from=T + timedelta(minutes=n)): f"HD-2026-{n:06d}" for n in range(1, 51)}
    with setup.session() as session:
        due = dict(session.execute(select(Callback.id, Callback.due_at)).all())
    clock, notifier = SharedClock(T + timedelta(hours=2, minutes=25)), FakeNotifier()
    jobs = [SweepJob(settings=settings, database=Database(postgres_url), notifier=notifier, clock=clock,
                     holder=f"scheduler-{name}") for name in ("a", "b")]
    runs: dict[str, list] = {job.holder: [] for job in jobs}
    done, changed = Event(), Condition()
    latest = {job.holder: datetime.min.replace(tzinfo=timezone.utc) for job in jobs}
    swept = [datetime.min.replace(tzinfo=timezone.utc)]

    def loop(job: SweepJob) -> None:
        while not done.is_set():
            run = job()
            with changed:
                runs[job.holder].append(run)
                latest[job.holder] = max(latest[job.holder], run.now)
                if run.held and not run.failed:
                    swept[0] = max(swept[0], run.now)
                changed.notify_all()

    threads = [Thread(target=loop, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    try:
        now, end = clock(), max(due.values()) + timedelta(minutes=5)
        while now <= end:
            clock.set(now)
            with changed:  # both schedulers have run at this moment, and one of them swept
                assert changed.wait_for(lambda: min(latest.values()) >= now and swept[0] >= now, timeout=30)
            now += timedelta(minutes=1)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=30)
        for job in jobs:
            job.database.dispose()

    every_run = [run for holder_runs in runs.values() for run in holder_runs]
    assert not [run for run in every_run if run.failed]
    holders_at = defaultdict(set)
    for holder, holder_runs in runs.items():
        for run in holder_runs:
            if run.held:
                holders_at[run.now].add(holder)
    assert all(len(holders) == 1 for holders in holders_at.values()), "two schedulers held the lease at once"
    assert set().union(*holders_at.values()) == {"scheduler-a", "scheduler-b"}, "the lease never changed hands"

    with setup.session() as session:
        rows = session.execute(select(CallbackNotice.callback_id, CallbackNotice.kind, func.count())
                               .group_by(CallbackNotice.callback_id, CallbackNotice.kind)).all()
        unsent = session.scalar(select(func.count()).select_from(CallbackNotice)
                                .where(CallbackNotice.emailed_at.is_(None)))
        breaches = session.execute(select(Callback.id, Callback.sla_result, Callback.breached_at)).all()
    setup.dispose()
    assert sorted(rows) == sorted((callback_id, kind, 1) for callback_id in callbacks for kind in KINDS)
    assert unsent == 0
    assert all(result == "breached" and breached_at == due[callback_id]
               for callback_id, result, breached_at in breaches)
    expected = sorted(
        f"Callback {reference} " + {"warning_30": "due in 30 minutes", "warning_10": "due in 10 minutes",
                                    "breach": "breached the 3-hour target"}[kind]
        for reference in callbacks.values() for kind in KINDS)
    assert sorted(message.subject for message in notifier.sent) == expected  # each exactly once
    assert notifier.attempts == len(expected)


# --------------------------------------------------------------------------- `helpdesk scheduler`

ALWAYS_OPEN = "\n".join(f'{day} = ["00:00-24:00"]' for day in (
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))


def write_config(path: Path, sweep_seconds: int = 5) -> Path:
    path.write_text(f'[hours]\n{ALWAYS_OPEN}\n\n[callback]\nclock = "elapsed"\n\n'
                    f'[scheduler]\nsweep_seconds = {sweep_seconds}\nlease_seconds = 30\n')
    return path


def owe_overdue(url: str, config: Path) -> int:
    """A callback owed four hours ago (by the real clock): one hour overdue."""
    database = Database(url)
    try:
        return owe(database, load_settings(config), 1, owed_from=datetime.now(timezone.utc) - timedelta(hours=4))
    finally:
        database.dispose()


def wait_until(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_helpdesk_scheduler_refuses_an_invalid_configuration_naming_the_key_and_the_file(tmp_path):
    bad = tmp_path / "helpdesk.toml"
    bad.write_text("[scheduler]\nsweep_seconds = 1\n")
    result = CliRunner().invoke(main, ["scheduler"], env={"HELPDESK_CONFIG": str(bad),
                                                          "DATABASE_URL": f"sqlite:///{tmp_path}/h.db"})
    assert result.exit_code == 1
    assert f"{bad}: scheduler.sweep_seconds must be between 5 and 3600, not 1" in result.output
    assert "Traceback" not in result.output


def test_helpdesk_scheduler_refuses_a_database_without_its_schema(tmp_path):
    (tmp_path / "empty.db").touch()
    result = CliRunner().invoke(main, ["scheduler"], env={"HELPDESK_CONFIG": str(write_config(tmp_path / "h.toml")),
                                                          "DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"})
    assert result.exit_code == 1 and "run 'helpdesk db upgrade' first" in result.output


def test_helpdesk_scheduler_names_a_database_file_that_does_not_exist_and_makes_none(tmp_path):
    result = CliRunner().invoke(main, ["scheduler"], env={"HELPDESK_CONFIG": str(write_config(tmp_path / "h.toml")),
                                                          "DATABASE_URL": f"sqlite:///{tmp_path}/typo.db"})
    assert result.exit_code == 1 and f"the database file {tmp_path}/typo.db does not exist" in result.output
    assert not (tmp_path / "typo.db").exists()


def test_helpdesk_scheduler_once_records_the_overdue_breach_and_says_so(migrated_url, tmp_path):
    config = write_config(tmp_path / "helpdesk.toml")
    owe_overdue(migrated_url, config)
    env = {"HELPDESK_CONFIG": str(config), "DATABASE_URL": migrated_url}
    first = CliRunner().invoke(main, ["scheduler", "--once"], env=env)
    assert first.exit_code == 0, first.output
    assert "Swept: 1 new warning or breach notice, 0 emailed." in first.output
    # Every job runs once, not only the sweep; no mailbox is configured, so no poll.
    assert "Email acknowledgements: 0 sent." in first.output
    assert "Mailbox polled" not in first.output
    again = CliRunner().invoke(main, ["scheduler", "--once"], env=env)
    assert "Swept: 0 new warning or breach notices" in again.output


def test_helpdesk_scheduler_once_says_when_notices_could_not_be_emailed(migrated_url, tmp_path):
    config = write_config(tmp_path / "helpdesk.toml")
    with config.open("a") as extra:  # a mail server that is not there
        extra.write(f'\n[supervisors]\nemails = ["lead@provider.example.org"]\n\n[smtp]\nhost = "127.0.0.1"\n'
                    f'port = {free_port()}\nsecurity = "none"\nfrom_address = "desk@provider.example.org"\n')
    owe_overdue(migrated_url, config)
    result = CliRunner().invoke(main, ["scheduler", "--once"], env={"HELPDESK_CONFIG": str(config),
                                                                    "DATABASE_URL": migrated_url})
    assert result.exit_code == 0, result.output
    assert ("Swept: 1 new warning or breach notice, 0 emailed, 1 could not be (see the warnings above; tried "
            "again at the next sweep).") in result.output


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "helpdesk.cli", *command], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **env}, preexec_fn=hear_ctrl_c)


def hear_ctrl_c() -> None:
    """In the child: Ctrl-C as at a terminal, even when the suite was started in the background
    (`make test &` from a script), where the shell ignores it and everything started inherits that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    process.send_signal(sig)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_helpdesk_scheduler_sweeps_at_start_and_stops_cleanly_releasing_its_lease(tmp_path, sig):
    url = f"sqlite:///{tmp_path}/helpdesk.db"
    upgrade(url)
    config = write_config(tmp_path / "helpdesk.toml")
    owe_overdue(url, config)
    log = tmp_path / "scheduler.log"
    process = start(["scheduler"], {"HELPDESK_CONFIG": str(config), "DATABASE_URL": url}, log)
    database = Database(url)
    try:
        wait_until(lambda: all_notices(database), what="the breach")
        assert f":{process.pid}:" in lease_row(database).holder
    finally:
        code = stop(process, sig)
    output = log.read_text()
    assert code == 0, output
    assert "Scheduler started with" in output and "Press Ctrl-C to stop." in output and "Scheduler stopped." in output
    assert "Traceback" not in output
    assert lease_row(database).expires_at < datetime(2000, 1, 1, tzinfo=timezone.utc)
    database.dispose()


@pytest.mark.postgres
def test_helpdesk_scheduler_started_while_postgresql_is_down_sweeps_once_it_is_back(tmp_path):
    server = own_postgres_server()  # this test stops it
    with server:
        url = server.create_database("scheduled") + "?connect_timeout=2"
        upgrade(url)
        config = write_config(tmp_path / "helpdesk.toml")
        owe_overdue(url, config)
        server.pause()
        env = {"HELPDESK_CONFIG": str(config), "DATABASE_URL": url}
        # A one-off run is a check: it says the database does not answer, and fails.
        once = CliRunner().invoke(main, ["scheduler", "--once"], env=env)
        assert once.exit_code == 1 and "cannot reach the database" in once.output
        log = tmp_path / "scheduler.log"
        process = start(["scheduler"], env, log)
        try:
            wait_until(lambda: "the callback sweep failed" in log.read_text(), what="a failed sweep")
            assert process.poll() is None, log.read_text()
            server.resume()
            database = Database(url)
            try:
                wait_until(lambda: all_notices(database), what="the breach, once the database answers")
            finally:
                database.dispose()
        finally:
            code = stop(process)
    output = log.read_text()
    assert code == 0, output
    assert "cannot reach the database" in output and "starting anyway" in output
    assert "Traceback" not in output


# --------------------------------------------------------------------------- `helpdesk run` under gunicorn


def run_env(url: str, config: Path) -> dict[str, str]:
    return {"SECRET_KEY": "test-secret" * 4, "TWILIO_AUTH_TOKEN": "test-token", "PUBLIC_BASE_URL": "https://h.example",
            "DATABASE_URL": url, "HELPDESK_CONFIG": str(config)}


def test_helpdesk_run_runs_one_scheduler_in_the_gunicorn_master_not_in_its_workers(migrated_url, tmp_path):
    config = write_config(tmp_path / "helpdesk.toml")
    callback_id = owe_overdue(migrated_url, config)
    port, log = free_port(), tmp_path / "run.log"
    process = start(["run", "--port", str(port), "--workers", "3"], run_env(migrated_url, config), log)
    database = Database(migrated_url)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/readyz", process=process)
        wait_until(lambda: all_notices(database), what="the breach")
        holder = lease_row(database).holder
        wait_until(lambda: log.read_text().count("Booting worker") == 3, what="three workers")
    finally:
        code = stop(process)
    output = log.read_text()
    assert code == 0, output
    assert holder.split(":")[1] == str(process.pid)  # the master: `helpdesk run` is gunicorn's arbiter
    assert output.count("Scheduler started in the master process") == 1
    assert [(n.callback_id, n.kind) for n in all_notices(database)] == [(callback_id, "breach")]
    assert lease_row(database).expires_at < datetime(2000, 1, 1, tzinfo=timezone.utc)  # released at exit
    database.dispose()


def test_helpdesk_run_with_no_scheduler_leaves_the_sweep_to_a_separate_process(tmp_path):
    url = f"sqlite:///{tmp_path}/helpdesk.db"
    upgrade(url)
    config = write_config(tmp_path / "helpdesk.toml")
    owe_overdue(url, config)
    port, log = free_port(), tmp_path / "run.log"
    process = start(["run", "--port", str(port), "--workers", "2", "--no-scheduler"], run_env(url, config), log)
    database = Database(url)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/readyz", process=process)
        time.sleep(2)  # with the scheduler, the sweep runs as soon as the master is ready
        assert all_notices(database) == [] and lease_row(database) is None
    finally:
        stop(process)
        database.dispose()
    assert "Scheduler started" not in log.read_text()
