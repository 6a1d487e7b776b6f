"""manifest.json: hashes of every file, and verify naming what was altered, removed or added."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from metrics.evidence.manifest import CHECKSUMS, MANIFEST, ManifestError, read_checksums, verify, write_manifest
from metrics.evidence.csvs import TerminalProgress, read_csv, write_csv


@pytest.fixture
def pack(tmp_path) -> Path:
    pack = tmp_path / "pack"
    pack.mkdir()
    write_csv(pack / "calls.csv", ["a", "b"], [["1", "x,y"], ["2", 'say "hi"']])
    (pack / "report.pdf").write_bytes(b"%PDF-1.4 pretend\n")
    write_manifest(pack, {"period": {"first_day": "2026-11-23"}}, {"calls.csv": 2})
    return pack


def test_the_manifest_holds_each_files_sha256_size_and_rows(pack):
    manifest = json.loads((pack / MANIFEST).read_text())
    calls = manifest["files"]["calls.csv"]
    assert calls["sha256"] == hashlib.sha256((pack / "calls.csv").read_bytes()).hexdigest()
    assert calls["bytes"] == (pack / "calls.csv").stat().st_size and calls["rows"] == 2
    assert "rows" not in manifest["files"]["report.pdf"] and MANIFEST not in manifest["files"]
    assert manifest["period"] == {"first_day": "2026-11-23"}


def test_an_untouched_pack_verifies(pack):
    result = verify(pack)
    assert result.ok and result.checked == ["calls.csv", "report.pdf"] and result.checksums
    assert result.manifest_sha256 == hashlib.sha256((pack / MANIFEST).read_bytes()).hexdigest()


def test_one_changed_byte_is_found_and_the_file_named(pack):
    data = bytearray((pack / "report.pdf").read_bytes())
    data[3] ^= 0x20
    (pack / "report.pdf").write_bytes(bytes(data))
    result = verify(pack)
    assert not result.ok and result.altered == ["report.pdf"] and result.checked == ["calls.csv"]


def test_missing_and_extra_files_are_named(pack):
    (pack / "calls.csv").unlink()
    (pack / "notes.txt").write_text("added later")
    result = verify(pack)
    assert (result.missing, result.unexpected, result.altered) == (["calls.csv"], ["notes.txt"], [])


def test_a_manifest_with_a_changed_hash_fails_for_that_file(pack):
    manifest = json.loads((pack / MANIFEST).read_text())
    manifest["files"]["calls.csv"]["sha256"] = "0" * 64
    (pack / MANIFEST).write_text(json.dumps(manifest))
    # SHA256SUMS names the manifest as it was written: it no longer agrees.
    assert verify(pack).altered == ["calls.csv", CHECKSUMS]


def test_sha256sums_lists_every_file_and_the_manifest_as_sha256sum_writes_them(pack):
    sums = (pack / CHECKSUMS).read_text()
    assert sums == "".join(f"{hashlib.sha256((pack / name).read_bytes()).hexdigest()}  {name}\n"
                           for name in ("calls.csv", MANIFEST, "report.pdf"))
    assert CHECKSUMS not in json.loads((pack / MANIFEST).read_text())["files"]


def test_the_operating_systems_sha256sum_checks_a_pack_and_names_a_file_altered(pack):
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        pytest.skip("sha256sum (coreutils) is not installed")
    checked = subprocess.run([sha256sum, "-c", CHECKSUMS], cwd=pack, capture_output=True, text=True)
    assert checked.returncode == 0 and f"{MANIFEST}: OK" in checked.stdout
    (pack / "calls.csv").write_bytes((pack / "calls.csv").read_bytes().replace(b"x,y", b"x,z"))
    altered = subprocess.run([sha256sum, "-c", CHECKSUMS], cwd=pack, capture_output=True, text=True)
    assert altered.returncode == 1 and "calls.csv: FAILED" in altered.stdout and "report.pdf: OK" in altered.stdout


@pytest.mark.parametrize("change", [
    lambda text: text.replace(text[:64], "0" * 64, 1),  # a hash changed
    lambda text: "".join(text.splitlines(keepends=True)[1:]),  # a file left out
    lambda text: text + "a" * 64 + "  notes.txt\n",  # one the manifest does not list
    lambda text: text + text.splitlines(keepends=True)[0],  # a file twice
    lambda text: text.replace("  ", " ", 1),  # not sha256sum's form
    lambda text: b"\xff" + text.encode(),
], ids=["hash", "left-out", "added", "twice", "form", "not-text"])
def test_sha256sums_that_does_not_agree_with_the_manifest_is_altered_and_nothing_else(pack, change):
    path = pack / CHECKSUMS
    changed = change(path.read_text())
    path.write_bytes(changed if isinstance(changed, bytes) else changed.encode())
    result = verify(pack)
    zipped_result = verify(zipped(pack))
    for checked in (result, zipped_result):
        assert (checked.altered, checked.missing, checked.unexpected) == ([CHECKSUMS], [], [])
        assert checked.checked == ["calls.csv", "report.pdf"] and not checked.checksums


def test_a_pack_made_before_sha256sums_still_verifies(pack):
    (pack / CHECKSUMS).unlink()
    for result in (verify(pack), verify(zipped(pack))):
        assert result.ok and result.checked == ["calls.csv", "report.pdf"] and not result.checksums


def test_sha256sums_may_mark_files_binary_as_sha256sum_b_does():
    line = "a" * 64
    assert read_checksums(f"{line} *calls.csv\n{line}  report.pdf\n".encode()) == {"calls.csv": line,
                                                                                  "report.pdf": line}
    assert read_checksums(f"{line}  ../calls.csv\n".encode()) is None


@pytest.mark.parametrize("text, message", [
    ("", "is not valid JSON"),
    ('{"files": {}}', 'has no "files" list'),
    ('{"files": {"calls.csv": "abc"}}', "the entry for 'calls.csv' is not a file name with a SHA-256"),
    ('{"files": {"/etc/passwd": {"sha256": "' + "a" * 64 + '"}}}', "the entry for '/etc/passwd'"),
    ("[" * 100_000, "is nested too deeply to be a pack's manifest"),
])
def test_a_malformed_manifest_is_explained(pack, text, message):
    (pack / MANIFEST).write_text(text)
    with pytest.raises(ManifestError, match=message.replace("(", r"\(")):
        verify(pack)


def test_a_directory_that_is_not_a_pack_is_explained(tmp_path):
    with pytest.raises(ManifestError, match="manifest.json does not exist"):
        verify(tmp_path)
    with pytest.raises(ManifestError, match="nowhere does not exist$"):
        verify(tmp_path / "nowhere")
    with pytest.raises(ManifestError, match="nowhere.zip does not exist$"):
        verify(tmp_path / "nowhere.zip")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ManifestError, match="is not a directory or a ZIP file"):
        verify(tmp_path / "notes.txt")


def zipped(pack: Path, extra: dict[str, bytes] | None = None, leave_out: str = "") -> Path:
    """The pack as the Evidence page sends it: one folder inside a ZIP."""
    path = pack.parent / "pack.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        for file in sorted(pack.iterdir()):
            if file.name != leave_out:
                bundle.write(file, f"evidence-2026-11-23-to-2026-11-24/{file.name}")
        for name, data in (extra or {}).items():
            bundle.writestr(name, data)
    return path


def test_a_downloaded_zip_verifies_without_unpacking(pack):
    result = verify(zipped(pack))
    assert result.ok and result.checked == ["calls.csv", "report.pdf"] and result.checksums
    assert result.manifest_sha256 == hashlib.sha256((pack / MANIFEST).read_bytes()).hexdigest()


def test_a_zip_with_a_changed_missing_or_added_file_names_it(pack):
    (pack / "calls.csv").write_bytes((pack / "calls.csv").read_bytes().replace(b"x,y", b"x,z"))
    result = verify(zipped(pack, extra={"evidence-2026-11-23-to-2026-11-24/extra.csv": b"1\n", "../escape.txt": b"!"},
                           leave_out="report.pdf"))
    assert (result.altered, result.missing, result.unexpected) == (["calls.csv"], ["report.pdf"],
                                                                   ["../escape.txt", "extra.csv"])


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_zip_member_whose_data_was_damaged_is_named_as_altered(pack, compression):
    path = pack.parent / "pack.zip"
    with zipfile.ZipFile(path, "w", compression=compression) as bundle:
        for file in sorted(pack.iterdir()):
            bundle.write(file, f"evidence/{file.name}")
        info = bundle.getinfo("evidence/report.pdf")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # the member's own bytes
    data[start:start + 4] = bytes(b ^ 0xFF for b in data[start:start + 4])
    path.write_bytes(bytes(data))
    result = verify(path)
    assert (result.altered, result.checked) == (["report.pdf"], ["calls.csv"]) and not result.ok


def test_a_zip_whose_structure_is_damaged_is_explained(pack):
    path = zipped(pack)
    data = path.read_bytes()
    first = data.index(b"PK\x01\x02")  # the central directory's first entry: its signature spoilt
    path.write_bytes(data[:first] + b"XX\x01\x02" + data[first + 4:])
    assert zipfile.is_zipfile(path)  # still looks like a ZIP from its end
    with pytest.raises(ManifestError, match="cannot be read as a ZIP file .*: it has been altered or damaged"):
        verify(path)


def test_a_zip_without_a_pack_folder_and_manifest_is_explained(pack):
    with pytest.raises(ManifestError, match="does not hold one pack folder with a manifest.json"):
        verify(zipped(pack, leave_out=MANIFEST))


def test_csv_files_round_trip_commas_quotes_and_a_byte_order_mark(pack):
    assert (pack / "calls.csv").read_bytes().startswith(b"\xef\xbb\xbfa,b\r\n")
    assert list(read_csv(pack / "calls.csv")) == [["a", "b"], ["1", "x,y"], ["2", 'say "hi"']]


class FakeTerminal:
    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_progress_is_a_line_per_report_off_a_terminal_and_rewritten_on_one(tmp_path):
    rows = [[str(n)] for n in range(120_000)]
    plain, live = FakeTerminal(False), FakeTerminal(True)
    write_csv(tmp_path / "a.csv", ["n"], rows, TerminalProgress(plain, every_seconds=0))
    write_csv(tmp_path / "b.csv", ["n"], rows, TerminalProgress(live, every_seconds=0))
    assert plain.text.splitlines() == ["a.csv: 50,000 rows...", "a.csv: 100,000 rows...", "a.csv: 120,000 rows written"]
    assert live.text.count("\r\033[K") == 3 and live.text.endswith("b.csv: 120,000 rows written\n")


def test_the_rules_say_a_day_open_to_midnight_as_configured_and_whether_calls_were_screened():
    from datetime import date

    from helpdesk.config import parse_settings
    from metrics.evidence.manifest import rules_in_force
    from metrics.evidence.report import rules_in_words

    settings = parse_settings({"hours": {"monday": ["00:00-24:00"], "tuesday": ["08:00-12:30", "13:30-18:00"]},
                               "routing": {"screen_calls": True}}, source="test.toml")
    rules = rules_in_force(settings, date(2026, 11, 23), date(2026, 11, 24))
    assert rules["opening_hours"]["monday"] == ["00:00-24:00"]
    assert rules["opening_hours"]["tuesday"] == ["08:00-12:30", "13:30-18:00"]
    assert rules["answer"]["screen_calls"] is True
    words = " ".join(rules_in_words(settings))
    assert "Monday 00:00 to 24:00" in words and "voicemail never counts as an answer" in words
    plain = parse_settings({"hours": {"monday": ["09:00-17:00"]}}, source="test.toml")
    assert rules_in_force(plain, date(2026, 11, 23), date(2026, 11, 23))["answer"]["screen_calls"] is False
    assert "voicemail never counts" not in " ".join(rules_in_words(plain))


def test_the_reports_table_rounds_a_half_as_the_pages_do():
    from datetime import datetime, timezone

    from reportlab.lib.styles import getSampleStyleSheet

    from helpdesk.pages.format import format_compliance
    from metrics import compliance
    from metrics.evidence.report import _figures_table
    from metrics.evidence.summary import PeriodFigures

    period = compliance.Period("Mon 23 Nov", datetime(2026, 11, 23, tzinfo=timezone.utc),
                               datetime(2026, 11, 24, tzinfo=timezone.utc))
    figures = {rule: compliance.RuleFigures(rule, 16, 13, 3) for rule in compliance.RULES}
    table = _figures_table([PeriodFigures("day", period, figures)], "Day", getSampleStyleSheet(),
                           {rule: rule for rule in compliance.RULES})
    cell = table._cellvalues[1][1].text
    assert format_compliance(13, 16) == "81.3%" and cell.startswith("81.3%")  # 81.25%: not 81.2%


def test_the_report_says_how_many_callbacks_were_withdrawn_and_left_out():
    from metrics.evidence.words import withdrawn_words

    assert withdrawn_words(0) == "No callback was withdrawn before its deadline was decided."
    assert withdrawn_words(1).startswith("1 callback was withdrawn before its deadline was decided, so the callback "
                                         "figures do not count it.")
    assert withdrawn_words(1200).startswith("1,200 callbacks were withdrawn before their deadline")


def test_the_report_says_how_many_callbacks_left_out_had_no_number_to_dial():
    from metrics.evidence.words import no_number_words

    assert no_number_words(0) == ""  # nothing to say, so the report says nothing
    assert no_number_words(1).startswith("1 callback was closed as unreachable before its deadline was decided "
                                         "because there was no number to dial, so the callback figures do not "
                                         "count it either.")
    assert no_number_words(2).startswith("2 callbacks were closed as unreachable before their deadline")


def test_a_zip_whose_manifest_is_not_json_says_so_rather_than_that_the_zip_is_damaged(pack):
    (pack / MANIFEST).write_text("{ not json")
    with pytest.raises(ManifestError) as raised:
        verify(zipped(pack))
    message = str(raised.value)
    assert "manifest.json is not valid JSON (line 1, column 3): it has been altered" in message
    assert "cannot be read as a ZIP file" not in message


def test_the_rules_say_what_made_a_caller_dwp_and_how_callbacks_were_retried():
    from datetime import date

    from helpdesk.config import parse_settings
    from metrics.evidence.manifest import rules_in_force
    from metrics.evidence.report import rules_in_words

    settings = parse_settings({"hours": {"monday": ["09:00-17:00"]}, "ivr": {"enabled": True, "dwp_digit": "3"},
                               "callers": {"dwp_numbers": ["+442079460000", "+441234567890"]},
                               "routing": {"mode": "queue"}, "voicemail": {"enabled": False},
                               "callback": {"retry_spacing_minutes": [15], "max_attempts": 4}}, source="test.toml")
    from metrics.evidence.fields import Redactor

    assert rules_in_force(settings, date(2026, 11, 23), date(2026, 11, 23))["caller_type"]["dwp_numbers"] == [
        "********890", "********000"]  # masked, as every number in a masked pack
    rules = rules_in_force(settings, date(2026, 11, 23), date(2026, 11, 23), Redactor("none"))
    assert rules["caller_type"] == {"dwp_numbers": ["+441234567890", "+442079460000"],
                                    "menu": {"dwp_key": "3", "customer_key": "2"}}
    assert (rules["answer"]["routing_mode"], rules["answer"]["voicemail_offered"]) == ("queue", False)
    assert (rules["callback"]["retry_spacing_minutes"], rules["callback"]["max_attempts"]) == ([15], 4)
    words = " ".join(rules_in_words(settings))
    assert "A caller is DWP when calling from a known DWP number (2 configured) or pressing 3 at the menu" in words
    assert "another follows after 15 minutes (the last gap repeats), up to 4 attempts in all" in words
    demo = parse_settings({"hours": {"monday": ["09:00-17:00"]},
                           "callback": {"retry_spacing_minutes": [1, 90], "max_attempts": 3}}, source="demo.toml")
    assert "another follows after 1 minute, then 1 hour 30 minutes, up to 3 attempts" in " ".join(rules_in_words(demo))
    plain = parse_settings({"hours": {"monday": ["09:00-17:00"]}, "callback": {"max_attempts": 1}}, source="test.toml")
    assert rules_in_force(plain, date(2026, 11, 23), date(2026, 11, 23))["caller_type"] == {"dwp_numbers": [], "menu": None}
    words = " ".join(rules_in_words(plain))
    assert "every caller is \"unknown\"" in words and "One attempt is made" in words
    assert "Bank holidays in England and Wales close the help desk." in words


def test_the_rules_in_words_say_when_the_desk_opens_on_bank_holidays_and_count_its_closures():
    from helpdesk.config import parse_settings
    from metrics.evidence.report import rules_in_words

    one = [{"date": "2026-12-24"}]
    settings = parse_settings({"helpdesk": {"bank_holidays": False}, "hours": {"monday": ["09:00-17:00"]},
                               "closures": one}, source="test.toml")
    words = " ".join(rules_in_words(settings))
    assert "The help desk is open on bank holidays too. 1 configured closure closes it as well." in words
    two = parse_settings({"hours": {"monday": ["09:00-17:00"]}, "closures": one + [{"date": "2026-12-31"}]},
                         source="test.toml")
    assert "close the help desk. 2 configured closures close it as well." in " ".join(rules_in_words(two))


def test_a_column_without_a_definition_stops_the_export_rather_than_going_unexplained():
    from metrics.evidence.columns import column_rows

    assert column_rows({"calls.csv": ["call_sid"]})[0][:2] == ["calls.csv", "call_sid"]
    with pytest.raises(KeyError, match="calls.csv has a column 'new_column' that columns.csv does not define"):
        column_rows({"calls.csv": ["call_sid", "new_column"]})
