"""Evidence packs end to end on SQLite and PostgreSQL: files, rows, masking, figures, audit."""
from __future__ import annotations

import csv
import json
import subprocess
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callbacks.deadlines import callback_deadline
from helpdesk.models import (AuditEntry, Call, Callback, CallbackAttempt, EmailAcknowledgement, Enquiry,
                             InboundEmail)
from metrics import compliance
from metrics.evidence.manifest import CHECKSUMS, MANIFEST, verify
from metrics.evidence.pack import EvidenceError, Exporter, ExportRequest, export_pack
from servers import require_program
from tests.integration.test_users_and_login import make_user

FIRST, LAST = date(2026, 11, 23), date(2026, 11, 24)
PACK_FILES = {"calls.csv", "callbacks.csv", "callback_attempts.csv", "emails.csv", "summary.csv", "columns.csv", "evidence.xlsx",
              "report.pdf", MANIFEST, CHECKSUMS}
NUMBERS = ("+447700900123", "+441234567890", "+447700900456", "+447700900789")
ADDRESSES = ("jane.doe@example.org", "sam@mail.example.co.uk")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def _call(n, arrived, *, outcome="answered", answer=None, countable=True, result=None, caller="+447700900123",
          caller_type="customer", in_hours=True):
    enquiry = Enquiry(reference=f"HD-2026-{n:06d}", channel="phone", opened_at=arrived, call_sid=f"CA{n:032x}")
    return Call(
        call_sid=f"CA{n:032x}", arrived_at=arrived, outcome=outcome, in_hours=in_hours, countable=countable,
        sla_result=result, caller_number=caller, caller_type=caller_type,
        rings=None if answer is None else int(answer // 3) + 1, answer_seconds=answer,
        answered_at=None if answer is None else arrived + timedelta(seconds=answer),
        ended_at=arrived + timedelta(minutes=5), enquiry=enquiry, config_version="test",
    )


def _callback(settings, enquiry, n, owed_from, *, result=None, attempts=(), note="", caller="+447700900456"):
    deadline = callback_deadline(owed_from, clock="business", within=timedelta(hours=3),
                                 calendar=settings.calendar, config_version="test")
    callback = Callback(
        contact_key=f"call:CB{n}", enquiry=enquiry, reason="abandoned", caller_number=caller, caller_type="customer",
        owed_from=owed_from, due_at=deadline.due_at, clock="business", explanation=json.dumps(deadline.explanation),
        config_version="test", created_at=owed_from, status="open", attempts_count=len(attempts),
        first_attempt_at=attempts[0][0] if attempts else None, sla_result=result, note=note,
        breached_at=deadline.due_at if result == "breached" else None,
    )
    # An attempt placed with "Call back now" (started when the agent clicked) dials the caller 15 s later.
    for index, (started, outcome, source) in enumerate(attempts):
        dialled = started + timedelta(seconds=15 if source == "twilio" else 0)
        # The manual one was entered 20 minutes after it was made.
        callback.attempts.append(CallbackAttempt(started_at=started, dialled_at=dialled, source=source,
                                                 outcome=outcome, call_sid=f"CAATTEMPT{n}{index}",
                                                 note=f"attempt note {n}",
                                                 recorded_at=started + timedelta(minutes=20 if source == "manual" else 0)))
    return callback


def _email(n, received, sender, *, sent_after=None, status="sent", ack_minutes=15):
    enquiry = Enquiry(reference=f"HD-2026-{900 + n:06d}", channel="email", opened_at=received)
    inbound = InboundEmail(received_at=received, source="sendgrid", dedupe_key=f"{n:064d}", raw=b"Subject: x\r\n\r\nhi",
                           raw_sha256="0" * 64, sender=sender, subject="Personal subject", decision="new_enquiry",
                           enquiry=enquiry)
    sent = None if sent_after is None else received + timedelta(minutes=sent_after)
    result = None if sent is None else ("met" if sent_after <= ack_minutes else "late")
    return EmailAcknowledgement(enquiry=enquiry, inbound_email=inbound, to_address=sender, received_at=received,
                                due_at=received + timedelta(minutes=ack_minutes), status=status, sent_at=sent,
                                sla_result=result)


def seed(db_session, settings) -> None:
    """Two days of contacts (Monday 23 and Tuesday 24 November 2026) and some either side."""
    calls = [
        _call(1, utc(2026, 11, 23, 9, 0, 5, 250000), answer=11.0, result="met"),
        _call(2, utc(2026, 11, 23, 9, 30), answer=40.0, result="breached", caller="+441234567890", caller_type="dwp"),
        _call(3, utc(2026, 11, 24, 9, 15), answer=2.0, result="met", caller=None, caller_type="unknown"),
        _call(4, utc(2026, 11, 24, 7, 0), outcome="out_of_hours", countable=False, in_hours=False,
              caller="+447700900456"),
        _call(5, utc(2026, 11, 24, 9, 40), outcome="abandoned", countable=False, caller="+447700900789"),
        _call(6, utc(2026, 11, 22, 23, 59, 59), answer=50.0, result="breached"),  # Sunday: outside
        _call(7, utc(2026, 11, 25, 0, 0, 0), answer=5.0, result="met"),  # Wednesday: outside
    ]
    with db_session.begin():
        db_session.add_all(calls)
    callbacks = [
        _callback(settings, calls[4].enquiry, 1, utc(2026, 11, 23, 9, 0), result="met",
                  attempts=[(utc(2026, 11, 23, 9, 45), "no_answer", "manual"),
                            (utc(2026, 11, 23, 10, 30), "reached", "twilio")],
                  note="Customer asked about grant"),
        _callback(settings, calls[3].enquiry, 2, utc(2026, 11, 23, 16, 30), result="breached"),
        _callback(settings, calls[0].enquiry, 3, utc(2026, 11, 24, 9, 50)),  # open, not yet due
    ]
    emails = [
        _email(1, utc(2026, 11, 23, 10, 0), "jane.doe@example.org", sent_after=2),
        _email(2, utc(2026, 11, 23, 11, 0), "sam@mail.example.co.uk", sent_after=40),
        _email(3, utc(2026, 11, 24, 8, 0), "jane.doe@example.org", status="failed"),  # never sent, overdue
        _email(4, utc(2026, 11, 24, 9, 55), "jane.doe@example.org", status="pending"),  # not yet due at 10:00
        _email(5, utc(2026, 11, 24, 9, 0), "sam@mail.example.co.uk", status="suppressed"),
    ]
    emails[-1].inbound_email.decision = "rate_limited"
    with db_session.begin():
        db_session.add_all(callbacks + emails)


@pytest.fixture
def seeded(db_session, settings):
    seed(db_session, settings)


@pytest.fixture
def auditor(db_session):
    user = make_user(db_session, "dana", "auditor", display_name="Dana Auditor")
    return Exporter(user.id, user.username, user.display_name, user.role)


@pytest.fixture
def admin(db_session):
    user = make_user(db_session, "root-admin", "admin")
    return Exporter(user.id, user.username, user.display_name, user.role)


def export(app, db_session, clock, exporter, out: Path, **request) -> Path:
    request = ExportRequest(request.pop("first", FIRST), request.pop("last", LAST), **request)
    export_pack(app.config["DATABASE_URL"], app.extensions["helpdesk.settings"], request, exporter, out,
                clock.now, db_session)
    return out


def read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture
def packs(tmp_path) -> Path:
    """Where the packs go: a directory of their own (tmp_path holds the SQLite database)."""
    (tmp_path / "packs").mkdir()
    return tmp_path / "packs"


@pytest.fixture
def pack(app, db_session, clock, seeded, auditor, packs) -> Path:
    return export(app, db_session, clock, auditor, packs / "pack")


def test_the_pack_has_every_file_and_the_manifest_lists_their_hashes_and_rules(pack):
    assert {p.name for p in pack.iterdir()} == PACK_FILES
    manifest = json.loads((pack / MANIFEST).read_text())
    assert set(manifest["files"]) == PACK_FILES - {MANIFEST, CHECKSUMS}
    assert manifest["period"]["first_day"] == "2026-11-23" and manifest["period"]["last_day"] == "2026-11-24"
    assert manifest["time_zone"] == "Europe/London"
    assert manifest["rules"]["answer"] == {"ring_period_seconds": 3.0, "max_rings": 10, "target_seconds": 30.0,
                                           "screen_calls": False, "routing_mode": "dial", "answer_on_bridge": True,
                                           "voicemail_offered": True}
    # What made a caller DWP (no menu in these tests), and when a callback was tried again and given up.
    assert manifest["rules"]["caller_type"] == {"dwp_numbers": ["********890"], "menu": None}  # masked as callers are
    assert manifest["rules"]["callback"]["retry_spacing_minutes"] == [30, 60]
    assert manifest["rules"]["callback"]["max_attempts"] == 3
    assert manifest["rules"]["opening_hours"]["wednesday"] == ["08:00-12:30", "13:30-18:00"]
    assert manifest["rules"]["callback"]["clock"] == "business"
    assert manifest["rules"]["email"] == {"ack_within_minutes": 15}
    assert manifest["generated_by"]["username"] == "dana" and manifest["generated_by"]["via"] == "cli"
    assert manifest["files"]["calls.csv"]["rows"] == 5
    assert verify(pack).ok


def test_the_pack_names_the_windows_restores_lost_within_the_period(app, db_session, clock, seeded, auditor,
                                                                      admin, packs):
    """In the manifest (UTC), in summary.csv against each period it touches, and in report.pdf's opening."""
    from helpdesk.restore import record_restore

    pdftotext = require_program("pdftotext", "install poppler-utils")

    def report(pack: Path) -> str:
        return " ".join(subprocess.run([pdftotext, str(pack / "report.pdf"), "-"], check=True, capture_output=True,
                                       timeout=60).stdout.decode().split())

    before = export(app, db_session, clock, auditor, packs / "before")
    assert json.loads((before / MANIFEST).read_text())["lost_in_restores"] == []
    assert {row["lost_in_restore"] for row in read(before / "summary.csv")} == {""}
    assert "restored from a backup" not in report(before)
    record_restore(db_session, backup_taken_at=utc(2026, 11, 24, 22), lost_until=utc(2026, 11, 24, 23),
                   now=utc(2026, 11, 26, 12), user_id=admin.user_id, actor=admin.username)
    after = export(app, db_session, clock, auditor, packs / "after")
    manifest = json.loads((after / MANIFEST).read_text())
    assert manifest["lost_in_restores"] == [{"from": "2026-11-24T22:00:00+00:00", "to": "2026-11-24T23:00:00+00:00"}]
    marked = {(row["level"], row["period"]): row["lost_in_restore"] for row in read(after / "summary.csv")}
    window = "2026-11-24T22:00:00.000+00:00/2026-11-24T23:00:00.000+00:00"
    assert marked == {("day", "2026-11-23"): "", ("day", "2026-11-24"): window, ("week", "2026-W48"): window,
                      ("month", "2026-11"): window, ("range", "range"): window}
    assert ("Lost in a restore. The database was restored from a backup, so what came in from 22:00:00 GMT to "
            "23:00:00 GMT on Tuesday 24 November 2026 is missing from these figures and from every file of this "
            "pack.") in report(after)
    assert verify(after).ok
    outside = export(app, db_session, clock, auditor, packs / "outside", first=date(2026, 11, 23),
                     last=date(2026, 11, 23))
    assert json.loads((outside / MANIFEST).read_text())["lost_in_restores"] == []
    assert {row["lost_in_restore"] for row in read(outside / "summary.csv")} == {""}


def test_calls_csv_has_one_row_per_call_in_the_range_with_uk_times_and_results(pack):
    calls = read(pack / "calls.csv")
    assert [c["enquiry_reference"] for c in calls] == [f"HD-2026-{n:06d}" for n in (1, 2, 4, 3, 5)]
    first = calls[0]
    assert first["arrived"] == "2026-11-23T09:00:05.250+00:00"
    assert first["answered"] == "2026-11-23T09:00:16.250+00:00"
    assert (first["answer_seconds"], first["rings"], first["counted"], first["ten_ring_result"]) == ("11.0", "4", "yes", "met")
    assert (calls[1]["ten_ring_result"], calls[1]["caller_type"]) == ("breached", "dwp")
    out_of_hours = calls[2]
    assert (out_of_hours["outcome"], out_of_hours["counted"], out_of_hours["ten_ring_result"]) == ("out_of_hours", "no", "")


def test_caller_numbers_and_email_addresses_are_masked_by_default_in_every_file(pack):
    calls = read(pack / "calls.csv")
    assert [c["caller"] for c in calls] == ["********123", "********890", "********456", "withheld", "********789"]
    emails = read(pack / "emails.csv")
    assert [e["sender"] for e in emails] == ["j***@e***.org", "s***@m***.uk", "j***@e***.org", "s***@m***.uk",
                                             "j***@e***.org"]
    texts = [(pack / name).read_text(encoding="utf-8-sig") for name in PACK_FILES if name.endswith((".csv", ".json"))]
    book = openpyxl.load_workbook(pack / "evidence.xlsx", read_only=True)
    texts.append(" ".join(str(v) for sheet in book for row in sheet.iter_rows(values_only=True) for v in row))
    book.close()
    for text in texts:
        for secret in NUMBERS + ADDRESSES + ("Customer asked about grant", "attempt note", "Personal subject"):
            assert secret not in text


def defined_columns(pack: Path) -> list[tuple[str, str]]:
    return [(row["file"], row["column"]) for row in read(pack / "columns.csv")]


def written_columns(pack: Path) -> list[tuple[str, str]]:
    columns = []
    for name in ("calls.csv", "callbacks.csv", "callback_attempts.csv", "emails.csv", "summary.csv"):
        with open(pack / name, encoding="utf-8-sig", newline="") as stream:
            columns += [(name, column) for column in next(csv.reader(stream))]
    return columns


def test_the_pack_says_what_each_of_its_columns_means(pack):
    assert sorted(defined_columns(pack)) == sorted(written_columns(pack))  # each once, none missing or extra
    meanings = {(row["file"], row["column"]): row["meaning"] for row in read(pack / "columns.csv")}
    assert all(len(meaning) > 20 for meaning in meanings.values())
    assert "met or breached when counted" in meanings[("calls.csv", "ten_ring_result")]
    book = openpyxl.load_workbook(pack / "evidence.xlsx", read_only=True)
    sheet = [row for row in book["Columns"].iter_rows(values_only=True)]
    book.close()
    assert sheet[0] == ("file", "column", "meaning") and len(sheet) == 1 + len(meanings)
    assert json.loads((pack / MANIFEST).read_text())["files"]["columns.csv"]["rows"] == len(meanings)


def test_an_administrator_can_export_unmasked_with_notes(app, db_session, clock, seeded, admin, packs):
    pack = export(app, db_session, clock, admin, packs / "full", redaction="none", include_notes=True)
    assert [c["caller"] for c in read(pack / "calls.csv")][:2] == ["+447700900123", "+441234567890"]
    assert json.loads((pack / MANIFEST).read_text())["rules"]["caller_type"]["dwp_numbers"] == ["+441234567890"]
    assert ("callbacks.csv", "note") in defined_columns(pack)  # notes included, and defined
    assert sorted(defined_columns(pack)) == sorted(written_columns(pack))
    assert read(pack / "emails.csv")[0]["sender"] == "jane.doe@example.org"
    assert read(pack / "callbacks.csv")[0]["note"] == "Customer asked about grant"
    assert read(pack / "callback_attempts.csv")[0]["note"] == "attempt note 1"


def test_only_an_administrator_may_export_unmasked(app, db_session, clock, seeded, auditor, packs):
    with pytest.raises(EvidenceError, match="only an administrator"):
        export(app, db_session, clock, auditor, packs / "full", redaction="none")
    assert list(packs.iterdir()) == []


def test_callbacks_explain_their_deadlines_and_list_attempts_in_their_own_file(pack):
    callbacks = read(pack / "callbacks.csv")
    assert [c["three_hour_result"] for c in callbacks] == ["met", "breached", ""]
    assert [c["counted"] for c in callbacks] == ["yes", "yes", "no"]
    met = callbacks[0]
    assert met["owed_from"] == "2026-11-23T09:00:00.000+00:00" and met["due"] == "2026-11-23T12:00:00.000+00:00"
    assert met["deadline_explanation"].startswith("Owed from 09:00 on Monday 23 November 2026; due after 3 hours of opening time, at 12:00")
    assert (met["attempts"], met["first_attempt"]) == ("2", "2026-11-23T09:45:00.000+00:00")
    # 16:30 on Monday with 18:00 closing: 1.5 hours that day, the rest from 08:00 on Tuesday.
    assert callbacks[1]["due"] == "2026-11-24T09:30:00.000+00:00"
    attempts = read(pack / "callback_attempts.csv")
    assert [(a["callback_id"], a["outcome"]) for a in attempts] == [(met["callback_id"], "no_answer"),
                                                                   (met["callback_id"], "reached")]
    assert [(a["source"], a["started"], a["dialled"]) for a in attempts] == [
        ("manual", "2026-11-23T09:45:00.000+00:00", "2026-11-23T09:45:00.000+00:00"),
        ("twilio", "2026-11-23T10:30:00.000+00:00", "2026-11-23T10:30:15.000+00:00")]
    assert [a["recorded"] for a in attempts] == ["2026-11-23T10:05:00.000+00:00", "2026-11-23T10:30:00.000+00:00"]
    assert [c["breach_recorded"] for c in callbacks] == ["", callbacks[1]["due"], ""]
    assert "note" not in attempts[0] and "note" not in met


def test_emails_show_met_late_unacknowledged_pending_and_suppressed(pack):
    emails = read(pack / "emails.csv")
    assert [(e["ack_result"], e["counted"]) for e in emails] == [
        ("met", "yes"), ("late", "yes"), ("unacknowledged", "yes"), ("", "no"), ("pending", "no")]
    assert emails[0]["ack_seconds"] == "120.0" and emails[0]["acknowledged"] == "2026-11-23T10:02:00.000+00:00"
    # Why the suppressed one was not sent; no other row has a reason.
    assert [e["not_sent_reason"] for e in emails] == [
        "", "", "", "flood guard: the sender passed the limit of acknowledgements in the time window", ""]


def test_summary_csv_figures_are_those_of_metrics_compliance_for_every_period(app, pack, db_session, clock):
    summary = read(pack / "summary.csv")
    settings = app.extensions["helpdesk.settings"]
    periods = {("range", "range"): compliance.date_range_period(FIRST, LAST)}
    periods.update({("day", p.label): p for p in compliance.day_periods(FIRST, LAST)})
    periods.update({("week", p.label): p for p in compliance.week_periods(FIRST, LAST)})
    periods.update({("month", p.label): p for p in compliance.month_periods(FIRST, LAST)})
    assert {(row["level"], row["period"]) for row in summary} == set(periods)
    for row in summary:
        expected = compliance.figures(db_session, periods[row["level"], row["period"]], settings, clock.now)[row["rule"]]
        ratio = "" if expected.compliance is None else f"{expected.compliance:.4f}"
        assert (row["countable"], row["met"], row["breached"], row["compliance"]) == (
            str(expected.countable), str(expected.met), str(expected.breached), ratio), row
    whole = {row["rule"]: row for row in summary if row["level"] == "range"}
    assert (whole["answer_within_rings"]["countable"], whole["answer_within_rings"]["met"]) == ("3", "2")
    assert whole["callback_within_3h"]["compliance"] == "0.5000"
    assert (whole["email_ack"]["countable"], whole["email_ack"]["met"]) == ("3", "1")


def test_a_day_with_nothing_countable_has_a_blank_compliance_not_zero(app, db_session, clock, seeded, auditor, packs):
    pack = export(app, db_session, clock, auditor, packs / "p", first=date(2026, 11, 21), last=date(2026, 11, 23))
    saturday = [r for r in read(pack / "summary.csv") if r["period"] == "2026-11-21"]
    assert len(saturday) == 3 and all(r["countable"] == "0" and r["compliance"] == "" for r in saturday)


def test_the_workbook_opens_with_a_sheet_per_table_and_the_same_rows(pack):
    book = openpyxl.load_workbook(pack / "evidence.xlsx")
    assert book.sheetnames == ["Summary", "Calls", "Callbacks", "Callback attempts", "Emails", "Columns"]
    calls = book["Calls"]
    assert calls.freeze_panes == "A2"
    values = list(calls.iter_rows(values_only=True))
    with open(pack / "calls.csv", encoding="utf-8-sig", newline="") as stream:
        expected = list(csv.reader(stream))
    assert [str(v) for v in values[0]] == expected[0]
    assert len(values) == len(expected) == 6
    assert values[1][4] == 11.0 and values[1][5] == 4  # numbers stay numbers
    assert values[1][1] == "2026-11-23T09:00:05.250+00:00"  # times keep their offset
    assert book["Calls"].column_dimensions["B"].width >= 29
    assert len(list(book["Summary"].iter_rows())) == 1 + 3 * (2 + 1 + 1 + 1)


def test_the_report_renders_as_a_pdf_with_real_text_and_a_title(pack, tmp_path):
    pdftoppm = require_program("pdftoppm", "install poppler-utils")
    pdftotext = require_program("pdftotext", "install poppler-utils")
    subprocess.run([pdftoppm, "-png", "-r", "40", str(pack / "report.pdf"), str(tmp_path / "page")], check=True,
                   capture_output=True, timeout=60)
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages and all(p.stat().st_size > 1000 for p in pages)
    text = subprocess.run([pdftotext, str(pack / "report.pdf"), "-"], check=True, capture_output=True,
                          timeout=60).stdout.decode()
    assert "Monday 23 November 2026 to Tuesday 24 November 2026" in text
    assert "Calls answered within 10 rings" in text and "66.7%" in text and "No data" in text
    assert "Callbacks within 3 hours." in text  # the configured window, in numerals
    assert "from Twilio's record of the call" in " ".join(text.split())
    assert ("To check that no file of this pack was changed: in its folder, run sha256sum -c SHA256SUMS (Linux) or "
            "shasum -a 256 -c SHA256SUMS (Mac)") in " ".join(text.split())
    info = subprocess.run([require_program("pdfinfo"), str(pack / "report.pdf")], capture_output=True,
                          timeout=60).stdout.decode()
    assert "Service level evidence: 23 November 2026 to 24 November 2026" in info


def test_an_export_is_recorded_in_the_audit_log_with_the_manifest_hash(pack, db_session, clock):
    with db_session.begin():
        entries = list(db_session.scalars(select(AuditEntry).where(AuditEntry.action == "evidence.export")))
    assert len(entries) == 1
    entry = entries[0]
    detail = json.loads(entry.detail)
    assert (entry.actor, entry.action, entry.at) == ("dana", "evidence.export", clock.now)
    assert detail["first_day"] == "2026-11-23" and detail["last_day"] == "2026-11-24"
    assert (detail["redaction"], detail["notes_included"], detail["via"]) == ("masked", False, "cli")
    assert detail["manifest_sha256"] == verify(pack).manifest_sha256


def test_a_failure_while_writing_leaves_nothing_behind(app, db_session, clock, seeded, auditor, packs, monkeypatch):
    from metrics.evidence import pack as pack_module

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pack_module, "write_report", broken)
    with pytest.raises(OSError):
        export(app, db_session, clock, auditor, packs / "pack")
    assert list(packs.iterdir()) == []
    with db_session.begin():
        assert db_session.scalar(select(AuditEntry.id).where(AuditEntry.action == "evidence.export")) is None


