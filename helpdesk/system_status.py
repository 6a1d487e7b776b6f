"""Is every part of the help desk working? What the System page (administrators) says.

`read_facts` reads what the database knows (the scheduler's leases, the latest webhook, the
mailbox's last read, what is owed, sign-ins refused, restores), `checks` turns the facts,
with what this server was given (its spool, its telephony, its secrets: only whether each is
set, never its value), into one line a part: working, needing attention (with what to do), or
not set up. The same facts the alerts read from /metrics, for an administrator who set the
desk up and has no Prometheus yet, or wants one place to look.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from callbacks.scheduler import AcknowledgementJob, MailboxJob, ReconcileJob, RetentionJob, SweepJob, wanted_jobs
from helpdesk.agents_pin import LOCKED, NOT_SET, state_of
from helpdesk.clock import local
from helpdesk.models import TwilioEvent, User
from helpdesk.models.user import QUEUE_ROLES
from helpdesk.settings import Settings
from helpdesk.voice.call_events import API_KINDS
from metrics import compliance
from metrics.collector import Operations, read_operations

OK, ATTENTION, OFF = "ok", "attention", "off"
STATE_WORDS = {OK: "Working", ATTENTION: "Needs attention", OFF: "Not set up"}

# As the alerts (metrics/alerts/helpdesk.rules.yml) judge them: a mailbox not read for this long
# (HelpdeskMailboxNotRead), and this many sign-ins refused within SIGN_IN_WINDOW (HelpdeskSignInsRefused).
MAILBOX_LATE = timedelta(minutes=10)
SIGN_INS_REFUSED = 30
# A lease given up on shutdown runs out at the start of 1970 (callbacks.sweep.release_lease).
RELEASED = datetime(1970, 1, 2, tzinfo=timezone.utc)

# What each of the scheduler's jobs does for the desk, by lease.
JOB_WORDS = {
    SweepJob.lease: "Callback deadlines and breaches",
    AcknowledgementJob.lease: "Email acknowledgements",
    MailboxJob.lease: "Reading the mailbox",
    RetentionJob.lease: "Removing old personal data",
    ReconcileJob.lease: "Checking calls with Twilio",  # those with no ending, and any that never reached the app
}


@dataclass(frozen=True)
class Facts:
    """What the database says at `now` (read_facts)."""

    now: datetime
    operations: Operations  # the scheduler's jobs, the mailbox, finds in Twilio's log, sign-ins, restores
    last_webhook: datetime | None  # the latest webhook from Twilio stored (not what the app asked its API)
    calls_unfinished: int
    emails_unacknowledged_overdue: int
    database_seconds: float
    # Queue mode: of the active users who take callers and have a phone, how many have no PIN for
    # the agents' line, and how many a PIN locked (helpdesk.agents_pin); and how many there are.
    pins: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    """What this server was given, as booleans and words: never a secret's value."""

    spool: dict[str, int]  # this server's webhook spool by state (helpdesk.spool.Spool.counts); {} if unreadable
    telephony_problem: str | None  # why "Call back now" cannot place calls, or None if it can
    from_number: str = ""
    sip_login: bool = False
    sendgrid: bool = False  # SENDGRID_INBOUND_SECRET is set


@dataclass(frozen=True)
class Check:
    part: str
    state: str
    said: str
    todo: str = ""
    readme: str = ""  # the README section that says more

    @property
    def state_words(self) -> str:
        return STATE_WORDS[self.state]


def setup_of(settings: Settings, config: Mapping, telephony) -> Setup:
    """What a server with this configuration (the app's config, or the environment's keys), and
    this telephony (callbacks.telephony.telephony_from_app_config's), was given."""
    from callbacks.telephony import UnconfiguredTelephony
    from helpdesk.voice.recovery import spool_for

    try:
        spool = spool_for(settings).counts()
    except OSError:
        spool = {}
    return Setup(spool=spool,
                 telephony_problem=telephony.message if isinstance(telephony, UnconfiguredTelephony) else None,
                 from_number=getattr(telephony, "from_number", "") or "",
                 sip_login=config.get("SIP_LOGIN") is not None,
                 sendgrid=bool(config.get("SENDGRID_INBOUND_SECRET")))


