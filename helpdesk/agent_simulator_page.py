"""The agents' queue page as the simulated agent (helpdesk/agent_simulator.py) reads it: the open
callbacks, email enquiries and answered calls, each with the forms an agent can submit."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

_REFERENCE = re.compile(r"\b[A-Z]{2,4}-[0-9]{4}-[0-9]{4,}\b")
_CALLBACK_ACTION = re.compile(r"/queue/([0-9]+)/(claim|release|attempts|close|call)(?:\?.*)?$")
# What the page says while a "Call back now" call rings the agent's phone or the caller.
_CALLING = ("Ringing the agent's phone", "Ringing the caller now")
_CALL_ACTION = re.compile(r"/queue/calls/(CA[0-9a-f]{32})/(concluded|callback)(?:\?.*)?$")
# A breach notice, the markup that keeps its reference whole (if any) between its words.
_BREACHED = re.compile(r"Breached:\s*(?:<[^>]*>\s*)*([A-Z]{2,4}-[0-9]{4}-[0-9]{4,})\b")
_TAG = re.compile(r"<[^>]*>")
_EMAIL_ACTION = re.compile(r"/queue/emails/([0-9]+)/(answered|callback)(?:\?.*)?$")


class AgentError(Exception):
    """The help desk could not be reached, refused, or its page was not as expected."""


@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class QueueItem:
    """One open callback as the page shows it."""

    callback_id: int
    reference: str = ""
    state: str = ""
    forms: dict[str, Form] = field(default_factory=dict)  # "claim", "release", "attempts", "close", "call"
    attempted: bool = False
    next_try: bool = False  # a retry is scheduled (the last attempt did not reach the caller)
    next_try_now: bool = False
    owed_this_minute: bool = False  # the form's times are whole minutes: an attempt now would seem early
    calling: bool = False  # a "Call back now" call is ringing the agent's phone or the caller


@dataclass
class QueuePage:
    callbacks: list[QueueItem] = field(default_factory=list)
    emails: list[tuple[str, Form]] = field(default_factory=list)  # (reference, "Mark as answered" form)
    email_callbacks: dict[str, Form] = field(default_factory=dict)  # reference -> "Callback needed" form
    # Answered calls awaiting an outcome: reference -> {"concluded": form, "callback": form}.
    answered: dict[str, dict[str, Form]] = field(default_factory=dict)
    breached: set[str] = field(default_factory=set)  # references the sweep has recorded as breached


class _PageParser(HTMLParser):
    """Collects the queue's forms (with their hidden and pre-filled fields) and each item's facts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str | None, Form]] = []  # (enclosing row or item id, form)
        self.texts: dict[str, list[str]] = {}
        self.states: dict[str, str] = {}
        self._container: str | None = None
        self._nested = 0  # list items open inside the current item
        self._form: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        item = tag in ("li", "tr") and re.fullmatch(r"(callback|email)-[0-9]+|call-CA[0-9a-f]{32}", a.get("id", ""))
        if tag in ("li", "tr") and self._container and not item:
            self._nested += 1  # a list inside the item (its attempts so far)
        elif item:
            self._container = a["id"]
            self.texts[self._container] = []
            self.states[self._container] = next(
                (c.removeprefix("state-") for c in a.get("class", "").split() if c.startswith("state-")), "")
        elif tag == "form" and a.get("method", "").lower() == "post":
            self._form = Form(a.get("action", ""))
            self.forms.append((self._container, self._form))
        elif tag == "input" and self._form is not None and a.get("name") and a.get("type") != "radio":
            self._form.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag in ("li", "tr") and self._nested:
            self._nested -= 1
        elif tag in ("li", "tr") and self._container and self._form is None:
            self._container = None

    def handle_data(self, data: str) -> None:
        if self._container:
            self.texts[self._container].append(data)


def words_of(fragment: str) -> str:
    """A fragment of the page as its words: the markup taken out, spaces collapsed."""
    return " ".join(_TAG.sub("", fragment).split())


def parse_queue(page: str) -> QueuePage:
    """The open callbacks and email enquiries on /queue, with the forms an agent can submit."""
    parser = _PageParser()
    parser.feed(page)
    parser.close()
    items: dict[int, QueueItem] = {}
    result = QueuePage()
    for container, form in parser.forms:
        path = urlsplit(form.action).path + (f"?{urlsplit(form.action).query}" if urlsplit(form.action).query else "")
        text = " ".join(" ".join(parser.texts.get(container or "", [])).split())
        reference = (_REFERENCE.search(text) or [""])[0] if container else ""
        if match := _CALLBACK_ACTION.search(path):
            callback_id = int(match.group(1))
            item = items.setdefault(callback_id, QueueItem(callback_id))
            item.reference = reference
            item.state = parser.states.get(container or "", "")
            item.attempted = "None yet" not in text
            item.next_try = "next try" in text
            item.next_try_now = "next try now" in text
            item.calling = any(words in text for words in _CALLING)
            owed = re.search(r"Owed from ([0-9]{1,2}:[0-9]{2})", text)
            started = form.fields.get("started_at", "")
            if owed and started:
                item.owed_this_minute = started.endswith("T" + owed.group(1).zfill(5))
            item.forms[match.group(2)] = form
        elif match := _CALL_ACTION.search(path):
            result.answered.setdefault(reference, {})[match.group(2)] = form
        elif match := _EMAIL_ACTION.search(path):
            if match.group(2) == "answered":
                result.emails.append((reference, form))
            else:
                result.email_callbacks[reference] = form
    result.callbacks = list(items.values())
    result.breached = set(_BREACHED.findall(page))
    if "csrf_token" not in page and (result.callbacks or result.emails):
        raise AgentError("the queue page's forms carry no CSRF token")
    return result
