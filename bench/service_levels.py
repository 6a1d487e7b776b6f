"""The Service levels page over a large history: 1,000,000 calls, 200,000 callbacks, 200,000 emails.

The history is bench/metrics_scrape.py's (90 days before Tuesday 24 November 2026, mostly in
opening hours; about 330,000 calls in a month), plus an agent's "Marked as answered" in the
audit log for 60% of the email enquiries. /service-levels is rendered through the Flask test
client for a signed-in manager: as it opens (today, this week, this month), and with a range
of one month (October) and of the 90 days. Its "How quickly" part (metrics.handling) is also
timed on its own for the same periods, so a change in either shows where it is.

Target: the page as it opens, median < 1 s; with a month's range, median < 3 s.

Run: .venv/bin/python bench/service_levels.py [--scale 1.0] [--renders 5] [--only sqlite|postgresql]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from sqlalchemy import insert  # noqa: E402

from callbacks.email.waiting import MARKED_ANSWERED  # noqa: E402
from helpdesk.app import create_app  # noqa: E402
from helpdesk.config import load_settings  # noqa: E402
from helpdesk.migrate import upgrade  # noqa: E402
from helpdesk.models import AuditEntry  # noqa: E402
from helpdesk.users import add_user  # noqa: E402
from metrics import compliance, handling  # noqa: E402
from metrics_scrape import NOW, chunks, databases, email_rows, fill, history, maintain  # noqa: E402

OPENING_TARGET, MONTH_TARGET = 1.0, 3.0  # seconds, medians
PASSWORD = "bench-password-long-enough"
PAGES = {
    "as it opens": "",
    "October (a month)": "?from=2026-10-01&to=2026-10-31",
    "the 90 days": f"?from={(NOW - timedelta(days=90)).date()}&to={NOW.date()}",
}


def answers(scale: float) -> None:
    """Audit entries: 60% of the email enquiries marked as answered, after minutes to days."""
    rng = random.Random(77)
    _, callbacks, emails = history(scale)
    for start, times in chunks(emails):
        enquiries, _, acks = email_rows(times, len(callbacks) + start + 1, 2 * 10**7 + start)
        rows = [{"at": ack["received_at"] + timedelta(minutes=rng.lognormvariate(5, 1.2)), "user_id": None,
                 "actor": "bench", "action": MARKED_ANSWERED,
                 "detail": json.dumps({"enquiry": enquiry["reference"]}, sort_keys=True)}
                for enquiry, ack in zip(enquiries, acks) if rng.random() < 0.6]
        yield rows


def signed_in(app):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"csrf_token": token, "username": "bench.manager", "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def render(client, query: str) -> float:
    began = time.perf_counter()
    response = client.get("/service-levels" + query)
    elapsed = time.perf_counter() - began
    assert response.status_code == 200 and "How quickly" in response.get_data(as_text=True), response.status_code
    return elapsed


def run(name: str, url: str, settings, scale: float, renders: int) -> None:
    upgrade(url)
    app = create_app({"SECRET_KEY": "bench", "DATABASE_URL": url, "SETTINGS": settings, "CLOCK": lambda: NOW})
    database = app.extensions["helpdesk.db"]
    began = time.perf_counter()
    fill(database, scale)
    with database.session() as session:
        for rows in answers(scale):
            with session.begin():
                session.execute(insert(AuditEntry), rows)
        add_user(session, "bench.manager", PASSWORD, "manager", display_name="Bench Manager")
    maintain(database.engine)
    print(f"{name}: history loaded in {time.perf_counter() - began:.0f} s; {renders} renders of each page",
          flush=True)
    client = signed_in(app)
    for query in PAGES.values():  # warm-up: connection pool, templates
        render(client, query)
    timings = {label: [] for label in PAGES}
    for _ in range(renders):
        for label, query in PAGES.items():
            timings[label].append(render(client, query))
    for label, values in timings.items():
        median = statistics.median(values)
        target = {"as it opens": OPENING_TARGET, "October (a month)": MONTH_TARGET}.get(label)
        verdict = (f"  target < {target:.0f} s: {'met' if median < target else 'MISSED'}" if target else "")
        print(f"  /service-levels, {label:<20} median {median:6.2f} s  slowest {max(values):6.2f} s{verdict}",
              flush=True)
    periods = [compliance.current_period(kind, NOW) for kind in compliance.PERIOD_KINDS]
    periods.append(compliance.date_range_period(date(2026, 10, 1), date(2026, 10, 31)))
    with database.session() as session:
        for period in periods:
            began = time.perf_counter()
            figures = handling.handling(session, period)
            print(f"  How quickly alone, {period.label:<6} {time.perf_counter() - began:6.2f} s  "
                  f"({figures.calls:,} calls in hours, {figures.callbacks:,} callbacks, "
                  f"{figures.email_enquiries:,} email enquiries, {figures.email_answer.count:,} answered)", flush=True)
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full history to generate")
    parser.add_argument("--renders", type=int, default=5)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    settings = load_settings(ROOT / "config" / "helpdesk.toml")
    for name, (url,) in databases(args.only, "bench-service-levels-"):
        run(name, url, settings, args.scale, args.renders)


if __name__ == "__main__":
    main()
