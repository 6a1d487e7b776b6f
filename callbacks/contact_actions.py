"""The agents' word on contacts that are not callbacks yet: an answered call concluded or not
(and "concluded" undone), an email enquiry answered or needing a callback, and a failed
acknowledgement sent again."""
from __future__ import annotations

from flask import abort, request, url_for
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from callbacks import owed, queue
from callbacks.blueprint import MAX_NOTE, ROLES, bp, form_note, page_args, refused, say
from callbacks.email import sending, waiting
from helpdesk.clock import local
from helpdesk.pages.access import role_required
from helpdesk.voice.params import is_sid
from helpdesk.web import clock, database, settings


def _call_sid(call_sid: str) -> str:
    if not is_sid(call_sid):
        abort(404)
    return call_sid


@bp.post("/queue/calls/<call_sid>/concluded")
@role_required(*ROLES)
def concluded(call_sid: str):
    """The enquiry was dealt with on the call: no callback is owed."""
    call_sid = _call_sid(call_sid)
    try:
        with database().session() as session:
            owed.record_concluded(session, call_sid=call_sid, now=clock(), agent_id=current_user.id)
            reference = queue.reference_of(session, call_sid=call_sid)
    except owed.CallbackError as refusal:
        return say(f"call-{call_sid}", str(refusal), "error")
    minutes = round(owed.UNDO_CONCLUDED.total_seconds() / 60)
    return say("awaiting", f"{reference} is recorded as concluded on the call. Pressed by mistake? You can undo it "
                           f"for {minutes} minutes.",
               undo=url_for("agents.undo_concluded", call_sid=call_sid, **page_args()), reference=reference)


@bp.post("/queue/calls/<call_sid>/undo-concluded")
@role_required(*ROLES)
def undo_concluded(call_sid: str):
    """"Concluded" taken back: the call is awaiting its outcome again."""
    call_sid = _call_sid(call_sid)
    try:
        with database().session() as session:
            owed.undo_concluded(session, call_sid=call_sid, agent_id=current_user.id, now=clock())
            reference = queue.reference_of(session, call_sid=call_sid)
    except owed.CallbackError as refusal:
        return say("awaiting", str(refusal), "error")
    return say(f"call-{call_sid}", f"{reference} is no longer recorded as concluded: say whether it was, or that a "
                                   "callback is needed.")


@bp.post("/queue/calls/<call_sid>/callback")
@role_required(*ROLES)
def callback_needed(call_sid: str):
    """The enquiry could not be concluded on the call: a callback is owed from the call's arrival."""
    call_sid = _call_sid(call_sid)
    return _callback_asked_for(
        f"call-{call_sid}", lambda session: owed.record_not_concluded(
            session, settings(), call_sid=call_sid, agent_id=current_user.id, now=clock(), note=form_note(),
            number=request.form.get("number") or None),
        colleague="A colleague has just recorded this call's outcome: see the queue.")


def _callback_asked_for(at: str, owe, colleague: str):
    """Run `owe(session)`, the callback an agent asks for, and say when it is due; or why not, at
    `at` with what was typed put back. `colleague`: what to say when another agent's callback for
    the same contact was stored in the same instant."""
    typed = {"panel": "callback", "note": request.form.get("note", "")[:MAX_NOTE * 2],
             "number": request.form.get("number", "")[:64]}
    try:
        with database().session() as session:
            callback = owe(session)
            reference = queue.reference_of(session, callback_id=callback.id)
    except waiting.NoSuchEnquiry:
        abort(404)
    except (owed.CallbackError, waiting.EnquiryError) as refusal:
        return refused(at, str(refusal), typed)
    except IntegrityError as error:
        if "contact_key" not in str(error.orig):  # the database refused it for another reason
            raise
        return refused(at, colleague, typed)
    now = clock()
    due = queue.when(callback.due_at, local(now).date())
    late = " That is already past: call them now." if callback.due_at < now else ""
    return say(f"callback-{callback.id}", f"A callback is now owed for {reference}, due by {due}.{late}")


def _form_id(name: str) -> int | None:
    """A whole number the form sent back, or None if it sent none or something else."""
    text = request.form.get(name, "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None


@bp.post("/queue/emails/<id:enquiry_id>/answered")
@role_required(*ROLES)
def email_answered(enquiry_id: int):
    """The agent has answered the email enquiry: it leaves the list of emails awaiting a response."""
    try:
        with database().session() as session:
            reference = waiting.mark_answered(session, enquiry_id, agent_id=current_user.id, now=clock(),
                                              seen=_form_id("seen"))
    except waiting.NoSuchEnquiry:
        abort(404)
    except waiting.EnquiryError as refusal:
        return say("emails", str(refusal), "error")
    return say("emails", f"{reference} is marked as answered.")


@bp.post("/queue/emails/<id:enquiry_id>/callback")
@role_required(*ROLES)
def email_callback_needed(enquiry_id: int):
    """The email enquiry cannot be concluded by email: a callback is owed from its newest email's receipt."""
    return _callback_asked_for(
        f"email-{enquiry_id}", lambda session: waiting.callback_needed(
            session, settings(), enquiry_id, agent_id=current_user.id, now=clock(), seen=_form_id("seen"),
            number=request.form.get("number", "")[:64], note=form_note()),
        colleague="A colleague has just recorded a callback for this enquiry: see the callbacks above.")


@bp.post("/queue/emails/acknowledgements/<id:acknowledgement_id>/retry")
@role_required(*ROLES)
def retry_acknowledgement(acknowledgement_id: int):
    """Send a failed acknowledgement again (at the scheduler's next run, within 15 seconds)."""
    try:
        with database().session() as session:
            reference = sending.retry_acknowledgement(session, acknowledgement_id, clock())
    except sending.NoSuchAcknowledgement:
        abort(404)
    except sending.AcknowledgementError as refusal:
        return say("emails", str(refusal), "error")
    return say("emails", f"The acknowledgement for {reference} will be sent again within 15 seconds.")
