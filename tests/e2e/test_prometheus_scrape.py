"""A real Prometheus scrapes the app under gunicorn while the simulator plays a known mix of calls.

Every panel query of every dashboard runs through Prometheus's HTTP API and returns data; the
figures Prometheus holds equal what metrics.compliance computes from the database; a rule
with nothing countable today (no emails yet) has no compliance series at all, not 0 or 1; the
alert rules load and evaluate; the exposition passes `promtool check metrics`.
"""
from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.config import load_settings
from helpdesk.db import Database
from helpdesk.models import Call, Callback, EmailAcknowledgement, Enquiry, InboundEmail
from helpdesk.simulator import CallScenario, RequestsTransport, Simulator
from live import LiveApp
from metrics import compliance
from metrics.dashboards import build
from metrics.dashboards.panels import concrete, panel_queries
from servers import free_port, require_program, stop_process, wait_for_url
from tests.e2e.conftest import AUTH_TOKEN, write_config

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "metrics" / "alerts" / "helpdesk.rules.yml"
UTC = timezone.utc

# The played mix (no menu, so the answer time is exactly the scenario's; the ring group rings
# for 45 s): 3 answered within ten rings, 2 answered late, 1 caller who gave up within the
# target (not countable) and 1 after it (a breach). Countable: 6; met: 3.
SCENARIOS = [
    CallScenario(caller="+447700900101", answer_after=4.0, talk_seconds=30, seed=1),
    CallScenario(caller="+447700900102", answer_after=13.0, talk_seconds=30, seed=2),
    CallScenario(caller="+447700900103", answer_after=24.0, talk_seconds=30, seed=3),
    CallScenario(caller="+447700900104", answer_after=41.0, talk_seconds=30, seed=4),
    CallScenario(caller="+447700900105", answer_after=36.0, talk_seconds=30, seed=5),
    CallScenario(caller="+447700900106", answer_after=None, abandon_after=8.0, seed=6),
    CallScenario(caller="+447700900107", answer_after=None, abandon_after=40.0, seed=7),
]
COUNTABLE, MET = 6, 3


class Prometheus:
    """`prometheus` on 127.0.0.1 scraping `target` every second, with the help desk's alert rules."""

    def __init__(self, program: str, workdir: Path, target: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES_FILE)],
            "scrape_configs": [{"job_name": "helpdesk", "static_configs": [{"targets": [target]}]}],
        }))
        self.log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [program, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()

    def api(self, path: str, **form) -> dict:
        data = urllib.parse.urlencode(form).encode() if form else None
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}", data=data, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query at now; PromQL errors come back as HTTP 400 and fail the test."""
        try:
            return self.api("query", query=expr, time=f"{time.time():.3f}")["result"]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{expr}: {error.read().decode(errors='replace')}") from None

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, timeout: float = 20.0) -> None:
        """Until `expr` has a result (poll, as targets are picked up after a few seconds)."""
        deadline = time.monotonic() + timeout
        while not self.query(expr):
            assert self.process.poll() is None, "prometheus exited"
            assert time.monotonic() < deadline, f"no data for {expr} after {timeout:.0f}s"
            time.sleep(0.25)


def minutes_ago_today(now: datetime, minutes: float) -> datetime:
    """`minutes` before `now`, but never before today's UK midnight: the panels read "today"."""
    return max(now - timedelta(minutes=minutes), compliance.uk_midnight(compliance.uk_date(now)))


def enquiry(session, n: int, channel: str, at: datetime) -> Enquiry:
    row = Enquiry(reference=f"HD-{at.year}-9{n:05d}", channel=channel, opened_at=at)
    session.add(row)
    session.flush()
    return row


def seed_callbacks(database: Database, now: datetime) -> None:
    """One callback met, one breached and still open (overdue), one open and in time."""
    with database.session() as session, session.begin():
        for n, (result, status, age, due_in) in enumerate([
            ("met", "closed", 40, 140), ("breached", "open", 50, -5), (None, "open", 10, 170)]):
            owed_from = minutes_ago_today(now, age)
            row = enquiry(session, n + 1, "phone", owed_from)
            session.add(Callback(
                contact_key=f"call:SEEDED{n}", enquiry_id=row.id, reason="not_concluded", caller_type="customer",
                caller_number=f"+4477009002{n:02d}", owed_from=owed_from, due_at=now + timedelta(minutes=due_in),
                clock="elapsed", explanation="{}", config_version="seeded", created_at=owed_from, status=status,
                sla_result=result, attempts_count=1 if result == "met" else 0,
                first_attempt_at=min(owed_from + timedelta(minutes=20), now) if result == "met" else None,
                breached_at=now + timedelta(minutes=due_in) if result == "breached" else None))


