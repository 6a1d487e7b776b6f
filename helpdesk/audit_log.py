"""The audit log as people read it: what each entry says, and the entries of a period.

The entries are written where things happen (helpdesk.users, callbacks.owed, metrics.evidence
and so on), each with an action and a JSON detail. This module only reads them: for the Audit
log page, its CSV file, and an enquiry's story.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from callbacks.email.waiting import MARKED_ANSWERED
from callbacks.owed import CALLBACK_NEEDED, CONCLUDED, CONCLUDED_UNDONE
from callbacks.service import BREACH_CORRECTED
from helpdesk.clock import LONDON
from helpdesk.models import AuditEntry, User
from helpdesk.restore import ACTION as RESTORED
from helpdesk.retention import ACTION as PERSONAL_DATA_REMOVED
from helpdesk.subject_access import ACTION as SUBJECT_ACCESS
from helpdesk.users import (PASSWORD_CHANGE_REFUSED, PASSWORD_CHANGED, PASSWORD_CHOSEN_WITH_LINK, PASSWORD_LINK_SENT,
                            SIGN_IN_ACTIONS, SIGN_IN_REFUSED, SIGNED_IN, SIGNED_OUT, USER_ACTIONS, change_words)
from metrics.evidence.fields import inert
from metrics.evidence.pack import ACTION as EVIDENCE_EXPORT

# Written once, by migration 0010, which cannot import this: a breach no longer counted.
NOT_OWED_UNCOUNTED = "callback.not_owed_uncounted"

# What the page's "What" filter offers: a name in the address, its words, and its actions.
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sign-ins": ("Signing in and out", SIGN_IN_ACTIONS),
    "users": ("Changes to users", USER_ACTIONS),
    "enquiries": ("Callbacks and enquiries", (CALLBACK_NEEDED, CONCLUDED, MARKED_ANSWERED, CONCLUDED_UNDONE,
                                              BREACH_CORRECTED, NOT_OWED_UNCOUNTED)),
    "evidence": ("Evidence packs", (EVIDENCE_EXPORT,)),
    "personal-data": ("Personal data: searches and removals", (SUBJECT_ACCESS, PERSONAL_DATA_REMOVED)),
    "restores": ("Restores of the database", (RESTORED,)),
}

# Each action's title, as the page and an enquiry's story say it.
TITLES = {
    SIGNED_IN: "Signed in",
    SIGN_IN_REFUSED: "Sign-in refused",
    SIGNED_OUT: "Signed out",
    PASSWORD_CHANGE_REFUSED: "Password change refused",
    **{action: "User changed" for action in USER_ACTIONS},
    PASSWORD_CHANGED: "Changed their own password",
    PASSWORD_LINK_SENT: "Password link emailed",
    PASSWORD_CHOSEN_WITH_LINK: "Password chosen with an emailed link",
    CALLBACK_NEEDED: "Callback needed recorded",
    CONCLUDED: "Recorded as concluded on the call",
    MARKED_ANSWERED: "Marked as answered",
    CONCLUDED_UNDONE: "Concluded undone",
    BREACH_CORRECTED: "Breach corrected to met: an attempt made in time was entered late",
    NOT_OWED_UNCOUNTED: "A breach no longer counted: the callback was never owed (an upgrade)",
    EVIDENCE_EXPORT: "Evidence pack exported",
    SUBJECT_ACCESS: "Searched for a person's data",
    PERSONAL_DATA_REMOVED: "Personal data removed",
    RESTORED: "Restore of the database recorded",
}
PER_PAGE = 100
DEFAULT_DAYS = 7  # shown when no first day is asked for: the last week, to the last day
BATCH = 500  # entries read at a time for the CSV file
# The CSV file's columns (the Audit log page's, and `helpdesk audit-log --csv`).
CSV_COLUMNS = ["at_utc", "at_uk", "by", "by_user_id", "by_role", "by_role_now", "action", "what", "enquiry",
               "about_user_id", "detail"]


@dataclass(frozen=True)
class Entry:
    """One audit log entry, in words."""

    id: int
    at: datetime
    actor: str
    by_user_id: int | None  # the actor's id, when they were signed in to the pages
    actor_role: str | None  # the role the actor had then (None for the server or the help desk itself)
    role_now: str | None  # the role the actor has now
    by: str  # who, in words: "alex (Manager)", "root, on the server", "The help desk"
    action: str
    title: str
    words: str  # what it was, beyond the title; may be empty
    enquiry: str | None  # the enquiry it is about, for a link
    user_id: int | None  # the user it is about (changes to users, signing in), for a link
    detail: dict

    @property
    def what(self) -> str:
        """What it was, in words: "Sign-in refused: wrong password", "Signed in from 192.0.2.7"."""
        if not self.words:
            return self.title
        return f"{self.title} {self.words}" if self.words.startswith("from ") else f"{self.title}: {self.words}"


@dataclass(frozen=True)
class Listing:
    entries: list[Entry]
    total: int
    page: int
    pages: int


def default_first(last: date) -> date:
    """The first day shown when none is asked for: DEFAULT_DAYS to `last`, both included."""
    return last - timedelta(days=DEFAULT_DAYS - 1)


def day_range(first: date, last: date) -> tuple[datetime, datetime]:
    """From the start of `first` to the start of the day after `last`, UK days, as UTC instants."""
    start = datetime.combine(first, time(), LONDON)
    end = datetime.combine(last + timedelta(days=1), time(), LONDON)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def _with_role():
    """Entries, each with the role its actor has now (None for the server or the help desk): the
    one they had then is in the entry, from 0.19.0."""
    return select(AuditEntry, User.role).outerjoin(User, User.id == AuditEntry.user_id)


def _about(user_id: int):
    # A change to a user, or their signing in, has JSON detail with sorted keys, where
    # "user_id" is always followed by "via".
    return AuditEntry.detail.contains(f'"user_id": {int(user_id)}, ')


def _query(first: date, last: date, kind: str | None, user_id: int | None):
    start, end = day_range(first, last)
    query = _with_role().where(AuditEntry.at >= start, AuditEntry.at < end)
    if kind is not None:
        query = query.where(AuditEntry.action.in_(KINDS[kind][1]))
    if user_id is not None:  # by them, or about them
        query = query.where(or_(AuditEntry.user_id == user_id, _about(user_id)))
    return query


def entries_page(session: Session, first: date, last: date, *, kind: str | None = None, user_id: int | None = None,
                 page: int = 1, per_page: int = PER_PAGE) -> Listing:
    """The entries of UK days `first` to `last`, newest first, one page of them."""
    query = _query(first, last, kind, user_id)
    with session.begin():
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        pages = max(1, -(-total // per_page))
        rows = [] if page > pages else session.execute(
            query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).offset((page - 1) * per_page)
            .limit(per_page)).all()
    return Listing([entry_words(entry, role) for entry, role in rows], total, page, pages)


def all_entries(session: Session, first: date, last: date, *, kind: str | None = None, user_id: int | None = None):
    """Every entry of UK days `first` to `last`, oldest first (for the CSV file), read BATCH at a
    time, each batch in a transaction of its own that ends before its entries are handed on: the
    file goes out as fast as the browser takes it, and on SQLite a transaction holds the write lock
    (helpdesk.db), which would stop webhooks and every page for as long as a slow download lasted."""
    query = _query(first, last, kind, user_id).order_by(AuditEntry.at, AuditEntry.id).limit(BATCH)
    after = None  # the last entry read: the next batch starts after it
    while True:
        batch = query if after is None else query.where(
            or_(AuditEntry.at > after.at, and_(AuditEntry.at == after.at, AuditEntry.id > after.id)))
        with session.begin():
            rows = session.execute(batch).all()
        for entry, role in rows:
            yield entry_words(entry, role)
        if len(rows) < BATCH:
            return
        after = rows[-1][0]


def user_sign_ins(session: Session, user_id: int, limit: int = 10) -> list[Entry]:
    """A user's latest sign-ins, refused ones and sign-outs, newest first (for their page)."""
    query = (_with_role().where(AuditEntry.action.in_(SIGN_IN_ACTIONS), _about(user_id))
             .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit))
    with session.begin():
        return [entry_words(entry, role) for entry, role in session.execute(query)]


