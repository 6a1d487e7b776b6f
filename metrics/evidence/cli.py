"""`helpdesk evidence export`, `verify` and `exports`."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from helpdesk.cli_users import signed_in_as
from helpdesk.clock import now_utc
from helpdesk.config import ConfigError, load_settings
from helpdesk.db import Database
from helpdesk.dbutil import command_errors, database_error
from metrics.evidence.csvs import TerminalProgress
from metrics.evidence.fields import REDACTIONS
from metrics.evidence.manifest import CHECKSUMS, ManifestError, verify

evidence_cli = click.Group("evidence", help="Evidence packs for DWP: export them, verify one, list those made.")


def _migrated_database_url() -> str:
    from helpdesk.cli import migrated_database_url  # here: helpdesk.cli adds this module's commands

    return migrated_database_url()


@evidence_cli.command("export")
@click.option("--from", "first", required=True, metavar="DATE", help="First UK day, YYYY-MM-DD (included).")
@click.option("--to", "last", required=True, metavar="DATE", help="Last UK day, YYYY-MM-DD (included).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="A new (or empty) directory for the pack.")
@click.option("--user", "username", required=True,
              help="Who is exporting: an active auditor, manager or administrator (their password is asked for).")
@click.option("--redact", "redaction", type=click.Choice(REDACTIONS), default="masked", show_default=True,
              help="'none' shows full numbers and addresses: administrators only.")
@click.option("--include-notes", is_flag=True, help="Add agents' notes on callbacks and attempts.")
@click.option("--allow-empty", is_flag=True, help="Write a pack even when nothing happened in the range.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def export_command(first: str, last: str, out: Path, username: str, redaction: str, include_notes: bool,
                   allow_empty: bool, quiet: bool) -> None:
    """Write an evidence pack for the UK days --from to --to into --out.

    The password comes from HELPDESK_PASSWORD (for scripts), or is asked for. Uses DATABASE_URL
    and the configuration file. Every export is recorded in the audit log.
    """
    # Imported here: reportlab and openpyxl need not load for every `helpdesk` command.
    from metrics.evidence.pack import (
        EvidenceError, Exporter, ExportRequest, check_range, check_request, check_target, export_pack, parse_day)

    try:
        request = ExportRequest(parse_day(first, "--from"), parse_day(last, "--to"), redaction, include_notes,
                                allow_empty, via="cli")
        check_range(request)  # these before asking for a password, so a typo costs nothing
        check_target(out)
        settings = load_settings()
    except (EvidenceError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    url = _migrated_database_url()
    database = Database(url)
    try:
        with command_errors("pack", out), database.session() as session:
            user = signed_in_as(session, username, "export")
            exporter = Exporter.of(user)
            check_request(request, exporter)
            progress = None if quiet else TerminalProgress(sys.stderr)
            result = export_pack(url, settings, request, exporter, out, now_utc(), session, progress)
    except EvidenceError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        database.dispose()
    counts = ", ".join(f"{name} {rows:,} row{'' if rows == 1 else 's'}" for name, rows in result.rows.items())
    click.echo(f"Wrote the evidence pack to {result.directory}: {counts}.")
    click.echo(f"Manifest SHA-256 (also in the audit log): {result.manifest_sha256}")


@evidence_cli.command("verify")
@click.argument("pack", type=click.Path(path_type=Path))
def verify_command(pack: Path) -> None:
    """Check every file of PACK against its manifest.json.

    PACK is a pack's directory, or the ZIP file downloaded from the Evidence page. Exits 0
    only when every file matches and nothing is missing or added.
    """
    try:
        result = verify(pack)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    for name in result.altered:
        click.echo(f"ALTERED: {name} (it does not say what the manifest says)" if name == CHECKSUMS
                   else f"ALTERED: {name} (its SHA-256 does not match the manifest)")
    for name in result.missing:
        click.echo(f"MISSING: {name} (listed in the manifest, not in the pack)")
    for name in result.unexpected:
        click.echo(f"UNEXPECTED: {name} (in the pack, not listed in the manifest)")
    click.echo(f"manifest.json SHA-256: {result.manifest_sha256} (on the help desk's server, "
               f"'helpdesk evidence exports --sha256 {result.manifest_sha256}' says who made it, and when)")
    if not result.ok:
        problems = len(result.altered) + len(result.missing) + len(result.unexpected)
        click.echo(f"The pack does NOT verify: {problems} problem{'' if problems == 1 else 's'}.", err=True)
        sys.exit(1)
    click.echo(f"All {len(result.checked)} files match the manifest. That shows nothing was changed after the "
               "manifest was written, not who wrote it: to know the pack is the help desk's own, have them look "
               "up its SHA-256 (above) in their audit log.")
    if result.checksums:
        click.echo(f"{CHECKSUMS} agrees with the manifest: in the pack's folder, 'sha256sum -c {CHECKSUMS}' (or "
                   f"'shasum -a 256 -c {CHECKSUMS}' on a Mac) checks the files without this software.")


_SHA256 = re.compile(r"[0-9a-f]{64}")


@evidence_cli.command("exports")
@click.option("--sha256", "digest", metavar="HASH",
              help="Only the export whose manifest.json has this SHA-256 (as 'evidence verify' prints it).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000),
              help="Show at most this many, newest first.")
def exports_command(digest: str | None, limit: int) -> None:
    """List the evidence packs made, from the audit log: when (UK time), by whom, the dates,
    the redaction, whether notes were in, how (cli or web), and the manifest's SHA-256.

    With --sha256, says whether a pack's manifest is one this help desk made (exit 1 if not).
    Uses DATABASE_URL.
    """
    from sqlalchemy import select

    from helpdesk.audit_log import user_and_role
    from helpdesk.clock import LONDON
    from helpdesk.models import AuditEntry, User
    from metrics.evidence.pack import ACTION

    if digest is not None:
        digest = digest.strip().lower()
        if not _SHA256.fullmatch(digest):
            raise click.ClickException("--sha256 must be 64 hexadecimal characters, as 'evidence verify' prints it")
    url = _migrated_database_url()
    database = Database(url)
    try:
        with database.session() as session:
            query = (select(AuditEntry, User.role).outerjoin(User, User.id == AuditEntry.user_id)
                     .where(AuditEntry.action == ACTION).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()))
            # The digest is in the JSON detail: the database narrows, the loop below checks the field.
            query = query.limit(limit) if digest is None else query.where(AuditEntry.detail.contains(digest))
            rows = session.execute(query).all()
    except SQLAlchemyError as exc:
        raise click.ClickException(database_error(exc)) from None
    finally:
        database.dispose()
    shown = 0
    for entry, role in rows:
        detail = _detail(entry.detail)
        if digest is not None and detail.get("manifest_sha256") != digest:
            continue
        shown += 1
        notes = "with notes" if detail.get("notes_included") else "no notes"
        via = f"token “{detail.get('token', '?')}”" if detail.get("via") == "token" else detail.get("via", "?")
        click.echo(f"{entry.at.astimezone(LONDON):%Y-%m-%d %H:%M}  {user_and_role(entry, role)}  {detail.get('first_day', '?')} to "
                   f"{detail.get('last_day', '?')}  {detail.get('redaction', '?')}, {notes}  {via}  "
                   f"{detail.get('manifest_sha256', '?')}")
    if digest is not None and not shown:
        raise click.ClickException(f"no evidence export in the audit log has a manifest with SHA-256 {digest}")
    if not rows:
        click.echo("No evidence packs have been made yet.")


def _detail(text: str) -> dict:
    try:
        detail = json.loads(text or "{}")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}
