"""GET /metrics on SQLite and PostgreSQL: the business series equal metrics.compliance, the
counters never go down, the exposition passes promtool, and HTTP metrics add up across
gunicorn workers."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpdesk.app import create_app
from metrics.compliance import RULES, current_period, figures, live_figures
from tests.integration.compliance_data import add_call, add_callback
from tests.integration.conftest import AUTH_TOKEN, BASE_URL
from tests.integration.test_compliance import store_known_mix
from tests.servers import free_port, require_program, wait_for_url

UTC = timezone.utc
ROOT = Path(__file__).resolve().parents[2]


def scrape(client) -> dict[tuple, float]:
    """{(sample name, (label, value) pairs sorted): value} from one GET /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse(response.get_data(as_text=True))


def parse(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_the_sla_series_equal_the_compliance_figures_for_today_this_week_and_this_month(app, client, clock, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
    samples = scrape(client)
    for kind in ("today", "week", "month"):
        with database.session() as session:
            expected = figures(session, current_period(kind, clock()), settings, clock())
        for rule in RULES:
            assert value(samples, "helpdesk_sla_countable", sla=rule, period=kind) == expected[rule].countable
            assert value(samples, "helpdesk_sla_met", sla=rule, period=kind) == expected[rule].met
            assert value(samples, "helpdesk_sla_compliance_ratio", sla=rule, period=kind) == pytest.approx(
                expected[rule].compliance)
    assert value(samples, "helpdesk_sla_compliance_ratio", sla="answer_within_rings", period="today") == 0.6
    assert value(samples, "helpdesk_sla_target_ratio", sla="callback_within_3h") == 1.0


def test_a_period_with_nothing_countable_has_no_ratio_sample_but_zero_counts(app, client):
    with app.extensions["helpdesk.db"].session() as session, session.begin():
        add_call(session, datetime(2026, 11, 2, 9, tzinfo=UTC), answer_seconds=5.0)  # earlier this month only
    samples = scrape(client)
    assert value(samples, "helpdesk_sla_compliance_ratio", sla="answer_within_rings", period="month") == 1.0
    for period in ("today", "week"):
        assert value(samples, "helpdesk_sla_compliance_ratio", sla="answer_within_rings", period=period) is None
        assert value(samples, "helpdesk_sla_countable", sla="answer_within_rings", period=period) == 0
    assert not any(name == "helpdesk_sla_compliance_ratio" and dict(labels)["sla"] != "answer_within_rings"
                   for name, labels in samples)


def test_call_counters_and_the_answer_histogram_count_finished_calls(app, client):
    with app.extensions["helpdesk.db"].session() as session:
        store_known_mix(session)
    samples = scrape(client)
    assert value(samples, "helpdesk_calls_total", outcome="answered", caller_type="customer") == 8
    assert value(samples, "helpdesk_calls_total", outcome="abandoned", caller_type="customer") == 2
    assert value(samples, "helpdesk_calls_total", outcome="no_answer", caller_type="customer") == 1
    assert value(samples, "helpdesk_calls_total", outcome="voicemail", caller_type="dwp") == 0  # zero-initialised
    assert not any(dict(labels).get("outcome") == "in_progress" for _, labels in samples)
    assert value(samples, "helpdesk_calls_countable_total") == 10
    assert value(samples, "helpdesk_calls_answered_within_target_total") == 6
    bucket = {le: value(samples, "helpdesk_call_answer_seconds_bucket", le=le)
              for le in ("3.0", "6.0", "12.0", "30.0", "45.0", "90.0", "300.0", "+Inf")}
    # Answered countable: 5, 29.9, 30.0, 31.0, 3.0, 12.0, 4.0, 90.0 seconds.
    assert bucket == {"3.0": 1, "6.0": 3, "12.0": 4, "30.0": 6, "45.0": 7, "90.0": 8, "300.0": 8, "+Inf": 8}
    assert value(samples, "helpdesk_call_answer_seconds_count") == 8
    assert value(samples, "helpdesk_call_answer_seconds_sum") == pytest.approx(5 + 29.9 + 30 + 31 + 3 + 12 + 4 + 90)
    last = datetime(2026, 11, 24, 8, 30, tzinfo=UTC) + timedelta(seconds=31)
    assert value(samples, "helpdesk_last_answered_call_timestamp_seconds") == last.timestamp()


def test_with_no_call_ever_answered_there_is_no_last_answered_timestamp(client):
    samples = scrape(client)
    assert value(samples, "helpdesk_last_answered_call_timestamp_seconds") is None
    assert value(samples, "helpdesk_call_answer_seconds_count") == 0


def test_answered_calls_awaiting_an_outcome_and_how_long_the_first_to_end_has_waited(app, client, clock, settings):
    from tests.integration.test_queue_page import PASSWORD, act, add_agent, answer_a_call, at, sid
    from tests.integration.test_users_and_login import sign_in

    add_agent(app, "alice", "Alice Agent")
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    answer_a_call(client, clock, 1, at(9, 0))  # each ends 90 s after it arrived
    answer_a_call(client, clock, 2, at(9, 30))
    answer_a_call(client, clock, 3, at(9, 50))
    clock.now = at(9, 55)
    act(client, f"/queue/calls/{sid(2)}/concluded")
    clock.now = at(10, 0)

    samples = scrape(client)
    assert value(samples, "helpdesk_calls_awaiting_outcome") == 2  # 1 and 3; 2 was concluded
    assert value(samples, "helpdesk_call_awaiting_outcome_oldest_seconds") == 58.5 * 60  # 1 ended at 09:01:30
    with app.extensions["helpdesk.db"].session() as session:
        live = live_figures(session, settings, clock())
    assert (live.calls_awaiting_outcome, live.oldest_awaiting_outcome_seconds) == (2, 58.5 * 60)

    act(client, f"/queue/calls/{sid(1)}/callback", number="07700 900123", note="Wants the grants team")
    act(client, f"/queue/calls/{sid(3)}/concluded")
    samples = scrape(client)
    assert value(samples, "helpdesk_calls_awaiting_outcome") == 0
    assert value(samples, "helpdesk_call_awaiting_outcome_oldest_seconds") == 0


def test_older_answered_calls_with_no_outcome_are_counted_apart_back_to_28_days(app, client, clock, settings):
    from tests.integration.test_queue_page import PASSWORD, act, add_agent, answer_a_call, at, sid
    from tests.integration.test_users_and_login import sign_in

    add_agent(app, "alice", "Alice Agent")
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    # Tuesday 24 November: the agents' page shows Monday's calls on. Older: from 27 October.
    answer_a_call(client, clock, 1, at(9, 0) - timedelta(days=1))  # Monday: on the page
    answer_a_call(client, clock, 2, at(9, 0) - timedelta(days=4))  # Friday: older
    answer_a_call(client, clock, 3, at(9, 0) - timedelta(days=4, minutes=-5))  # Friday, concluded below
    answer_a_call(client, clock, 4, datetime(2026, 10, 27, 0, 30, tzinfo=UTC))  # 00:30 UK time (GMT), 28 days back
    answer_a_call(client, clock, 5, datetime(2026, 10, 26, 23, 59, tzinfo=UTC))  # the day before: beyond it
    clock.now = at(10, 0)
    act(client, f"/queue/calls/{sid(3)}/concluded")

    samples = scrape(client)
    assert (value(samples, "helpdesk_calls_awaiting_outcome"), value(samples, "helpdesk_calls_awaiting_outcome_older")) \
        == (1, 2)
    with app.extensions["helpdesk.db"].session() as session:
        live = live_figures(session, settings, clock())
    assert (live.calls_awaiting_outcome, live.calls_awaiting_outcome_older) == (1, 2)
    # The agents' page with older calls shows the same three.
    older = client.get("/queue?older=yes").get_data(as_text=True)
    assert [n for n in range(1, 6) if f'id="call-{sid(n)}"' in older] == [1, 2, 4]

    # Read at most once a minute of the app's clock (they are days old), then again.
    act(client, f"/queue/calls/{sid(4)}/callback", number="07700 900123", note="Asked about a grant")
    clock.advance(59)
    assert value(scrape(client), "helpdesk_calls_awaiting_outcome_older") == 2
    clock.advance(1)
    assert value(scrape(client), "helpdesk_calls_awaiting_outcome_older") == 1
    with app.extensions["helpdesk.db"].session() as session:  # exact at every read without a process's cache
        assert live_figures(session, settings, clock()).calls_awaiting_outcome_older == 1


def test_a_process_reads_the_older_calls_again_after_a_minute_a_new_uk_day_the_clock_going_back_or_new_rules(
        monkeypatch, settings):
    from dataclasses import replace

    from metrics import compliance

    reads = []
    monkeypatch.setattr(compliance, "older_awaiting", lambda session, settings, now: reads.append(now) or len(reads))
    older = compliance.OlderAwaiting()
    evening = datetime(2026, 11, 24, 23, 58, tzinfo=UTC)  # GMT: UK time is UTC
    seen = [older(None, settings, evening + timedelta(seconds=step)) for step in (0, 30, 59.9, 90, 119.9, 120)]
    assert seen == [1, 1, 1, 2, 2, 3]  # a minute on (23:59:30), then a new UK day 30 s later
    assert older(None, settings, evening + timedelta(seconds=100)) == 4  # the clock went back
    assert older(None, settings, evening + timedelta(seconds=101)) == 4
    assert older(None, replace(settings, version="another"), evening + timedelta(seconds=101)) == 5
    assert len(reads) == 5


def test_callback_and_email_series_equal_the_live_figures(app, client, clock, settings):
    database = app.extensions["helpdesk.db"]
    now = clock()
    with database.session() as session:
        store_known_mix(session)
    with database.session() as session, session.begin():
        add_callback(session, now - timedelta(hours=2, minutes=45), result=None)  # due in 15 min
        add_callback(session, now - timedelta(hours=3, minutes=30), result=None)  # overdue
        # Past due, but attempted (late, so breached) and waiting for its retry: not a caller still
        # waiting for a first call, so not "overdue" for the alert that says "call them now".
        late = add_callback(session, now - timedelta(hours=3, minutes=20), result="breached", status="open")
        late.first_attempt_at, late.attempts_count = now - timedelta(minutes=10), 1
    with database.session() as session:
        live = live_figures(session, settings, now)
    samples = scrape(client)
    assert (live.callbacks_open, live.callbacks_due_soon, live.callbacks_overdue) == (4, 1, 1)
    assert value(samples, "helpdesk_callbacks_open") == live.callbacks_open
    assert value(samples, "helpdesk_callbacks_due_soon") == live.callbacks_due_soon
    assert value(samples, "helpdesk_callbacks_due_soon_unclaimed") == live.callbacks_due_soon_unclaimed
    assert value(samples, "helpdesk_callbacks_overdue") == live.callbacks_overdue
    assert value(samples, "helpdesk_callback_oldest_open_age_seconds") == 3.5 * 3600
    assert value(samples, "helpdesk_callbacks_total", result="met") == 2
    assert value(samples, "helpdesk_callbacks_total", result="breached") == 3
    assert value(samples, "helpdesk_emails_received_total") == 6
    assert value(samples, "helpdesk_emails_acknowledged_total", result="met") == 1
    assert value(samples, "helpdesk_emails_acknowledged_total", result="late") == 1
    assert value(samples, "helpdesk_emails_unacknowledged") == live.emails_unacknowledged == 3
    assert value(samples, "helpdesk_emails_unacknowledged_overdue") == live.emails_unacknowledged_overdue == 2


def test_counters_never_go_down_as_calls_finish_and_callbacks_are_decided(app, client, clock):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        waiting = add_call(session, clock() - timedelta(seconds=10), outcome="in_progress", countable=False)
        owed = add_callback(session, clock() - timedelta(hours=1), result=None)
    before = scrape(client)
    with database.session() as session, session.begin():
        session.merge(waiting).outcome = "answered"
        session.merge(owed).sla_result = "met"
    clock.advance(60)
    after = scrape(client)
    counters = [key for key in before if key[0].endswith("_total") or key[0].startswith("helpdesk_call_answer_seconds")]
    assert counters and all(after[key] >= before[key] for key in counters)
    assert sum(after[k] for k in counters if k[0] == "helpdesk_calls_total") == 1
    assert value(after, "helpdesk_callbacks_total", result="met") == 1


def test_the_desk_is_shown_closed_on_a_saturday(client, clock):
    assert value(scrape(client), "helpdesk_open") == 1
    clock.now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert value(scrape(client), "helpdesk_open") == 0


def test_the_exposition_passes_promtool_check_metrics(app, client):
    promtool = require_program("promtool", "install the `prometheus` package")
    with app.extensions["helpdesk.db"].session() as session:
        store_known_mix(session)
    client.get("/healthz")
    client.get("/no/such/page")
    text = client.get("/metrics").get_data()
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert b"helpdesk_http_requests_total" in text and b"helpdesk_sla_compliance_ratio{" in text


def test_http_requests_are_counted_by_endpoint_name_and_unknown_paths_as_unmatched(client):
    before = scrape(client)
    for _ in range(3):
        client.get("/healthz")
    client.get("/no/such/page/12345")
    client.post("/healthz")
    after = scrape(client)

    def delta(**labels) -> float:
        return (value(after, "helpdesk_http_requests_total", **labels) or 0) - (
            value(before, "helpdesk_http_requests_total", **labels) or 0)

    assert delta(endpoint="health.healthz", method="GET", status="200") == 3
    assert delta(endpoint="unmatched", method="GET", status="404") == 1
    assert delta(endpoint="unmatched", method="POST", status="405") == 1
    assert not any("12345" in str(labels) for _, labels in after)
    assert (value(after, "helpdesk_http_request_duration_seconds_count", endpoint="health.healthz")
            - (value(before, "helpdesk_http_request_duration_seconds_count", endpoint="health.healthz") or 0)) == 3


def test_a_database_error_during_a_scrape_leaves_out_every_business_series_and_serves_the_rest(database_url,
                                                                                               settings):
    """The app is up, so Prometheus sees it up, without its figures (HelpdeskFiguresMissing), and
    with the webhooks its spool holds meanwhile (HelpdeskWebhooksWaiting)."""
    # A database without the schema: every query fails.
    app = create_app({"TESTING": True, "SECRET_KEY": "k", "DATABASE_URL": database_url, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                      "PUBLIC_BASE_URL": BASE_URL, "SETTINGS": settings})
    try:
        response = app.test_client().get("/metrics")
    finally:
        app.extensions["helpdesk.db"].dispose()
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.startswith("# The help desk cannot read its database now")
    names = {family.name for family in text_string_to_metric_families(body)}
    assert {"helpdesk_webhooks_spooled", "helpdesk_build_info", "helpdesk_http_requests",
            "helpdesk_sip_calls_refused"} <= names
    assert not names & {"helpdesk_open", "helpdesk_calls", "helpdesk_callbacks_open", "helpdesk_sla_compliance_ratio"}
    assert all(name in ("helpdesk_webhooks_spooled", "helpdesk_build_info")
               or name.startswith(("helpdesk_http_", "helpdesk_sip_calls_refused")) for name in names), names
    promtool = require_program("promtool", "install the `prometheus` package")
    checked = subprocess.run([promtool, "check", "metrics"], input=response.get_data(), capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_http_metrics_add_up_across_three_gunicorn_workers(tmp_path):
    url = f"sqlite:///{tmp_path}/helpdesk.db"
    from helpdesk.migrate import upgrade

    upgrade(url)
    config = tmp_path / "helpdesk.toml"
    config.write_text('[hours]\nmonday = ["08:00-18:00"]\n')
    port, log = free_port(), tmp_path / "run.log"
    env = {**os.environ, "SECRET_KEY": "test-secret" * 4, "TWILIO_AUTH_TOKEN": "t", "PUBLIC_BASE_URL": "https://h.example",
           "DATABASE_URL": url, "HELPDESK_CONFIG": str(config), "TMPDIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "helpdesk.cli", "run", "--port", str(port), "--workers", "3",
                                    "--no-scheduler"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/healthz", process=process)
        (directory,) = glob.glob(str(tmp_path / "helpdesk-prometheus-*"))
        sent, writers = 1, []  # the readiness poll's request counts too
        with ThreadPoolExecutor(max_workers=24) as pool:
            while len(writers) < 2 and sent < 2000:  # concurrent requests reach several workers
                list(pool.map(lambda _: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).close(),
                              range(48)))
                sent += 48
                writers = glob.glob(os.path.join(directory, "counter_*.db"))
        totals = []
        for _ in range(6):  # whichever worker answers, the count is the same
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                samples = parse(response.read().decode())
            totals.append(value(samples, "helpdesk_http_requests_total", endpoint="health.healthz", method="GET",
                                status="200"))
            # Written at 0 by each worker from its first request, so increase() sees the first refusal.
            assert value(samples, "helpdesk_sip_calls_refused_total", call="ring_group", code="407") == 0
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert len(writers) >= 2, log.read_text()  # more than one worker answered
    assert totals == [float(sent)] * 6
    assert not glob.glob(str(tmp_path / "helpdesk-prometheus-*"))  # removed when the server stopped


def test_a_metrics_directory_removed_under_a_running_server_leaves_the_business_series(client, tmp_path,
                                                                                        monkeypatch, caplog):
    from metrics import http

    monkeypatch.setenv(http.MULTIPROC_ENV, str(tmp_path / "removed"))
    monkeypatch.setattr(http, "_failed_once", __import__("threading").Event())
    samples = scrape(client)
    assert ("helpdesk_calls_unfinished", ()) in samples  # from the database, as always
    assert not any(name.startswith("helpdesk_http_") for name, _ in samples)
    assert "request metrics are not being recorded in this process" in caplog.text


def test_each_scheduler_jobs_lease_is_reported_so_a_stopped_scheduler_can_be_noticed(app, client, clock):
    from callbacks.sweep import acquire_lease, release_lease

    samples = scrape(client)
    # Before any scheduler has run: the jobs every scheduler runs are reported as long expired.
    assert value(samples, "helpdesk_scheduler_lease_expires_timestamp_seconds", lease="sweep") == 0
    assert value(samples, "helpdesk_scheduler_lease_expires_timestamp_seconds", lease="email.acks") == 0
    with app.extensions["helpdesk.db"].session() as session:
        assert acquire_lease(session, "sweep", "host-1", clock(), 120)
        assert acquire_lease(session, "email.imap", "host-1", clock(), 120)
    samples = scrape(client)
    expires = (clock() + timedelta(seconds=120)).timestamp()
    assert value(samples, "helpdesk_scheduler_lease_expires_timestamp_seconds", lease="sweep") == expires
    assert value(samples, "helpdesk_scheduler_lease_expires_timestamp_seconds", lease="email.imap") == expires
    with app.extensions["helpdesk.db"].session() as session:
        release_lease(session, "sweep", "host-1")  # a scheduler shutting down
    assert value(scrape(client), "helpdesk_scheduler_lease_expires_timestamp_seconds", lease="sweep") < clock().timestamp()


def test_a_scheduler_job_whose_last_run_failed_is_reported_until_a_run_works(app, client, clock, database,
                                                                             monkeypatch):
    import callbacks.scheduler as scheduler_module
    from callbacks.scheduler import SweepJob

    samples = scrape(client)
    assert value(samples, "helpdesk_scheduler_job_failing", lease="sweep") == 0  # before any run
    assert value(samples, "helpdesk_scheduler_job_failing", lease="email.acks") == 0
    job = SweepJob(settings=app.extensions["helpdesk.settings"], database=database, clock=clock, announce=False)

    def broken(*args):
        raise RuntimeError("the sweep broke")

    monkeypatch.setattr(scheduler_module, "sweep", broken)
    assert job().failed
    samples = scrape(client)
    assert value(samples, "helpdesk_scheduler_job_failing", lease="sweep") == 1
    assert value(samples, "helpdesk_scheduler_job_failing", lease="email.acks") == 0
    monkeypatch.undo()
    assert not job().failed
    assert value(scrape(client), "helpdesk_scheduler_job_failing", lease="sweep") == 0


def test_when_the_imap_mailbox_was_last_read_is_reported_when_one_is_polled(app, client, clock, settings):
    from dataclasses import replace

    from helpdesk.models import ImapMailboxState

    assert value(scrape(client), "helpdesk_imap_last_read_timestamp_seconds") is None  # no mailbox configured
    polled = replace(settings, email=replace(settings.email, imap=replace(settings.email.imap, host="imap.example.org")))
    app.extensions["helpdesk.settings"] = polled
    assert value(scrape(client), "helpdesk_imap_last_read_timestamp_seconds") == 0  # never read
    with app.extensions["helpdesk.db"].session() as session, session.begin():
        session.add(ImapMailboxState(mailbox="u@imap.example.org:993/INBOX", uidvalidity=1, last_uid=7,
                                     checked_at=clock() - timedelta(minutes=3)))
    read_at = (clock() - timedelta(minutes=3)).timestamp()
    assert value(scrape(client), "helpdesk_imap_last_read_timestamp_seconds") == read_at
