"""A simulated help-desk agent: works the agents' queue page over HTTP, as a person would.

It signs in through /login, then each round reads /queue and submits the page's own forms:
claim an open callback, log an attempt by hand (reached or no answer) or make it with "Call
back now" (``call_back_now_share``: Twilio, or the simulator's stand-in for it, plays the
call), sometimes close it as resolved, now and then release one, and mark some email
enquiries answered. Every figure
it produces therefore comes from the real views and services. A share of callbacks
(``late_share``) is left alone until the page shows them overdue, so the sweep records
breaches too. It prints references and actions only, never numbers, names or addresses.
"""
from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Protocol
from urllib.parse import urljoin

import requests

from callbacks.smtp import redact
from helpdesk.agent_simulator_page import AgentError, Form, QueueItem, QueuePage, parse_queue, words_of

# Also for those who import them from here.
__all__ = ["AgentError", "AgentSimulator", "Behaviour", "Form", "QueueItem", "QueuePage", "RequestsTransport", "Rounds",
           "Transport", "parse_queue", "run"]

log = logging.getLogger(__name__)

NOTES = ("Spoke to the caller; query answered.", "Rang back about their claim.", "Returned the call.")
MISSED_NOTES = ("No answer; will try again.", "Rang out.")


class Transport(Protocol):
    """A browser's session: GET and form POST a path, following redirects, keeping cookies."""

    def get(self, path: str) -> tuple[int, str]: ...

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str]: ...


class RequestsTransport:
    """The real transport: one requests session (its cookie jar holds the sign-in)."""

    def __init__(self, base_url: str, timeout: float = 15.0):
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.session = requests.Session()

    def get(self, path: str) -> tuple[int, str]:
        response = self.session.get(urljoin(self.base_url, path.lstrip("/")), timeout=self.timeout)
        return response.status_code, response.text

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        response = self.session.post(urljoin(self.base_url, path.lstrip("/")), data=form, timeout=self.timeout)
        return response.status_code, response.text

    def close(self) -> None:
        self.session.close()


@dataclass
class Behaviour:
    """How the simulated agent works: shares are chances between 0 and 1."""

    late_share: float = 0.1  # callbacks left alone until overdue (breached)
    reached_share: float = 0.7  # attempts that reach the caller; the rest ring out
    close_share: float = 0.6  # reached callbacks closed as resolved in the same round
    release_share: float = 0.05  # claimed callbacks let go for another agent
    answer_share: float = 0.7  # email enquiries marked answered
    email_callback_share: float = 0.1  # email enquiries that need a call back (the rest keep waiting)
    concluded_share: float = 0.8  # answered calls whose enquiry was concluded on the call
    call_callback_share: float = 0.1  # answered calls that need a callback (the rest are left with no outcome)
    call_back_now_share: float = 0.0  # attempts made with "Call back now" (Twilio rings the agent's phone)
    per_round: int = 5  # callbacks worked each round
    overdue_rounds: int = 30  # a late callback is worked after this many overdue sightings, breach notice or not


