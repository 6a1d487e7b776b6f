"""GET /metrics over a large history: 1,000,000 calls, 200,000 callbacks, 200,000 emails.

The figures are generated over the 90 days before a Tuesday morning in November 2026
(mostly in opening hours, realistic outcome and answer-time mixes), bulk-inserted with
Core executemany, each table's rows in the order they happened as the app stores them, into SQLite and into a throw-away PostgreSQL (tests/servers.py). GET /metrics
is timed through the Flask test client in this process, the app's clock moving on 15 s
before each scrape (no HTTP server: the database queries are what is measured), on an empty
database and on the full one in turns, so other load on the machine slows both alike.
PostgreSQL is VACUUM ANALYZEd after loading, as autovacuum would do; SQLite is not ANALYZEd
(the app never does it).

Target: median < 50 ms, and at most 3x the empty-database time.

Run: .venv/bin/python bench/metrics_scrape.py [--scale 1.0] [--scrapes 40] [--only sqlite|postgresql]
"""
from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sqlalchemy import insert, text  # noqa: E402

from helpdesk.app import create_app  # noqa: E402
from helpdesk.config import load_settings  # noqa: E402
from helpdesk.migrate import upgrade  # noqa: E402
from helpdesk.models import Call, Callback, EmailAcknowledgement, Enquiry, InboundEmail  # noqa: E402

TARGET_MS, TARGET_RATIO = 50.0, 3.0
SCRAPE_INTERVAL = 15  # seconds of the app's clock between scrapes (so the history rolls every 4th)
LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 24, 10, 30, tzinfo=timezone.utc)  # Tuesday, open
DAYS = 90
CHUNK = 20_000
CALLS, CALLBACKS, EMAILS = 1_000_000, 200_000, 200_000
CALL_OUTCOMES = [("answered", 0.80), ("abandoned", 0.07), ("no_answer", 0.04), ("voicemail", 0.03),
                 ("out_of_hours", 0.05), ("failed", 0.01)]
CALLER_TYPES = [("customer", 0.8), ("dwp", 0.15), ("unknown", 0.05)]
EMAILS_IN_HOURS = 0.7  # the share of emails received in opening hours


def pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    roll, total = rng.random() * sum(weight for _, weight in weighted), 0.0
    for value, weight in weighted:
        total += weight
        if roll < total:
            return value
    return weighted[-1][0]


def contact_time(rng: random.Random, in_hours: bool = True) -> datetime:
    """A moment in the last DAYS days: weekdays 08:00-18:00 UK time, or any time at all."""
    while True:
        moment = NOW - timedelta(seconds=rng.uniform(0, DAYS * 86400))
        if not in_hours:
            return moment
        uk = moment.astimezone(LONDON)
        if uk.weekday() < 5 and 8 <= uk.hour < 18:
            return moment


def contact_times(count: int, seed: int, in_hours_share: float = 1.0) -> list[tuple[datetime, bool]]:
    """`count` contact times and whether each was drawn in opening hours, earliest first: the app
    stores contacts as they happen, so a table's rows lie in the order of their contact time."""
    rng = random.Random(seed)
    times = []
    for _ in range(count):
        in_hours = rng.random() < in_hours_share
        times.append((contact_time(rng, in_hours), in_hours))
    times.sort(key=lambda item: item[0])
    return times


def chunks(times: list) -> list[tuple[int, list]]:
    """The times CHUNK at a time, with the number of the first row of each (from 0)."""
    return [(start, times[start:start + CHUNK]) for start in range(0, len(times), CHUNK)]


