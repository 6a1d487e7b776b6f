"""Access tokens (helpdesk.access_tokens): made on the Access tokens page after the password, given
by a script to GET /api/evidence, revoked by their user, an administrator or the command line, and
refused once revoked, run out, or their user may not download packs; on SQLite and PostgreSQL,
through a real SMTP server for the notice."""
from __future__ import annotations

import io
import re
import threading
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from helpdesk.access_tokens import MOST_LIVE, PREFIX, digest
from helpdesk.cli import main as helpdesk_cli
from helpdesk.models import AccessToken, PackBuild
from helpdesk.pack_builds import STALE_AFTER
from helpdesk.pages import evidence as evidence_pages
from helpdesk.users import (SIGN_IN_LIMIT, SIGN_IN_REFUSED, TOKEN_MADE, TOKEN_REVOKED, deactivate, reactivate,
                            set_password, set_role)
from metrics.evidence.manifest import verify
from tests.integration import test_password_links as links_tests
from tests.integration.conftest import make_app, make_settings, stored
from tests.integration.test_audit_log_page import page, rows_of
from tests.integration.test_evidence_pack import PACK_FILES, seed
from tests.integration.test_password_links import mails
from tests.integration.test_queue_page import words
from tests.integration.test_sign_in_audit import entries
from tests.integration.test_users_and_login import PASSWORD, csrf_token, make_user, run_cli, sign_in

ADDRESS = "dana@example.org"
SECRET = re.compile(r'<p class="secret-key" id="access-token"><code>(hdt_[A-Za-z0-9_-]{43})</code></p>')
DAYS = "from=2026-11-23&to=2026-11-24"

# The app with a mail server (aiosmtpd on 127.0.0.1), as the links' tests have it.
app, client, smtp_server = links_tests.app, links_tests.client, links_tests.smtp_server


@pytest.fixture
def dana(db_session):
    return make_user(db_session, "dana", "auditor", display_name="Dana Auditor", email=ADDRESS)


def make(client, name: str = "Monthly pack for DWP", days: str = "90", password: str = PASSWORD):
    """Send the Make a token form as the signed-in user."""
    return client.post("/account/tokens", data={"csrf_token": csrf_token(client, "/account/tokens"), "name": name,
                                                "days": days, "password": password})


def made(client, **form) -> str:
    """A new token's secret, as the page shows it once."""
    response = make(client, **form)
    assert response.status_code == 200, words(response.get_data(as_text=True))
    return SECRET.search(response.get_data(as_text=True)).group(1)


def pack(client, secret: str | None, query: str = DAYS, **headers):
    """GET /api/evidence as a script does, with `secret` in the Authorization header."""
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    return client.get(f"/api/evidence?{query}", headers=headers)


def exports(db_session):
    """The evidence exports in the audit log, read in a transaction of their own."""
    return entries(db_session, "evidence.export")


def stored_tokens(db_session) -> list[AccessToken]:
    return stored(db_session, AccessToken)


def script_token(app, db_session, clock, **user) -> str:
    """dana (an auditor) with a token made on the page; signed out again, as a script has no session."""
    make_user(db_session, "dana", user.pop("role", "auditor"), display_name="Dana Auditor", **user)
    browser = app.test_client()
    sign_in(browser, "dana")
    return made(browser)


# --------------------------------------------------------------------------- making one


