"""columns.csv: what every column of the pack's CSV files means, inside the pack itself.

An auditor reading a pack months later may not have the README of the version that made it;
the pack says what its own columns mean. Every column a CSV can have is defined here, and the
pack's tests check that no column is written without a definition.
"""
from __future__ import annotations

from metrics.evidence.rows import NOTE

COLUMNS_FILE = "columns.csv"
HEADER = ["file", "column", "meaning"]

TIMES = "UK time (ISO 8601 with its offset from UTC)"
NOTE_MEANING = "The agent's note, when the pack was made with notes included; blank otherwise"
DEFINITIONS: dict[str, dict[str, str]] = {
    "summary.csv": {
        "level": "day, week (ISO week, cut at the ends of the range), month, or range (the whole period)",
        "period": "The period's name: 2026-11-24, 2026-W48, 2026-11, or \"range\" for the whole period (its days are "
                  "first_day and last_day)",
        "first_day": "The period's first UK date, inclusive",
        "last_day": "The period's last UK date, inclusive",
        "rule": "answer_within_rings (calls answered within the ring target), callback_within_3h (first callback "
                "attempt by its due time), email_ack (acknowledgement sent within its target)",
        "countable": "Items that count for the rule in the period: met plus breached",
        "met": "Countable items that met the rule",
        "breached": "Countable items that did not meet the rule",
        "compliance": "met / countable as a fraction to four decimals, a half rounded up; blank when nothing was "
                      "countable (no data, never 0)",
        "lost_in_restore": f"Where the help desk's database was restored from a backup, the time it lost that "
                           f"overlaps the period, from/to in {TIMES}, several separated by \"; \": what came in "
                           "then is missing from every file and figure; blank otherwise",
    },
    "calls.csv": {
        "call_sid": "Twilio's identifier of the call (CA...), to find it in Twilio's own records",
        "arrived": f"When the incoming-call webhook reached the help desk, {TIMES}; with arrival_estimated yes, "
                   "when the call started by its other events or Twilio's record of it",
        "answered": f"When a person answered (an agent's leg, or an agent taking the caller from the queue), {TIMES}; "
                    "blank if nobody did",
        "ended": f"When the call ended, from Twilio's final status callback (with from_twilio_api yes, from "
                 f"Twilio's record of the call), {TIMES}",
        "answer_seconds": "answered minus arrived, in seconds, exact to the microsecond as stored (no trailing zeros)",
        "rings": "The ring the call was answered on: floor(answer_seconds / ring period) + 1",
        "outcome": "answered, abandoned (the caller hung up first), no_answer, voicemail, out_of_hours, failed, "
                   "or in_progress",
        "in_hours": "yes when the call arrived while the help desk was open",
        "counted": "yes when the call counts for the ten-ring rule (in hours, and decided)",
        "ten_ring_result": "met or breached when counted; blank otherwise",
        "caller_type": "dwp (a known DWP number, or the menu's DWP key), customer (the menu's customer key), "
                       "or unknown",
        "enquiry_reference": "The enquiry the call opened (HD-YYYY-NNNNNN)",
        "caller": "The caller's number, masked to its last three digits unless the pack is unmasked; withheld "
                  "when the caller withheld it; removed once the retention period had passed (helpdesk anonymise)",
        "from_twilio_api": "yes when the call's last webhooks never came and its record was finished from "
                           "Twilio's REST API (to the second)",
        "arrival_estimated": "yes when the incoming-call webhook never reached the help desk, so arrived is the "
                             "earliest moment the call's other events vouch for",
        "found_in_call_log": "yes when the call never reached the help desk (the app could not be reached when "
                             "it rang) and was found afterwards in Twilio's call log, which its times come from",
        "config_version": "The configuration version (a hash of the configuration file) whose rules judged the "
                          "call; blank if none was recorded. manifest.json gives the "
                          "version in force when the pack was made",
        "enquiry_outcome": "For an answered call, what an agent recorded of its enquiry: concluded (on the call), "
                           "callback_needed (a callback is owed, in callbacks.csv), or none_recorded (neither, so "
                           "no callback is owed for it); blank for a call not answered (its callback, if owed, "
                           "is owed by itself)",
        "enquiry_outcome_recorded": f"When the agent recorded enquiry_outcome (concluded or callback_needed), "
                                    f"{TIMES}; blank for none_recorded and for a call not answered. An agent can "
                                    "record an outcome up to 28 days after the call, so this shows one recorded late",
    },
    "callbacks.csv": {
        "callback_id": "The callback's number, joining callback_attempts.csv",
        "enquiry_reference": "The enquiry the callback is for (HD-YYYY-NNNNNN)",
        "reason": "Why it is owed: abandoned, no_answer, voicemail, out_of_hours, failed (a missed call), "
                  "not_concluded (an answered call whose enquiry was not concluded on it), or email (an email "
                  "enquiry that could not be concluded by email)",
        "caller_type": "dwp, customer or unknown, as for the call (unknown for an email enquiry)",
        "caller": "The number to call back, masked as in calls.csv",
        "owed_from": f"When the three-hour clock started (the call's arrival, or the receipt of the newest email "
                     f"the agent had read), {TIMES}",
        "due": f"When the first attempt was due, {TIMES}",
        "clock": "business (only opening hours count towards the deadline) or elapsed (the wall clock)",
        "deadline_explanation": "How due was worked out: when the clock started, and the closed hours, bank "
                                "holidays, closures and clock changes it crossed",
        "attempts": "Attempts made that dialled the caller",
        "first_attempt": f"When the caller was first dialled back, {TIMES}; blank if never",
        "reached": f"When an attempt first reached the caller, {TIMES}; blank if none did",
        "counted": "yes when the callback counts for the three-hour rule (decided, or past due with no attempt in "
                   "time; not withdrawn first)",
        "three_hour_result": "met (first attempt at or before due) or breached, when counted; blank otherwise. "
                             "Breached with breach_recorded blank: past due with no attempt when the pack was made, "
                             "and not yet recorded by the scheduler's sweep",
        "breach_recorded": f"When a breach was recorded (the due time), {TIMES}; blank if none was. With "
                           "three_hour_result met, the breach was corrected: an attempt made in time was entered "
                           "after the deadline (see recorded in callback_attempts.csv)",
        "status": "open (still to be worked) or closed",
        "closed": f"When it was closed, {TIMES}; blank while open",
        "closed_outcome": "resolved (the caller was reached and helped), unreachable (after the last attempt, or "
                          "no number to dial), or withdrawn (no longer needed; needs a note saying why)",
        "config_version": "The configuration that set its deadline (configuration_version in manifest.json when "
                          "unchanged)",
        NOTE: NOTE_MEANING,
    },
    "callback_attempts.csv": {
        "callback_id": "The callback in callbacks.csv",
        "enquiry_reference": "The enquiry the callback is for",
        "started": f"When the agent clicked \"Call back now\" (source twilio), or the time they entered (manual), "
                   f"{TIMES}",
        "dialled": f"When the caller was dialled, which is what the three-hour rule counts, {TIMES}; attempts stored "
                   "before migration 0005 give their started time",
        "source": "twilio (placed with \"Call back now\") or manual (made on the agent's own phone and entered)",
        "outcome": "reached, no_answer, busy, failed, voicemail_left, placing (under way), or not_dialled (rang "
                   "only the agent's phone: counts for nothing)",
        "answered": f"When the caller answered, {TIMES}; blank if they did not or it is not known",
        "ended": f"When the call ended, {TIMES}; blank if not known",
        "recorded": f"When the attempt was entered into the help desk, {TIMES}: later than started for an attempt "
                    "entered after it was made; blank for attempts stored by a version before 0.2.0 (migration 0010)",
        NOTE: NOTE_MEANING,
    },
    "emails.csv": {
        "enquiry_reference": "The enquiry the email opened (HD-YYYY-NNNNNN)",
        "received": f"When the email was received (the acknowledgement clock's start), {TIMES}: when the "
                    "mailbox received it (IMAP), or when SendGrid did, by its own stamp (SendGrid; else when "
                    "SendGrid's post was stored)",
        "due": f"When its acknowledgement was due, {TIMES}",
        "acknowledged": f"When the acknowledgement was sent, {TIMES}; blank if it was not",
        "ack_seconds": "acknowledged minus received, in seconds, exact to the microsecond as stored (no trailing zeros)",
        "status": "pending (to send or retry), sent, failed (given up after the last retry), or suppressed (not "
                  "sent on purpose: past the per-sender limit, or owed or received while a database later restored "
                  "from a backup was lost, so most likely acknowledged then; not counted)",
        "counted": "yes when it counts for the acknowledgement rule",
        "ack_result": "met, late, unacknowledged (not sent by its due time), pending (not yet due), or blank (not "
                      "sent on purpose, not counted)",
        "sender": "Who sent the email, masked unless the pack is unmasked; removed once the retention period had "
                  "passed",
        "not_sent_reason": "For a suppressed acknowledgement, why it was not sent: the flood guard, the help "
                           "desk's own address, or a restore of the database from a backup; blank otherwise",
        "enquiry_status": "Where the enquiry stands: awaiting_response, answered (an agent marked it answered), "
                          "or callback_needed (an agent recorded that it needs a call back: see callbacks.csv)",
        "marked_answered": f"When an agent marked the enquiry answered, {TIMES}; blank if it is not; a reply "
                           "from the customer reopens it",
        "first_answered": f"When an agent first marked the enquiry answered, {TIMES}; blank if never. Each "
                          "answer is kept from version 0.11.0; an enquiry answered only before that shows its "
                          "latest answer, as marked_answered. report.pdf's email answer times count to this",
    },
}


def column_rows(headers: dict[str, list[str]]) -> list[list[str]]:
    """The rows of columns.csv for the CSVs written, by file name, each with its header as written.

    A column without a definition is a fault in the pack's code, not in the data: it stops the export.
    """
    rows = []
    for name, header in headers.items():
        meanings = DEFINITIONS[name]
        for column in header:
            if column not in meanings:
                raise KeyError(f"{name} has a column {column!r} that columns.csv does not define")
            rows.append([name, column, meanings[column]])
    return rows
