"""`helpdesk evidence export` and `verify` as a person at a terminal runs them."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from helpdesk.cli import main
from helpdesk.db import Database
from helpdesk.models import AuditEntry
from helpdesk.users import add_user, deactivate, set_password, set_role
from tests.integration.conftest import make_settings
from tests.integration.test_evidence_pack import seed

PASSWORD = "a long enough password"
HOURS = """
[hours]
monday = ["08:00-18:00"]
tuesday = ["08:00-18:00"]
wednesday = ["08:00-12:30", "13:30-18:00"]
thursday = ["08:00-18:00"]
friday = ["08:00-18:00"]
"""


@pytest.fixture
def desk(migrated_url, tmp_path):
    """A seeded database with an auditor, an admin and an agent, and the CLI's environment."""
    database = Database(migrated_url)
    with database.session() as session:
        seed(session, make_settings())
        for username, role in (("dana", "auditor"), ("root-admin", "admin"), ("ali", "agent"), ("gone", "manager")):
            add_user(session, username, PASSWORD, role, display_name=username.title())
        deactivate(session, "gone")
    config = tmp_path / "helpdesk.toml"
    config.write_text(HOURS)
    (tmp_path / "packs").mkdir()
    yield {"DATABASE_URL": migrated_url, "HELPDESK_CONFIG": str(config), "HELPDESK_PASSWORD": PASSWORD}, database
    database.dispose()


def run(env, *args, input=None):
    return CliRunner().invoke(main, ["evidence", *args], env=env, input=input)


def export_args(out: Path, *extra, first="2026-11-23", last="2026-11-24", user="dana"):
    return ["export", "--from", first, "--to", last, "--out", str(out), "--user", user, *extra]


def audit_entries(database) -> list[AuditEntry]:
    with database.session() as session, session.begin():
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == "evidence.export")))


def test_export_writes_a_pack_that_verifies_and_is_in_the_audit_log(desk, tmp_path):
    env, database = desk
    out = tmp_path / "packs" / "november"
    result = run(env, *export_args(out))
    assert result.exit_code == 0, result.output
    assert f"Wrote the evidence pack to {out}" in result.stdout and "calls.csv 5 rows" in result.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert {stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()} == {0o600}
    assert "calls.csv: 5 rows written" in result.stderr  # progress, on stderr only
    checked = run(env, "verify", str(out))
    assert checked.exit_code == 0, checked.output
    assert "All 8 files match the manifest. That shows nothing was changed after the manifest was written, not who " \
           "wrote it" in checked.stdout
    assert ("SHA256SUMS agrees with the manifest: in the pack's folder, 'sha256sum -c SHA256SUMS' (or 'shasum -a 256 "
            "-c SHA256SUMS' on a Mac) checks the files without this software.") in checked.stdout
    [entry] = audit_entries(database)
    detail = json.loads(entry.detail)
    assert (entry.actor, detail["via"], detail["out"]) == ("dana", "cli", str(out))
    assert detail["manifest_sha256"] in result.stdout and detail["manifest_sha256"] in checked.stdout


def test_exports_lists_the_packs_made_and_finds_one_by_its_manifest(desk, tmp_path):
    env, database = desk
    assert run(env, "exports").output.strip() == "No evidence packs have been made yet."
    first, second = tmp_path / "packs" / "one", tmp_path / "packs" / "two"
    assert run(env, *export_args(first)).exit_code == 0
    assert run(env, *export_args(second, "--redact", "none", "--include-notes", user="root-admin",
                                 first="2026-11-24")).exit_code == 0
    made = {entry.actor: json.loads(entry.detail)["manifest_sha256"] for entry in audit_entries(database)}
    listing = run(env, "exports")
    assert listing.exit_code == 0, listing.output
    newest, oldest = listing.output.strip().splitlines()
    assert "root-admin (Administrator)  2026-11-24 to 2026-11-24  none, with notes  cli  " + made["root-admin"] in newest
    assert "dana (DWP auditor)  2026-11-23 to 2026-11-24  masked, no notes  cli  " + made["dana"] in oldest
    assert run(env, "exports", "--limit", "1").output.strip() == newest
    with database.session() as session:
        set_role(session, "dana", "manager")
    assert run(env, "exports").output.strip().splitlines()[1] == oldest  # the role dana had when she made it

    checked = run(env, "verify", str(first))
    assert f"'helpdesk evidence exports --sha256 {made['dana']}' says who made it" in checked.output
    found = run(env, "exports", "--sha256", made["dana"].upper())
    assert found.exit_code == 0 and found.output.strip() == oldest
    unknown = run(env, "exports", "--sha256", "0" * 64)
    assert unknown.exit_code == 1
    assert f"no evidence export in the audit log has a manifest with SHA-256 {'0' * 64}" in unknown.output
    malformed = run(env, "exports", "--sha256", "not-a-hash")
    assert malformed.exit_code == 1 and "must be 64 hexadecimal characters" in malformed.output