def test_an_auditor_makes_a_token_with_their_password_sees_it_once_and_only_its_digest_is_stored(
        client, db_session, clock, dana, smtp_server):
    sign_in(client, "dana")
    assert "You have no access tokens." in words(client.get("/account/tokens").get_data(as_text=True))

    response = make(client, name="  Monthly   pack for DWP ", days="30")

    page = response.get_data(as_text=True)
    secret = SECRET.search(page).group(1)
    assert secret.startswith(PREFIX) and len(secret) == len(PREFIX) + 43
    assert response.headers["Cache-Control"] == "no-store"
    assert f"export HELPDESK_TOKEN='{secret}'" in page and "https://helpdesk.example.org/api/evidence?" in page
    [token] = stored_tokens(db_session)
    assert (token.name, token.digest, token.hint) == ("Monthly pack for DWP", digest(secret), secret[-4:])
    assert secret not in token.digest and (token.created_at, token.expires_at) == (clock.now,
                                                                                    clock.now + timedelta(days=30))
    listed = client.get("/account/tokens").get_data(as_text=True)
    assert "Monthly pack for DWP" in listed and f"…{secret[-4:]}" in listed and secret not in listed
    [entry] = entries(db_session, TOKEN_MADE)
    assert entry.actor == "dana" and secret not in entry.detail and '"days": 30' in entry.detail
    [message] = mails(smtp_server)
    assert message["To"] == ADDRESS and message["Subject"] == "An access token was made for you on Help desk"
    body = " ".join(message.get_content().split())
    assert "named “Monthly pack for DWP”" in body and "revoke it on the Access tokens page" in body
    assert secret not in message.get_content()


def test_a_wrong_password_makes_no_token_counts_as_a_refused_sign_in_and_the_limit_holds(client, db_session, dana):
    sign_in(client, "dana")

    response = make(client, password="not the password at all")

    assert response.status_code == 400
    assert "Your password is wrong." in words(response.get_data(as_text=True))
    assert stored_tokens(db_session) == []
    [refused] = entries(db_session, SIGN_IN_REFUSED)
    assert '"page": "Access tokens"' in refused.detail and '"reason": "wrong password"' in refused.detail
    assert client.get("/calls").status_code == 200  # still signed in
    for _ in range(SIGN_IN_LIMIT - 1):
        make(client, password="not the password at all")
    response = make(client)  # the right password, refused unheard
    assert response.status_code == 429 and "Too many wrong passwords" in words(response.get_data(as_text=True))
    assert stored_tokens(db_session) == []


@pytest.mark.parametrize("name, days, field", [
    ("", "90", "Give the token a name"),
    ("   ", "90", "Give the token a name"),
    ("x" * 61, "90", "The name is too long"),
    ("pack\x00for DWP", "90", "The name has a control character"),
    ("pack\x07", "90", "The name has a control character"),
    ("Monthly", "7", "Choose how long the token lasts"),
    ("Monthly", "ninety", "Choose how long the token lasts"),
    ("Monthly", "", "Choose how long the token lasts"),
])
def test_a_bad_name_or_lifetime_is_refused_at_its_field_and_the_password_is_not_checked(
        client, db_session, dana, name, days, field):
    sign_in(client, "dana")

    response = make(client, name=name, days=days, password="not the password at all")

    assert response.status_code == 400
    assert field in words(response.get_data(as_text=True))
    assert stored_tokens(db_session) == [] and entries(db_session, SIGN_IN_REFUSED, TOKEN_MADE) == []


def test_a_user_has_at_most_ten_tokens_each_with_its_own_name(client, db_session, dana):
    sign_in(client, "dana")
    made(client, name="Monthly")

    response = make(client, name="MONTHLY")

    assert response.status_code == 400
    assert "You have an access token named “MONTHLY” already" in words(response.get_data(as_text=True))
    for n in range(MOST_LIVE - 1):
        made(client, name=f"Script {n}")
    response = make(client, name="One more")
    assert response.status_code == 400 and "You have 10 access tokens already" in words(
        response.get_data(as_text=True))
    assert "as many as you may have" in words(client.get("/account/tokens").get_data(as_text=True))
    assert len(stored_tokens(db_session)) == MOST_LIVE


@pytest.mark.parametrize("role", ["agent", "admin"])
def test_agents_and_administrators_have_no_access_tokens_page(client, db_session, role):
    make_user(db_session, "sam", role)
    sign_in(client, "sam")
    assert client.get("/account/tokens").status_code == 403
    token = csrf_token(client, "/queue" if role == "agent" else "/calls")
    response = client.post("/account/tokens", data={"csrf_token": token, "name": "x", "days": "90",
                                                    "password": PASSWORD})
    assert response.status_code == 403 and stored_tokens(db_session) == []


