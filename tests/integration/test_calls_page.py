"""The managers' Calls page: one UK day's calls, masked numbers, and the day's figures."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from helpdesk.models import Call, Enquiry, TwilioEvent
from tests.integration.test_users_and_login import csrf_token, make_user, sign_in
from tests.integration.twilio_requests import sid

DAY = "2026-11-24"  # a Tuesday in GMT; the test clock's today


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def add_call(db_session, n: int, arrived_at: datetime, *, outcome: str = "answered", answer_seconds: float | None = None,
             countable: bool = True, sla_result: str | None = None, caller: str | None = "+447700900123",
             caller_type: str = "customer", in_hours: bool = True, reference: str | None = None,
             from_api: bool = False, incoming_seen: bool = True, found_in_log: bool = False,
             enquiry_status: str = "open", agent: str | None = None,
             outcome_recorded_at: datetime | None = None) -> None:
    """A call as the projection would have stored it, with its enquiry; `found_in_log`: one that
    never reached the app, stored from Twilio's call log (with its api_log event)."""
    rings = None if answer_seconds is None else int(answer_seconds // 3) + 1
    enquiry = Enquiry(reference=reference or f"HD-2026-{n:06d}", channel="phone", opened_at=arrived_at,
                      call_sid=sid(n), status=enquiry_status, outcome_recorded_at=outcome_recorded_at)
    call = Call(
        call_sid=sid(n), arrived_at=arrived_at, outcome=outcome, in_hours=in_hours, countable=countable,
        sla_result=sla_result, caller_number=caller, caller_type=caller_type, rings=rings,
        answer_seconds=answer_seconds,
        answered_at=None if answer_seconds is None else arrived_at + timedelta(seconds=answer_seconds),
        enquiry=enquiry, from_api=from_api, incoming_seen=incoming_seen, agent=agent,
    )
    with db_session.begin():
        db_session.add(call)
        if found_in_log:
            call.from_api, call.incoming_seen = True, False
            db_session.add(TwilioEvent(received_at=arrived_at, kind="api_log", call_sid=sid(n), leg_sid=sid(n),
                                       fingerprint=f"{n:064d}", params="[]"))


@pytest.fixture
def manager(client, db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    return client


@pytest.fixture
def busy_day(db_session):
    """Three countable calls (two met, one breached) and two not counted, plus the days around."""
    add_call(db_session, 1, utc(2026, 11, 24, 9, 0, 5), answer_seconds=11.0, sla_result="met",
             enquiry_status="concluded")
    add_call(db_session, 2, utc(2026, 11, 24, 9, 30), answer_seconds=40.0, sla_result="breached",
             caller="+441234567890", caller_type="dwp")
    add_call(db_session, 3, utc(2026, 11, 24, 10, 15), answer_seconds=2.0, sla_result="met", caller=None,
             caller_type="unknown", enquiry_status="callback_owed")
    add_call(db_session, 4, utc(2026, 11, 24, 7, 0), outcome="out_of_hours", countable=False, in_hours=False,
             caller="+447700900456")
    add_call(db_session, 5, utc(2026, 11, 24, 11, 0), outcome="abandoned", countable=False, caller="+447700900789")
    add_call(db_session, 6, utc(2026, 11, 23, 23, 59, 59), answer_seconds=50.0, sla_result="breached")
    add_call(db_session, 7, utc(2026, 11, 25, 0, 0, 0), answer_seconds=50.0, sla_result="breached")


def figures(page: str) -> dict[str, str]:
    return dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", page))


def rows(page: str) -> list[list[str]]:
    """The table's body rows as lists of cell texts (tags removed)."""
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def references(page: str) -> list[str]:
    """The enquiry references the table's rows link to, in order."""
    return re.findall(r'><span class="reference">(HD-[0-9]{4}-[0-9]{6})</span></a>', page.split("<tbody>")[1])


def test_the_calls_page_shows_masked_numbers_and_never_the_full_number(manager, busy_day):
    page = manager.get(f"/calls?day={DAY}").get_data(as_text=True)
    assert "•••••••• 123" in page and "•••••••• 890" in page
    for full in ("+447700900123", "7700900123", "+441234567890", "1234567890"):
        assert full not in page
    assert "Withheld" in page


def test_the_calls_are_listed_newest_first_with_uk_times_rings_and_results(manager, busy_day):
    table = rows(manager.get(f"/calls?day={DAY}").get_data(as_text=True))
    assert [row[0] for row in table] == ["11:00:00", "10:15:00", "09:30:00", "09:00:05", "07:00:00"]
    abandoned, withheld, breached, met, out_of_hours = table
    assert breached[1:] == ["•••••••• 890Number ending 890", "DWP", "14", "40.0", "Answered", "Yes", "Breached",
                            "HD-2026-000002No outcome recorded"]
    assert met[3:9] == ["4", "11.0", "Answered", "Yes", "Met", "HD-2026-000001Concluded on the call"]
    assert withheld[1:3] == ["Withheld", "Unknown"]
    assert withheld[-1] == "HD-2026-000003Callback needed"
    assert abandoned[3:9] == ["", "", "Abandoned", "No", "", "HD-2026-000005"]  # no agent's word on a missed call
    assert out_of_hours[5:9] == ["Out of hours", "No", "", "HD-2026-000004"]


def test_the_day_summary_counts_offered_countable_met_breached_and_compliance(manager, busy_day):
    page = manager.get(f"/calls?day={DAY}").get_data(as_text=True)
    assert figures(page) == {"Calls offered": "5", "Countable": "3", "Met": "2", "Breached": "1",
                             "Compliance": "66.7%"}


def test_a_call_finished_from_twilios_call_record_says_so(manager, db_session):
    add_call(db_session, 1, utc(2026, 11, 24, 9, 0), answer_seconds=11.0, sla_result="met")
    add_call(db_session, 2, utc(2026, 11, 24, 9, 5), outcome="abandoned", countable=False, from_api=True)
    # Found in Twilio's call log: the app never heard of it at all.
    add_call(db_session, 3, utc(2026, 11, 24, 9, 10), outcome="failed", sla_result="breached", found_in_log=True)
    # Its incoming webhook lost, heard at the fallback URL, its ending from Twilio's API: it reached the
    # app, so it is not one that never did, though its record looks the same.
    add_call(db_session, 4, utc(2026, 11, 24, 9, 15), outcome="failed", sla_result="breached", from_api=True,
             incoming_seen=False)
    table = rows(manager.get(f"/calls?day={DAY}").get_data(as_text=True))
    assert [row[5] for row in table] == [
        "FailedFrom Twilio's call record: its last updates never reached the help desk",
        "FailedFrom Twilio's call log: the help desk never heard this call arrive",
        "AbandonedFrom Twilio's call record: its last updates never reached the help desk", "Answered"]


def never_reached_notice(page: str) -> str | None:
    found = re.search(r'<p class="notice" id="never-reached">(.*?)</p>', page, re.S)
    return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split()) if found else None


def test_a_day_with_calls_that_never_reached_the_help_desk_says_how_many_and_when(manager, db_session):
    add_call(db_session, 1, utc(2026, 11, 24, 9, 0), answer_seconds=11.0, sla_result="met")
    add_call(db_session, 2, utc(2026, 11, 24, 9, 5), outcome="abandoned", countable=False, from_api=True)
    for n, minute in ((3, 10), (4, 31), (5, 18)):
        add_call(db_session, n, utc(2026, 11, 24, 10, minute), outcome="failed", sla_result="breached",
                 found_in_log=True)
    add_call(db_session, 6, utc(2026, 11, 25, 9, 0), outcome="failed", sla_result="breached",
             found_in_log=True)  # the next day
    # Its incoming webhook lost, heard at the fallback URL, its ending from Twilio's API: it reached the app.
    add_call(db_session, 7, utc(2026, 11, 24, 10, 40), outcome="failed", sla_result="breached", from_api=True,
             incoming_seen=False)

    page = manager.get(f"/calls?day={DAY}").get_data(as_text=True)

    assert never_reached_notice(page) == (
        "3 calls on this day never reached the help desk: Twilio could not reach the app, so the callers may have "
        "heard Twilio's error message. The first arrived at 10:10:00, the last at 10:31:00. They were found later in "
        "Twilio's call log. Unless an agent answered, each counts as failed, and each caller who gave a number is "
        "owed a callback. Show only these calls")
    assert 'href="/calls?day=2026-11-24&amp;reached=no">Show only these calls' in page


def test_two_outages_on_one_day_are_told_apart_by_the_calls_that_reached_the_help_desk_between(
        manager, db_session):
    for n, (hour, minute) in enumerate(((9, 10), (9, 14), (9, 20), (16, 30), (16, 40)), start=1):
        add_call(db_session, n, utc(2026, 11, 24, hour, minute), outcome="failed", sla_result="breached",
                 found_in_log=True)
    add_call(db_session, 6, utc(2026, 11, 24, 12, 0), answer_seconds=11.0, sla_result="met")
    # Heard at the fallback URL: the caller heard the help desk, so this too ends a spell.
    add_call(db_session, 7, utc(2026, 11, 24, 16, 35), outcome="failed", sla_result="breached", from_api=True,
             incoming_seen=False)

    notice = never_reached_notice(manager.get(f"/calls?day={DAY}").get_data(as_text=True))

    assert ("They arrived in 3 separate spells, with calls that did reach the help desk in between: "
            "3 calls from 09:10:00 to 09:20:00, 1 call at 16:30:00 and 1 call at 16:40:00. "
            "They were found later") in notice
    assert notice.startswith("5 calls on this day never reached the help desk")


def test_a_day_of_many_outages_names_the_first_five_and_counts_the_rest(manager, db_session):
    for n in range(1, 8):
        add_call(db_session, 2 * n, utc(2026, 11, 24, 8 + n, 0), outcome="failed", sla_result="breached",
                 found_in_log=True)
        add_call(db_session, 2 * n + 1, utc(2026, 11, 24, 8 + n, 30), answer_seconds=5.0, sla_result="met")

    notice = never_reached_notice(manager.get(f"/calls?day={DAY}").get_data(as_text=True))

    assert ("They arrived in 7 separate spells, with calls that did reach the help desk in between: "
            "1 call at 09:00:00, 1 call at 10:00:00, 1 call at 11:00:00, 1 call at 12:00:00, 1 call at 13:00:00, "
            "and 2 more, the last of them at 15:00:00. They were found later") in notice


def test_the_reached_filter_lists_only_the_calls_that_never_reached_the_help_desk(manager, db_session):
    add_call(db_session, 1, utc(2026, 11, 24, 9, 0), answer_seconds=11.0, sla_result="met")
    add_call(db_session, 2, utc(2026, 11, 24, 9, 5), outcome="failed", sla_result="breached")  # fallback URL
    add_call(db_session, 3, utc(2026, 11, 24, 9, 10), outcome="abandoned", countable=False, from_api=True)
    add_call(db_session, 4, utc(2026, 11, 24, 12, 40), outcome="failed", sla_result="breached", found_in_log=True)

    page = manager.get(f"/calls?day={DAY}&reached=no").get_data(as_text=True)

    assert references(page) == ["HD-2026-000004"]
    assert "that never reached the help desk: 1 call." in " ".join(page.split())
    assert '<option value="no" selected>Never reached the help desk</option>' in page
    assert figures(page)["Calls offered"] == "4"  # the summary is still the whole day's
    assert never_reached_notice(page).startswith("1 call on this day never reached the help desk")
    assert "It arrived at 12:40:00." in never_reached_notice(page)
    assert "Show only" not in never_reached_notice(page)  # already shown


def test_a_day_where_every_call_reached_the_help_desk_has_no_notice_and_the_filter_finds_none(manager, busy_day):
    page = manager.get(f"/calls?day={DAY}").get_data(as_text=True)
    assert never_reached_notice(page) is None
    filtered = manager.get(f"/calls?day={DAY}&reached=no").get_data(as_text=True)
    assert "No calls on this day match these filters." in filtered


def test_a_reached_value_other_than_no_gets_a_400_page_saying_what_to_use_and_leading_back_to_the_day(manager):
    response = manager.get(f"/calls?day={DAY}&reached=yes")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "“yes” is not a choice here. Use reached=no" in page
    assert f'href="/calls?day={DAY}">Show all calls on Tuesday 24 November 2026</a>' in page
    assert 'href="/calls">Show today’s calls</a>' in manager.get("/calls?day=24/11/2026").get_data(as_text=True)


def test_calls_from_the_days_either_side_are_not_shown(manager, busy_day):
    page = manager.get(f"/calls?day={DAY}").get_data(as_text=True)
    assert "HD-2026-000006" not in page and "HD-2026-000007" not in page
    before = manager.get("/calls?day=2026-11-23").get_data(as_text=True)
    assert "HD-2026-000006" in before and "HD-2026-000001" not in before


def test_a_day_with_no_countable_calls_has_no_compliance_figure(manager, db_session):
    add_call(db_session, 1, utc(2026, 11, 22, 12, 0), outcome="out_of_hours", countable=False, in_hours=False)
    page = manager.get("/calls?day=2026-11-22").get_data(as_text=True)
    assert figures(page)["Compliance"] == "No data"
    assert figures(page)["Calls offered"] == "1" and "0.0%" not in page


def test_a_day_without_calls_says_so(manager):
    page = manager.get("/calls?day=2026-11-21").get_data(as_text=True)
    assert "No calls on this day." in page and figures(page)["Compliance"] == "No data"


def test_without_a_day_the_page_shows_today_by_the_apps_clock(manager, busy_day, clock):
    clock.now = utc(2026, 11, 24, 23, 30)
    sign_in(manager, "alex")  # 13 hours on: a session ends 12 hours after signing in
    page = manager.get("/calls").get_data(as_text=True)
    assert "<h1>Calls on Tuesday 24 November 2026</h1>" in page and "HD-2026-000001" in page


def test_a_summer_day_runs_from_midnight_bst(manager, db_session):
    add_call(db_session, 1, utc(2026, 7, 1, 23, 30), answer_seconds=5.0, sla_result="met")  # 00:30 BST on 2 July
    assert "HD-2026-000001" not in manager.get("/calls?day=2026-07-01").get_data(as_text=True)
    page = manager.get("/calls?day=2026-07-02").get_data(as_text=True)
    assert rows(page)[0][0] == "00:30:00"


def test_on_the_day_the_clocks_go_back_times_show_their_zone(manager, db_session):
    add_call(db_session, 1, utc(2026, 10, 25, 0, 30), outcome="out_of_hours", countable=False, in_hours=False)
    add_call(db_session, 2, utc(2026, 10, 25, 1, 30), outcome="out_of_hours", countable=False, in_hours=False)
    table = rows(manager.get("/calls?day=2026-10-25").get_data(as_text=True))
    assert [row[0] for row in table] == ["01:30:00 GMT", "01:30:00 BST"]


@pytest.mark.parametrize("day", ["2026-13-45", "2026-02-30", "yesterday", "20261124"])
def test_a_day_that_is_not_a_date_gets_a_400_page_saying_so(manager, day):
    response = manager.get(f"/calls?day={day}")
    assert response.status_code == 400
    assert "is not a date: use YYYY-MM-DD, for example 2026-11-24." in response.get_data(as_text=True)


@pytest.mark.parametrize("day", ["0001-01-01", "1899-12-31", "9999-01-01"])
def test_a_date_out_of_range_is_a_400_saying_so_rather_than_that_it_is_not_a_date(manager, day):
    response = manager.get(f"/calls?day={day}")
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "is not a date" not in page
    assert f"“{day}” is out of range: use a date from 1900 to 9998." in page


def test_a_long_bad_value_is_quoted_cut_short(manager):
    page = manager.get(f"/calls?day={'9' * 5000}").get_data(as_text=True)
    assert "“" + "9" * 30 + "…” is not a date:" in page and "9" * 31 not in page


def test_a_caller_value_with_a_script_tag_is_not_rendered_as_html(manager, db_session):
    add_call(db_session, 1, utc(2026, 11, 24, 9, 0), answer_seconds=3.0, sla_result="met",
             caller="<script>x</script>+447700900999", reference="<script>HD-1")
    page = manager.get(f"/calls?day={DAY}").get_data(as_text=True)
    assert "<script>" not in page
    assert "&lt;script&gt;HD-1" in page and "•••••••• 999" in page


def test_a_day_parameter_with_a_script_tag_is_escaped_in_the_error_page(manager):
    response = manager.get("/calls?day=<script>alert(1)</script>")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_the_previous_and_next_day_links_keep_the_filters(manager):
    page = manager.get(f"/calls?day={DAY}&outcome=answered").get_data(as_text=True)
    assert 'href="/calls?day=2026-11-23&amp;outcome=answered" rel="prev"' in page
    assert 'href="/calls?day=2026-11-25&amp;outcome=answered" rel="next"' in page


def test_the_outcome_filter_shows_only_that_outcome_but_the_summary_is_for_the_whole_day(manager, busy_day):
    page = manager.get(f"/calls?day={DAY}&outcome=abandoned").get_data(as_text=True)
    assert [row[5] for row in rows(page)] == ["Abandoned"]
    assert figures(page)["Calls offered"] == "5"


def test_the_result_filter_shows_only_breached_calls(manager, busy_day):
    page = manager.get(f"/calls?day={DAY}&result=breached").get_data(as_text=True)
    assert references(page) == ["HD-2026-000002"]


def test_an_unknown_filter_value_gets_a_400_page_naming_it(manager):
    response = manager.get(f"/calls?day={DAY}&outcome=exploded")
    assert response.status_code == 400 and "“exploded” is not an outcome" in response.get_data(as_text=True)


def test_a_big_day_is_split_into_pages(app, manager, busy_day):
    app.config["CALLS_PER_PAGE"] = 2
    first = manager.get(f"/calls?day={DAY}").get_data(as_text=True)
    assert [row[0] for row in rows(first)] == ["11:00:00", "10:15:00"]
    assert "Page 1 of 3" in first and 'href="/calls?day=2026-11-24&amp;page=2" rel="next"' in first
    third = manager.get(f"/calls?day={DAY}&page=3").get_data(as_text=True)
    assert [row[0] for row in rows(third)] == ["07:00:00"] and "Next page" not in third
    assert figures(third)["Calls offered"] == "5"
    assert manager.get(f"/calls?day={DAY}&page=4").status_code == 404
    huge = manager.get(f"/calls?day={DAY}&page=9999999")  # as any page past the last
    assert huge.status_code == 404 and "There is no page 9999999" in huge.get_data(as_text=True)
    app.config["CALLS_PER_PAGE"] = 200
    huger = manager.get(f"/calls?day={DAY}&page={10 ** 17}")  # its offset is past the database's integers
    assert huger.status_code == 404 and f"There is no page {10 ** 17}" in huger.get_data(as_text=True)
    assert manager.get(f"/calls?day={DAY}&page=0").status_code == 400


def test_the_calls_table_is_accessible_with_a_caption_and_column_headers(manager, busy_day):
    page = manager.get(f"/calls?day={DAY}").get_data(as_text=True)
    assert '<caption id="calls-caption">' in page
    assert page.count('<th scope="col"') == 9
    assert '<label for="day">Day</label>' in page and '<input type="date" id="day" name="day" value="2026-11-24"' in page
    assert 'aria-current="page">Calls</a>' in page


# --------------------------------------------------------------------------- outcomes never recorded


def no_outcome_notice(page: str) -> str | None:
    found = re.search(r'<p class="notice" id="no-outcome">(.*?)</p>', page, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split()) if found else None


def test_todays_answered_calls_with_no_outcome_are_counted_and_can_be_shown_alone(manager, busy_day):
    """Of the day's three answered calls, one has no outcome: an agent concluded one and said the
    other needs a callback. The answered calls just before and after the day are not counted."""
    page = manager.get(f"/calls?day={DAY}").get_data(as_text=True)

    assert no_outcome_notice(page) == (
        "1 answered call on this day has no outcome recorded yet: no agent has said whether its enquiry was "
        "concluded on the call or needs a callback. It is on the agents' page until an agent does. "
        "Show only this call")
    assert 'href="/calls?day=2026-11-24&amp;recorded=no">Show only this call' in page

    shown = manager.get(f"/calls?day={DAY}&recorded=no").get_data(as_text=True)
    assert references(shown) == ["HD-2026-000002"]
    assert "answered with no outcome recorded: 1 call." in " ".join(shown.split())
    assert '<option value="no" selected>Answered, no outcome recorded</option>' in shown
    assert figures(shown)["Calls offered"] == "5"  # the summary is still the whole day's
    assert "Show only" not in no_outcome_notice(shown)  # already shown


def test_an_earlier_days_calls_with_no_outcome_say_none_was_ever_recorded(manager, db_session):
    thursday = "2026-11-19"  # before Monday, the last day the desk was open before the test's today
    add_call(db_session, 1, utc(2026, 11, 19, 9, 0), answer_seconds=5.0, sla_result="met")
    add_call(db_session, 2, utc(2026, 11, 19, 9, 30), answer_seconds=5.0, sla_result="met")
    add_call(db_session, 3, utc(2026, 11, 19, 10, 0), answer_seconds=5.0, sla_result="met", enquiry_status="concluded")
    add_call(db_session, 4, utc(2026, 11, 19, 11, 0), outcome="abandoned", countable=False)  # an open missed call

    page = manager.get(f"/calls?day={thursday}").get_data(as_text=True)

    assert no_outcome_notice(page) == (
        "2 answered calls on this day have no outcome recorded: no agent said whether each enquiry was concluded "
        "on the call or needed a callback, so no callback was owed for them. The evidence pack counts them as "
        "none recorded. An agent can still record them on the agents' page, with older calls shown . "
        "Show only these calls")
    assert 'href="/queue?older=yes#awaiting">the agents' in page
    assert references(manager.get(f"/calls?day={thursday}&recorded=no").get_data(as_text=True)) == [
        "HD-2026-000002", "HD-2026-000001"]
    # With the other filters: only the answered calls with no outcome that also match them.
    assert "No calls on this day match these filters." in manager.get(
        f"/calls?day={thursday}&recorded=no&outcome=abandoned").get_data(as_text=True)


def test_the_agents_page_is_offered_only_to_those_who_may_see_it_and_only_for_the_last_four_weeks(
        client, db_session):
    add_call(db_session, 1, utc(2026, 10, 27, 9, 0), answer_seconds=5.0, sla_result="met")  # 28 days before
    add_call(db_session, 2, utc(2026, 10, 26, 9, 0), answer_seconds=5.0, sla_result="met")  # 29 days before
    make_user(db_session, "alex", "manager")
    make_user(db_session, "dana", "auditor")
    sign_in(client, "alex")
    assert "older calls shown" in no_outcome_notice(client.get("/calls?day=2026-10-27").get_data(as_text=True))
    assert "older calls shown" not in no_outcome_notice(client.get("/calls?day=2026-10-26").get_data(as_text=True))
    client.post("/logout", data={"csrf_token": csrf_token(client, "/calls")})
    sign_in(client, "dana")
    notice = no_outcome_notice(client.get("/calls?day=2026-10-27").get_data(as_text=True))
    assert notice.startswith("1 answered call on this day has no outcome recorded") and "agents' page" not in notice


def test_a_day_whose_outcomes_were_all_recorded_has_no_notice_and_the_filter_finds_none(manager, db_session):
    add_call(db_session, 1, utc(2026, 11, 24, 9, 0), answer_seconds=5.0, sla_result="met", enquiry_status="concluded")
    add_call(db_session, 2, utc(2026, 11, 24, 9, 5), outcome="abandoned", countable=False)
    page = manager.get(f"/calls?day={DAY}").get_data(as_text=True)
    assert no_outcome_notice(page) is None
    assert "No calls on this day match these filters." in manager.get(f"/calls?day={DAY}&recorded=no").get_data(
        as_text=True)


def test_a_recorded_value_other_than_no_gets_a_400_page_saying_what_to_use(manager):
    response = manager.get(f"/calls?day={DAY}&recorded=yes")
    page = " ".join(response.get_data(as_text=True).split())
    assert response.status_code == 400
    assert ("“yes” is not a choice here. Use recorded=no for the answered calls with no outcome recorded, "
            "recorded=late for the answered calls whose outcome was recorded over a day after the answer, or leave "
            "it out for every call.") in page
    assert 'href="/calls?day=2026-11-24"' in page


def test_outcomes_recorded_more_than_a_day_after_the_answer_say_when_and_can_be_shown_alone(manager, db_session):
    thursday = "2026-11-19"
    # Answered at 09:00:05, concluded a day later to the microsecond: not late.
    add_call(db_session, 1, utc(2026, 11, 19, 9, 0), answer_seconds=5.0, sla_result="met", enquiry_status="concluded",
             outcome_recorded_at=utc(2026, 11, 20, 9, 0, 5))
    # Answered at 09:30:05, a callback needed a day and a microsecond later: late.
    add_call(db_session, 2, utc(2026, 11, 19, 9, 30), answer_seconds=5.0, sla_result="met",
             enquiry_status="callback_owed", outcome_recorded_at=utc(2026, 11, 20, 9, 30, 5, 1))
    # Concluded nearly two weeks later, from the agents' page with older calls shown.
    add_call(db_session, 3, utc(2026, 11, 19, 10, 0), answer_seconds=5.0, sla_result="met",
             enquiry_status="concluded", outcome_recorded_at=utc(2026, 12, 2, 16, 0))
    add_call(db_session, 4, utc(2026, 11, 19, 10, 30), answer_seconds=5.0, sla_result="met")  # none recorded
    add_call(db_session, 5, utc(2026, 11, 19, 11, 0), outcome="abandoned", countable=False)

    page = manager.get(f"/calls?day={thursday}").get_data(as_text=True)

    assert [row[-1] for row in rows(page)] == [
        "HD-2026-000005", "HD-2026-000004No outcome recorded",
        "HD-2026-000003Concluded on the callRecorded late: 02 Dec 2026 16:00:00 GMT",
        "HD-2026-000002Callback neededRecorded late: 20 Nov 2026 09:30:05 GMT",
        "HD-2026-000001Concluded on the call"]
    assert '<time datetime="2026-12-02T16:00:00+00:00">' in page

    shown = manager.get(f"/calls?day={thursday}&recorded=late").get_data(as_text=True)
    assert references(shown) == ["HD-2026-000003", "HD-2026-000002"]
    assert "answered with an outcome recorded late: 2 calls." in " ".join(shown.split())
    assert '<option value="late" selected>Answered, outcome recorded late</option>' in shown
    assert figures(shown)["Calls offered"] == "5"  # the summary is still the whole day's
    assert references(manager.get(f"/calls?day={thursday}&recorded=late&result=met").get_data(as_text=True)) == [
        "HD-2026-000003", "HD-2026-000002"]
    assert "No calls on this day match these filters." in manager.get(
        f"/calls?day={thursday}&recorded=late&outcome=abandoned").get_data(as_text=True)


def test_the_answered_by_column_names_who_took_each_call(app, client, db_session, clock):
    from tests.integration.test_queue_page import add_agent, answer_a_call, at, miss_a_call

    add_agent(app, "alice", "Alice Agent", phone="+447700900555")
    add_agent(app, "bob", "Bob Agent", phone=None)
    answer_a_call(client, clock, 1, at(9, 0), on="+447700900555")
    answer_a_call(client, clock, 2, at(9, 10), on="client:bob")
    answer_a_call(client, clock, 3, at(9, 20), on="+447700900999")  # nobody's phone
    miss_a_call(client, clock, 4, at(9, 30))
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")

    page = client.get(f"/calls?day={DAY}").get_data(as_text=True)

    assert '<th scope="col">Answered by</th>' in page
    assert [row[5:7] for row in rows(page)] == [
        ["Abandoned", ""], ["Answered", "•••••••• 999"], ["Answered", "Bob Agent"], ["Answered", "Alice Agent"]]
    assert "+447700900999" not in page


def test_calls_that_reached_agents_through_a_queue_have_no_answered_by_column(manager, busy_day):
    page = manager.get(f"/calls?day={DAY}").get_data(as_text=True)
    assert "Answered by" not in page  # no call says which phone took it

