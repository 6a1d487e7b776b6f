"""manifest.json: what a pack covers, the rules in force, and the SHA-256 of every other file.

Beside it, SHA256SUMS (from 0.34.0) gives every file's SHA-256, the manifest's too, in the form
`sha256sum -c` reads, so a pack can be checked with no more than an operating system's tools.

`verify` is what `helpdesk evidence verify` runs: it recomputes every hash and names each
altered, missing or unexpected file, and checks SHA256SUMS against the files when it is there
(packs made before 0.34.0 have none). Pure file work: no database.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from importlib import metadata
from pathlib import Path

from helpdesk.config import WEEKDAYS, clock_text
from helpdesk.settings import Settings
from metrics.evidence.fields import Redactor

MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"
FORMAT = "helpdesk-sla evidence pack 1"
CHUNK = 1 << 20


class ManifestError(ValueError):
    """manifest.json is missing, not JSON, or not shaped like a pack's manifest."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@cache
def software_version() -> str:
    """The installed package's version (read once: a new version means a new process)."""
    try:
        return metadata.version("helpdesk-sla")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def rules_in_force(settings: Settings, first: date, last: date, redactor: Redactor | None = None) -> dict:
    """The rules and calendar that judged the figures, as plain JSON values; the DWP numbers
    masked as the pack's other numbers are (`redactor`)."""
    redactor = redactor or Redactor()
    calendar = settings.calendar
    holidays = []
    day = first
    while day <= last:
        name = calendar.holiday_name(day)
        if name:
            holidays.append({"date": day.isoformat(), "name": name})
        day += timedelta(days=1)
    return {
        "configuration_version": settings.version,
        "time_zone": settings.timezone,
        "nation": settings.nation,
        "closed_on_bank_holidays": settings.bank_holidays,
        "opening_hours": {
            WEEKDAYS[weekday]: [f"{clock_text(opens)}-{clock_text(closes)}"
                                 for opens, closes in settings.opening_hours.get(weekday, ())]
            for weekday in range(7)
        },
        "closures": [
            {"from": c.start.isoformat(), "to": c.end.isoformat(), "reason": c.reason} for c in settings.closures
        ],
        "bank_holidays_in_range": holidays,
        "answer": {
            "ring_period_seconds": settings.ring_period_seconds,
            "max_rings": settings.max_rings,
            "target_seconds": settings.answer_target_seconds,
            # Agents' phones had to press 1 to take a call: their voicemail never counted as an answer.
            "screen_calls": settings.routing.screen_calls,  # the configuration allows it in mode "dial" only
            # "dial": a ring group, answered when an agent's leg answered; "queue": when an agent took
            # the caller from the queue.
            "routing_mode": settings.routing.mode,
            "answer_on_bridge": settings.routing.answer_on_bridge,
            "voicemail_offered": settings.voicemail_enabled,
        },
        # What made a caller "dwp" or "customer" in calls.csv and callbacks.csv.
        "caller_type": {
            "dwp_numbers": [redactor.number(n) for n in sorted(settings.dwp_numbers)],
            "menu": {"dwp_key": settings.ivr.dwp_digit, "customer_key": settings.ivr.customer_digit}
            if settings.ivr.enabled else None,
        },
        "callback": {
            "clock": settings.callback.clock,
            "within_minutes": settings.callback.within_minutes,
            "warn_before_minutes": list(settings.callback.warn_before_minutes),
            # An attempt that did not reach the caller is retried after these minutes (the last
            # repeats); after max_attempts the callback is closed as unreachable.
            "retry_spacing_minutes": list(settings.callback.retry_spacing_minutes),
            "max_attempts": settings.callback.max_attempts,
        },
        "email": {"ack_within_minutes": settings.email.ack_within_minutes},
    }


def describe_files(directory: Path, rows: dict[str, int]) -> dict[str, dict]:
    """SHA-256, size and (for CSVs) row count of every file in `directory` but the manifest."""
    files = {}
    for path in sorted(directory.iterdir()):
        if path.name in (MANIFEST, CHECKSUMS) or not path.is_file():
            continue
        entry = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
        if path.name in rows:
            entry["rows"] = rows[path.name]
        files[path.name] = entry
    return files


