"""The auditors' Evidence page: who may use it, the ZIP download, and the audit record."""
from __future__ import annotations

import csv
import io
import json
import re
import zipfile

import pytest
from sqlalchemy import select

from helpdesk.models import AuditEntry
from metrics.evidence.manifest import verify
from tests.integration.test_evidence_pack import PACK_FILES, seed
from tests.integration.test_users_and_login import csrf_token, make_user, sign_in

FORM = {"from": "2026-11-23", "to": "2026-11-24"}


def signed_in(client, db_session, role: str):
    make_user(db_session, f"{role}-user", role, display_name=f"A {role}")
    sign_in(client, f"{role}-user")
    return client


def download(client, **changes):
    token = csrf_token(client, "/evidence")
    return client.post("/evidence/download", data={"csrf_token": token, **FORM, **changes})


def audit_entries(db_session) -> list[AuditEntry]:
    with db_session.begin():
        return list(db_session.scalars(select(AuditEntry).where(AuditEntry.action == "evidence.export")))


@pytest.mark.parametrize("role", ["auditor", "manager"])
def test_auditors_and_managers_see_the_form_and_an_evidence_link(client, db_session, role):
    signed_in(client, db_session, role)
    page = client.get("/evidence")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'href="/evidence"' in html and 'name="from" value="2026-11-01"' in html and 'value="2026-11-24"' in html
    text = " ".join(html.replace("’", "'").split())
    # Every file of the pack is named, and how to check it without this software is said.
    assert "<strong>columns.csv</strong>: what each column of the other files means." in text
    assert ("Without this software, in the unzipped folder run <code>sha256sum -c SHA256SUMS</code> on Linux or "
            "<code>shasum -a 256 -c SHA256SUMS</code> on a Mac") in text
    assert "<strong>SHA256SUMS</strong>: the same fingerprints, the manifest's too" in text


@pytest.mark.parametrize("role", ["agent", "admin"])
def test_agents_and_administrators_are_refused_with_403_and_see_no_link(client, db_session, role):
    signed_in(client, db_session, role)
    assert client.get("/evidence").status_code == 403
    token = csrf_token(client, "/queue" if role == "agent" else "/calls")  # the sign-out form's token
    assert client.post("/evidence/download", data={"csrf_token": token, **FORM}).status_code == 403
    assert 'href="/evidence"' not in client.get("/calls").get_data(as_text=True)
    assert audit_entries(db_session) == []


def test_anonymous_visitors_are_sent_to_sign_in(client):
    for response in (client.get("/evidence"), client.post("/evidence/download", data=FORM)):
        assert response.status_code in (302, 400)
    response = client.get("/evidence")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_download_is_a_zip_of_a_pack_that_verifies_and_the_export_is_audited(
        client, db_session, settings, clock, tmp_path):
    seed(db_session, settings)
    signed_in(client, db_session, "auditor")
    response = download(client)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/zip"
    assert 'filename=evidence-2026-11-23-to-2026-11-24.zip' in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(response.get_data())) as bundle:
        bundle.extractall(tmp_path / "unzipped")
    pack = tmp_path / "unzipped" / "evidence-2026-11-23-to-2026-11-24"
    assert {p.name for p in pack.iterdir()} == PACK_FILES
    result = verify(pack)
    assert result.ok
    (tmp_path / "download.zip").write_bytes(response.get_data())
    assert verify(tmp_path / "download.zip").checked == result.checked  # the ZIP as downloaded, too
    with open(pack / "calls.csv", encoding="utf-8-sig", newline="") as stream:
        calls = list(csv.DictReader(stream))
    assert len(calls) == 5 and calls[0]["caller"] == "********123"  # masked
    [entry] = audit_entries(db_session)
    detail = json.loads(entry.detail)
    assert entry.actor == "auditor-user" and entry.at == clock.now
    assert (detail["via"], detail["first_day"], detail["last_day"], detail["redaction"]) == (
        "web", "2026-11-23", "2026-11-24", "masked")
    assert detail["manifest_sha256"] == result.manifest_sha256


