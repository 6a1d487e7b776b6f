"""Writing an evidence pack: the service behind `helpdesk evidence export` and the auditors' page.

The pack is written into a temporary directory beside the target and renamed into place at
the end, so an interrupted or failed export never leaves a half-written pack behind. Every
export is recorded in the audit log (who, when, which range, redaction, notes, how, and the
manifest's SHA-256, which ties the record to the files).
"""
from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import exists, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from helpdesk.clock import day_problem, iso_day
from helpdesk.models import AuditEntry, Call, Callback, EmailAcknowledgement
from helpdesk.pages.format import quoted
from helpdesk.paths import parent_problem
from helpdesk.settings import Settings
from metrics import compliance, handling
from metrics.evidence import rows as tables
from metrics.evidence import tally as tallies
from metrics.evidence.columns import COLUMNS_FILE, column_rows
from metrics.evidence.columns import HEADER as COLUMNS_HEADER
from metrics.evidence.csvs import Progress, write_csv
from metrics.evidence.fields import REDACTIONS, Redactor
from metrics.evidence.manifest import rules_in_force, software_version, write_manifest
from metrics.evidence.report import ReportFacts, write_report
from metrics.evidence.snapshot import snapshot
from metrics.evidence.summary import SUMMARY_COLUMNS, build_summary, summary_rows
from metrics.evidence.workbook import write_workbook

log = logging.getLogger(__name__)

EXPORT_ROLES = ("auditor", "manager", "admin")
ACTION = "evidence.export"
EARLIEST = date(2000, 1, 1)


class EvidenceError(ValueError):
    """An export that cannot be made; the message says why, in words for the person asking."""


@dataclass(frozen=True)
class Exporter:
    """The accountable person: a signed-in or authenticated user."""

    user_id: int
    username: str
    display_name: str
    role: str

    @classmethod
    def of(cls, user) -> Exporter:
        """The exporter a user is (helpdesk.models.User, or the signed-in one)."""
        return cls(user.id, user.username, user.display_name, user.role)

    @property
    def described(self) -> str:
        name = self.display_name or self.username
        return f"{name} ({self.username}, {self.role})"


@dataclass(frozen=True)
class ExportRequest:
    first: date
    last: date
    redaction: str = "masked"
    include_notes: bool = False
    allow_empty: bool = False
    via: str = "cli"  # cli, web, or token (a script with an access token)
    token: tuple[int, str] | None = None  # the access token's id and name, via token


@dataclass
class PackResult:
    directory: Path
    manifest_sha256: str
    rows: dict[str, int] = field(default_factory=dict)


def parse_day(text: str | None, what: str) -> date:
    """A UK date given as YYYY-MM-DD, or EvidenceError naming the problem."""
    if not text:
        raise EvidenceError(f"give the {what} date as YYYY-MM-DD, for example 2026-11-24")
    day = iso_day(text)
    problem = day_problem(text) if day is None else ""
    if problem.startswith("is not a date"):
        raise EvidenceError(f"the {what} date {quoted(text)} {problem}")
    if day is None or day < EARLIEST:
        raise EvidenceError(f"the {what} date {quoted(text)} is out of range: use a date from {EARLIEST.year} on")
    return day


def check_request(request: ExportRequest, exporter: Exporter) -> None:
    """Refuse what the exporter may not do, and ranges that make no sense."""
    check_range(request)
    if exporter.role not in EXPORT_ROLES:
        raise EvidenceError(f"{exporter.username} may not export evidence (role {exporter.role}): only auditors, "
                            "managers and administrators may")
    if request.redaction not in REDACTIONS:
        raise EvidenceError(f"unknown redaction {request.redaction!r}: use one of {', '.join(REDACTIONS)}")
    if request.redaction == "none" and exporter.role != "admin":
        raise EvidenceError("only an administrator may export without masking (--redact none)")