def write_manifest(directory: Path, facts: dict, rows: dict[str, int]) -> str:
    """Write manifest.json (facts plus the files' hashes), then SHA256SUMS; returns the manifest's
    own SHA-256."""
    files = describe_files(directory, rows)
    manifest = {"format": FORMAT, **facts, "files": files}
    path = directory / MANIFEST
    _write_synced(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    digest = sha256_of(path)
    sums = {**{name: entry["sha256"] for name, entry in files.items()}, MANIFEST: digest}
    _write_synced(directory / CHECKSUMS, "".join(f"{sums[name]}  {name}\n" for name in sorted(sums)))
    return digest


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


@dataclass
class Verification:
    manifest_sha256: str = ""
    checked: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    checksums: bool = False  # SHA256SUMS is there, and agrees with the manifest (else it is altered)

    @property
    def ok(self) -> bool:
        return not (self.altered or self.missing or self.unexpected)


def read_manifest(directory: Path) -> dict:
    """The manifest's content, or ManifestError saying what is wrong with it."""
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist: this is not an evidence pack, or its manifest was removed") from None
    except OSError as exc:
        raise ManifestError(f"{path} cannot be read: {exc.strerror or exc}") from None
    return parse_manifest(raw, str(path))


def parse_manifest(raw: bytes, where: str) -> dict:
    """A manifest's content checked for shape, or ManifestError naming `where` and the problem."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ManifestError(f"{where} is not UTF-8 text: it has been altered") from None
    except RecursionError:
        raise ManifestError(f"{where} is nested too deeply to be a pack's manifest: it has been altered") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno}): it has been altered") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise ManifestError(f"{where} has no \"files\" list of hashes: it has been altered or is not a pack's manifest")
    for name, entry in files.items():
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or len(digest) != 64 or Path(name).name != name or name == MANIFEST:
            raise ManifestError(f"{where}: the entry for {name!r} is not a file name with a SHA-256: it has been altered")
    return manifest


def verify(path: Path) -> Verification:
    """Check every file of a pack (a directory, or the ZIP the Evidence page gives) against its manifest."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path} does not exist")
    if path.is_file() and zipfile.is_zipfile(path):
        return _verify_zip(path)
    if not path.is_dir():
        raise ManifestError(f"{path} is not a directory or a ZIP file of an evidence pack")
    inner = [entry for entry in path.iterdir() if entry.is_dir()]
    if not (path / MANIFEST).exists() and len(inner) == 1 and (inner[0] / MANIFEST).is_file():
        # The Evidence page's ZIP unpacks into a folder of its own, inside the one it was unpacked in.
        raise ManifestError(f"{path} has no {MANIFEST}, but {inner[0]} has: check that folder (the ZIP unpacks "
                            "into it), or the ZIP file itself")
    manifest = read_manifest(path)
    present = {p.name: p for p in path.iterdir() if p.name != MANIFEST}
    return _compare(manifest["files"], sha256_of(path / MANIFEST), present, lambda p: sha256_of(p) if p.is_file() else "",
                    lambda p: p.read_bytes() if p.is_file() else b"")


def _verify_zip(path: Path) -> Verification:
    """Check a ZIP without unpacking it: the pack is one folder, with the manifest inside."""
    try:
        return _verify_bundle(path)
    except ManifestError:  # a ValueError too, but about the manifest: say so as it is
        raise
    except UNREADABLE_MEMBER as exc:  # the ZIP's own structure is damaged
        raise ManifestError(f"{path} cannot be read as a ZIP file ({exc}): it has been altered or damaged") from None


def _verify_bundle(path: Path) -> Verification:
    with zipfile.ZipFile(path) as bundle:
        members = [info for info in bundle.infolist() if not info.is_dir()]
        manifests = [info for info in members if info.filename.count("/") == 1 and info.filename.endswith("/" + MANIFEST)]
        if len(manifests) != 1:
            raise ManifestError(f"{path} does not hold one pack folder with a {MANIFEST}: it is not an evidence pack "
                                "from the Evidence page, or its manifest was removed")
        folder = manifests[0].filename[: -len(MANIFEST)]
        raw = bundle.read(manifests[0])
        manifest = parse_manifest(raw, f"{path}:{manifests[0].filename}")
        # Anything outside the folder or in a subfolder is unexpected, named in full.
        present = {(info.filename[len(folder):] if info.filename.startswith(folder) and "/" not in info.filename[len(folder):]
                    else info.filename): info for info in members if info is not manifests[0]}
        return _compare(manifest["files"], hashlib.sha256(raw).hexdigest(), present, lambda info: _member_sha256(bundle, info),
                        lambda info: _member_bytes(bundle, info))


def _member_sha256(bundle: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    """The member's SHA-256; "" (so it counts as altered) if its data cannot be read back."""
    digest = hashlib.sha256()
    try:
        with bundle.open(info) as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
    except UNREADABLE_MEMBER:
        return ""
    return digest.hexdigest()


def _member_bytes(bundle: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """SHA256SUMS from the ZIP (a few hundred bytes; b"", so it disagrees, if it is larger or unreadable)."""
    if info.file_size > MAX_CHECKSUMS:
        return b""
    try:
        return bundle.read(info)
    except UNREADABLE_MEMBER:
        return b""


# What reading a damaged or doctored ZIP member raises: a bad CRC or structure, corrupt
# compressed data, a truncated stream, encryption or a compression method Python lacks.
UNREADABLE_MEMBER = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, ValueError)


def _compare(listed: dict, manifest_sha256: str, present: dict, digest_of, read) -> Verification:
    result = Verification(manifest_sha256=manifest_sha256)
    checksums = present.pop(CHECKSUMS, None)
    for name in sorted(listed):
        if name not in present:
            result.missing.append(name)
        elif digest_of(present[name]) != listed[name]["sha256"]:
            result.altered.append(name)
        else:
            result.checked.append(name)
    result.unexpected = sorted(set(present) - set(listed))
    if checksums is not None:
        # It must say what the manifest says, and name the manifest itself: a file altered is
        # named once (against the manifest), SHA256SUMS only if it was altered itself.
        expected = {**{name: entry["sha256"] for name, entry in listed.items()}, MANIFEST: manifest_sha256}
        if read_checksums(read(checksums)) == expected:
            result.checksums = True
        else:
            result.altered.append(CHECKSUMS)
    return result


MAX_CHECKSUMS = 64 * 1024
_CHECKSUM_LINE = re.compile(r"([0-9a-f]{64}) [ *]([^/\\\n]+)")


def read_checksums(raw: bytes) -> dict[str, str] | None:
    """SHA256SUMS's names and hashes, or None if it is not in `sha256sum`'s form (or names a file twice)."""
    if len(raw) > MAX_CHECKSUMS:
        return None
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None
    sums: dict[str, str] = {}
    for line in lines:
        match = _CHECKSUM_LINE.fullmatch(line)
        if match is None or match.group(2) in sums:
            return None
        sums[match.group(2)] = match.group(1)
    return sums
