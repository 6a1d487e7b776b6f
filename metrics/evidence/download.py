"""The evidence pack as one ZIP file, for the auditors' page.

Built in a temporary directory that is removed afterwards; the ZIP is an anonymous
temporary file (gone when closed), so nothing is left on the server after the download.
"""
from __future__ import annotations

import tempfile
import zipfile
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlalchemy.orm import Session

from helpdesk.settings import Settings
from metrics.evidence.pack import Exporter, ExportRequest, PackResult, check_request, record_export, write_pack


def pack_name(request: ExportRequest) -> str:
    """"evidence-2026-11-01-to-2026-11-30": the folder inside the ZIP and the file's name."""
    return f"evidence-{request.first.isoformat()}-to-{request.last.isoformat()}"


def export_zip(url: str, settings: Settings, request: ExportRequest, exporter: Exporter, now: datetime,
               audit_session: Session) -> tuple[IO[bytes], PackResult]:
    """Write a pack, zip it into a temporary file (positioned at its start), and audit the export."""
    check_request(request, exporter)
    archive = tempfile.TemporaryFile(prefix="evidence-", suffix=".zip")
    try:
        with tempfile.TemporaryDirectory(prefix="evidence-") as work:
            folder = Path(work) / pack_name(request)
            folder.mkdir()
            result = write_pack(url, settings, request, exporter, folder, now)
            with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
                for path in sorted(folder.iterdir()):
                    bundle.write(path, f"{folder.name}/{path.name}")
        record_export(audit_session, exporter, request, result, now)
    except BaseException:
        archive.close()
        raise
    archive.seek(0)
    return archive, result