def test_an_empty_range_is_refused_unless_allowed_and_then_says_no_data(app, db_session, clock, seeded, auditor, packs):
    with pytest.raises(EvidenceError, match="no calls, callbacks or emails from 2026-10-01 to 2026-10-31"):
        export(app, db_session, clock, auditor, packs / "empty", first=date(2026, 10, 1), last=date(2026, 10, 31))
    assert list(packs.iterdir()) == []
    pack = export(app, db_session, clock, auditor, packs / "empty", first=date(2026, 10, 1), last=date(2026, 10, 31),
                  allow_empty=True)
    assert read(pack / "calls.csv") == [] and verify(pack).ok
    whole = [r for r in read(pack / "summary.csv") if r["level"] == "range"]
    assert all(r["countable"] == "0" and r["compliance"] == "" for r in whole)
    text = subprocess.run([require_program("pdftotext", "install poppler-utils"), str(pack / "report.pdf"), "-"],
                          check=True, capture_output=True, timeout=60).stdout.decode()
    assert "No data: nothing in this period counted for any rule." in text and "0.0%" not in text


def test_a_note_that_starts_like_a_formula_is_written_as_text(app, db_session, clock, seeded, admin, packs):
    callback = db_session.scalars(select(Callback).order_by(Callback.id)).first()
    callback.note = '=HYPERLINK("http://evil.example","click")'
    db_session.commit()
    pack = export(app, db_session, clock, admin, packs / "full", redaction="none", include_notes=True)
    assert read(pack / "callbacks.csv")[0]["note"] == '\'=HYPERLINK("http://evil.example","click")'
    book = openpyxl.load_workbook(pack / "evidence.xlsx")
    notes = [row for row in book["Callbacks"].iter_rows(min_row=2) if row[-1].value]
    # A text cell, so the sheet needs no guard in front: it shows the note as written.
    assert notes[0][-1].data_type == "s" and notes[0][-1].value == '=HYPERLINK("http://evil.example","click")'


