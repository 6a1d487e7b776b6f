"""The help desk's three dashboards, as Grafana 11.6 JSON dictionaries.

Figures that come from the database (every series except `up` and the HTTP ones) are the same
on every app node, so queries take `max` across scraped instances instead of adding them up.
Compliance stat panels are instant queries: a period with nothing countable has no series, and
the panel says "No data" rather than showing the last value seen or 0 %.
"""
from __future__ import annotations

from callbacks.awaiting import OLDER_DAYS
from metrics.dashboards.panels import (
    AMBER, BLUE, GREEN, RED, Layout, bar_gauge, dashboard, dashboard_links, field_config, heatmap, stat,
    target, thresholds, time_series, value_text,
)

RULES = {
    "answer_within_rings": "Calls answered within 10 rings",
    "callback_within_3h": "Callbacks within 3 hours",
    "email_ack": "Emails acknowledged within 15 minutes",
}
PERIODS = {"today": "Today", "week": "This week", "month": "This month"}
RING_SECONDS = 3
# Histogram buckets beyond the tenth ring (seconds), as the collector exports them.
LATE_BUCKETS = (45, 60, 90, 120, 300)
RANGE = "$__range"  # Grafana's selected time range, e.g. "today so far"
HOURLY = "1h"


def le(seconds: float | str) -> str:
    """A bucket's `le` label exactly as the collector writes it ("30.0", "+Inf")."""
    return seconds if isinstance(seconds, str) else f"{float(seconds)}"


def increase(series: str, window: str, by: str = "") -> str:
    """How much a database counter grew in `window`, once per label set (not once per node)."""
    grouping = f" by ({by})" if by else ""
    return f"max{grouping} (increase({series}[{window}]))"


def shown_ratio(query: str) -> str:
    """A compliance ratio for a one-decimal percentage: never 100.0% while anything was breached
    (0.9995 is shown as 99.9%), as the app's pages round."""
    return f"clamp_max({query} < 1, 0.999) or {query}"


def calls_outside_target(window: str) -> str:
    return (f"{increase('helpdesk_calls_countable_total', window)} - "
            f"{increase('helpdesk_calls_answered_within_target_total', window)}")


def bucket_count(lower: float | None, upper: float | str, window: str) -> str:
    """Answered calls whose wait was in (lower, upper] seconds, from the cumulative buckets."""
    def cumulative(seconds: float | str) -> str:
        return increase(f'helpdesk_call_answer_seconds_bucket{{le="{le(seconds)}"}}', window)

    if lower is None:
        return cumulative(upper)
    return f"{cumulative(upper)} - {cumulative(lower)}"


def percent_fields(target_ratio: float) -> dict:
    """0-100 %, red below the target, green at or above it, "No data" when absent."""
    return field_config("percentunit", steps=thresholds((0, RED), (target_ratio, GREEN)), minimum=0, maximum=1,
                        decimals=1)


# When an answered call's wait for an outcome turns red: the alert HelpdeskCallOutcomesNotRecorded's 30 minutes.
OUTCOME_LATE_SECONDS = 30 * 60


def count_fields(bad_from: int | None = None, colour: str = RED) -> dict:
    """Whole numbers; coloured from `bad_from` upwards when any is a problem."""
    steps = thresholds((0, GREEN), (bad_from, colour)) if bad_from is not None else thresholds((0, BLUE))
    return field_config("short", steps=steps, decimals=0, minimum=0)


def open_closed() -> list[dict]:
    return [value_text("1", "Open", GREEN), value_text("0", "Closed", "text")]


# ------------------------------------------------------------------------------------------ dashboards


