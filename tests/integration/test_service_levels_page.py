"""The Service levels page: the same figures as metrics.compliance and /metrics, for managers."""
from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from metrics.compliance import RULES, current_period, date_range_period, figures, live_figures
from tests.integration.compliance_data import add_callback
from tests.integration.test_compliance import store_known_mix
from tests.integration.test_metrics_endpoint import scrape, value
from tests.integration.test_users_and_login import make_user, sign_in


@pytest.fixture
def manager(client, db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    return client


def table(page: str, key: str) -> dict[str, list[str]]:
    """The rule table for `key` ("today", "week", "month", "range"): rule -> cell texts."""
    section = page.split(f'id="{key}-caption"')[1].split("</table>")[0]
    found = {}
    for rule, row in re.findall(r'<tr data-rule="([a-z_0-9]+)">(.*?)</tr>', section, re.S):
        found[rule] = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    return found


def caption(page: str, key: str) -> str:
    return re.search(rf'<caption id="{key}-caption">(.*?)</caption>', page, re.S).group(1)


def dl(page: str) -> dict[str, str]:
    return dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", page))


def test_the_page_shows_the_compliance_figures_and_the_metrics_endpoint_agrees(app, manager, clock, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
    page = manager.get("/service-levels").get_data(as_text=True)
    samples = scrape(manager)
    for kind in ("today", "week", "month"):
        with database.session() as session:
            expected = figures(session, current_period(kind, clock()), settings, clock())
        shown = table(page, kind)
        assert set(shown) == set(RULES)
        for rule in RULES:
            f = expected[rule]
            assert shown[rule][:3] == [str(f.countable), str(f.met), str(f.breached)]
            assert shown[rule][4] == "100%"
            assert value(samples, "helpdesk_sla_countable", sla=rule, period=kind) == f.countable
            assert value(samples, "helpdesk_sla_met", sla=rule, period=kind) == f.met
    assert table(page, "today")["answer_within_rings"][3] == "60.0%"
    assert table(page, "today")["email_ack"][3] == "25.0%"
    assert caption(page, "today") == "Today: Tuesday 24 November 2026"
    assert caption(page, "week") == "This week: Monday 23 November 2026 to Sunday 29 November 2026"
    assert "<th scope=\"row\">Calls answered within 10 rings</th>" in page


def test_owed_now_shows_the_live_figures(app, manager, clock, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        add_callback(session, clock() - timedelta(hours=3, minutes=20), result=None)  # overdue
        add_callback(session, clock() - timedelta(hours=2, minutes=45), result=None)  # due in 15 minutes
    with database.session() as session:
        live = live_figures(session, settings, clock())
    shown = dl(manager.get("/service-levels").get_data(as_text=True))
    assert shown["Open"] == str(live.callbacks_open) == "2"
    assert shown["Due within 30 minutes"] == str(live.callbacks_due_soon) == "1"
    assert shown["Due soon, not claimed"] == "1"
    assert shown["Overdue"] == str(live.callbacks_overdue) == "1"
    assert shown["Oldest open"] == "3 hours 20 minutes"
    assert shown["Not yet sent"] == "0"


def test_with_no_traffic_every_rule_shows_no_data_not_a_percentage(manager):
    page = manager.get("/service-levels").get_data(as_text=True)
    for kind in ("today", "week", "month"):
        for rule in RULES:
            assert table(page, kind)[rule][:4] == ["0", "0", "0", "No data"]
    assert dict(dl(page))["Oldest open"] == "None open"


def test_a_chosen_date_range_shows_its_figures_from_the_same_module(app, manager, clock, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
    page = manager.get("/service-levels?from=2026-10-01&to=2026-11-23").get_data(as_text=True)
    with database.session() as session:
        expected = figures(session, date_range_period(date(2026, 10, 1), date(2026, 11, 23)), settings, clock())
    shown = table(page, "range")
    for rule in RULES:
        assert shown[rule][:3] == [str(expected[rule].countable), str(expected[rule].met), str(expected[rule].breached)]
    assert shown["answer_within_rings"][:4] == ["5", "3", "2", "60.0%"]
    assert caption(page, "range") == "Chosen dates: Thursday 1 October 2026 to Monday 23 November 2026"
    assert 'value="2026-10-01"' in page


@pytest.mark.parametrize("query, message, field", [
    ("from=2026-11-30&to=2026-11-01", "The last day (Sunday 1 November 2026) is before the first day (Monday 30 November "
     "2026): swap the dates.", "to"),
    ("from=2026-13-01&to=2026-12-01", "The first date “2026-13-01” is not a date: use YYYY-MM-DD", "from"),
    ("from=2026-11-01", "Give both a first and a last date for the range.", "to"),
    ("from=yesterday&to=2026-11-01", "The first date “yesterday” is not a date: use YYYY-MM-DD", "from"),
    ("from=2026-11-01&to=1899-12-31", "The last date “1899-12-31” is out of range: use a date from 1900 to 9998.",
     "to"),
])
def test_a_bad_range_is_refused_at_its_field_with_the_form_and_the_other_figures_kept(manager, query, message, field):
    response = manager.get(f"/service-levels?{query}")
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and message in page and "<title>Error: Service levels" in page
    assert f'<a href="#{field}">' in page and f'<p class="error-message" id="{field}-error">' in page
    assert re.search(rf'id="{field}" name="{field}" value="[^"]*" required aria-invalid="true" '
                     rf'aria-describedby="{field}-error"', page)
    typed = dict(part.split("=") for part in query.split("&"))
    assert f'id="from" name="from" value="{typed.get("from", "")}"' in page  # as typed, to correct
    assert "Today" in page  # the rest of the page is still there


def test_agents_may_not_see_the_page_and_managers_find_it_in_the_navigation(app, client, db_session):
    make_user(db_session, "sam", "agent")
    sign_in(client, "sam")
    assert client.get("/service-levels").status_code == 403
    assert "Service levels" not in client.get("/queue").get_data(as_text=True)
    make_user(db_session, "alex", "manager")
    managers = app.test_client()
    sign_in(managers, "alex")
    home = managers.get("/service-levels").get_data(as_text=True)
    assert '<a href="/service-levels" aria-current="page">Service levels</a>' in home


def test_auditors_may_see_the_page_and_signed_out_visitors_are_sent_to_sign_in(client, db_session):
    assert client.get("/service-levels").status_code == 302
    make_user(db_session, "dwp", "auditor")
    sign_in(client, "dwp")
    assert client.get("/service-levels").status_code == 200


def test_the_rules_are_named_with_the_configured_rings_and_callback_window(migrated_url, clock, db_session):
    from tests.integration.conftest import make_app, make_settings

    app = make_app(migrated_url, make_settings(answer={"max_rings": 8}, callback={"within_minutes": 120}), clock)
    try:
        client = app.test_client()
        make_user(db_session, "alex", "manager")
        sign_in(client, "alex")
        page = client.get("/service-levels").get_data(as_text=True)
        calls = client.get("/calls").get_data(as_text=True)
        evidence = client.get("/evidence").get_data(as_text=True)
    finally:
        app.extensions["helpdesk.db"].dispose()
    assert '<th scope="row">Calls answered within 8 rings</th>' in page
    assert '<th scope="row">Callbacks within 2 hours</th>' in page
    assert "10 rings" not in page and "3 hours" not in page
    assert "8-ring target" in calls and "10-ring" not in calls  # the filter (the table needs calls)
    assert "calls answered within 8 rings, callbacks within\n  2 hours" in evidence
