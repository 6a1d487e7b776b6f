"""`helpdesk anonymise` over a large history: how long removing personal data takes.

The history is bench/metrics_scrape.py's (90 days before Tuesday 24 November 2026), at --scale
of its 1,000,000 calls, 200,000 callbacks and 200,000 emails, plus six webhooks as received for
each call (the incoming call, an agent leg's four status callbacks and the call's end, with
Twilio's parameters), and 90% of the email enquiries answered. The removal takes every contact
that began more than 30 days before: about two thirds of them. Timed in this process (no
password check), on SQLite and on a throw-away PostgreSQL:

- a dry run (only counting), the first removal, and a second one (the monthly run once the
  first is done: nothing left to remove, it must still look);
- rows changed per second in the first removal, and the figures of /metrics's compliance
  query for the period before and after it (they must be equal).

Target: the first removal at least 5,000 webhooks a second; the second under 10 % of the first.

Run: .venv/bin/python bench/retention.py [--scale 0.1] [--only sqlite|postgresql]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from sqlalchemy import insert, update  # noqa: E402

from helpdesk.config import load_settings  # noqa: E402
from helpdesk.db import Database  # noqa: E402
from helpdesk.migrate import upgrade  # noqa: E402
from helpdesk.models import Enquiry, TwilioEvent  # noqa: E402
from helpdesk.retention import Scope, remove_personal_data  # noqa: E402
from metrics import compliance  # noqa: E402
from metrics.periods import Period  # noqa: E402
from metrics_scrape import NOW, chunks, databases, fill, history, maintain  # noqa: E402

EVENTS_PER_CALL = 6
CUT_OFF = NOW - timedelta(days=30)
EVENTS_PER_SECOND_TARGET, SECOND_RUN_SHARE = 5_000, 0.10


def event_rows(times, first_id: int) -> list[dict]:
    """Each call's webhooks as Twilio sends them (the parameters a real one carries)."""
    rows = []
    for n, (arrived, _) in enumerate(times, start=first_id):
        call, leg, caller = f"CA{n:032x}", f"CA{n + 10**9:032x}", f"+4477009{n % 100000:05d}"
        base = [["AccountSid", "AC" + "0" * 32], ["ApiVersion", "2010-04-01"], ["Called", "+448001217479"],
                ["CalledCountry", "GB"], ["Caller", caller], ["CallerCountry", "GB"], ["Direction", "inbound"],
                ["From", caller], ["FromCountry", "GB"], ["To", "+448001217479"], ["ToCountry", "GB"]]
        steps = [("incoming", call, [["CallSid", call], ["CallStatus", "ringing"]])]
        for second, status in ((1, "initiated"), (2, "ringing"), (9, "in-progress"), (200, "completed")):
            steps.append(("agent_status", leg, [["CallSid", leg], ["ParentCallSid", call], ["CallStatus", status],
                                                ["Timestamp", (arrived + timedelta(seconds=second)).isoformat()]]))
        steps.append(("status", call, [["CallSid", call], ["CallStatus", "completed"], ["CallDuration", "210"]]))
        for index, (kind, sid, params) in enumerate(steps):
            rows.append({"received_at": arrived + timedelta(seconds=index), "kind": kind, "call_sid": call,
                         "leg_sid": sid, "fingerprint": f"{n:032x}{index:032x}",
                         "params": json.dumps(base + params)})
    return rows


def load(url: str, scale: float) -> None:
    upgrade(url)
    database = Database(url)
    fill(database, scale)
    calls, _, _ = history(scale)
    with database.session() as session:
        for start, times in chunks(calls):
            with session.begin():
                session.execute(insert(TwilioEvent), event_rows(times, start + 1))
        with session.begin():  # nine email enquiries in ten answered
            session.execute(update(Enquiry).where(Enquiry.channel == "email", Enquiry.id % 10 != 0)
                            .values(status="closed"))
    maintain(database.engine)
    database.dispose()


def figures(database, settings) -> tuple:
    """The three rules' figures for the 90 days, as /metrics and the pages compute them."""
    with database.session() as session:
        return compliance.figures(session, Period("bench", NOW - timedelta(days=91), NOW), settings, NOW)


def timed(database, apply: bool):
    began = time.perf_counter()
    with database.session() as session:
        removal = remove_personal_data(session, Scope.before(CUT_OFF), apply=apply, now=NOW)
    return time.perf_counter() - began, removal


def run(name: str, url: str, settings, scale: float) -> None:
    began = time.perf_counter()
    load(url, scale)
    print(f"\n{name}: loaded in {time.perf_counter() - began:.0f} s")
    database = Database(url)
    before = figures(database, settings)
    dry, counted = timed(database, apply=False)
    first, removal = timed(database, apply=True)
    second, again = timed(database, apply=True)
    after = figures(database, settings)
    database.dispose()
    print(f"  would remove: {counted.calls:,} calls, {counted.events:,} webhooks, {counted.callbacks:,} callbacks, "
          f"{counted.emails:,} emails ({counted.calls_left:,} calls, {counted.emails_left:,} emails left)")
    assert counted == removal, (counted, removal)
    assert again.calls == again.events == again.callbacks == again.emails == 0, again
    per_second = removal.events / first if first else float("inf")
    print(f"  dry run {dry:.1f} s; first removal {first:.1f} s ({per_second:,.0f} webhooks/s, "
          f"{removal.calls / first:,.0f} calls/s); second {second:.1f} s ({second / first:.0%} of the first)")
    print(f"  figures before and after: {'the same' if before == after else 'DIFFERENT'}")
    print(f"  target: >= {EVENTS_PER_SECOND_TARGET:,} webhooks/s {'met' if per_second >= EVENTS_PER_SECOND_TARGET else 'MISSED'}; "
          f"second run <= {SECOND_RUN_SHARE:.0%} of the first "
          f"{'met' if second <= SECOND_RUN_SHARE * first else 'MISSED'}")
    if before != after:
        raise SystemExit("the figures changed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="fraction of the full history to generate")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    settings = load_settings(ROOT / "config" / "helpdesk.toml")
    for name, (url,) in databases(args.only, "bench-retention-"):
        run(name, url, settings, args.scale)


if __name__ == "__main__":
    main()