def check_range(request: ExportRequest) -> None:
    """Refuse a range that ends before it starts (before anyone is asked for a password)."""
    if request.last < request.first:
        raise EvidenceError(f"the range ends ({request.last.isoformat()}) before it starts "
                            f"({request.first.isoformat()}): swap the dates")


def check_target(out: Path) -> None:
    """The output directory must not hold anything yet, and its parent must be writable."""
    try:
        _check_target(out)
    except OSError as exc:  # a name too long, a loop of links, ...
        raise EvidenceError(f"cannot use {quoted(str(out), 60)} for the pack: {exc.strerror or exc}") from None


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise EvidenceError(f"{out} is a file, not a directory: choose a new directory for the pack")
    if out.is_dir() and any(out.iterdir()):
        raise EvidenceError(f"{out} already exists and is not empty: choose a new directory, so no pack is overwritten")
    problem = parent_problem(out, "pack")
    if problem:
        raise EvidenceError(problem)


def has_contacts(connection: Connection, start: datetime, end: datetime) -> bool:
    """Whether any call, callback or email falls in [start, end) by its contact time."""
    checks = (
        exists().where(Call.arrived_at >= start, Call.arrived_at < end),
        exists().where(Callback.owed_from >= start, Callback.owed_from < end),
        exists().where(EmailAcknowledgement.received_at >= start, EmailAcknowledgement.received_at < end),
    )
    return any(connection.scalar(select(check)) for check in checks)


def write_pack(url: str, settings: Settings, request: ExportRequest, exporter: Exporter, directory: Path,
               now: datetime, progress: Progress | None = None) -> PackResult:
    """Write every file of the pack into `directory` (which must exist and be empty)."""
    period = compliance.date_range_period(request.first, request.last)
    redactor = Redactor(request.redaction)
    tally = tallies.Tally()
    counts: dict[str, int] = {}
    with snapshot(url) as connection:
        if not request.allow_empty and not has_contacts(connection, period.start, period.end):
            raise EvidenceError(
                f"there are no calls, callbacks or emails from {request.first.isoformat()} to "
                f"{request.last.isoformat()}: check the dates, or make the pack anyway to show there was nothing "
                + ("(tick “Make the pack even if nothing came in on these days”)" if request.via == "web"
                   else "(add allow_empty=yes to the address)" if request.via == "token" else "(--allow-empty)"))
        start, end = period.start, period.end
        files = (
            ("calls.csv", tables.call_rows(connection, start, end, redactor)),
            ("callbacks.csv", tables.callback_rows(connection, start, end, redactor, tally, now, request.include_notes)),
            ("callback_attempts.csv", tables.attempt_rows(connection, start, end, request.include_notes)),
            ("emails.csv", tables.email_rows(connection, start, end, redactor, now, tally)),
        )
        headers = {"summary.csv": SUMMARY_COLUMNS}
        for name, (header, rows) in files:
            headers[name] = header
            counts[name] = write_csv(directory / name, header, rows, progress)
        tallies.answer_rings(connection, start, end, tally)
        tallies.call_totals(connection, start, end, tally)
        tallies.config_versions(connection, start, end, tally)
        tallies.email_totals(connection, start, end, tally)
        with Session(bind=connection) as session:
            summary = build_summary(session, request.first, request.last, settings, now)
            quick = handling.handling(session, period)
    counts["summary.csv"] = write_csv(directory / "summary.csv", SUMMARY_COLUMNS, summary_rows(summary), progress)
    counts[COLUMNS_FILE] = write_csv(directory / COLUMNS_FILE, COLUMNS_HEADER, column_rows(headers))
    write_workbook(directory, directory / "evidence.xlsx", progress)
    # The period had not ended, or items owed in it were not yet due: they may yet count.
    provisional = now < period.end or bool(tally.pending_callbacks or tally.pending_acks)
    facts = ReportFacts(request.first, request.last, now, exporter.described, request.redaction,
                        request.include_notes, settings, provisional=provisional)
    write_report(directory / "report.pdf", facts, summary, tally, settings.name, quick)
    manifest_facts = {
        "period": {
            "first_day": request.first.isoformat(), "last_day": request.last.isoformat(),
            "start": period.start.isoformat(), "end": period.end.isoformat(),
            "note": "UK dates inclusive; start and end are UTC instants, end exclusive",
        },
        "time_zone": "Europe/London",
        "rules": rules_in_force(settings, request.first, request.last, redactor),
        "software_version": software_version(),
        "generated_at": now.isoformat(),
        "provisional": provisional,
        # Owed in the period, not yet due when the pack was made, so not in its figures.
        "not_yet_due": {"callbacks": tally.pending_callbacks, "acknowledgements": tally.pending_acks},
        # Email enquiries of the period no agent had answered yet: one may yet be owed a callback.
        "email_enquiries_awaiting_response": tally.awaiting_emails,
        # The configuration versions that judged the period's calls and callbacks, with how many each
        # ("" where none was recorded): the rules above are the current version's.
        "judged_by_versions": {name: dict(sorted(counts.items())) for name, counts in tally.versions.items()},
        "how_quickly": handling.as_facts(quick),
        # What agents recorded of the period's answered calls, and when: report.pdf's sentence.
        "enquiry_outcomes": tallies.outcome_facts(tally),
        "generated_by": {"username": exporter.username, "display_name": exporter.display_name,
                         "role": exporter.role, "via": request.via},
        "redaction": request.redaction,
        "notes_included": request.include_notes,
        "callback_attempts": "one row per attempt in callback_attempts.csv, joined on callback_id",
        # Restores from a backup (helpdesk db after-restore) whose lost window overlaps the period:
        # what the help desk took in then is missing from every file (UTC instants).
        "lost_in_restores": [{"from": taken.isoformat(), "to": until.isoformat()}
                             for taken, until in summary.whole.lost],
    }
    digest = write_manifest(directory, manifest_facts, counts)
    for path in directory.iterdir():
        if path.is_file():  # readable by whoever made the pack only, also once taken out of it
            path.chmod(0o600)
    return PackResult(directory, digest, counts)