def test_the_report_counts_callbacks_withdrawn_before_they_were_decided(app, db_session, clock, seeded, auditor,
                                                                          packs):
    callback = db_session.scalars(select(Callback).where(Callback.sla_result.is_(None))).one()
    callback.status, callback.outcome, callback.closed_at = "closed", "withdrawn", clock.now
    db_session.commit()
    pack = export(app, db_session, clock, auditor, packs / "pack")
    assert [c["closed_outcome"] for c in read(pack / "callbacks.csv")] == ["", "", "withdrawn"]
    text = subprocess.run([require_program("pdftotext", "install poppler-utils"), str(pack / "report.pdf"), "-"],
                          check=True, capture_output=True, timeout=60).stdout.decode()
    assert "1 callback was withdrawn before its deadline was decided" in " ".join(text.split())
    assert "no number to dial" not in " ".join(text.split())


def test_the_report_counts_callbacks_with_no_number_closed_before_they_were_decided(app, db_session, clock, seeded,
                                                                                    auditor, packs):
    callback = db_session.scalars(select(Callback).where(Callback.sla_result.is_(None))).one()
    callback.caller_number = None
    callback.status, callback.outcome, callback.closed_at = "closed", "unreachable", clock.now
    db_session.commit()
    pack = export(app, db_session, clock, auditor, packs / "pack")
    rows = read(pack / "callbacks.csv")
    assert [(c["closed_outcome"], c["counted"]) for c in rows][-1] == ("unreachable", "no")
    text = " ".join(subprocess.run([require_program("pdftotext", "install poppler-utils"), str(pack / "report.pdf"),
                                    "-"], check=True, capture_output=True, timeout=60).stdout.decode().split())
    assert ("1 callback was closed as unreachable before its deadline was decided because there was no number to "
            "dial") in text
    assert "No callback was withdrawn before its deadline was decided." in text