def compliance_dashboard(targets: dict[str, float]) -> dict:
    """Compliance today, this week and this month against each target, and the breaches."""
    layout = Layout()
    for sla, title in RULES.items():
        layout.row(title)
        for period, period_title in PERIODS.items():
            query = shown_ratio(f'max(helpdesk_sla_compliance_ratio{{sla="{sla}",period="{period}"}})')
            layout.add(stat(period_title, [target(query, period_title, instant=True)], percent_fields(targets[sla])),
                       width=6, height=5)
        layout.add(stat("Target", [target(f'max(helpdesk_sla_target_ratio{{sla="{sla}"}})', "Target", instant=True)],
                        field_config("percentunit", decimals=1)), width=6, height=5)
        # The counts behind each percentage: 100 % of one call is not 100 % of a hundred.
        for period, period_title in PERIODS.items():
            counts = [target(f'max(helpdesk_sla_{figure}{{sla="{sla}",period="{period}"}})', legend, ref,
                             instant=True)
                      for ref, (figure, legend) in zip("AB", (("met", "Met"), ("countable", "Countable")))]
            layout.add(stat(f"{period_title}: met and countable", counts, count_fields(), text_mode="value_and_name"),
                       width=6, height=3)

    layout.row("Today's compliance through the day")
    queries = [target(f'max(helpdesk_sla_compliance_ratio{{sla="{sla}",period="today"}})', title, ref)
               for ref, (sla, title) in zip("ABC", RULES.items())]
    queries.append(target("min(helpdesk_sla_target_ratio)", "Lowest target", "D"))
    layout.add(time_series("Compliance today, as it stood at each moment", queries,
                           field_config("percentunit", minimum=0, maximum=1, decimals=1)), width=24, height=8)

    layout.row("Breaches")
    breaches = {
        "Calls not answered within 10 rings": calls_outside_target,
        "Callbacks breached": lambda window: increase('helpdesk_callbacks_total{result="breached"}', window),
        "Emails acknowledged late": lambda window: increase('helpdesk_emails_acknowledged_total{result="late"}',
                                                            window),
    }
    for title, query in breaches.items():
        layout.add(stat(f"{title} in the time range", [target(query(RANGE), title, instant=True)],
                        count_fields(bad_from=1)), width=8, height=4)
    for title, query in breaches.items():
        layout.add(time_series(f"{title}, per hour", [target(query(HOURLY), title, interval=HOURLY)],
                               count_fields(), bars=True), width=8, height=8)

    layout.row("Service")
    layout.add(stat("Help desk", [target("max(helpdesk_open)", "Help desk", instant=True)],
                    field_config(mappings=open_closed(), steps=thresholds((0, "text")))), width=3, height=4)
    layout.add(stat("Metrics scrape", [target('max(up{job="helpdesk"})', "Scrape", instant=True)],
                    field_config(steps=thresholds((0, RED), (1, GREEN)),
                                 mappings=[value_text("1", "Up", GREEN), value_text("0", "Down", RED)])),
               width=3, height=4)
    # Both have alerts; here a manager sees them without opening Alertmanager.
    layout.add(stat("Webhooks not stored yet", [target("sum(helpdesk_webhooks_spooled)", "Spooled", instant=True)],
                    count_fields(bad_from=1)), width=3, height=4)
    layout.add(stat("Calls with no ending", [target("max(helpdesk_calls_unfinished)", "Unfinished", instant=True)],
                    count_fields(bad_from=1)), width=3, height=4)
    # A wrong auth token or public address: Twilio's calls are refused and missing from every figure.
    layout.add(stat("Twilio webhooks refused in the time range",
                    [target(f'sum(increase(helpdesk_http_requests_total{{endpoint=~"voice\\\\..+",'
                            f'status=~"4..|5.."}}[{RANGE}])) or vector(0)', "Refused", instant=True)],
                    count_fields(bad_from=1)), width=4, height=4)
    # A phone system wanting a login the app does not give: its desk phones never ring.
    layout.add(stat("Calls to SIP addresses the phone system refused, in the time range",
                    [target(f"sum(increase(helpdesk_sip_calls_refused_total[{RANGE}])) or vector(0)", "Refused",
                            instant=True)],
                    count_fields(bad_from=1)), width=4, height=4)
    # The app was down or unreachable: found afterwards in Twilio's call log, their callers owed callbacks.
    # From the last-hour gauge: increase() of the counter misses a find no scrape preceded.
    layout.add(stat("Calls that never reached the app: most found in an hour, in the time range",
                    [target(f"max(max_over_time(helpdesk_calls_found_in_twilio_log_last_hour[{RANGE}])) or vector(0)",
                            "Never reached", instant=True)],
                    count_fields(bad_from=1)), width=4, height=4)
    requests = "sum by (endpoint) (rate(helpdesk_http_requests_total[$__rate_interval]))"
    layout.add(time_series("Requests per second, by page", [target(requests, "{{endpoint}}")],
                           field_config("reqps")), width=8, height=8)
    errors = ('sum(rate(helpdesk_http_requests_total{status=~"5.."}[$__rate_interval])) '
              "or 0 * sum(rate(helpdesk_http_requests_total[$__rate_interval]))")
    latency = ("histogram_quantile(0.95, sum by (le, endpoint) "
               "(rate(helpdesk_http_request_duration_seconds_bucket[$__rate_interval])))")
    layout.add(time_series("Slowest 5% of requests take longer than, by page",
                           [target(latency, "{{endpoint}}")], field_config("s")), width=8, height=8)
    layout.add(time_series("Server errors per second", [target(errors, "Server errors")], field_config("reqps")),
               width=8, height=8)
    layout.add(time_series("Time to read the figures from the database, per scrape", [
        target("max by (instance) (helpdesk_metrics_read_seconds)", "{{instance}}")
    ], field_config("s")), width=8, height=8)
    return dashboard("helpdesk-compliance", "Help desk: service levels",
                     "Compliance with the answer, callback and email rules against their targets, and breaches.",
                     layout, links=dashboard_links())