@pytest.mark.parametrize("changes, message, field", [
    ({"from": "2026-02-30"}, "The first date “2026-02-30” is not a date", "from"),
    ({"from": "x" * 5000}, "The first date “" + "x" * 30 + "…” is not a date", "from"),
    ({"from": "1900-01-01"}, "The first date “1900-01-01” is out of range: use a date from 2000 on", "from"),
    ({"to": ""}, "Give the last date as YYYY-MM-DD", "to"),
    ({"from": "2026-11-24", "to": "2026-11-23"}, "The range ends (2026-11-23) before it starts (2026-11-24)", "to"),
    ({"from": "2026-10-01", "to": "2026-10-31"}, "There are no calls, callbacks or emails from 2026-10-01 to "
     "2026-10-31: check the dates, or make the pack anyway to show there was nothing (tick “Make the pack even if "
     "nothing came in on these days”).", "allow_empty"),
    ({"from": "2025-01-01", "to": "2026-11-24"}, "Choose at most 92 days here (a quarter), so the pack is ready in "
     "time; for a longer range, download a pack for each quarter, or ask an administrator of the help desk to export "
     "it on the server (‘helpdesk evidence export’).", "to"),
    ({"from": "2026-08-23", "to": "2026-11-23"}, "Choose at most 92 days here", "to"),  # 93 days
])
def test_bad_dates_get_the_form_again_with_a_400_and_the_reason_at_the_field(client, db_session, settings, changes,
                                                                             message, field):
    seed(db_session, settings)
    signed_in(client, db_session, "manager")
    response = download(client, **changes)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and message in page
    assert "<title>Error: Evidence for DWP" in page
    # The summary links to the field; the field says why, and is marked invalid for a screen reader.
    assert f'<a href="#{field}">' in page
    assert f'<p class="error-message" id="{field}-error">' in page
    assert re.search(rf'id="{field}"[^>]* aria-invalid="true" aria-describedby="{field}-error"', page)
    assert page.count('aria-invalid="true"') == 1
    assert audit_entries(db_session) == []


def test_an_empty_range_downloads_when_asked_for(client, db_session):
    signed_in(client, db_session, "manager")
    response = download(client, allow_empty="yes")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert len(audit_entries(db_session)) == 1


def test_a_whole_quarter_of_92_days_downloads(client, db_session):
    signed_in(client, db_session, "auditor")
    response = download(client, allow_empty="yes", **{"from": "2026-07-01", "to": "2026-09-30"})
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert "2026-07-01-to-2026-09-30" in response.headers["Content-Disposition"]


DOWNLOAD_ID = "0123456789abcdef0123456789abcdef"


def test_with_the_pages_download_id_the_zip_comes_with_a_cookie_for_the_pages_script(client, db_session):
    signed_in(client, db_session, "auditor")

    response = download(client, allow_empty="yes", download_id=DOWNLOAD_ID)

    assert response.status_code == 200 and response.mimetype == "application/zip"
    [cookie] = [value for value in response.headers.getlist("Set-Cookie") if value.startswith("evidence_downloaded")]
    parts = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
    # Named after the download, so that two tabs downloading at once each wait for their own.
    assert cookie.startswith(f"evidence_downloaded_{DOWNLOAD_ID}=1;")
    assert (parts["path"], parts["max-age"], parts["samesite"]) == ("Path=/evidence", "Max-Age=120", "SameSite=Strict")
    assert "secure" in parts  # the tests' public address is https
    assert "httponly" not in parts  # the page's script reads it


@pytest.mark.parametrize("download_id", ["", "0123", DOWNLOAD_ID.upper(), DOWNLOAD_ID + "0",
                                         DOWNLOAD_ID[:-1] + ";", "x; Path=/; Max-Age=99999999"])
def test_without_a_well_formed_download_id_no_cookie_is_set_and_the_zip_still_comes(client, db_session, download_id):
    signed_in(client, db_session, "auditor")

    response = download(client, allow_empty="yes", download_id=download_id)

    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert not any(value.startswith("evidence_downloaded") for value in response.headers.getlist("Set-Cookie"))


def test_a_refused_form_sets_no_download_cookie(client, db_session):
    signed_in(client, db_session, "auditor")

    response = download(client, download_id=DOWNLOAD_ID, **{"from": "2026-11-24", "to": "2026-11-23"})

    assert response.status_code == 400
    assert not any(value.startswith("evidence_downloaded") for value in response.headers.getlist("Set-Cookie"))
    assert 'id="download-status"' in response.get_data(as_text=True)  # the refused form still has the script's parts