def seed_emails(database: Database, now: datetime) -> bool:
    """Three emails: acknowledged in time, acknowledged late, and one still owed past its target,
    received 20 minutes ago. Returns whether that was today (UK): in the first 20 minutes of a
    day it was yesterday, and today's figures do not count it."""
    with database.session() as session, session.begin():
        for n, (status, result, age) in enumerate([("sent", "met", 30), ("sent", "late", 45), ("pending", None, 20)]):
            received = minutes_ago_today(now, age) if status == "sent" else now - timedelta(minutes=age)
            row = enquiry(session, n + 10, "email", received)
            email = InboundEmail(received_at=received, source="sendgrid", dedupe_key=f"{n:064d}",
                                 message_id=f"<seed{n}@example.org>", raw=b"Subject: help\r\n\r\nplease",
                                 raw_sha256="0" * 64, sender="caller@example.org", subject="help",
                                 decision="new_enquiry", enquiry_id=row.id)
            session.add(email)
            session.flush()
            sent = received + timedelta(minutes=5 if result == "met" else 20) if status == "sent" else None
            session.add(EmailAcknowledgement(
                enquiry_id=row.id, inbound_email_id=email.id, to_address="caller@example.org", received_at=received,
                due_at=received + timedelta(minutes=15), status=status, attempts=1, sent_at=sent, sla_result=result))
    return now - timedelta(minutes=20) >= compliance.uk_midnight(compliance.uk_date(now))


def database_figures(database: Database, settings) -> dict[str, dict[str, compliance.RuleFigures]]:
    now = datetime.now(UTC)
    periods = [compliance.current_period(kind, now) for kind in compliance.PERIOD_KINDS]
    with database.session() as session:
        return compliance.figures_for_periods(session, periods, settings, now)