def pdf_text(pack: Path) -> str:
    return " ".join(subprocess.run([require_program("pdftotext", "install poppler-utils"), str(pack / "report.pdf"),
                                    "-"], check=True, capture_output=True, timeout=60).stdout.decode().split())


def test_the_report_says_how_many_calls_came_in_and_why_some_were_not_counted(app, db_session, clock, seeded,
                                                                              auditor, packs):
    text = pdf_text(export(app, db_session, clock, auditor, packs / "pack"))
    # Calls 1 to 5 arrived on the 23rd and 24th: three counted, one before opening, one caller hung up in time.
    assert ("5 calls came in; 3 were counted for \u201cCalls answered within 10 rings\u201d. Not counted: 1 outside "
            "opening hours; 1 whose caller hung up within the target. calls.csv lists every call") in text


def test_the_pack_says_what_agents_recorded_of_each_answered_calls_enquiry(app, db_session, clock, seeded, auditor,
                                                                            packs):
    pack = export(app, db_session, clock, auditor, packs / "none")
    text = pdf_text(pack)
    assert ("Of 3 answered calls, agents recorded 0 as concluded on the call and 0 as needing a callback; 3 have "
            "neither recorded, so no callback is owed for them (calls.csv: enquiry_outcome).") in text
    assert "more than a day" not in text  # nothing recorded, so nothing recorded late
    enquiries = {e.call_sid: e for e in db_session.scalars(select(Enquiry).where(Enquiry.channel == "phone"))}
    enquiries[f"CA{1:032x}"].status, enquiries[f"CA{2:032x}"].status = "concluded", "callback_owed"
    # Call 1's the same day, call 2's nine days later: a late outcome shows.
    enquiries[f"CA{1:032x}"].outcome_recorded_at = datetime(2026, 11, 23, 10, 4, 30, 250000, tzinfo=timezone.utc)
    enquiries[f"CA{2:032x}"].outcome_recorded_at = datetime(2026, 12, 2, 16, 0, tzinfo=timezone.utc)
    db_session.commit()
    pack = export(app, db_session, clock, auditor, packs / "recorded")
    # Calls 1, 2, 4, 3 and 5 by arrival: 4 and 5 were not answered.
    assert [(row["enquiry_outcome"], row["enquiry_outcome_recorded"]) for row in read(pack / "calls.csv")] == [
        ("concluded", "2026-11-23T10:04:30.250+00:00"), ("callback_needed", "2026-12-02T16:00:00.000+00:00"),
        ("", ""), ("none_recorded", ""), ("", "")]
    text = pdf_text(pack)
    assert ("Of 3 answered calls, agents recorded 1 as concluded on the call and 1 as needing a callback; 1 has "
            "neither recorded, so no callback is owed for it (calls.csv: enquiry_outcome). Of the 2 recorded, 1 was "
            "recorded more than a day after the call was answered: 0 concluded and 1 needing a callback (calls.csv: "
            "enquiry_outcome_recorded). A callback is owed from its call, however late it is recorded.") in text