def test_without_public_base_url_the_example_names_the_address_the_page_was_asked_at(migrated_url, clock):
    bare = make_app(migrated_url, make_settings(), clock, PUBLIC_BASE_URL=None)
    try:
        with bare.extensions["helpdesk.db"].session() as session:
            make_user(session, "dana", "auditor")
        browser = bare.test_client()
        sign_in(browser, "dana")
        page = browser.get("/account/tokens").get_data(as_text=True)
        assert '"http://localhost/api/evidence?from=' in page and "None/api" not in page
    finally:
        bare.extensions["helpdesk.db"].dispose()


@pytest.mark.parametrize("now, month, first, last", [
    (datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc), "October", "2026-10-01", "2026-10-31"),
    # 00:30 on 1 October in the UK (BST) is still 30 September in UTC: the UK's month counts
    (datetime(2026, 9, 30, 23, 30, tzinfo=timezone.utc), "September", "2026-09-01", "2026-09-30"),
    (datetime(2027, 1, 5, 9, 0, tzinfo=timezone.utc), "December", "2026-12-01", "2026-12-31"),
])
def test_the_curl_example_asks_for_last_months_pack_in_the_uk(client, db_session, clock, dana, now, month, first,
                                                              last):
    clock.now = now
    sign_in(client, "dana")

    listed = client.get("/account/tokens").get_data(as_text=True)
    shown = made(client), client.post("/account/tokens", data={
        "csrf_token": csrf_token(client, "/account/tokens"), "name": "Second", "days": "90", "password": PASSWORD})

    address = f"https://helpdesk.example.org/api/evidence?from={first}&amp;to={last}"
    assert f"for {month}'s pack" in listed and address in listed
    assert address in shown[1].get_data(as_text=True) and "--retry 5" in shown[1].get_data(as_text=True)


def test_the_evidence_page_leads_to_access_tokens(client, db_session, dana):
    sign_in(client, "dana")
    assert 'href="/account/tokens"' in client.get("/evidence").get_data(as_text=True)


# --------------------------------------------------------------------------- a script using one


def test_a_script_downloads_a_pack_with_the_token_and_the_export_is_audited_naming_it(
        app, client, db_session, settings, clock, tmp_path):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)
    clock.advance(60)

    response = pack(client, secret, DAYS + "&notes=yes")

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/zip" and response.headers["Cache-Control"] == "no-store"
    assert "filename=evidence-2026-11-23-to-2026-11-24.zip" in response.headers["Content-Disposition"]
    assert "Set-Cookie" not in response.headers  # no session for scripts
    with zipfile.ZipFile(io.BytesIO(response.get_data())) as bundle:
        bundle.extractall(tmp_path)
    folder = tmp_path / "evidence-2026-11-23-to-2026-11-24"
    assert {path.name for path in folder.iterdir()} == PACK_FILES
    assert verify(folder).ok
    [export] = exports(db_session)
    [token] = stored_tokens(db_session)
    assert export.actor == "dana" and export.actor_role == "auditor"
    assert '"via": "token"' in export.detail and '"token": "Monthly pack for DWP"' in export.detail
    assert f'"token_id": {token.id}' in export.detail and '"notes_included": true' in export.detail
    assert token.last_used_at == clock.now
    sign_in(client, "dana")
    log = words(client.get("/account/tokens").get_data(as_text=True))
    assert "Not yet" not in log
    listed = CliRunner().invoke(helpdesk_cli, ["evidence", "exports"], env={"DATABASE_URL": app.config[
        "DATABASE_URL"]})
    assert "masked, with notes  token “Monthly pack for DWP”" in listed.output


@pytest.mark.parametrize("header", [None, "", "Basic ZGFuYTpwYXNzd29yZA==", "Bearer", "Bearer   ", "Token hdt_abc"])
def test_without_a_bearer_token_the_script_is_told_how_to_send_one(client, db_session, header):
    response = pack(client, None, **({} if header is None else {"Authorization": header}))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="helpdesk"'
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True).startswith("Send an access token in the Authorization header")
    assert exports(db_session) == []