@pytest.mark.e2e
def test_prometheus_scraping_the_app_feeds_every_panel_and_matches_the_compliance_module(
        database_url, app_env, tmp_path):
    prometheus_program = require_program("prometheus", "install the Debian `prometheus` package")
    promtool = require_program("promtool", "install the Debian `prometheus` package")
    # The panels read "today": a run that crossed UK midnight would see its seeded items leave it.
    # Close to midnight, start after it instead (rarely, and never more than a few minutes).
    now = datetime.now(UTC)
    midnight = compliance.uk_midnight(compliance.uk_date(now) + timedelta(days=1))
    if midnight - now < timedelta(minutes=4):
        time.sleep((midnight - now).total_seconds() + 1)
    config = write_config(tmp_path / "helpdesk.toml", ivr=False)
    settings = load_settings(config)
    (tmp_path / "multiproc").mkdir()
    env = {**app_env, "HELPDESK_CONFIG": config, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc")}
    (tmp_path / "prometheus").mkdir()
    database = Database(database_url)
    prometheus = None
    try:
        with LiveApp(database_url, env, workers=2) as live:
            # Prometheus first, so that the calls are an increase it saw (the share panels divide two).
            prometheus = Prometheus(prometheus_program, tmp_path / "prometheus", live.url.removeprefix("http://"))
            wait_for_url(f"{prometheus.url}/-/ready", process=prometheus.process)
            prometheus.wait_for('count_over_time(helpdesk_calls_total{outcome="answered",caller_type="unknown"}[1m]) '
                                '>= 2')
            transport = RequestsTransport()
            simulator = Simulator(live.url, AUTH_TOKEN, transport=transport, speed=0)
            traces = [simulator.run_call(scenario) for scenario in SCENARIOS]
            transport.close()
            assert [trace.errors for trace in traces if trace.errors] == []
            assert [trace.outcome for trace in traces] == ["answered"] * 5 + ["abandoned"] * 2
            seed_callbacks(database, datetime.now(UTC))
            prometheus.wait_for(f"sum(helpdesk_calls_total) >= {len(SCENARIOS)}")
            prometheus.wait_for('count_over_time(helpdesk_open{job="helpdesk"}[1m]) >= 3')

            # No email yet: the email rule has nothing countable, so no compliance series at all,
            # and its panels say "No data", while its counters are present and 0.
            assert prometheus.query('helpdesk_sla_compliance_ratio{sla="email_ack"}') == []
            board = build.build()["helpdesk-compliance.json"]
            email_stats = [query["expr"] for _, query in panel_queries(board)
                           if query["instant"] and 'compliance_ratio{sla="email_ack"' in query["expr"]]
            assert len(email_stats) == 3
            assert all(prometheus.query(expr) == [] for expr in email_stats)
            assert prometheus.value("max(helpdesk_emails_received_total)") == 0
            assert prometheus.value('max(helpdesk_sla_countable{sla="email_ack",period="today"})') == 0

            owed_today = seed_emails(database, datetime.now(UTC))
            prometheus.wait_for('count_over_time(helpdesk_sla_compliance_ratio{sla="email_ack",period="today"}[1m]) '
                                '>= 3')

            # Every panel query of every dashboard returns data.
            empty = []
            queries = 0
            for name, dashboard in build.build().items():
                for title, query in panel_queries(dashboard):
                    queries += 1
                    if not prometheus.query(concrete(query["expr"], time_range="10m", interval="30s")):
                        empty.append(f"{name} / {title} / {query['legendFormat']}: {query['expr']}")
            assert empty == [], "\n".join(empty)
            assert queries > 60
            # The calls dashboard's shares: 5 of the 7 calls answered, 2 callers hung up first.
            shares = {title: query["expr"] for title, query in panel_queries(build.build()["helpdesk-calls.json"])
                      if "of calls in hours" in title}
            assert prometheus.value(concrete(shares["Answered, of calls in hours"], time_range="10m")) == \
                pytest.approx(5 / 7)
            assert prometheus.value(concrete(shares["Caller hung up first, of calls in hours"], time_range="10m")) == \
                pytest.approx(2 / 7)

            # The figures Prometheus holds are the compliance module's.
            expected = database_figures(database, settings)
            for period, by_rule in expected.items():
                for rule, figures in by_rule.items():
                    labels = f'sla="{rule}",period="{period}"'
                    assert prometheus.value(f"helpdesk_sla_countable{{{labels}}}") == figures.countable
                    assert prometheus.value(f"helpdesk_sla_met{{{labels}}}") == figures.met
                    assert prometheus.value(f"helpdesk_sla_compliance_ratio{{{labels}}}") == pytest.approx(
                        figures.compliance)
            today = expected["today"]
            assert (today["answer_within_rings"].countable, today["answer_within_rings"].met) == (COUNTABLE, MET)
            assert (today["callback_within_3h"].countable, today["callback_within_3h"].met) == (2, 1)
            # The acknowledgement still owed past its target counts as a breach already (in today's
            # figures when it was received today).
            assert (today["email_ack"].countable, today["email_ack"].met) == (3 if owed_today else 2, 1)
            with database.session() as session:
                calls = list(session.scalars(select(Call)))
            assert prometheus.value("helpdesk_calls_countable_total") == sum(c.countable for c in calls) == COUNTABLE
            assert prometheus.value("helpdesk_calls_answered_within_target_total") == MET
            assert prometheus.value('helpdesk_call_answer_seconds_bucket{le="30.0"}') == 3
            assert prometheus.value('helpdesk_call_answer_seconds_bucket{le="+Inf"}') == 5
            assert prometheus.value("sum(helpdesk_calls_total)") == len(SCENARIOS)
            assert prometheus.value("helpdesk_callbacks_overdue") == 1
            assert prometheus.value("helpdesk_emails_unacknowledged_overdue") == 1

            # The alert rules load, evaluate without errors, and the seeded breaches fire.
            groups = prometheus.api("rules")["groups"]
            assert all(rule["health"] == "ok" for group in groups for rule in group["rules"]), groups
            prometheus.wait_for('ALERTS{alertname="HelpdeskCallbackOverdue",alertstate="firing"}')
            prometheus.wait_for('ALERTS{alertname="HelpdeskEmailUnacknowledged",alertstate="firing"}')
            assert prometheus.query('ALERTS{alertname="HelpdeskMetricsMissing"}') == []

            with urllib.request.urlopen(f"{live.url}/metrics", timeout=10) as response:
                exposition = response.read()
            log = live.log_text()
        lint = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30)
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
        assert "Traceback" not in log
    finally:
        if prometheus is not None:
            prometheus.stop()
        database.dispose()