def read_facts(session: Session, settings: Settings, now: datetime) -> Facts:
    """The facts (raises SQLAlchemyError if the database cannot answer)."""
    started = time.perf_counter()
    live = compliance.live_figures(session, settings, now)
    operations = read_operations(session, settings, now)
    with session.begin():
        # The newest by id: the primary key's index, however long the journal.
        last_webhook = session.scalar(select(TwilioEvent.received_at).where(TwilioEvent.kind.not_in(API_KINDS))
                                      .order_by(TwilioEvent.id.desc()).limit(1))
        pins = {}
        if settings.routing.mode == "queue":
            phones = session.scalars(select(User).where(User.active, User.phone.is_not(None)))
            pins = dict(Counter(state_of(user) for user in phones if user.has_role(*QUEUE_ROLES)))
    return Facts(now, operations, last_webhook, live.calls_unfinished, live.emails_unacknowledged_overdue,
                 time.perf_counter() - started, pins)


def expected_jobs(settings: Settings) -> list[tuple[str, str, int]]:
    """The jobs a scheduler with these settings runs (callbacks.scheduler.wanted_jobs): their lease,
    what they do, and how often they run (seconds)."""
    return [(job.lease, JOB_WORDS[job.lease], job.interval(settings)) for job in wanted_jobs(settings)]


def checks(facts: Facts, setup: Setup, settings: Settings) -> list[Check]:
    """Every part's line, in the page's order."""
    today = local(facts.now).date()
    return [_database(facts, today), *_jobs(facts, settings, today), _webhooks(facts, today), _spool(setup.spool),
            *_calls(facts, settings), *_agents_line(facts, settings), _call_back_now(setup),
            _mail_in(facts, setup, settings, today),
            _acknowledgements(facts, settings), _sign_ins(facts)]


def _database(facts: Facts, today: date) -> Check:
    restored_at = facts.operations.restored_at
    restored = (f" Restored from a backup at {_when(restored_at, today)}: what came in between the backup and then "
                "is missing." if restored_at else "")
    return Check("Database", OK, f"Answering: {facts.database_seconds * 1000:.0f} ms to read these figures."
                                 f"{restored}", "", "After a restore" if restored else "")


def _jobs(facts: Facts, settings: Settings, today: date) -> list[Check]:
    found = []
    lease_seconds = settings.scheduler.lease_seconds
    for lease, what, every in expected_jobs(settings):
        expires = facts.operations.leases.get(lease)
        # Each run renews the lease for lease_seconds; a job that runs less often than that lets it
        # lapse between runs, so it is late only once its next run is a lease's length overdue.
        ran = expires - timedelta(seconds=lease_seconds) if expires is not None and expires > RELEASED else None
        failed = facts.operations.failures.get(lease)
        failure = (f" Its last run failed, at {_when(failed[0], today)}: {failed[1]}" if failed else "")
        if ran is not None and facts.now <= ran + timedelta(seconds=every + lease_seconds):
            running = f"Running: last run {_ago(max(timedelta(0), facts.now - ran))}, every {_every(every)}."
            if failed:
                found.append(Check(f"Scheduler: {what}", ATTENTION, running + failure,
                                   "Read the scheduler's log around then: it runs again, and says so if it works.",
                                   "Running it"))
            else:
                found.append(Check(f"Scheduler: {what}", OK, running))
            continue
        if expires is None:
            said = "No scheduler has run it yet."
        elif ran is None:  # a scheduler that stops gives its leases up (callbacks.sweep.release_lease)
            said = "Its scheduler stopped, and none has run it since."
        else:
            said = f"No scheduler has run it since {_when(ran, today)}."
        said += failure
        todo = "Start the scheduler (helpdesk scheduler, or helpdesk run, which runs it), and read its log."
        if lease == ReconcileJob.lease:
            todo += " It runs this job only with TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in its environment."
        found.append(Check(f"Scheduler: {what}", ATTENTION, said, todo, "Running it"))
    return found


