"""What report.pdf says in sentences about what came in and what its figures leave out: counts
only (from the Tally), never rows."""
from __future__ import annotations

from collections import Counter

from metrics.evidence.tally import RECORDED_OUTCOMES, Tally

PROVISIONAL = ("Provisional: this period had not ended when the pack was made. Callbacks and acknowledgements "
               "not yet due, and calls still going on, are not counted yet, so these figures may still change. "
               "Export the period again once it is over for final figures.")


def _were(count: int) -> str:
    return f"{count:,} {'was' if count == 1 else 'were'}"


def not_yet_due_words(callbacks: int, acknowledgements: int) -> str:
    """Why a pack made after its period ended is still provisional: items owed in it not yet due."""
    items = [f"{callbacks:,} callback{'' if callbacks == 1 else 's'}"] if callbacks else []
    items += ([f"{acknowledgements:,} email acknowledgement{'' if acknowledgements == 1 else 's'}"]
              if acknowledgements else [])
    one = callbacks + acknowledgements == 1
    return (f"Provisional: {' and '.join(items)} owed in this period {'was' if one else 'were'} not yet due when the "
            f"pack was made, so the figures do not count {'it' if one else 'them'} yet and may still change. Export "
            "the period again once they are due for final figures.")


def calls_words(calls, titles: dict[str, str]) -> str:
    """How many calls came in, and which of them the ten-ring figures leave out, and why."""
    total = sum(calls.values())
    if not total:
        return "No call came in during this period."
    counted = sum(n for (_, was_counted, _), n in calls.items() if was_counted)
    outside = sum(n for (in_hours, _, _), n in calls.items() if not in_hours)
    left = Counter({outcome: n for (in_hours, was_counted, outcome), n in calls.items()
                    if in_hours and not was_counted})
    hung_up, waiting = left.pop("abandoned", 0), left.pop("in_progress", 0)
    reasons = [f"{outside:,} outside opening hours"] if outside else []
    reasons += [f"{hung_up:,} whose caller hung up within the target"] if hung_up else []
    reasons += [f"{waiting:,} still waiting, within the target, when the pack was made"] if waiting else []
    # None by the rules; said rather than lost, should it ever happen.
    reasons += [f"{sum(left.values()):,} for another reason"] if sum(left.values()) else []
    return (f"{total:,} call{'' if total == 1 else 's'} came in; {_were(counted)} counted for "
            f"\u201c{titles['answer_within_rings']}\u201d."
            + (f" Not counted: {'; '.join(reasons)}." if reasons else "")
            + " calls.csv lists every call (in_hours, counted, outcome).")


def outcomes_words(outcomes: Counter, late_by: Counter, undated_by: Counter) -> str:
    """What agents recorded of the answered calls' enquiries: a callback is owed for one only when
    an agent says so, so an auditor should see how many have nothing recorded, and how many were
    recorded more than a day after the call (the agents' page lists older calls on request)."""
    answered = sum(outcomes.values())
    if not answered:
        return ""
    text = (f"Of {answered:,} answered call{'' if answered == 1 else 's'}, agents recorded "
            f"{outcomes['concluded']:,} as concluded on the call and {outcomes['callback_needed']:,} as needing a "
            f"callback; {outcomes['none_recorded']:,} {'has' if outcomes['none_recorded'] == 1 else 'have'} "
            "neither recorded, so no callback is owed for "
            f"{'it' if outcomes['none_recorded'] == 1 else 'them'} (calls.csv: enquiry_outcome).")
    recorded = sum(outcomes[name] for name in RECORDED_OUTCOMES)
    if not recorded:
        return text
    late, undated = sum(late_by.values()), sum(undated_by.values())
    text += (f" Of the {recorded:,} recorded, {_were(late) if late else 'none was'} recorded more than a day after "
             "the call was answered"
             + (f": {late_by['concluded']:,} concluded and {late_by['callback_needed']:,} needing a callback"
                if late else "")
             + " (calls.csv: enquiry_outcome_recorded).")
    if late_by["callback_needed"]:
        text += " A callback is owed from its call, however late it is recorded."
    if undated:
        text += (f" When {undated:,} {'was' if undated == 1 else 'were'} recorded is not known: before the time was "
                 "kept.")
    return text


