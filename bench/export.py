"""Exporting calls.csv for 1,000,000 calls, against `sqlite3 -csv` dumping the same rows.

1. A temporary SQLite file, migrated, with 1,000,000 calls (and their enquiries) spread over
   2026, bulk-inserted with the sqlite3 module in the stored format.
2. The exporter (metrics.evidence.rows.call_rows + csvs.write_csv, in a read-only snapshot)
   writes calls.csv for the whole year, in a child process: its wall and CPU time (measured
   inside, so without Python's start-up; with it, too), and its peak RSS from
   resource.getrusage(RUSAGE_CHILDREN).ru_maxrss. CPU times are printed as well: on a busy
   machine they compare more fairly than wall times.
3. `sqlite3 -csv` runs the same query with the same columns as far as SQL can make them
   (UTC times with "+00:00" instead of UK offsets, the same yes/no, results and masking).

Targets: exporter time at most 1.5x sqlite3's; peak RSS under 300 MB.
Run: .venv/bin/python bench/export.py [--calls 1000000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

TIME_TARGET = 1.5
RSS_TARGET_MB = 300
FIRST, LAST = date(2026, 1, 1), date(2026, 12, 31)
OUTCOMES = ("answered",) * 8 + ("abandoned", "no_answer", "voicemail", "out_of_hours")
STORED = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime on SQLite
# Of the answered calls, agents record 7 in 10 as concluded and 2 as needing a callback, a few
# minutes after the call; the rest have no outcome recorded.
AGENTS_WORD = ("concluded",) * 7 + ("callback_owed",) * 2 + ("open",)

SQLITE_QUERY = """
SELECT c.call_sid,
       strftime('%Y-%m-%dT%H:%M:%f', c.arrived_at) || '+00:00',
       CASE WHEN c.answered_at IS NULL THEN '' ELSE strftime('%Y-%m-%dT%H:%M:%f', c.answered_at) || '+00:00' END,
       CASE WHEN c.ended_at IS NULL THEN '' ELSE strftime('%Y-%m-%dT%H:%M:%f', c.ended_at) || '+00:00' END,
       CASE WHEN c.answer_seconds IS NULL THEN '' ELSE printf('%.1f', c.answer_seconds) END,
       c.rings, c.outcome,
       CASE WHEN c.in_hours THEN 'yes' ELSE 'no' END,
       CASE WHEN c.countable AND c.sla_result IN ('met', 'breached') THEN 'yes' ELSE 'no' END,
       CASE WHEN c.countable AND c.sla_result IN ('met', 'breached') THEN c.sla_result ELSE '' END,
       c.caller_type, e.reference,
       CASE WHEN c.caller_number IS NULL THEN 'withheld' ELSE '********' || substr(c.caller_number, -3) END,
       CASE WHEN c.outcome = 'answered' AND e.outcome_recorded_at IS NOT NULL
            THEN strftime('%Y-%m-%dT%H:%M:%f', e.outcome_recorded_at) || '+00:00' ELSE '' END
