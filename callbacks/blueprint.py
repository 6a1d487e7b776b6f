"""The agents' callback queue: the page, its live list, and how an action answers.

The actions' routes are on this blueprint, in callbacks.callback_actions (a callback's) and
callbacks.contact_actions (an answered call's and an email enquiry's). Every action is a plain
form (CSRF token, works without JavaScript) that calls one service function and redirects back
to the queue with a message saying what happened.
"""
from __future__ import annotations

import importlib
import re
from datetime import date, datetime, timedelta
from types import SimpleNamespace

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for
from flask import session as session_store
from flask_login import current_user
from flask_wtf.csrf import generate_csrf

from callbacks import owed, queue
from callbacks.awaiting import OLDER_DAYS, awaiting_since
from callbacks.email import waiting
from callbacks.telephony import UnconfiguredTelephony
from helpdesk.clock import local
from helpdesk.models.user import QUEUE_ROLES
from helpdesk.pages import format as fmt
from helpdesk.pages import taken_by
from helpdesk.pages.access import role_required
from helpdesk.pages.stamp import Stamp
from helpdesk.web import RowHrefs, clock, database, settings

bp = Blueprint("agents", __name__)

ROLES = QUEUE_ROLES  # admins always (User.has_role)
SHOWN, MOST_SHOWN = 200, 2000
AWAITING_SHOWN = 100  # answered calls awaiting an outcome
POLL_SECONDS = 15
MAX_NOTE = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # all but tab and line ends
_SHOW = re.compile(r"[0-9]{1,5}")
# The actions on each row of the page's lists (a callback, an answered call, an email enquiry).
ROW_ACTIONS = ("claim", "release", "call_back", "log_attempt", "close", "concluded", "callback_needed",
               "email_answered", "email_callback_needed", "retry_acknowledgement")


def _shown() -> int:
    text = request.values.get("show", "")
    if not _SHOW.fullmatch(text):
        return SHOWN
    return min(max(int(text), 1), MOST_SHOWN)


def filter_asked() -> str:
    """The filter asked for (a key of queue.FILTERS); anything else shows them all."""
    only = request.args.get("only", "")
    return only if only in queue.FILTERS else ""


def older_asked() -> bool:
    """Whether the page shows answered calls awaiting an outcome from OLDER_DAYS back (older=yes)."""
    return request.args.get("older") == "yes"


def page_args(shown: int | None = None, only: str | None = None, older: bool | None = None) -> dict[str, str | int]:
    """The queue page's address arguments as shown now (none when they are the defaults), so the
    live list, the links and every action come back to the page as the agent had it."""
    shown = _shown() if shown is None else shown
    only = filter_asked() if only is None else only
    older = older_asked() if older is None else older
    return {**({"show": shown} if shown != SHOWN else {}), **({"only": only} if only else {}),
            **({"older": "yes"} if older else {})}


def _queue_context(now: datetime) -> dict:
    shown, only = _shown(), filter_asked()
    with database().session() as session:
        view = queue.open_callbacks(session, settings(), now, limit=shown, only=only, me=current_user.id)
    args = page_args(shown, only)
    now_input = local(now).strftime("%Y-%m-%dT%H:%M")
    return {
        "view": view, "shown": shown, "now": now, "today": local(now).date(), "queue": queue, "fmt": fmt,
        "now_input": now_input, "me": current_user.id,
        # Each callback's two panels, filled in for it (the one with what an agent typed is rendered).
        "panels": Stamp("queue/item_panels.html", ("key", "reference", "attempt_href", "close_href"),
                        panel="", typed={}, token=generate_csrf(), now_input=now_input, queue=queue),
        "more_href": url_for("agents.queue", **page_args(min(shown + SHOWN, MOST_SHOWN), only))
        if view.more and shown < MOST_SHOWN else None,
        "page_args": args,
        # Each list's actions' addresses, coming back to the page as it is shown: `hrefs.claim(id)`.
        "hrefs": SimpleNamespace(**{name: RowHrefs(f"agents.{name}", **args) for name in ROW_ACTIONS}),
        "filter_hrefs": {key: url_for("agents.queue", **page_args(shown, key)) for key in queue.FILTERS},
        # "Call back now" only where the app can place calls, to a user with a phone to ring first;
        # else why not, and attempts by hand.
        "cannot_call": cannot_call(),
        # "3 hours", and on the business clock "3 hours of opening time": a call at 16:30 is due the next day.
        "callback_window": fmt.format_minutes(settings().callback.within_minutes)
        + (" of opening time" if settings().callback.clock == "business" else ""),
    }