def test_the_pack_counts_outcomes_recorded_more_than_a_day_after_the_answer(app, db_session, clock, seeded, auditor,
                                                                            packs):
    enquiries = {e.call_sid: e for e in db_session.scalars(select(Enquiry).where(Enquiry.channel == "phone"))}
    one, three = enquiries[f"CA{1:032x}"], enquiries[f"CA{3:032x}"]
    # Call 1 was answered at 09:00:16.25 on the 23rd, call 3 at 09:15:02 on the 24th.
    one.status, one.outcome_recorded_at = "concluded", utc(2026, 11, 24, 9, 0, 16, 250000)  # a day to the microsecond
    three.status, three.outcome_recorded_at = "callback_owed", utc(2026, 11, 24, 9, 20)
    db_session.commit()
    pack = export(app, db_session, clock, auditor, packs / "in-time")
    assert ("Of the 2 recorded, none was recorded more than a day after the call was answered (calls.csv: "
            "enquiry_outcome_recorded).") in pdf_text(pack)
    assert json.loads((pack / MANIFEST).read_text())["enquiry_outcomes"] == {
        "answered_calls": {"concluded": 1, "callback_needed": 1, "none_recorded": 1},
        "recorded_over_a_day_after_the_answer": {"concluded": 0, "callback_needed": 0},
        "recorded_at_a_time_not_kept": {"concluded": 0, "callback_needed": 0}}

    one.outcome_recorded_at += timedelta(microseconds=1)
    three.outcome_recorded_at = None  # recorded before the time was kept, and not found by the upgrade
    db_session.commit()
    pack = export(app, db_session, clock, auditor, packs / "late")
    text = pdf_text(pack)
    assert ("Of the 2 recorded, 1 was recorded more than a day after the call was answered: 1 concluded and 0 "
            "needing a callback (calls.csv: enquiry_outcome_recorded). When 1 was recorded is not known: before the "
            "time was kept.") in text
    assert "however late" not in text  # no callback was recorded late
    assert json.loads((pack / MANIFEST).read_text())["enquiry_outcomes"] == {
        "answered_calls": {"concluded": 1, "callback_needed": 1, "none_recorded": 1},
        "recorded_over_a_day_after_the_answer": {"concluded": 1, "callback_needed": 0},
        "recorded_at_a_time_not_kept": {"concluded": 0, "callback_needed": 1}}
    assert verify(pack).ok