def _webhooks(facts: Facts, today: date) -> Check:
    if facts.last_webhook is None:
        return Check("Webhooks from Twilio", ATTENTION, "None has come yet.",
                     "Point the help desk's number at this app, and check it with helpdesk twilio-numbers.",
                     "Pointing a Twilio number at the app")
    return Check("Webhooks from Twilio", OK, f"The last came at {_when(facts.last_webhook, today)}.")


def _calls(facts: Facts, settings: Settings) -> list[Check]:
    if facts.calls_unfinished:
        unfinished = Check("Calls with no ending", ATTENTION,
                           f"{_count(facts.calls_unfinished, 'call')} not answered and with no ending from Twilio "
                           f"for over {_hours(compliance.UNFINISHED_AFTER)}.",
                           "Twilio's last webhooks for them never came: see the README.",
                           "When Twilio's last webhooks never come")
    else:
        unfinished = Check("Calls with no ending", OK, "None.")
    part, readme = "Calls that never reached the app", "Calls that never reached the app"
    if not settings.webhooks.reconcile_after_minutes or not settings.webhooks.twilio_numbers:
        missed = Check(part, OFF, "Not looked for in Twilio's call log.",
                       "List the desk's numbers in webhooks.twilio_numbers, with webhooks.reconcile_after_minutes "
                       "above 0 and the scheduler given TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.", readme)
    elif facts.operations.found_last_hour:
        missed = Check(part, ATTENTION, f"{_count(facts.operations.found_last_hour, 'call')} in the last hour found "
                                        "only in Twilio's call log.",
                       "Check the number's Voice URL, and that Twilio could reach the app then.", readme)
    else:
        missed = Check(part, OK, "None found in the last hour.")
    return [unfinished, missed]


def _agents_line(facts: Facts, settings: Settings) -> list[Check]:
    """Queue mode: whether a faked caller ID could take callers, and PINs missing or locked."""
    routing, part = settings.routing, "Agents' line"
    if routing.mode != "queue":
        return []
    if not routing.agents_pin:
        if not routing.agents_numbers:
            return [Check(part, OK, "Agents take callers with Twilio Client apps, whose identity Twilio checks.")]
        return [Check(part, OFF, "A call from an agent's phone is put through on its caller ID alone, which can be "
                                 "faked.", "Have everyone set a PIN on Agents' line PIN, then set [routing] "
                                           "agents_pin = true.", "Agents' line PIN")]
    locked, missing, phones = facts.pins.get(LOCKED, 0), facts.pins.get(NOT_SET, 0), sum(facts.pins.values())
    said = f"A PIN is asked of each phone: {_count(phones - missing - locked, 'phone')} of {phones} can take callers."
    todo = []
    if locked:
        owners = "its owner sets a new one" if locked == 1 else "their owners set new ones"
        todo.append(f"{_count(locked, 'PIN')} locked after wrong ones: {owners} on Agents' line PIN (the Audit log "
                    "says when; if they did not type them, someone may be faking their caller ID).")
    if missing:
        owners = "has no PIN yet: its owner sets one" if missing == 1 else "have no PIN yet: their owners set one each"
        todo.append(f"{_count(missing, 'phone')} {owners} on Agents' line PIN.")
    return [Check(part, ATTENTION if todo else OK, said, " ".join(todo), "Agents' line PIN" if todo else "")]


def _call_back_now(setup: Setup) -> Check:
    if setup.telephony_problem:
        missing = setup.telephony_problem.removeprefix("Twilio is not configured: ")
        return Check("Call back now", OFF, "Agents call from their own phones and log each attempt by hand.",
                     missing[0].upper() + missing[1:], "Pointing a Twilio number at the app")
    login = " Desk phones' phone system is given SIP_USERNAME and SIP_PASSWORD." if setup.sip_login else ""
    return Check("Call back now", OK, f"Calls are placed from {setup.from_number}.{login}")


