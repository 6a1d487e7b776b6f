"""The pack's figures are the figures everyone else shows: /metrics, the Service levels page,
and the pack's own rows."""
from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import pytest

from helpdesk.pages.format import format_compliance
from metrics.compliance import RULES, current_period
from metrics.evidence.pack import Exporter, ExportRequest, export_pack
from metrics.periods import uk_date
from tests.integration.test_compliance import store_known_mix
from tests.integration.test_metrics_endpoint import scrape, value
from tests.integration.test_service_levels_page import table
from tests.integration.test_users_and_login import make_user, sign_in


def read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture
def manager(app, client, db_session):
    user = make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    return Exporter(user.id, user.username, user.display_name, user.role)


def pack_for(app, db_session, clock, exporter, kind: str, out: Path) -> Path:
    """The pack for today, this week or this month, as the app's clock sees them."""
    period = current_period(kind, clock())
    first, last = uk_date(period.start), uk_date(period.end) - timedelta(days=1)
    request = ExportRequest(first, last, allow_empty=True)
    export_pack(app.config["DATABASE_URL"], app.extensions["helpdesk.settings"], request, exporter, out, clock(),
                db_session)
    return out


def store_unswept_breach(session) -> None:
    """A callback past its deadline with no attempt, which the sweep has not recorded yet."""
    from tests.integration.compliance_data import add_callback
    from tests.integration.test_compliance import utc

    with session.begin():
        add_callback(session, utc(2026, 11, 24, 6, 30), result=None)  # due 09:30, before the clock's 10:00


def test_the_packs_figures_equal_metrics_and_the_service_levels_page_for_today_week_and_month(
        app, client, db_session, clock, manager, tmp_path):
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
        store_unswept_breach(session)
    samples = scrape(client)
    page = client.get("/service-levels").get_data(as_text=True)
    for kind in ("today", "week", "month"):
        pack = pack_for(app, db_session, clock, manager, kind, tmp_path / kind)
        whole = {row["rule"]: row for row in read(pack / "summary.csv") if row["level"] == "range"}
        shown = table(page, kind)
        for rule in RULES:
            row = whole[rule]
            countable, met, breached = int(row["countable"]), int(row["met"]), int(row["breached"])
            assert value(samples, "helpdesk_sla_countable", sla=rule, period=kind) == countable
            assert value(samples, "helpdesk_sla_met", sla=rule, period=kind) == met
            ratio = value(samples, "helpdesk_sla_compliance_ratio", sla=rule, period=kind)
            if row["compliance"] == "":
                assert ratio is None  # "no data" on both
            else:
                assert ratio == pytest.approx(float(row["compliance"]), abs=5e-5)
            assert shown[rule][:4] == [str(countable), str(met), str(breached), format_compliance(met, countable)]
    # The known mix: today 5 countable calls with 3 met; the month adds November's others.
    today = {r["rule"]: r for r in read(tmp_path / "today" / "summary.csv") if r["level"] == "range"}
    assert (today["answer_within_rings"]["countable"], today["answer_within_rings"]["compliance"]) == ("5", "0.6000")


def test_the_summary_agrees_with_the_packs_own_rows(app, client, db_session, clock, manager, tmp_path):
    with app.extensions["helpdesk.db"].session() as session:
        store_known_mix(session)
        store_unswept_breach(session)
    pack = pack_for(app, db_session, clock, manager, "month", tmp_path / "month")
    [unswept] = [row for row in read(pack / "callbacks.csv") if row["owed_from"].startswith("2026-11-24T06:30")]
    assert (unswept["counted"], unswept["three_hour_result"], unswept["breach_recorded"]) == ("yes", "breached", "")
    whole = {row["rule"]: row for row in read(pack / "summary.csv") if row["level"] == "range"}
    tables = {
        "answer_within_rings": ("calls.csv", "ten_ring_result", "met"),
        "callback_within_3h": ("callbacks.csv", "three_hour_result", "met"),
        "email_ack": ("emails.csv", "ack_result", "met"),
    }
    for rule, (name, column, met_value) in tables.items():
        counted = [row for row in read(pack / name) if row["counted"] == "yes"]
        assert int(whole[rule]["countable"]) == len(counted) > 0
        assert int(whole[rule]["met"]) == sum(row[column] == met_value for row in counted)