def cannot_call() -> str | None:
    """Why this user cannot use "Call back now" (the page says so instead of offering it), or None."""
    if isinstance(current_app.extensions["helpdesk.telephony"], UnconfiguredTelephony):
        return "Calling from this page is not set up, so call from your own phone and log each attempt."
    if not (current_user.phone or "").strip():
        return ("Call back now rings your phone first, and yours is not set: ask an administrator to set it (a "
                "number, or your desk phone's SIP address). Until then, call from another phone and log each attempt.")
    return None


def pin_needed() -> str | None:
    """Why this user's phone cannot take callers from the agents' line (routing.agents_pin): their
    PIN is not set, or locked; or None."""
    from helpdesk.agents_pin import LOCKED, NOT_SET, state_of
    from helpdesk.pages.agents_pin import has_pin_page

    if not has_pin_page(current_user) or not (current_user.phone or "").strip():
        return None
    return {NOT_SET: "Your phone cannot take callers from the agents' line until you set your PIN for it.",
            LOCKED: "Your PIN for the agents' line is locked after too many wrong tries, so your phone cannot take "
                    "callers from it."}.get(state_of(current_user))


@bp.get("/queue", endpoint="queue")
@role_required(*ROLES)
def queue_page():
    """Open callbacks, earliest due first; answered calls awaiting an outcome; recent notices."""
    return _render_queue(session_store.pop(SAID, None))


def _render_queue(said: dict | None) -> str:
    """The queue page; `said`: what the last action said, shown where it was taken (see `say`),
    or at the top if that has left the page, with any form values to put back."""
    now = clock()
    context = _queue_context(now) | _waiting_context(now)
    with database().session() as session:
        notices, notices_count = queue.recent_notices(session, settings(), now)
    if said is not None:
        at = said.get("at", "")
        shown_at = ({f"callback-{entry.callback.id}" for entry in context["view"].entries}
                    | {f"call-{call.call_sid}" for call in context["awaiting"]}
                    | {f"email-{email.enquiry_id}" for email in context["emails"]} | {"awaiting", "emails"})
        context.update(said=said, said_listed=at in shown_at)
    poll = current_app.config.get("QUEUE_POLL_SECONDS", POLL_SECONDS)
    return render_template("queue.html", notices=notices, notices_count=notices_count, poll_seconds=poll,
                           pin_needed=pin_needed(), **context)


def since_words(since: date, today: date) -> str:
    """"today", "yesterday or today", or "since Friday 20 November 2026": when the calls shown were answered."""
    if since == today:
        return "today"
    return "yesterday or today" if (today - since).days == 1 else f"since {fmt.format_day(since)}"


def _waiting_context(now: datetime) -> dict:
    """The answered calls awaiting an outcome and the email enquiries awaiting a response, each
    with a signature that changes when what its list says changes."""
    recent = awaiting_since(settings(), now)
    older = older_asked()
    today = local(now).date()
    since = min(recent, today - timedelta(days=OLDER_DAYS)) if older else recent
    with database().session() as session:
        with session.begin():
            book = taken_by.read_phone_book(session)  # who had each phone when: read once for both
        awaiting = queue.awaiting_outcome(session, since, limit=AWAITING_SHOWN,
                                          yours=taken_by.own_holdings(book, current_user.id))
        takers = taken_by.answered_by_each(session, awaiting.calls, current_user.id, book) or {}
        emails, emails_count = waiting.awaiting_response(session, now)
    return {
        "awaiting": awaiting.calls, "awaiting_count": awaiting.count, "awaiting_yours": awaiting.yours,
        "awaiting_since_words": since_words(since, today), "awaiting_takers": takers, "awaiting_older": older,
        "awaiting_recent_words": since_words(recent, today), "older_days": OLDER_DAYS,
        "awaiting_toggle_href": url_for("agents.queue", **page_args(older=not older)) + "#awaiting",
        "awaiting_signature": queue.signature([awaiting.count, awaiting.yours] + [
            [call.call_sid, call.caller_type, takers.get(call.call_sid)] for call in awaiting.calls]),
        "emails": emails, "emails_count": emails_count, "ack_within": settings().email.ack_within_minutes,
        "emails_signature": queue.signature([emails_count] + [
            [email.enquiry_id, email.acknowledgement.key, email.acknowledgement.detail, email.next_attempt_at,
             email.other_senders, email.latest_email_id, email.callback_owed]
            for email in emails]),
    }