def calls_dashboard() -> dict:
    """Calls offered, per hour, and how long callers waited, counted in rings."""
    layout = Layout()
    layout.row("Calls in the time range")
    offered = f"sum({increase('helpdesk_calls_total', RANGE, 'outcome, caller_type')})"
    figures = [
        ("Calls", offered, count_fields()),
        ("Countable for the 10-ring rule", increase("helpdesk_calls_countable_total", RANGE), count_fields()),
        ("Answered within 10 rings", increase("helpdesk_calls_answered_within_target_total", RANGE),
         count_fields()),
        ("Not answered within 10 rings", calls_outside_target(RANGE), count_fields(bad_from=1)),
    ]
    for title, query, fields in figures:
        layout.add(stat(title, [target(query, title, instant=True)], fields), width=3, height=4)
    # Of the calls not sent to the out-of-hours message: not targets. The Service levels page's
    # "How quickly" goes by each call's opening hours instead, so a call that never reached the
    # app out of hours (found in Twilio's call log, "failed") counts here and not there (the
    # series have no in-hours label). No calls: "No data", not 0 %.
    in_hours = increase('helpdesk_calls_total{outcome!="out_of_hours"}', RANGE, "outcome, caller_type")
    for title, outcome in (("Answered, of calls in hours", "answered"),
                           ("Caller hung up first, of calls in hours", "abandoned")):
        these = increase(f'helpdesk_calls_total{{outcome="{outcome}"}}', RANGE, "outcome, caller_type")
        share = f"sum({these}) / (sum({in_hours}) > 0)"
        layout.add(stat(title, [target(share, title, instant=True)],
                        field_config("percentunit", minimum=0, maximum=1, decimals=1)), width=3, height=4)
    layout.add(stat("Since the last answered call",
                    # Never below 0: a Twilio timestamp may run a little ahead of this server's clock.
                    [target("clamp_min(time() - max(helpdesk_last_answered_call_timestamp_seconds), 0)", "Since",
                            instant=True)],
                    field_config("dtdurations", steps=thresholds((0, BLUE)))), width=3, height=4)
    layout.add(stat("Help desk", [target("max(helpdesk_open)", "Help desk", instant=True)],
                    field_config(mappings=open_closed(), steps=thresholds((0, "text")))), width=3, height=4)

    layout.row("Calls per hour")
    for label, title in (("outcome", "Calls per hour, by outcome"), ("caller_type", "Calls per hour, by caller")):
        query = f"sum by ({label}) ({increase('helpdesk_calls_total', HOURLY, 'outcome, caller_type')})"
        layout.add(time_series(title, [target(query, f"{{{{{label}}}}}", interval=HOURLY)], count_fields(),
                               bars=True, stacked=True), width=12, height=8)

    layout.row("How long callers waited (one ring = 3 seconds)")
    within = [target(bucket_count(None if ring == 1 else (ring - 1) * RING_SECONDS, ring * RING_SECONDS, RANGE),
                     f"Ring {ring}", f"R{ring}", instant=True) for ring in range(1, 11)]
    layout.add(bar_gauge("Answered calls, by the ring they were answered in", within,
                         field_config("short", steps=thresholds((0, GREEN)), decimals=0, minimum=0)),
               width=12, height=12)
    edges = [30, *LATE_BUCKETS, "+Inf"]
    late = []
    for index, (lower, upper) in enumerate(zip(edges, edges[1:])):
        rings = (f"More than {lower // RING_SECONDS} rings" if upper == "+Inf"
                 else f"{lower // RING_SECONDS + 1} to {upper // RING_SECONDS} rings")
        late.append(target(bucket_count(lower, upper, RANGE), rings, f"L{index + 1}", instant=True))
    layout.add(bar_gauge("Answered after the 10th ring", late,
                         field_config("short", steps=thresholds((0, RED)), decimals=0, minimum=0)),
               width=12, height=12)
    buckets = "max by (le) (increase(helpdesk_call_answer_seconds_bucket[$__interval]))"
    layout.add(heatmap("Answer time through the day (seconds)", [target(buckets, "{{le}}", fmt="heatmap",
                                                                       interval="5m")],
                       field_config("short")), width=12, height=8)
    quantile = ("histogram_quantile({q}, max by (le) "
                "(increase(helpdesk_call_answer_seconds_bucket[{window}])))")
    layout.add(time_series("Answer time: median and slowest 10%", [
        target(quantile.format(q=0.5, window=HOURLY), "Median", "A", interval=HOURLY),
        target(quantile.format(q=0.9, window=HOURLY), "90th percentile", "B", interval=HOURLY),
    ], field_config("s", steps=thresholds((0, GREEN), (30, RED)))), width=12, height=8)
    return dashboard("helpdesk-calls", "Help desk: calls",
                     "Calls per hour by outcome and caller, and the answer time in rings.", layout,
                     links=dashboard_links())