@pytest.mark.parametrize("presented, said", [
    ("hdt_" + "A" * 43, "The access token is not known"),
    ("hdt_" + "A" * 200, "That is not an access token"),
    ("ghp_" + "A" * 36, "That is not an access token"),
    ("hdt_" + "\xff" * 43, "That is not an access token"),
    ("hdt_" + "A" * 42 + "=", "That is not an access token"),
])
def test_a_token_that_is_no_token_is_refused_as_invalid(app, client, db_session, clock, presented, said):
    script_token(app, db_session, clock)

    response = pack(client, presented)

    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="helpdesk", error="invalid_token"'
    assert response.get_data(as_text=True).startswith(said)
    assert exports(db_session) == []


def test_a_signed_in_browser_gets_nothing_from_the_api_without_a_token_and_its_session_is_left_alone(
        client, db_session, dana, settings):
    seed(db_session, settings)
    sign_in(client, "dana")
    secret = made(client)

    response = pack(client, None)

    assert response.status_code == 401 and exports(db_session) == []
    with_token = pack(client, secret)
    assert with_token.status_code == 200 and "Set-Cookie" not in with_token.headers


def test_a_token_in_the_address_is_refused_even_with_a_good_one_in_the_header(app, client, db_session, clock,
                                                                               settings):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)

    response = pack(client, secret, f"{DAYS}&access_token={secret}")

    assert response.status_code == 400
    assert "not in the address, where logs keep it" in response.get_data(as_text=True)
    assert exports(db_session) == []


@pytest.mark.parametrize("query, said", [
    ("", "Give the first date as YYYY-MM-DD"),
    ("from=2026-11-23", "Give the last date as YYYY-MM-DD"),
    ("from=2026-02-30&to=2026-03-01", "The first date"),
    ("from=2026-11-24&to=2026-11-23", "before"),
    ("from=2026-01-01&to=2026-06-30", "Choose at most 92 days"),
    ("from=2026-11-23&to=2026-11-24&notes=maybe", "Give notes=yes or notes=no"),
    ("from=2026-11-23&to=2026-11-24&format=csv", "Unknown in the address: format"),
    ("from=%00&to=2026-11-24", "The first date"),
    ("from=2026-11-10&to=2026-11-11", "add allow_empty=yes to the address"),
])
def test_bad_dates_and_parameters_get_a_plain_400_saying_what_is_wrong(app, client, db_session, clock, settings,
                                                                        query, said):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)

    response = pack(client, secret, query)

    assert response.status_code == 400
    assert response.mimetype == "text/plain" and said in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True) and exports(db_session) == []


def test_allow_empty_makes_a_pack_of_days_when_nothing_came_in(app, client, db_session, clock):
    secret = script_token(app, db_session, clock)

    response = pack(client, secret, "from=2026-11-10&to=2026-11-11&allow_empty=yes")

    assert response.status_code == 200 and len(exports(db_session)) == 1


def test_only_get_is_answered(app, client, db_session, clock, settings):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)
    response = client.post(f"/api/evidence?{DAYS}", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 405 and exports(db_session) == []


def test_head_checks_the_token_and_the_dates_answers_as_get_would_and_builds_and_audits_nothing(
        app, client, db_session, clock, settings):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)
    clock.advance(60)

    checked = client.head(f"/api/evidence?{DAYS}", headers={"Authorization": f"Bearer {secret}"})

    assert checked.status_code == 200 and checked.get_data() == b""
    assert "Content-Length" not in checked.headers  # nothing built, so no length to give
    assert exports(db_session) == [] and stored_tokens(db_session)[0].last_used_at == clock.now
    got = pack(client, secret)
    for header in ("Content-Type", "Content-Disposition", "Cache-Control"):
        assert checked.headers[header] == got.headers[header], header
    assert client.head(f"/api/evidence?{DAYS}").status_code == 401
    wrong = client.head("/api/evidence?from=2026-11-24&to=2026-11-23", headers={"Authorization": f"Bearer {secret}"})
    assert wrong.status_code == 400 and len(exports(db_session)) == 1


# --------------------------------------------------------------------------- one pack at a time