def _acknowledgements(facts: Facts, settings: Settings) -> Check:
    if not settings.smtp.host:
        return Check("Email acknowledgements", OFF, "Not sent: [smtp] has no host.",
                     "Set [smtp] host in the configuration file.", "Email acknowledgements")
    if facts.emails_unacknowledged_overdue:
        return Check("Email acknowledgements", ATTENTION,
                     f"{_count(facts.emails_unacknowledged_overdue, 'acknowledgement')} overdue.",
                     "The agents' queue lists them; the scheduler's log says why the mail server refused.",
                     "Email acknowledgements")
    return Check("Email acknowledgements", OK, f"Sent through {settings.smtp.host}; none overdue.")


def _sign_ins(facts: Facts) -> Check:
    refused = f"{_count(facts.operations.sign_ins_refused, 'sign-in')} refused in the last 15 minutes."
    if facts.operations.sign_ins_refused >= SIGN_INS_REFUSED:
        return Check("Signing in", ATTENTION, refused,
                     "Someone may be guessing passwords: the Audit log lists them, with where each came from.")
    return Check("Signing in", OK, refused)


def _spool(counts: dict[str, int]) -> Check:
    part = "Webhooks waiting on this server"
    if not counts:
        return Check(part, ATTENTION, "The spool cannot be read.", "Check webhooks.spool_dir and its permissions.",
                     "When the database is down")
    waiting, unstored, unreadable = (counts.get(state, 0) for state in ("waiting", "unstored", "unreadable"))
    if unstored or unreadable:
        return Check(part, ATTENTION, f"{_count(unstored, 'webhook')} the database refused, "
                                      f"{_count(unreadable, 'line')} unreadable, in the spool.",
                     "See the README on what to do with them.", "When the database is down")
    if waiting:
        return Check(part, ATTENTION, f"{_count(waiting, 'webhook')} kept in the spool until the database takes "
                                      "them.", "They are stored by themselves once it does.",
                     "When the database is down")
    return Check(part, OK, "None: every webhook is stored.")


def _mail_in(facts: Facts, setup: Setup, settings: Settings, today: date) -> Check:
    part = "Email enquiries coming in"
    ways = (["SendGrid Inbound Parse may post them"] if setup.sendgrid else [])
    if settings.email.imap.host:
        read = facts.operations.mailbox_read_at
        if read is None or facts.now - read > MAILBOX_LATE:
            since = f"since {_when(read, today)}" if read else "yet"
            return Check(part, ATTENTION, f"The mailbox on {settings.email.imap.host} has not been read {since}.",
                         "Check the scheduler's log for IMAP: the server, IMAP_USERNAME and IMAP_PASSWORD.",
                         "IMAP mailbox (polling)")
        ways.append(f"the mailbox on {settings.email.imap.host} was last read {_ago(facts.now - read)}")
    if not ways:
        return Check(part, OFF, "None comes in.", "Set SENDGRID_INBOUND_SECRET for SendGrid, or [email.imap] for a "
                     "mailbox.", "Email enquiries: how mail comes in")
    text = "; ".join(ways)
    return Check(part, OK, text[0].upper() + text[1:] + ".")


def _when(moment: datetime, today: date) -> str:
    shown = local(moment)
    return f"{shown:%H:%M} {shown.tzname()}" + ("" if shown.date() == today else f" on {shown:%a} {shown.day} "
                                                                                  f"{shown:%b %Y}")


def _ago(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"


def _every(seconds: int) -> str:
    if seconds == 60:
        return "minute"
    return f"{seconds} s" if seconds < 60 or seconds % 60 else f"{seconds // 60} min"


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hour{'' if hours == 1 else 's'}"


def _count(n: int, thing: str) -> str:
    return f"{n:,} {thing}{'' if n == 1 else 's'}"