@bp.get("/queue/items")
def items():
    """The page's live parts alone (open callbacks, answered calls awaiting an outcome, email
    enquiries awaiting a response), for queue.js to swap in.

    Polled every few seconds: signed out, it answers 401 rather than sending the script to the
    sign-in page, which would also store a "Sign in" message for every poll.
    """
    if not current_user.is_authenticated:
        return Response("You have been signed out.\n", status=401, mimetype="text/plain")
    return _items()


# The live parts, by the name queue.js gives each in `have` (its root's class, less "-items").
LIVE_PARTS = ("queue", "awaiting", "emails")


def _unchanged(context: dict) -> set[str]:
    """The live parts the page already shows as they are now: queue.js sends `have`, a list of
    part:signature for the parts it would not swap unless changed, and these are left out of the
    answer (a list of hundreds of forms is the most of it). Anything else in `have` is ignored:
    every part is sent, as for a page that sent nothing."""
    have = dict(item.partition(":")[::2] for item in request.args.get("have", "")[:200].split(",") if ":" in item)
    now = {"queue": context["view"].signature, "awaiting": context["awaiting_signature"],
           "emails": context["emails_signature"]}
    return {part for part in LIVE_PARTS if have.get(part) == now[part]}


@role_required(*ROLES)
def _items():
    now = clock()
    context = {**_queue_context(now), **_waiting_context(now)}
    return render_template("queue/live.html", unchanged=_unchanged(context), **context)


# The session key for what the last action on a callback said (see act).
SAID = "queue_said"


def _back(anchor: str):
    """Back to the queue page as it was shown (its `show` and `only`), at `anchor`."""
    return redirect(url_for("agents.queue", **page_args()) + f"#{anchor}")


def form_note() -> str:
    # Browsers send line ends as CRLF but count them as one character against maxlength.
    note = request.form.get("note", "").replace("\r\n", "\n").strip()
    if len(note) > MAX_NOTE:
        raise owed.CallbackError(f"Keep the note to {MAX_NOTE:,} characters or fewer.")
    if _CONTROL.search(note):
        # PostgreSQL cannot store a NUL, and the evidence workbook no control character.
        raise owed.CallbackError("The note has a control character in it (pasted from elsewhere?). Type it again "
                            "without it.")
    return note


def act(callback_id: int, action, done: str, typed: dict[str, str] | None = None, **more: str):
    """Run `action(session)`; say `done` (with the reference) or the reason it was refused.

    An action may return more to say (a sentence, with the reference as `{reference}`). What
    is said is shown at the callback itself, where the agent acted, and the page opens there,
    with `more` (see `say`); on a refusal, what they typed (`typed`: the panel and its fields)
    is put back in the form.
    """
    try:
        with database().session() as session:
            reference = queue.reference_of(session, callback_id=callback_id)
            if not reference:
                abort(404)
            said = action(session)
    except owed.CallbackError as refusal:
        # Shown at once, with what they typed still in the form (too long for a session cookie).
        return refused(f"callback-{callback_id}", str(refusal), typed)
    text = (done + (f" {said}" if isinstance(said, str) else "")).format(reference=reference)
    return say(f"callback-{callback_id}", text, **more)


def say(at: str, text: str, kind: str = "success", **more: str):
    """Back to the queue, where `text` is shown at `at` ("callback-12", "call-CA...", "emails",
    "awaiting"), and the page opens there; `more`: an `undo` form's address and its `reference`,
    or a `link` and its `link_text`."""
    session_store[SAID] = {"at": at, "text": text, "kind": kind, **more}
    return _back(anchor=f"{at}-said")


def refused(at: str, text: str, typed: dict[str, str] | None = None):
    """The queue page at once (422), saying why at `at`, with what was typed put back."""
    return _render_queue({"at": at, "text": text, "kind": "error", "typed": typed}), 422


# The actions' routes, on bp, use the answers above: their modules are imported once those
# exist, so that registering this blueprint registers them.
for _actions in ("callbacks.callback_actions", "callbacks.contact_actions"):
    importlib.import_module(_actions)
