"""Email acknowledgements: sending speed through a local SMTP server, and the queue page with many email enquiries.

1. `--emails` new email enquiries stored by the intake on SQLite, then acknowledged by
   send_due_acknowledgements through aiosmtpd on 127.0.0.1 (plain SMTP, one connection per
   message as in production). Prints acknowledgements per second and what one 15-second
   scheduler run can send; the target is every acknowledgement within email.ack_within (15 min).
2. /queue for a signed-in agent with `--waiting` open email enquiries (the page shows the
   oldest 100, with a count of all). Target: p95 < 150 ms, as for the callbacks.

Run: .venv/bin/python bench/email_acks.py [--emails 1000] [--waiting 5000] [--renders 50]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

from aiosmtpd.controller import Controller  # noqa: E402

from callbacks.email.intake import store_inbound  # noqa: E402
from callbacks.email.sending import BATCH, send_due_acknowledgements  # noqa: E402
from callbacks.scheduler import ACK_SECONDS  # noqa: E402
from callbacks.smtp import SmtpSender  # noqa: E402
from helpdesk.app import create_app  # noqa: E402
from helpdesk.config import load_settings, parse_settings  # noqa: E402
from helpdesk.db import Database  # noqa: E402
from helpdesk.migrate import upgrade  # noqa: E402
from queue_page import PAGE_TARGET_MS, percentile, signed_in_client, time_renders  # noqa: E402
from servers import free_port  # noqa: E402

NOW = datetime(2026, 11, 24, 11, 0, tzinfo=timezone.utc)


class Counter:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server, session, envelope):
        self.received += 1
        return "250 2.0.0 accepted"


def raw(n: int) -> bytes:
    return (f"From: Customer {n} <customer{n}@example.org>\r\nTo: help@helpdesk.example.org\r\n"
            f"Subject: Question about my grant, number {n}\r\nMessage-ID: <q{n}@mail.example.org>\r\n"
            f"References: <r{n}@mail.example.org>\r\n\r\nHello, I have a question.\r\n").encode()


def store(url: str, settings, count: int, received: datetime) -> float:
    database = Database(url)
    began = time.perf_counter()
    for n in range(1, count + 1):
        with database.session() as session, session.begin():
            store_inbound(session, raw(n), source="imap", received_at=received, settings=settings)
    elapsed = time.perf_counter() - began
    database.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--waiting", type=int, default=5000)
    parser.add_argument("--renders", type=int, default=50)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-email-"))

    # 1. Sending.
    counter, port = Counter(), free_port()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    settings = parse_settings({
        "hours": {day: ["08:00-18:00"] for day in ("monday", "tuesday", "wednesday", "thursday", "friday")},
        "helpdesk": {"phone": "0800 121 7479"},
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "from_address": "help@helpdesk.example.org"},
        "email": {"addresses": ["help@helpdesk.example.org"], "per_sender_limit": 1000},
    }, source="bench")
    url = f"sqlite:///{workdir}/send.db"
    upgrade(url)
    stored = store(url, settings, args.emails, NOW)
    database = Database(url)
    sender = SmtpSender.from_settings(settings, {})
    runs, sent, began = 0, 0, time.perf_counter()
    while True:
        with database.session() as session:
            report = send_due_acknowledgements(session, sender, settings, NOW + timedelta(seconds=5))
        runs += 1
        sent += report.sent
        if not report.sent:
            break
    elapsed = time.perf_counter() - began
    controller.stop()
    database.dispose()
    assert sent == args.emails == counter.received, (sent, counter.received)
    rate = sent / elapsed
    per_run = min(BATCH, rate * ACK_SECONDS)
    # Limited by the sending speed or by BATCH per ACK_SECONDS run, whichever is slower.
    backlog_minutes = max(args.emails / rate, args.emails / BATCH * ACK_SECONDS) / 60
    print(f"acknowledgements: {args.emails} new email enquiries stored in {stored:.1f} s "
          f"({args.emails / stored:,.0f}/s, intake), then sent to aiosmtpd on SQLite")
    print(f"  sending  {rate:7.0f} acknowledgements/s  ({elapsed / sent * 1000:.1f} ms each, {runs - 1} runs of "
          f"up to {BATCH}); one {ACK_SECONDS}-s run sends up to {per_run:.0f}")
    print(f"  a burst of {args.emails} clears in about {backlog_minutes:.1f} min (at most {BATCH} per {ACK_SECONDS}-s run) "
          f"(target: within 15 min, {backlog_minutes / 15:.2f} of it)")

    # 2. The queue page with many email enquiries waiting.
    page_url = f"sqlite:///{workdir}/page.db"
    upgrade(page_url)
    store(page_url, settings, args.waiting, NOW - timedelta(hours=2))
    config = load_settings(ROOT / "config" / "helpdesk.toml")
    app = create_app({"SECRET_KEY": "bench", "DATABASE_URL": page_url, "SETTINGS": config, "CLOCK": lambda: NOW})
    client = signed_in_client(app)
    timings = time_renders(client, "/queue", args.renders)
    p50, p95 = statistics.median(timings), percentile(timings, 0.95)
    page = client.get("/queue").get_data(as_text=True)
    shown = page.count('<tr id="email-')
    print(f"queue page: {args.waiting} email enquiries awaiting a response, {shown} shown; {args.renders} renders")
    print(f"  /queue  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  (target p95 < {PAGE_TARGET_MS:.0f} ms: "
          f"{p95 / PAGE_TARGET_MS:.2f} of the budget, {'met' if p95 < PAGE_TARGET_MS else 'MISSED'})")
    app.extensions["helpdesk.db"].dispose()


if __name__ == "__main__":
    main()