def test_the_report_splits_the_whole_periods_calls_and_callbacks_by_caller_type(app, db_session, clock, seeded,
                                                                               settings, auditor, packs):
    from metrics.evidence.summary import build_summary

    with Session(bind=db_session.get_bind()) as session:
        by_type = build_summary(session, FIRST, LAST, settings, clock.now).by_caller_type
    figures = {kind: (by_type[kind]["answer_within_rings"].met, by_type[kind]["answer_within_rings"].countable,
                      by_type[kind]["callback_within_3h"].met, by_type[kind]["callback_within_3h"].countable)
               for kind in by_type}
    # Calls 1 (customer, met), 2 (DWP, breached) and 3 (unknown, met) counted; 4 and 5 (customers) not.
    # Callbacks: all for customers, one met and one breached (the third not yet due).
    assert figures == {"dwp": (0, 1, 0, 0), "customer": (1, 1, 1, 2), "unknown": (1, 1, 0, 0)}
    assert all(by_type[kind]["email_ack"].countable == 0 for kind in by_type)  # emails have no caller type
    text = pdf_text(export(app, db_session, clock, auditor, packs / "pack"))
    assert "Whole period, by caller" in text and "Customers" in text and "Caller type unknown" in text


def test_the_report_says_how_many_emails_came_in_and_which_were_not_enquiries(app, db_session, clock, seeded,
                                                                             auditor, packs):
    for n, decision in ((7, "auto_reply"), (8, "auto_reply"), (9, "bounce")):
        db_session.add(InboundEmail(received_at=utc(2026, 11, 24, 9, n), source="imap", dedupe_key=f"{n:064d}",
                                    raw=b"Subject: x\r\n\r\nhi", raw_sha256="0" * 64, sender="robot@example.org",
                                    subject="Out of office", decision=decision))
    db_session.commit()
    text = pdf_text(export(app, db_session, clock, auditor, packs / "pack"))
    # Emails 1 to 5 opened enquiries (the fifth held back by the flood guard); three were not enquiries.
    assert ("8 emails came in: 5 opened an enquiry (1 of them not acknowledged, and not counted, because the sender "
            "had passed the flood guard's limit) and 0 joined one (a reply, not acknowledged again). 3 were not "
            "enquiries, so not acknowledged and not in emails.csv: 2 automatic replies; 1 bounce.") in text
    assert ("5 email enquiries from this period still awaited a response when the pack was made (emails.csv: "
            "enquiry_status); a callback an agent records for one later is owed from its email") in text