@dataclass
class AgentSimulator:
    """One agent at the queue page. `round()` is one look at the page and a few actions."""

    transport: Transport
    username: str
    password: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    rng: random.Random = field(default_factory=random.Random)
    report: Callable[[str], None] = print
    _late: dict[str, bool] = field(default_factory=dict)
    _overdue_seen: dict[str, int] = field(default_factory=dict)
    _answer: dict[str, str] = field(default_factory=dict)  # reference -> "answer", "callback" or "wait"
    _outcome: dict[str, str] = field(default_factory=dict)  # reference -> "concluded", "callback" or "wait"
    _signed_in: bool = False

    def sign_in(self) -> None:
        """Sign in through the login form, with its CSRF token."""
        status, page = self.transport.get("/login")
        if status != 200:
            raise AgentError(f"the sign-in page answered HTTP {status}")
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
        if not token:
            raise AgentError("the sign-in page has no CSRF token")
        status, page = self.transport.post("/login", {"csrf_token": token.group(1), "username": self.username,
                                                      "password": self.password})
        forms = page.replace("'", '"')
        if status != 200 or 'action="/login"' in forms or "There is a problem" in page:
            raise AgentError("sign-in was refused: check the username and HELPDESK_PASSWORD")
        if 'action="/login/code"' in forms or 'action="/account/two-step/on"' in forms:
            raise AgentError(f"{self.username} has two-step sign-in, or their role must have it ([web] "
                             "two_step_for): the simulated agent cannot give its codes. Use an agent without it")
        if 'action="/account/password"' in forms:  # Change your password, before anything else
            raise AgentError(f"{self.username}'s password was set by an administrator, to be replaced at the first "
                             "sign-in: give the simulated agent one to keep with "
                             f"'helpdesk users set-password {self.username} --permanent'")
        self._signed_in = True
        self.report(f"signed in as {self.username}")

    def round(self) -> int:
        """Read /queue and act on it; answers how many actions were taken."""
        if not self._signed_in:
            self.sign_in()
        status, page = self.transport.get("/queue")
        if status != 200 or 'id="queue-items"' not in page:
            self._signed_in = status == 200 and "Sign in" not in page
            raise AgentError(f"the queue page answered HTTP {status}" if status != 200
                             else "the queue page is not as expected (signed out?)")
        queue = parse_queue(page)
        done = 0
        for item in self._to_work(queue.callbacks, queue.breached):
            done += self._work(item)
        for reference, form in queue.emails:
            choice = self._choose(self._answer, reference, (("answer", self.behaviour.answer_share),
                                                            ("callback", self.behaviour.email_callback_share)))
            if choice == "answer":
                done += self._submit(form, {}, f"marked {reference} answered") is not None
                break  # one email a round, as a person reading and replying would
            if choice == "callback" and reference in queue.email_callbacks:
                # A number from the range Ofcom keeps for drama (07700 900000 to 900999).
                number = f"07700 900{self.rng.randrange(1000):03d}"
                done += self._submit(queue.email_callbacks[reference],
                                     {"number": number, "note": "Asked to be rung about their claim."},
                                     f"recorded a callback needed for {reference}") is not None
                break
        done += self._record_outcome(queue.answered)
        return done

    def _choose(self, chosen: dict[str, str], reference: str, shares: tuple[tuple[str, float], ...]) -> str:
        """What the agent does with one item, drawn once and kept: each choice by its share, in
        order, and "wait" for the rest."""
        if reference not in chosen:
            chance, upto = self.rng.random(), 0.0
            chosen[reference] = "wait"
            for name, share in shares:
                upto += share
                if chance < upto:
                    chosen[reference] = name
                    break
        return chosen[reference]

    def _record_outcome(self, answered: dict[str, dict[str, Form]]) -> int:
        """Say what became of one answered call's enquiry a round, as an agent between calls would."""
        for reference, forms in answered.items():
            choice = self._choose(self._outcome, reference, (("concluded", self.behaviour.concluded_share),
                                                             ("callback", self.behaviour.call_callback_share)))
            if choice == "concluded" and "concluded" in forms:
                return self._submit(forms["concluded"], {}, f"recorded {reference} as concluded") is not None
            if choice == "callback" and "callback" in forms:
                return self._submit(forms["callback"], {"note": "Needs an answer from the grants team."},
                                    f"recorded a callback needed for {reference}") is not None
        return 0

    def _to_work(self, callbacks: list[QueueItem], breached: set[str]) -> list[QueueItem]:
        workable = []
        for item in callbacks:
            if not item.reference or ("claim" not in item.forms and "release" not in item.forms):
                continue  # another agent holds it
            late = self._late.setdefault(item.reference, self.rng.random() < self.behaviour.late_share)
            if late and item.state == "overdue":
                self._overdue_seen[item.reference] = self._overdue_seen.get(item.reference, 0) + 1
            if late and item.reference not in breached \
                    and self._overdue_seen.get(item.reference, 0) < self.behaviour.overdue_rounds:
                # Left alone on purpose until the sweep has recorded the breach (the page's
                # notices): the form's whole-minute time could otherwise still be in time.
                continue
            if item.owed_this_minute and not item.attempted and "claim" not in item.forms:
                continue  # claimed already; rung next minute (the form's time would seem early)
            if item.next_try and not item.next_try_now:
                continue  # waiting for the next try
            if item.calling:
                continue  # "Call back now" is ringing: its outcome comes from the call
            workable.append(item)
        return workable[: self.behaviour.per_round]

    def _work(self, item: QueueItem) -> int:
        b, ref = self.behaviour, item.reference
        done = 0
        if "claim" in item.forms:
            page = self._submit(item.forms["claim"], {}, f"claimed {ref}")
            item = _find(page, item.callback_id)
            if item is None:
                return 0
            done += 1
            if self.rng.random() < b.release_share:
                return done + bool(self._act(item, "release", {}, f"released {ref}"))
        if item.owed_this_minute and not item.attempted:
            return done  # the form's time (this minute) is before the call came in: ring next round
        if item.attempted and not item.next_try:  # the caller was reached: the enquiry is dealt with
            return done + bool(self._act(item, "close", {"outcome": "resolved", "note": "Caller helped."},
                                         f"closed {ref} as resolved"))
        if "call" in item.forms and self.rng.random() < b.call_back_now_share:
            # Twilio rings the agent's phone, which answers and presses 1, and dials the caller:
            # how the attempt went comes from its status callbacks, and shows next round.
            return done + bool(self._act(item, "call", {}, f"{ref}, Call back now"))
        reached = self.rng.random() < b.reached_share
        outcome = "reached" if reached else "no_answer"
        note = self.rng.choice(NOTES if reached else MISSED_NOTES)
        page = self._act(item, "attempts", {"outcome": outcome, "note": note},
                         f"{ref}, attempt: {outcome.replace('_', ' ')}")
        if page is None:
            return done
        done += 1
        item = _find(page, item.callback_id)
        if item is not None and reached and self.rng.random() < b.close_share:
            done += bool(self._act(item, "close", {"outcome": "resolved", "note": "Caller helped."},
                                   f"closed {ref} as resolved"))
        return done

    def _act(self, item: QueueItem, action: str, values: dict[str, str], said: str) -> str | None:
        form = item.forms.get(action)
        if form is None:
            self.report(f"could not do it ({said}): the page has no such form")
            return None
        return self._submit(form, values, said)

    def _submit(self, form: Form, values: dict[str, str], said: str) -> str | None:
        """Post a form from the page; the queue page it leads back to, or None if refused."""
        status, page = self.transport.post(form.action, {**form.fields, **values})
        refused = re.search(r'class="notice notice-error[^"]*"[^>]*>(.*?)</p>', page, re.S)
        if status != 200 or refused:
            # The message's own words, up to its link if it has one.
            reason = words_of(refused.group(1).split("<a ")[0]) if refused else f"HTTP {status}"
            self.report(f"could not do it ({said}): {redact(reason)[:200]}")
            return None
        self.report(said)
        return page