def call_rows(times: list[tuple[datetime, bool]], first_id: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for n, (arrived, in_hours) in enumerate(times, start=first_id):
        outcome = pick(rng, [item for item in CALL_OUTCOMES if item[0] != "out_of_hours"]) if in_hours \
            else "out_of_hours"
        answer = waited = None
        if outcome == "answered":
            answer = rng.lognormvariate(2.3, 0.6)  # median 10 s; about 5 % beyond 30 s
        elif outcome == "abandoned":
            waited = rng.uniform(2, 90)
        countable = in_hours and not (outcome == "abandoned" and waited <= 30)
        result = None
        if countable:
            result = "met" if answer is not None and answer <= 30 else "breached"
        rows.append({
            "id": n, "call_sid": f"CA{n:032x}", "arrived_at": arrived, "outcome": outcome, "in_hours": in_hours,
            "countable": countable, "sla_result": result, "caller_type": pick(rng, CALLER_TYPES),
            "caller_number": f"+4477009{n % 100000:05d}", "answer_seconds": answer,
            "answered_at": arrived + timedelta(seconds=answer) if answer is not None else None,
            "ended_at": arrived + timedelta(minutes=5), "rings": int(answer // 3) + 1 if answer is not None else None,
            "incoming_seen": True, "config_version": "bench",
        })
    return rows


def callback_rows(times: list[tuple[datetime, bool]], first_id: int, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    enquiries, callbacks = [], []
    for n, (owed, _) in enumerate(times, start=first_id):
        due = owed + timedelta(hours=3)
        age = NOW - owed
        if age < timedelta(hours=3) and rng.random() < 0.6:
            status, result, first_attempt = "open", None, None  # still owed, not yet due
        else:
            met = rng.random() < 0.93
            status, result = "closed", "met" if met else "breached"
            first_attempt = owed + timedelta(minutes=rng.uniform(5, 175) if met else rng.uniform(181, 400))
        enquiries.append({"id": n, "reference": f"HD-2026-{n:07d}", "channel": "phone", "opened_at": owed,
                          "status": "open"})
        callbacks.append({
            "id": n, "contact_key": f"call:CB{n:030x}", "enquiry_id": n, "reason": "abandoned",
            "caller_number": "+447700900123", "caller_type": "customer", "owed_from": owed, "due_at": due,
            "clock": "elapsed", "explanation": "{}", "config_version": "bench", "created_at": owed, "status": status,
            "attempts_count": 0 if first_attempt is None else 1, "first_attempt_at": first_attempt,
            "sla_result": result, "closed_at": None if status == "open" else due, "note": "",
        })
    return enquiries, callbacks


def email_rows(times: list[tuple[datetime, bool]], first_id: int, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    rng = random.Random(seed)
    enquiries, emails, acks = [], [], []
    for n, (received, _) in enumerate(times, start=first_id):
        due = received + timedelta(minutes=15)
        roll = rng.random()
        if NOW - received < timedelta(minutes=2):
            status, sent = "pending", None
        elif roll < 0.02:
            status, sent = "suppressed", None
        elif roll < 0.025:
            status, sent = "failed", None
        else:
            status, sent = "sent", received + timedelta(seconds=rng.lognormvariate(3.5, 1.0))
        result = None if sent is None else ("met" if sent <= due else "late")
        enquiries.append({"id": n, "reference": f"HD-2026-{n:07d}", "channel": "email", "opened_at": received,
                          "status": "open"})
        emails.append({"id": n, "received_at": received, "source": "sendgrid", "dedupe_key": f"{n:064x}",
                       "message_id": f"<m{n}@example.org>", "raw": b"Subject: help\r\n\r\nPlease call me.",
                       "raw_sha256": "0" * 64, "sender": f"s{n % 5000}@example.org", "subject": "help",
                       "decision": "new_enquiry", "enquiry_id": n})
        acks.append({"id": n, "enquiry_id": n, "inbound_email_id": n, "to_address": "someone@example.org",
                     "received_at": received, "due_at": due, "status": status, "attempts": 1, "sent_at": sent,
                     "sla_result": result})
    return enquiries, emails, acks


def history(scale: float) -> tuple[list, list, list]:
    """The contact times of the calls, callbacks and emails (fixed seeds: the same on every run)."""
    out_of_hours = dict(CALL_OUTCOMES)["out_of_hours"]
    return (contact_times(int(CALLS * scale), 1, 1 - out_of_hours), contact_times(int(CALLBACKS * scale), 2),
            contact_times(int(EMAILS * scale), 3, EMAILS_IN_HOURS))


def fill(database, scale: float) -> None:
    """Bulk-insert the history in chunks, each table's rows in the order of their contact time
    (the same rows on every database: fixed seeds)."""
    calls, callbacks, emails = history(scale)
    with database.session() as session:
        for start, times in chunks(calls):
            with session.begin():
                session.execute(insert(Call), call_rows(times, start + 1, start))
        for start, times in chunks(callbacks):
            enquiries, rows = callback_rows(times, start + 1, 10**7 + start)
            with session.begin():
                session.execute(insert(Enquiry), enquiries)
                session.execute(insert(Callback), rows)
        for start, times in chunks(emails):
            enquiries, inbound, acks = email_rows(times, len(callbacks) + start + 1, 2 * 10**7 + start)
            with session.begin():
                session.execute(insert(Enquiry), enquiries)
                session.execute(insert(InboundEmail), inbound)
                session.execute(insert(EmailAcknowledgement), acks)


def maintain(engine) -> None:
    """PostgreSQL: fresh planner statistics and visibility map, as autovacuum keeps them.

    SQLite gets nothing: the app never runs ANALYZE there, so neither does the benchmark.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))


class ScrapeClock:
    """The app's clock: moves on by a scrape interval before each scrape, as Prometheus's would."""

    def __init__(self):
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def scrape(client) -> float:
    """One GET /metrics, the app's clock moved on a scrape interval first; milliseconds."""
    client.application.config["CLOCK"].now += timedelta(seconds=SCRAPE_INTERVAL)
    began = time.perf_counter()
    response = client.get("/metrics")
    elapsed = (time.perf_counter() - began) * 1000
    assert response.status_code == 200, response.get_data(as_text=True)
    return elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def bench_app(url: str, settings):
    return create_app({"SECRET_KEY": "bench", "DATABASE_URL": url, "SETTINGS": settings, "CLOCK": ScrapeClock()})


def run(name: str, url: str, empty_url: str, settings, scale: float, scrapes: int) -> None:
    """Fill `url`, leave `empty_url` empty, then time scrapes of both, taking turns.

    Taking turns means whatever else the machine is doing slows both alike, so the ratio holds.
    """
    upgrade(url)
    upgrade(empty_url)
    database = bench_app(url, settings).extensions["helpdesk.db"]
    began = time.perf_counter()
    fill(database, scale)
    maintain(database.engine)
    loaded = time.perf_counter() - began
    database.dispose()
    print(f"{name}: {int(CALLS * scale):,} calls, {int(CALLBACKS * scale):,} callbacks, "
          f"{int(EMAILS * scale):,} emails loaded in {loaded:.0f} s; {scrapes} scrapes each", flush=True)
    apps = {"empty": bench_app(empty_url, settings), "full": bench_app(url, settings)}
    clients = {label: app.test_client() for label, app in apps.items()}
    maintain(apps["empty"].extensions["helpdesk.db"].engine)
    # A new app, as after a restart: its first scrape counts the settled history.
    first = scrape(clients["full"])
    print(f"  full: first scrape after start {first:,.0f} ms (counts the settled history once)", flush=True)
    for client in clients.values():  # warm-up: connection pool, caches
        for _ in range(3):
            scrape(client)
    results = {label: [] for label in clients}
    for _ in range(scrapes):
        for label, client in clients.items():
            results[label].append(scrape(client))
    base = statistics.median(results["empty"])
    for label, timings in results.items():
        median = statistics.median(timings)
        verdict = "" if label == "empty" else (
            f"  ratio {median / base:4.1f}x empty; target < {TARGET_MS:.0f} ms and <= {TARGET_RATIO:.0f}x: "
            f"{'met' if median < TARGET_MS and median / base <= TARGET_RATIO else 'MISSED'}")
        print(f"  {label:<34} median {median:7.1f} ms  p95 {percentile(timings, 0.95):7.1f} ms{verdict}", flush=True)
    for app in apps.values():
        app.extensions["helpdesk.db"].dispose()


def databases(only: str | None, prefix: str, names: tuple[str, ...] = ("bench",)):
    """("SQLite", its URLs) in a throw-away folder, then ("PostgreSQL", its URLs) on a throw-away
    server (tests/servers.py), a database of each of `names`; `only` ("sqlite" or "postgresql",
    the benchmarks' --only) leaves the other out. Each is gone once the next is asked for."""
    if only != "postgresql":
        workdir = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            yield "SQLite", [f"sqlite:///{workdir}/{name}.db" for name in names]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if only != "sqlite":
        from servers import PostgresServer

        with PostgresServer(in_memory=False) as server:  # on disk, as the figures always were
            yield "PostgreSQL", [server.create_database(name) for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full history to generate")
    parser.add_argument("--scrapes", type=int, default=40)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    settings = load_settings(ROOT / "config" / "helpdesk.toml")
    for name, (url, empty_url) in databases(args.only, "bench-metrics-", ("bench", "empty")):
        run(name, url, empty_url, settings, args.scale, args.scrapes)


if __name__ == "__main__":
    main()