@pytest.fixture
def held_build(monkeypatch):
    """The next pack's build waits inside until `release` is set; `inside` is set once it is there."""
    inside, release = threading.Event(), threading.Event()
    building = evidence_pages.export_zip

    def slow_build(*args, **kwargs):
        if not inside.is_set():
            inside.set()
            assert release.wait(timeout=30), "the test never let the build finish"
        return building(*args, **kwargs)

    monkeypatch.setattr(evidence_pages, "export_zip", slow_build)
    yield inside, release
    release.set()


def test_while_a_pack_is_built_for_a_user_their_scripts_are_told_to_wait_and_other_users_are_not(
        app, client, db_session, clock, settings, held_build):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)
    other = app.test_client()
    sign_in(other, "dana")
    second_secret = made(other, name="Second script")
    make_user(db_session, "maria", "manager")
    maria = app.test_client()
    sign_in(maria, "maria")
    maria_secret = made(maria)
    inside, release = held_build
    clock.advance(60)
    first = {}
    running = threading.Thread(target=lambda: first.update(response=pack(app.test_client(), secret)))
    running.start()
    assert inside.wait(timeout=30)
    clock.advance(20)  # the refusal names when the first was asked for

    refused = [pack(client, secret), pack(client, second_secret, DAYS + "&notes=yes")]
    meanwhile = pack(client, maria_secret)
    release.set()
    running.join(timeout=60)

    for response in refused:
        assert response.status_code == 429 and response.headers["Retry-After"] == "30"
        assert response.mimetype == "text/plain" and "Cache-Control" in response.headers
        assert response.get_data(as_text=True) == (
            "A pack is already being built for you, asked for at 10:01:00 (UK time). Scripts get one pack at a time "
            "for each person: wait until it has come, then ask again.\n")
    assert meanwhile.status_code == 200 and first["response"].status_code == 200
    assert sorted(entry.actor for entry in exports(db_session)) == ["dana", "maria"]
    assert pack(client, second_secret).status_code == 200  # once the first has come
    assert builds_left(db_session) == []


def test_a_pack_not_made_lets_the_next_request_through(app, client, db_session, clock, settings):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)

    assert pack(client, secret, "from=2026-11-10&to=2026-11-11").status_code == 400  # nothing came in
    assert builds_left(db_session) == []
    assert pack(client, secret).status_code == 200


def test_a_build_whose_worker_died_stops_counting_after_ten_minutes(app, client, db_session, clock, settings):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)
    [dana] = [token.user_id for token in stored_tokens(db_session)]
    with db_session.begin():
        db_session.add(PackBuild(user_id=dana, claim="left by a worker that died", started_at=clock.now))

    clock.advance(STALE_AFTER.total_seconds() - 1)
    assert pack(client, secret).status_code == 429
    clock.advance(1)
    assert pack(client, secret).status_code == 200
    assert builds_left(db_session) == []


def test_the_evidence_page_is_not_held_up_by_a_scripts_build(app, client, db_session, clock, settings):
    seed(db_session, settings)
    script_token(app, db_session, clock)
    [dana] = [token.user_id for token in stored_tokens(db_session)]
    with db_session.begin():
        db_session.add(PackBuild(user_id=dana, claim="a script's", started_at=clock.now))
    sign_in(client, "dana")

    response = client.post("/evidence/download", data={"csrf_token": csrf_token(client, "/evidence"),
                                                       "from": "2026-11-23", "to": "2026-11-24"})

    assert response.status_code == 200 and response.mimetype == "application/zip"


def builds_left(db_session) -> list[int]:
    db_session.expire_all()
    with db_session.begin():
        return list(db_session.scalars(select(PackBuild.user_id)))


# --------------------------------------------------------------------------- when a token stops working