def test_emails_csv_says_where_each_email_enquiry_stands_and_when_it_was_answered(app, db_session, clock, seeded,
                                                                                  auditor, packs):
    enquiries = {e.reference: e for e in db_session.scalars(select(Enquiry).where(Enquiry.channel == "email"))}
    enquiries["HD-2026-000901"].status, enquiries["HD-2026-000901"].closed_at = "closed", utc(2026, 11, 23, 10, 30)
    enquiries["HD-2026-000902"].status = "callback_owed"
    # 901 was first answered at 10:05, reopened by a reply, and answered again at 10:30 (the audit
    # log keeps both). 904 was answered before the audit log kept answers: its closing stands in.
    for minute in (5, 30):
        db_session.add(AuditEntry(at=utc(2026, 11, 23, 10, minute), user_id=None, actor="sam",
                                  action="enquiry.marked_answered", detail='{"enquiry": "HD-2026-000901"}'))
    enquiries["HD-2026-000904"].status, enquiries["HD-2026-000904"].closed_at = "closed", utc(2026, 11, 24, 9, 45)
    db_session.commit()
    pack = export(app, db_session, clock, auditor, packs / "pack")
    stands = {row["enquiry_reference"]: (row["enquiry_status"], row["marked_answered"], row["first_answered"])
              for row in read(pack / "emails.csv")}
    assert json.loads((pack / MANIFEST).read_text())["email_enquiries_awaiting_response"] == 2
    assert stands["HD-2026-000901"] == ("answered", "2026-11-23T10:30:00.000+00:00", "2026-11-23T10:05:00.000+00:00")
    assert stands["HD-2026-000902"] == ("callback_needed", "", "")
    assert stands["HD-2026-000903"] == ("awaiting_response", "", "")
    assert stands["HD-2026-000904"] == ("answered", "2026-11-24T09:45:00.000+00:00", "2026-11-24T09:45:00.000+00:00")


def test_the_report_says_how_many_counted_callbacks_reached_the_caller_and_were_corrected_by_a_late_entry(
        app, db_session, clock, seeded, auditor, packs):
    assert "Of 2 callbacks counted, 0 reached the caller." in pdf_text(export(app, db_session, clock, auditor,
                                                                              packs / "before"))
    met = db_session.scalars(select(Callback).where(Callback.sla_result == "met")).one()
    # Breached at its deadline by the sweep, then met: its attempt in time was entered late.
    met.reached_at, met.breached_at = met.first_attempt_at, met.due_at
    db_session.commit()
    text = pdf_text(export(app, db_session, clock, auditor, packs / "after"))
    assert "Of 2 callbacks counted, 1 reached the caller." in text
    assert "1 was met only after a breach had been recorded: an attempt made in time was entered after" in text