def test_the_password_is_asked_for_when_not_in_the_environment(desk, tmp_path):
    env, _ = desk
    env = {**env, "HELPDESK_PASSWORD": ""}
    result = run(env, *export_args(tmp_path / "packs" / "p", "--quiet"), input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "Password for dana" in result.stderr and result.stderr.count("rows written") == 0


def test_reversed_dates_are_named_before_the_password_is_asked_for(desk, tmp_path):
    env, database = desk
    env = {**env, "HELPDESK_PASSWORD": ""}
    result = run(env, *export_args(tmp_path / "packs" / "p", first="2026-12-05", last="2026-12-01"),
                 input=PASSWORD + "\n")
    assert result.exit_code == 1 and "Password for" not in result.output
    assert "the range ends (2026-12-01) before it starts (2026-12-05): swap the dates" in result.output
    assert audit_entries(database) == []


@pytest.mark.parametrize("change, named", [
    (lambda pack: _flip_one_byte(pack / "calls.csv"), "ALTERED: calls.csv"),
    (lambda pack: _flip_one_byte(pack / "report.pdf"), "ALTERED: report.pdf"),
    (lambda pack: (pack / "emails.csv").unlink(), "MISSING: emails.csv"),
    (lambda pack: (pack / "extra.csv").write_text("added\n"), "UNEXPECTED: extra.csv"),
    (lambda pack: _flip_one_byte(pack / "SHA256SUMS"), "ALTERED: SHA256SUMS (it does not say what the manifest says)"),
])
def test_verify_names_the_file_that_was_altered_removed_or_added(desk, tmp_path, change, named):
    env, _ = desk
    pack = tmp_path / "packs" / "p"
    assert run(env, *export_args(pack)).exit_code == 0
    change(pack)
    result = run(env, "verify", str(pack))
    assert result.exit_code == 1
    assert named in result.stdout and "does NOT verify: 1 problem" in result.stderr
    assert sum(line.startswith(("ALTERED", "MISSING", "UNEXPECTED")) for line in result.stdout.splitlines()) == 1


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("manifest, message", [
    (None, "manifest.json does not exist"),
    ("{not json", "is not valid JSON (line 1, column 2)"),
    ('{"files": {"../calls.csv": {"sha256": "' + "0" * 64 + '"}}}', "the entry for '../calls.csv' is not a file name"),
    ('["a list"]', 'has no "files" list of hashes'),
])
def test_verify_explains_a_missing_or_malformed_manifest(desk, tmp_path, manifest, message):
    env, _ = desk
    pack = tmp_path / "packs" / "p"
    assert run(env, *export_args(pack)).exit_code == 0
    if manifest is None:
        (pack / "manifest.json").unlink()
    else:
        (pack / "manifest.json").write_text(manifest)
    result = run(env, "verify", str(pack))
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_verify_on_the_folder_a_zip_was_unpacked_in_points_to_the_pack_inside(desk, tmp_path):
    env, _ = desk
    pack = tmp_path / "unpacked" / "evidence-2026-11-01-to-2026-11-30"
    pack.parent.mkdir()
    assert run(env, *export_args(pack)).exit_code == 0
    result = run(env, "verify", str(pack.parent))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"has no manifest.json, but {pack} has: check that folder" in result.output
    assert run(env, "verify", str(pack)).exit_code == 0


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root ignores permissions; /sys refuses new directories even to root
        return Path("/sys/evidence-pack")
    locked = tmp_path / "packs" / "locked"
    locked.mkdir(mode=0o500)
    return locked / "pack"


@pytest.mark.parametrize("case, message", [
    ("unknown date", "the --from date “2026-02-30” is not a date: use YYYY-MM-DD"),
    ("not a date", "the --to date “yesterday” is not a date"),
    ("reversed", "the range ends (2026-11-23) before it starts (2026-11-24): swap the dates"),
    ("no data", "there are no calls, callbacks or emails from 2026-10-01 to 2026-10-31: check the dates, or make the "
                "pack anyway to show there was nothing (--allow-empty)"),
    ("not empty", "already exists and is not empty"),
    ("a file", "is a file, not a directory"),
    ("no parent", "does not exist: create it first"),
    ("unwritable", "cannot write in"),
    ("name too long", "for the pack: File name too long"),
    ("wrong password", "cannot export as 'dana': the password is wrong, or there is no such active user"),
    ("inactive user", "cannot export as 'gone'"),
    ("agent", "ali may not export evidence (role agent): only auditors, managers and administrators may"),
    ("unmasked by an auditor", "only an administrator may export without masking (--redact none)"),
])
def test_bad_input_gets_a_clear_message_a_non_zero_exit_and_leaves_nothing_behind(desk, tmp_path, case, message):
    env, database = desk
    packs = tmp_path / "packs"
    out = packs / "pack"
    args = export_args(out)
    if case == "unknown date":
        args = export_args(out, first="2026-02-30")
    elif case == "not a date":
        args = export_args(out, last="yesterday")
    elif case == "reversed":
        args = export_args(out, first="2026-11-24", last="2026-11-23")
    elif case == "no data":
        args = export_args(out, first="2026-10-01", last="2026-10-31")
    elif case == "not empty":
        out.mkdir()
        (out / "old.csv").write_text("keep me\n")
    elif case == "a file":
        out.write_text("a file\n")
    elif case == "no parent":
        args = export_args(packs / "missing" / "pack")
    elif case == "unwritable":
        args = export_args(_unwritable(tmp_path))
    elif case == "name too long":
        args = export_args(packs / ("é" * 300))
    elif case == "wrong password":
        env = {**env, "HELPDESK_PASSWORD": "not the password"}
    elif case == "inactive user":
        args = export_args(out, user="gone")
    elif case == "agent":
        args = export_args(out, user="ali")
    elif case == "unmasked by an auditor":
        args = export_args(out, "--redact", "none")
    before = sorted(p.name for p in packs.rglob("*"))
    result = run(env, *args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in packs.rglob("*")) == before  # nothing half-written
    assert audit_entries(database) == []


def test_an_empty_range_is_exported_when_allowed(desk, tmp_path):
    env, _ = desk
    out = tmp_path / "packs" / "october"
    result = run(env, *export_args(out, "--allow-empty", first="2026-10-01", last="2026-10-31"))
    assert result.exit_code == 0, result.output
    assert "calls.csv 0 rows" in result.stdout and run(env, "verify", str(out)).exit_code == 0


def test_an_existing_empty_directory_is_filled(desk, tmp_path):
    env, _ = desk
    out = tmp_path / "packs" / "ready"
    out.mkdir()
    assert run(env, *export_args(out)).exit_code == 0
    assert (out / "manifest.json").exists()


def test_an_auditor_whose_password_an_administrator_set_chooses_their_own_before_exporting(desk, tmp_path):
    env, database = desk
    with database.session() as session:
        set_password(session, "dana", "a password the administrator knows", temporary=True)
    out = tmp_path / "packs" / "not-yet"
    result = run({**env, "HELPDESK_PASSWORD": "a password the administrator knows"}, *export_args(out))
    assert result.exit_code == 1
    assert ("cannot export as 'dana' yet: their password was set by an administrator. They sign in to the help "
            "desk's pages and choose their own first") in " ".join(result.output.split())
    assert not out.exists() and audit_entries(database) == []


def test_an_administrator_may_export_unmasked(desk, tmp_path):
    env, _ = desk
    out = tmp_path / "packs" / "full"
    result = run(env, *export_args(out, "--redact", "none", "--include-notes", user="root-admin"))
    assert result.exit_code == 0, result.output
    assert "+441234567890" in (out / "calls.csv").read_text(encoding="utf-8-sig")
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["redaction"], manifest["notes_included"]) == ("none", True)