def _find(page: str | None, callback_id: int) -> QueueItem | None:
    """The callback on the page an action led back to (None when it has left the list)."""
    if page is None:
        return None
    return next((i for i in parse_queue(page).callbacks if i.callback_id == callback_id), None)


class Rounds(NamedTuple):
    actions: int  # done in all rounds
    played: int
    failed: int  # rounds that failed as a whole (the desk unreachable, the sign-in refused, ...)


def run(agent: AgentSimulator, *, interval: float, rounds: int | None, stopping: Callable[[], bool],
        sleep: Callable[[float], None] = time.sleep) -> Rounds:
    """Rounds until `rounds` are done or `stopping()`; errors are reported and retried next round."""
    total = done = failed = 0
    while not stopping() and (rounds is None or done < rounds):
        try:
            total += agent.round()
        except (AgentError, requests.RequestException) as exc:
            reason = str(exc) if isinstance(exc, AgentError) else f"cannot reach the help desk ({type(exc).__name__})"
            last = rounds is not None and done + 1 >= rounds
            agent.report(f"round {done + 1}: {reason}" + ("" if last else "; trying again next round"))
            log.warning("simulated agent round failed: %s", reason)
            failed += 1
        done += 1
        if not stopping() and (rounds is None or done < rounds):
            sleep(interval)
    return Rounds(total, done, failed)