FROM calls c LEFT JOIN enquiries e ON e.id = c.enquiry_id
WHERE c.arrived_at >= '{start}' AND c.arrived_at < '{end}'
ORDER BY c.arrived_at, c.id;
"""


def fill(path: Path, count: int) -> None:
    """`count` calls over 2026 with their enquiries, in one transaction per 100,000."""
    from helpdesk.migrate import upgrade

    upgrade(f"sqlite:///{path}")
    rng = random.Random(1_000_000)
    year = datetime(2026, 1, 1)
    span = 365 * 24 * 3600
    connection = sqlite3.connect(path)
    batch_calls, batch_enquiries = [], []
    for n in range(1, count + 1):
        arrived = year + timedelta(seconds=rng.uniform(0, span))
        outcome = OUTCOMES[n % len(OUTCOMES)]
        answered = outcome == "answered"
        answer_seconds = round(rng.uniform(1, 45), 3) if answered else None
        countable = outcome != "out_of_hours" and outcome != "voicemail"
        result = ("met" if answer_seconds <= 30 else "breached") if answered else ("breached" if n % 3 == 0 else None)
        sid = f"CA{n:032x}"
        status = AGENTS_WORD[n % len(AGENTS_WORD)] if answered else "open"
        recorded = (arrived + timedelta(seconds=rng.uniform(120, 900))).strftime(STORED) if status != "open" else None
        batch_enquiries.append((n, f"HD-2026-{n:07d}", "phone", arrived.strftime(STORED), sid, status, recorded))
        batch_calls.append((
            n, sid, arrived.strftime(STORED),
            (arrived + timedelta(seconds=answer_seconds)).strftime(STORED) if answered else None,
            (arrived + timedelta(seconds=rng.uniform(60, 600))).strftime(STORED),
            answer_seconds, int(answer_seconds // 3) + 1 if answered else None, outcome, outcome != "out_of_hours",
            countable, result, None if n % 19 == 0 else f"+44770{n:07d}", ("customer", "dwp", "unknown")[n % 3],
            1, n,
        ))
        if len(batch_calls) == 100_000 or n == count:
            with connection:
                connection.executemany("INSERT INTO enquiries (id, reference, channel, opened_at, call_sid, status, "
                                       "outcome_recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)", batch_enquiries)
                connection.executemany(
                    "INSERT INTO calls (id, call_sid, arrived_at, answered_at, ended_at, answer_seconds, rings, outcome, "
                    "in_hours, countable, sla_result, caller_number, caller_type, incoming_seen, enquiry_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch_calls)
            batch_calls.clear()
            batch_enquiries.clear()
    connection.execute("ANALYZE")
    connection.close()


def child(database: str, out: str) -> None:
    """Run in a fresh process: export calls.csv and print the seconds (wall, CPU) it took."""
    from metrics.evidence.csvs import write_csv
    from metrics.evidence.fields import Redactor
    from metrics.evidence.rows import call_rows
    from metrics.evidence.snapshot import snapshot
    from metrics.periods import date_range_period

    period = date_range_period(FIRST, LAST)
    started, cpu_started = time.perf_counter(), time.process_time()
    with snapshot(f"sqlite:///{database}") as connection:
        header, rows = call_rows(connection, period.start, period.end, Redactor("masked"))
        count = write_csv(Path(out), header, rows)
    print(f"{time.perf_counter() - started:.3f} {time.process_time() - cpu_started:.3f} {count}")


def run_child(command: list[str], stdout_path: Path | None = None) -> tuple[float, float, str]:
    """Run `command`; its wall time, its own CPU time (os.wait4's rusage) and its output."""
    out = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
    try:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out)
        output = process.stdout.read().decode() if stdout_path is None else ""
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stdout_path:
            out.close()
    if process.returncode != 0:
        sys.exit(f"{command[0]} failed with exit code {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, output


def tally_seconds(database: Path, period) -> float:
    """How long the pack's grouped counts of the calls take (report.pdf's sentences on what came in
    and what agents recorded), on the same database: not in the ratio, which is calls.csv's."""
    from sqlalchemy import create_engine

    from metrics.evidence.tally import Tally, call_totals

    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            started = time.perf_counter()
            call_totals(connection, period.start, period.end, Tally())
            return time.perf_counter() - started
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="keep the database and CSVs in this directory")
    parser.add_argument("--child", nargs=2, metavar=("DATABASE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sqlite = shutil.which("sqlite3")
    if sqlite is None:
        sys.exit("sqlite3 (the command-line shell) is not installed")
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        database = work / "helpdesk.db"
        started = time.perf_counter()
        fill(database, args.calls)
        print(f"filled {args.calls:,} calls in {time.perf_counter() - started:.1f} s ({database.stat().st_size / 1e6:.0f} MB)")

        from metrics.periods import date_range_period

        period = date_range_period(FIRST, LAST)
        start, end = (moment.astimezone(timezone.utc).strftime(STORED) for moment in (period.start, period.end))
        query = SQLITE_QUERY.format(start=start, end=end)
        # Warm the page cache for both; the exporter runs first, so RUSAGE_CHILDREN's peak is its own.
        subprocess.run([sqlite, str(database), "SELECT count(*) FROM calls;"], check=True, capture_output=True)
        export_runs = []
        for _ in range(2):
            wall, cpu, output = run_child([sys.executable, __file__, "--child", str(database), str(work / "calls.csv")])
            seconds, inside_cpu, rows = output.split()
            export_runs.append((float(seconds), wall, cpu, float(inside_cpu)))
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        sqlite_runs = [run_child([sqlite, "-csv", str(database), query], work / "sqlite3.csv")[:2] for _ in range(2)]
        sqlite_rows = sum(1 for _ in open(work / "sqlite3.csv", "rb"))
        sqlite_wall, sqlite_cpu = min(sqlite_runs)
        export_seconds, export_wall, export_cpu, export_inside_cpu = min(export_runs)
        ratio = export_seconds / sqlite_wall
        print(f"sqlite3 -csv:      {sqlite_wall:6.2f} s  (CPU {sqlite_cpu:.2f} s)  {sqlite_rows:,} rows  "
              f"{os.path.getsize(work / 'sqlite3.csv') / 1e6:.0f} MB")
        print(f"exporter:          {export_seconds:6.2f} s  (CPU {export_inside_cpu:.2f} s; child process with Python "
              f"start-up: {export_wall:.2f} s, CPU {export_cpu:.2f} s)  {int(rows):,} rows  "
              f"{os.path.getsize(work / 'calls.csv') / 1e6:.0f} MB")
        print(f"ratio:             {ratio:6.2f}x  (target <= {TIME_TARGET}x: {'met' if ratio <= TIME_TARGET else 'NOT met'}); "
              f"with start-up {export_wall / sqlite_wall:.2f}x; CPU time {export_inside_cpu / sqlite_cpu:.2f}x "
              f"(with start-up {export_cpu / sqlite_cpu:.2f}x)")
        print(f"peak RSS (child):  {peak_mb:6.0f} MB (target < {RSS_TARGET_MB} MB: "
              f"{'met' if peak_mb < RSS_TARGET_MB else 'NOT met'})")
        print(f"report.pdf's call totals (metrics.evidence.tally.call_totals, with when each outcome was recorded): "
              f"{tally_seconds(database, period):.2f} s")
    finally:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name in ("helpdesk.db", "calls.csv", "sqlite3.csv"):
                if (work / name).exists():
                    shutil.move(str(work / name), args.keep / name)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