def test_a_token_revoked_by_its_user_is_refused_and_the_others_still_work(app, client, db_session, clock, settings):
    seed(db_session, settings)
    make_user(db_session, "dana", "auditor")
    sign_in(client, "dana")
    first, second = made(client, name="First"), made(client, name="Second")
    token_id = stored_tokens(db_session)[0].id

    response = client.post(f"/account/tokens/{token_id}/revoke",
                           data={"csrf_token": csrf_token(client, "/account/tokens")})

    assert response.status_code == 302
    page = words(client.get("/account/tokens").get_data(as_text=True))
    assert "Revoked the access token “First”" in page and "Second" in page
    script = app.test_client()
    refused = pack(script, first)
    assert refused.status_code == 401 and "has been revoked" in refused.get_data(as_text=True)
    assert pack(script, second).status_code == 200
    [entry] = entries(db_session, TOKEN_REVOKED)
    assert '"own": true' in entry.detail
    again = client.post(f"/account/tokens/{token_id}/revoke",
                        data={"csrf_token": csrf_token(client, "/account/tokens")})
    assert "was revoked already" in words(client.get(again.headers["Location"]).get_data(as_text=True))


@pytest.mark.parametrize("token_id", [str(2 ** 31), str(2 ** 63), "9" * 30, "\u0661"])
def test_revoking_an_id_no_token_can_have_is_not_found_rather_than_a_failure(app, client, db_session, clock,
                                                                               settings, token_id):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)  # dana's, id 1: "\u0661" is a 1 in Arabic-Indic digits
    sign_in(client, "dana")

    response = client.post(f"/account/tokens/{token_id}/revoke",
                           data={"csrf_token": csrf_token(client, "/account/tokens")})

    assert response.status_code == 404
    assert pack(app.test_client(), secret).status_code == 200


def test_a_user_cannot_revoke_someone_elses_token(app, client, db_session, clock, settings):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)
    [token] = stored_tokens(db_session)
    make_user(db_session, "morgan", "manager")
    sign_in(client, "morgan")

    response = client.post(f"/account/tokens/{token.id}/revoke",
                           data={"csrf_token": csrf_token(client, "/account/tokens")})

    assert "There is no such access token." in words(client.get(response.headers["Location"]).get_data(as_text=True))
    assert pack(app.test_client(), secret).status_code == 200


def test_a_token_that_has_run_out_is_refused(app, client, db_session, clock, settings):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)
    clock.advance(timedelta(days=90).total_seconds() - 1)
    assert pack(client, secret).status_code == 200

    clock.advance(1)

    response = pack(client, secret)
    assert response.status_code == 401 and "has run out" in response.get_data(as_text=True)
    sign_in(client, "dana")
    assert "You have no access tokens." in words(client.get("/account/tokens").get_data(as_text=True))


def test_deactivating_or_changing_the_role_revokes_the_users_tokens_for_good(app, client, db_session, clock, settings):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)

    deactivate(db_session, "dana", now=clock.now)
    assert pack(client, secret).status_code == 401
    reactivate(db_session, "dana")
    response = pack(client, secret)
    assert response.status_code == 401 and "has been revoked" in response.get_data(as_text=True)

    browser = app.test_client()
    sign_in(browser, "dana")
    second = made(browser, name="Second")
    set_role(db_session, "dana", "manager", now=clock.now)
    assert pack(client, second).status_code == 401
    changes = [entry.detail for entry in entries(db_session, "user.deactivated", "user.role_changed")]
    assert all('"tokens_revoked": 1' in detail for detail in changes) and len(changes) == 2


def test_a_token_waits_while_its_user_has_a_password_to_choose(app, client, db_session, clock, settings):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)
    set_password(db_session, "dana", "an administrator's chosen words", temporary=True)

    response = pack(client, secret)

    assert response.status_code == 403 and "has a password to choose" in response.get_data(as_text=True)
    assert "WWW-Authenticate" not in response.headers and exports(db_session) == []


def test_a_token_waits_while_its_users_role_must_set_up_two_step_sign_in(migrated_url, clock, db_session, settings):
    seed(db_session, settings)
    plain = make_app(migrated_url, make_settings(), clock)
    must = make_app(migrated_url, make_settings(web={"two_step_for": ["auditor"]}), clock)
    try:
        with plain.extensions["helpdesk.db"].session() as session:
            secret = script_token(plain, session, clock)

        response = pack(must.test_client(), secret)

        assert response.status_code == 403 and "must set up two-step sign-in" in response.get_data(as_text=True)
    finally:
        plain.extensions["helpdesk.db"].dispose()
        must.extensions["helpdesk.db"].dispose()