def user_and_role(entry: AuditEntry, role_now: str | None) -> str:
    """"dana (DWP auditor)": the user who acted and their role then; for an entry written before
    the role was recorded (0.19.0), "(now Manager)", the role they have now."""
    from helpdesk.pages.format import role_label

    return (f"{entry.actor} ({role_label(entry.actor_role)})" if entry.actor_role
            else f"{entry.actor} (now {role_label(role_now)})" if role_now else entry.actor)


def entry_words(entry: AuditEntry, role: str | None) -> Entry:
    detail = _detail(entry.detail)
    if entry.user_id is not None:  # signed in to the pages, or named with --user on the server
        by = user_and_role(entry, role)
    elif detail.get("via") == "command line":  # `helpdesk users`, by the system user who ran it
        by = f"{entry.actor}, on the server"
    else:  # the scheduler, or an upgrade (migration 0010)
        by = "The help desk"
    about_user = detail.get("user_id") if entry.action in USER_ACTIONS + SIGN_IN_ACTIONS else None
    return Entry(id=entry.id, at=entry.at, actor=entry.actor, by_user_id=entry.user_id,
                 actor_role=entry.actor_role if entry.user_id is not None else None,
                 role_now=role if entry.user_id is not None else None, by=by, action=entry.action,
                 title=TITLES.get(entry.action, entry.action),
                 words=_words(entry.action, detail), enquiry=_text(detail.get("enquiry")),
                 user_id=about_user if isinstance(about_user, int) else None, detail=detail)