def callbacks_email_dashboard() -> dict:
    """The callback queue and email acknowledgements, now and over time."""
    layout = Layout()
    layout.row("Callbacks now")
    now = [
        ("Open", "helpdesk_callbacks_open", count_fields()),
        ("Due soon", "helpdesk_callbacks_due_soon", count_fields(bad_from=1, colour=AMBER)),
        ("Due soon, not claimed", "helpdesk_callbacks_due_soon_unclaimed", count_fields(bad_from=1)),
        ("Overdue", "helpdesk_callbacks_overdue", count_fields(bad_from=1)),
    ]
    for title, series, fields in now:
        layout.add(stat(title, [target(f"max({series})", title, instant=True)], fields), width=5, height=4)
    # Age since the contact, not time to the deadline (on the business clock a callback owed at
    # 16:30 is due next morning): no colours here; "Overdue" beside it says what is late.
    layout.add(stat("Oldest open callback, since its contact",
                    [target("max(helpdesk_callback_oldest_open_age_seconds)", "Oldest", instant=True)],
                    field_config("dtdurations", steps=thresholds((0, BLUE)))),
               width=4, height=4)

    # An answered call's enquiry not concluded is owed a callback from the call's arrival, but
    # only once an agent says so: a call left without an outcome eats into those three hours.
    layout.row("Answered calls awaiting an outcome")
    layout.add(stat("Awaiting an outcome", [target("max(helpdesk_calls_awaiting_outcome)", "Awaiting",
                                                   instant=True)], count_fields()), width=4, height=4)
    layout.add(stat("Longest wait since a call ended",
                    [target("max(helpdesk_call_awaiting_outcome_oldest_seconds)", "Longest", instant=True)],
                    field_config("dtdurations", steps=thresholds((0, GREEN), (OUTCOME_LATE_SECONDS / 3, AMBER),
                                                                 (OUTCOME_LATE_SECONDS, RED)))),
               width=4, height=4)
    # Earlier days' calls, never recorded on the day: any is amber, as its callback, if one is
    # needed, is most likely overdue already (a whole opening day has passed since).
    layout.add(stat(f"Older, last {OLDER_DAYS} days", [target("max(helpdesk_calls_awaiting_outcome_older)", "Older",
                                                              instant=True)],
                    count_fields(1, AMBER)), width=4, height=4)
    layout.add(time_series("Answered calls awaiting an outcome", [
        target("max(helpdesk_calls_awaiting_outcome)", "Awaiting an outcome")], count_fields()), width=12, height=4)

    layout.row("Callbacks over time")
    layout.add(time_series("Callbacks open, due soon and overdue", [
        target(f"max({series})", title, ref) for ref, (title, series, _) in zip("ABCD", now)
    ], count_fields()), width=12, height=8)
    layout.add(time_series("Callbacks met and breached, per hour", [
        target(increase("helpdesk_callbacks_total", HOURLY, "result"), "{{result}}", interval=HOURLY)
    ], count_fields(), bars=True, stacked=True), width=6, height=8)
    layout.add(bar_gauge("Callbacks met and breached in the time range", [
        target(increase("helpdesk_callbacks_total", RANGE, "result"), "{{result}}", instant=True)
    ], count_fields()), width=6, height=8)

    layout.row("Email acknowledgements")
    email = [
        ("Emails received", increase("helpdesk_emails_received_total", RANGE), count_fields()),
        ("Acknowledged in time", increase('helpdesk_emails_acknowledged_total{result="met"}', RANGE),
         count_fields()),
        ("Acknowledged late", increase('helpdesk_emails_acknowledged_total{result="late"}', RANGE),
         count_fields(bad_from=1)),
        ("Waiting for acknowledgement", "max(helpdesk_emails_unacknowledged)", count_fields()),
        ("Past the target, not acknowledged", "max(helpdesk_emails_unacknowledged_overdue)",
         count_fields(bad_from=1)),
    ]
    for title, query, fields in email:
        layout.add(stat(title, [target(query, title, instant=True)], fields), width=24 // len(email), height=4)
    layout.add(time_series("Emails received and acknowledged, per hour", [
        target(increase("helpdesk_emails_received_total", HOURLY), "Received", "A", interval=HOURLY),
        target(increase("helpdesk_emails_acknowledged_total", HOURLY, "result"), "Acknowledged: {{result}}", "B",
               interval=HOURLY),
    ], count_fields(), bars=True), width=12, height=8)
    layout.add(time_series("Emails waiting for acknowledgement", [
        target("max(helpdesk_emails_unacknowledged)", "Waiting", "A"),
        target("max(helpdesk_emails_unacknowledged_overdue)", "Past the target", "B"),
    ], count_fields()), width=12, height=8)
    return dashboard("helpdesk-callbacks-email", "Help desk: callbacks and email",
                     "The callback queue against the three-hour rule, and email acknowledgements.", layout,
                     links=dashboard_links())