# --------------------------------------------------------------------------- administrators and the command line


def test_an_administrator_sees_a_users_tokens_and_revokes_one(app, client, db_session, clock, settings):
    seed(db_session, settings)
    secret = script_token(app, db_session, clock)
    make_user(db_session, "ada", "admin")
    [token] = stored_tokens(db_session)
    dana_id = token.user_id
    sign_in(client, "ada")
    page = words(client.get(f"/admin/users/{dana_id}").get_data(as_text=True))
    assert "Access tokens" in page and "Monthly pack for DWP" in page and secret not in page

    response = client.post(f"/admin/users/{dana_id}/tokens/{token.id}/revoke",
                           data={"csrf_token": csrf_token(client, f"/admin/users/{dana_id}")})

    assert response.status_code == 302
    assert "Revoked the access token of dana" in words(client.get(response.headers["Location"]).get_data(
        as_text=True))
    assert pack(app.test_client(), secret).status_code == 401
    [entry] = entries(db_session, TOKEN_REVOKED)
    assert entry.actor == "ada" and '"own"' not in entry.detail
    history = words(client.get(f"/admin/users/{dana_id}").get_data(as_text=True))
    assert "access token “Monthly pack for DWP” revoked" in history


def test_the_command_line_lists_and_revokes_tokens(app, migrated_url, db_session, clock, settings):
    seed(db_session, settings)
    make_user(db_session, "dana", "auditor")
    browser = app.test_client()
    sign_in(browser, "dana")
    first, second = made(browser, name="First"), made(browser, name="Second")
    first_id, second_id = (token.id for token in stored_tokens(db_session))

    listed = run_cli(migrated_url, "tokens", "dana")
    assert listed.exit_code == 0 and "First" in listed.output and "Second" in listed.output
    assert first not in listed.output

    assert run_cli(migrated_url, "revoke-token", "dana").exit_code == 2  # neither an ID nor --all
    assert run_cli(migrated_url, "revoke-token", "dana", "999").output.endswith("there is no such access token\n")
    result = run_cli(migrated_url, "revoke-token", "dana", str(first_id))
    assert result.exit_code == 0 and f"access token {first_id} “First”" in result.output
    assert pack(app.test_client(), first).status_code == 401
    assert pack(app.test_client(), second).status_code == 200
    result = run_cli(migrated_url, "revoke-token", "dana", "--all")
    assert result.exit_code == 0 and f"access token {second_id} “Second”" in result.output
    assert pack(app.test_client(), second).status_code == 401
    assert run_cli(migrated_url, "tokens", "dana").output == "'dana' has no access tokens.\n"
    assert run_cli(migrated_url, "tokens", "nobody").exit_code == 1


def test_the_audit_log_says_what_was_done_with_a_token(app, client, db_session, clock, settings):
    seed(db_session, settings)
    make_user(db_session, "dana", "auditor")
    sign_in(client, "dana")
    make(client, password="not the password at all")
    secret = made(client)
    pack(app.test_client(), secret)
    [token] = stored_tokens(db_session)
    client.post(f"/account/tokens/{token.id}/revoke", data={"csrf_token": csrf_token(client, "/account/tokens")})

    text = "\n".join(rows_of(page(client, "/audit?from=2026-11-24&to=2026-11-24")))

    for expected in (
            "dana (DWP auditor) Sign-in refused: wrong password, on Access tokens",
            "dana (DWP auditor) User changed: dana: made the access token “Monthly pack for DWP”, for 90 days",
            "dana (DWP auditor) Evidence pack exported: 2026-11-23 to 2026-11-24, masked, no notes, by a script "
            "with the access token “Monthly pack for DWP”",
            "dana (DWP auditor) User changed: dana: revoked their access token “Monthly pack for DWP”"):
        assert expected in text, text