# Where an evidence pack was exported from, as the log says it.
EXPORTED_VIA = {"cli": "on the server", "web": "from the Evidence page", "token": "by a script with the access token"}
# How a sign-in passed two-step sign-in (helpdesk.two_step), as the log says it.
TWO_STEP_WORDS = {"app": "with the app's code", "recovery code": "with a recovery code"}


def _words(action: str, detail: dict) -> str:
    """What the entry says beyond its title."""
    if action in SIGN_IN_ACTIONS:
        address = _text(detail.get("address"))
        refused = detail.get("reason")
        reason = ("deactivated user" if action == SIGN_IN_REFUSED and refused == "deactivated"
                  else "wrong two-step code" if action == SIGN_IN_REFUSED and refused == "wrong code"
                  else f"wrong password, on {_text(detail.get('page'))}"
                  if action == SIGN_IN_REFUSED and detail.get("page")
                  else "wrong password" if action == SIGN_IN_REFUSED
                  else "wrong current password" if action == PASSWORD_CHANGE_REFUSED
                  else TWO_STEP_WORDS.get(detail.get("two_step"), "") if action == SIGNED_IN else "")
        return ", ".join(part for part in (reason, address and f"from {address}") if part)
    if action in (PASSWORD_LINK_SENT, PASSWORD_CHOSEN_WITH_LINK):
        address = _text(detail.get("address"))
        asked = ", asked for on the sign-in page" if detail.get("asked") else ""
        whom = f"to {detail.get('user', '?')}" if action == PASSWORD_LINK_SENT else f"{detail.get('user', '?')}"
        return whom + asked + (f", from {address}" if address else "")
    if action in USER_ACTIONS and action != PASSWORD_CHANGED:
        return f"{detail.get('user', '?')}: {change_words(action, detail)}"
    if action in (CALLBACK_NEEDED, CONCLUDED, MARKED_ANSWERED, CONCLUDED_UNDONE):
        return _text(detail.get("enquiry")) or ""
    if action in (BREACH_CORRECTED, NOT_OWED_UNCOUNTED):
        return f"callback {detail['callback_id']}" if "callback_id" in detail else ""
    if action == EVIDENCE_EXPORT:
        return (f"{detail.get('first_day', '?')} to {detail.get('last_day', '?')}, "
                f"{'unmasked' if detail.get('redaction') == 'none' else 'masked'}, "
                f"{'with' if detail.get('notes_included') else 'no'} notes, "
                f"{EXPORTED_VIA.get(detail.get('via'), 'from the Evidence page')}"
                + (f" “{_text(detail.get('token'))}”" if detail.get("via") == "token" else ""))
    if action == SUBJECT_ACCESS:
        rows = sum(n for n in (detail.get("rows") or {}).values() if isinstance(n, int))
        copy = "; a copy written on the server" if detail.get("copy_written_to") else ""
        return f"the {detail.get('searched_for', '?')}: {_rows(rows)} found{copy}"
    if action == PERSONAL_DATA_REMOVED:
        counts = detail.get("rows") or {}
        rows = sum(counts.get(name, 0) for name in ("calls", "events", "callbacks", "attempts", "emails",
                                                    "acknowledgements") if isinstance(counts.get(name), int))
        whose = (f"the {detail['person']}" if "person" in detail
                 else f"before {detail['before']}" if "before" in detail else "")
        stopped = "; stopped before the end" if detail.get("stopped") else ""
        return f"{whose}: {_rows(rows)}{stopped}".lstrip(": ")
    if action == RESTORED:
        return (f"backup taken at {_uk(detail.get('backup_taken_at'))}; data from then to "
                f"{_uk(detail.get('lost_until'))} lost")
    return ""


def csv_row(entry: Entry) -> list:
    """The entry as a row of the CSV file (CSV_COLUMNS); text a spreadsheet would run as a formula
    starts with "'"."""
    return [entry.at.isoformat(), entry.at.astimezone(LONDON).isoformat(), inert(entry.by),
            "" if entry.by_user_id is None else entry.by_user_id, entry.actor_role or "", entry.role_now or "",
            entry.action, inert(entry.what), inert(entry.enquiry or ""), "" if entry.user_id is None else entry.user_id,
            inert(_json(entry.detail))]


def _json(detail: dict) -> str:
    """The detail as JSON, its letters as they are (not \\u escapes); but all escaped if it holds
    what UTF-8 cannot carry, which the file could not be sent with: a path given on the server
    (an evidence pack's, a copy of a person's data) with bytes that are not UTF-8 in its name."""
    text = json.dumps(detail, sort_keys=True, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(detail, sort_keys=True)
    return text


def _rows(count: int) -> str:
    return f"{count:,} row{'' if count == 1 else 's'}"


def _uk(stamp) -> str:
    try:
        moment = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return "?"
    if moment.tzinfo is None:
        return "?"
    return f"{moment.astimezone(LONDON):%d %b %Y %H:%M:%S %Z}"


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _detail(text: str | None) -> dict:
    try:
        detail = json.loads(text or "{}")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}