def test_the_pack_names_the_configuration_versions_that_judged_its_calls_and_callbacks(app, db_session, clock,
                                                                                       seeded, settings, auditor,
                                                                                       packs):
    # The seeded records were judged under version "test"; the rules in force now are another's.
    pack = export(app, db_session, clock, auditor, packs / "older")
    assert {row["config_version"] for row in read(pack / "calls.csv")} == {"test"}
    assert json.loads((pack / MANIFEST).read_text())["judged_by_versions"] == {"calls": {"test": 5},
                                                                               "callbacks": {"test": 3}}
    assert (f"These rules are configuration version {settings.version}'s, in force when the pack was made. This "
            "period's calls and callbacks were judged under these versions (how many under each): test (8).") \
        in pdf_text(pack)
    for model in (Call, Callback):
        db_session.execute(update(model).values(config_version=settings.version))
    db_session.commit()
    same = export(app, db_session, clock, auditor, packs / "same")
    assert "were judged under these versions" not in pdf_text(same)


def test_a_pack_made_after_its_period_is_provisional_while_items_owed_in_it_are_not_yet_due(
        app, db_session, clock, seeded, settings, auditor, packs):
    calls = db_session.scalars(select(Call).order_by(Call.id)).all()
    # Owed just before closing on the last day: due the next morning, on the business clock.
    db_session.add(_callback(settings, calls[1].enquiry, 4, utc(2026, 11, 24, 17, 50)))
    db_session.add(_email(6, utc(2026, 11, 24, 23, 55), "late@example.org", status="pending"))
    db_session.commit()
    clock.now = utc(2026, 11, 25, 0, 0)  # the period is over
    pack = export(app, db_session, clock, auditor, packs / "pack")
    manifest = json.loads((pack / MANIFEST).read_text())
    assert manifest["provisional"] is True
    assert manifest["not_yet_due"] == {"callbacks": 1, "acknowledgements": 1}
    text = pdf_text(pack)
    assert ("Provisional: 1 callback and 1 email acknowledgement owed in this period were not yet due when the pack "
            "was made, so the figures do not count them yet") in text
    assert "this period had not ended" not in text
    clock.now = utc(2026, 11, 25, 12, 0)  # both are due now: decided (breached), so the pack is final
    later = export(app, db_session, clock, auditor, packs / "later")
    assert json.loads((later / MANIFEST).read_text())["provisional"] is False
    assert json.loads((later / MANIFEST).read_text())["not_yet_due"] == {"callbacks": 0, "acknowledgements": 0}
    assert "Provisional" not in pdf_text(later)


def test_a_pack_made_before_its_period_ended_says_it_is_provisional(app, db_session, clock, seeded, auditor, packs):
    pdftotext = require_program("pdftotext", "install poppler-utils")
    during = export(app, db_session, clock, auditor, packs / "during")  # the clock is on the last day
    clock.now = datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc)  # midnight in the UK: the 24th is over
    after = export(app, db_session, clock, auditor, packs / "after")
    for pack, provisional in ((during, True), (after, False)):
        assert json.loads((pack / MANIFEST).read_text())["provisional"] is provisional
        text = " ".join(subprocess.run([pdftotext, str(pack / "report.pdf"), "-"], check=True, capture_output=True,
                                       timeout=60).stdout.decode().split())
        assert ("Provisional: this period had not ended when the pack was made." in text) is provisional


def test_the_pack_says_how_quickly_contacts_were_handled(app, db_session, clock, seeded, auditor, packs):
    pack = export(app, db_session, clock, auditor, packs / "pack")
    quick = json.loads((pack / MANIFEST).read_text())["how_quickly"]
    # In opening hours on the 23rd and 24th: calls 1, 2 and 3 answered (11, 40 and 2 s), call 5's caller hung up.
    assert quick["calls_in_opening_hours"] == {"calls": 4, "answered": 3, "hung_up_before_an_answer": 1,
                                               "answer_seconds": {"count": 3, "half": 11.0, "nine_tenths": 40.0}}
    # Callback 1 first tried 45 minutes after it was owed; 2 and 3 not tried.
    assert quick["callbacks"] == {"owed": 3, "reached": 0,
                                  "to_first_attempt_seconds": {"count": 1, "half": 2700.0, "nine_tenths": 2700.0}}
    # Emails 1 and 2 acknowledged after 2 and 40 minutes; none answered yet.
    assert quick["email_enquiries"] == {
        "enquiries": 5, "to_acknowledgement_seconds": {"count": 2, "half": 120.0, "nine_tenths": 2400.0},
        "to_first_answer_seconds": {"count": 0, "half": None, "nine_tenths": None}}
    text = pdf_text(pack)
    assert "How quickly Not targets: how the period's contacts were handled" in text
    for row in ("Calls 4", "Answered 3 (75.0%)", "Caller hung up before an answer 1 (25.0%)",
                "No answer, voicemail or failed 0 (0.0%)", "Half answered within 11 seconds",
                "9 in 10 answered within 40 seconds", "Owed 3",
                "First attempt made 1 (33.3%)", "Caller reached 0 (0.0%)", "Half had a first attempt within 45 minutes",
                "Enquiries 5", "Acknowledgement sent 2 (40.0%)", "Half acknowledged within 2 minutes",
                "9 in 10 acknowledged within 40 minutes", "Marked as answered 0 (0.0%)",
                "9 in 10 answered within No data"):
        assert row in text