def versions_words(versions: dict, current: str) -> str:
    """When other configuration versions than the current one judged the period's calls or callbacks,
    say so: the rules in words describe the current version only. Nothing when only it did."""
    together = Counter()
    for counts in versions.values():
        together.update(counts)
    if set(together) <= {current}:
        return ""
    listed = ", ".join(f"{version or 'not recorded'} ({count:,})" for version, count in sorted(together.items()))
    return (f"These rules are configuration version {current}'s, in force when the pack was made. This period's "
            f"calls and callbacks were judged under these versions (how many under each): {listed}. calls.csv and "
            "callbacks.csv give each one's version (config_version); the rules of another version are in its "
            "configuration file.")


# Mail the intake took in that is not an enquiry, and is never acknowledged (callbacks.email.parse.classify).
NOT_ENQUIRIES = {"auto_reply": ("automatic reply", "automatic replies"), "bounce": ("bounce", "bounces"),
                 "list": ("from a mailing list", "from mailing lists"),
                 "own_address": ("from the help desk's own address",) * 2, "null_sender": ("with no sender",) * 2}


def emails_words(emails: Counter, awaiting: int = 0) -> str:
    """How many emails came in, which opened or joined enquiries, and which the figures leave out, and why;
    and how many enquiries still awaited a response (any of them may yet be owed a callback)."""
    total = sum(emails.values())
    if not total:
        return "No email came in during this period."
    opened, limited, joined = emails["new_enquiry"] + emails["rate_limited"], emails["rate_limited"], emails["joined"]
    text = f"{total:,} email{'' if total == 1 else 's'} came in: {opened:,} opened an enquiry"
    if limited:
        text += (f" ({limited:,} of them not acknowledged, and not counted, because the sender had passed the flood "
                 "guard's limit)")
    text += f" and {joined:,} joined one (a reply, not acknowledged again)."
    others = sorted((NOT_ENQUIRIES.get(decision, (decision,) * 2)[n != 1], n) for decision, n in emails.items()
                    if decision not in ("new_enquiry", "rate_limited", "joined") and n)
    if others:
        count = sum(n for _, n in others)
        text += (f" {_were(count)} not enquiries, so not acknowledged and not in emails.csv: "
                 + "; ".join(f"{n:,} {words}" for words, n in others) + ".")
    if awaiting:
        text += (f" {awaiting:,} email enquir{'y' if awaiting == 1 else 'ies'} from this period still awaited a "
                 "response when the pack was made (emails.csv: enquiry_status); a callback an agent records for one "
                 "later is owed from its email, and would change these figures.")
    return text


def callbacks_words(tally: Tally) -> str:
    """Of the callbacks counted, how many reached the caller, and how many breaches a late entry corrected."""
    counted = sum(tally.lead.values())
    if not counted:
        return ""
    text = f"Of {counted:,} callback{'' if counted == 1 else 's'} counted, {tally.reached:,} reached the caller."
    if tally.corrected:
        text += (f" {_were(tally.corrected)} met only after a breach had been recorded: an attempt made in time "
                 "was entered after the deadline passed (callbacks.csv: breach_recorded with met; "
                 "callback_attempts.csv: recorded; the audit log names who entered "
                 f"{'it' if tally.corrected == 1 else 'each'}).")
    return text


def withdrawn_words(count: int) -> str:
    """Callbacks that left the figures by being withdrawn: an auditor should see how many."""
    if not count:
        return "No callback was withdrawn before its deadline was decided."
    return (f"{count:,} callback{' was' if count == 1 else 's were'} withdrawn before {'its' if count == 1 else 'their'} "
            "deadline was decided, so the callback figures do not count "
            f"{'it' if count == 1 else 'them'}. callbacks.csv lists {'it' if count == 1 else 'them'} (closed_outcome "
            "\u201cwithdrawn\u201d); the agent's reason is in the note, included when notes are.")


def no_number_words(count: int) -> str:
    """Callbacks that left the figures because there was nobody they could ring (none: nothing said)."""
    if not count:
        return ""
    them = "it" if count == 1 else "them"
    return (f"{count:,} callback{' was' if count == 1 else 's were'} closed as unreachable before "
            f"{'its' if count == 1 else 'their'} deadline was decided because there was no number to dial, so the "
            f"callback figures do not count {them} either. callbacks.csv lists {them} (closed_outcome "
            "\u201cunreachable\u201d, counted \u201cno\u201d).")