def export_pack(url: str, settings: Settings, request: ExportRequest, exporter: Exporter, out: Path,
                now: datetime, audit_session: Session, progress: Progress | None = None) -> PackResult:
    """Write a pack to `out`, all or nothing, and record the export in the audit log."""
    check_request(request, exporter)
    check_target(out)
    out = out.absolute()
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise EvidenceError(f"cannot write in {out.parent}: {exc.strerror}") from None
    try:
        result = write_pack(url, settings, request, exporter, work, now, progress)
        # rename() replaces an empty directory atomically; anything else was refused above.
        os.rename(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    result.directory = out
    try:
        record_export(audit_session, exporter, request, result, now, where=str(out))
    except BaseException:
        # An export nobody can account for must not exist.
        shutil.rmtree(out, ignore_errors=True)
        raise
    return result


def record_export(session: Session, exporter: Exporter, request: ExportRequest, result: PackResult,
                  now: datetime, where: str | None = None) -> AuditEntry:
    """Add the audit record of one export. Owns the transaction."""
    detail = {
        "first_day": request.first.isoformat(),
        "last_day": request.last.isoformat(),
        "redaction": request.redaction,
        "notes_included": request.include_notes,
        "via": request.via,
        "manifest_sha256": result.manifest_sha256,
        "rows": result.rows,
    }
    if request.token is not None:
        detail["token_id"], detail["token"] = request.token
    if request.via == "cli":
        detail["out"] = where
        detail["system_user"] = _system_user()
    entry = AuditEntry(at=now, user_id=exporter.user_id, actor=exporter.username, action=ACTION,
                       detail=json.dumps(detail, sort_keys=True))
    with session.begin():
        session.add(entry)
    log.info("evidence export %s to %s by %s via %s", request.first, request.last, exporter.username, request.via)
    return entry


def _system_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"

