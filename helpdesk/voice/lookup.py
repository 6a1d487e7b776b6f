"""What Twilio's REST API says about a call: for calls whose last webhooks never came.

Twilio sends each status callback once. If the app could not be reached when a call ended
(a restart, a network fault), its record would have no ending for good: not counted while still
"in progress", and no callback owed. `helpdesk/voice/reconcile.py` asks the Calls resource instead (and, for a
caller offered voicemail, the call's Recordings), through this small interface:
`TwilioCallLookup` is the real thing, `FakeCallLookup` is for tests.

Every failure is a LookupFailed with a reason fit for the log: no phone numbers.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Mapping, Protocol

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from callbacks.telephony import ApiBaseHttpClient

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # agent legs of one call: a ring group rings each target once
LOG_PAGE_SIZE = 1000  # the calls to a number over a period: Twilio's largest page


class LookupFailed(Exception):
    """The API could not say; `unreachable` when it could not be asked at all (try later);
    `refused` when Twilio did not take the credentials (HTTP 401 or 403)."""

    def __init__(self, reason: str, *, unreachable: bool = False, not_found: bool = False, refused: bool = False):
        super().__init__(reason)
        self.reason, self.unreachable, self.not_found, self.refused = reason, unreachable, not_found, refused

    @classmethod
    def answered(cls, reason: str, status: int) -> "LookupFailed":
        """Twilio answered with the HTTP error `status`: what that means for asking again."""
        return cls(reason, unreachable=status >= 500 or status == 429, not_found=status == 404,
                   refused=status in (401, 403))


@dataclass(frozen=True)
class CallFacts:
    """One Call resource, as much of it as the call's record can use."""

    sid: str
    parent_sid: str | None
    status: str
    start_time: datetime | None
    end_time: datetime | None  # None for a call that "did not complete successfully" (busy, failed, ...)
    duration: str | None  # whole seconds from answer; None for a call nobody answered
    from_: str | None
    to: str | None
    direction: str | None
    updated: datetime | None = None  # the resource's last change: for a finished call, its end

    def params(self) -> list[tuple[str, str]]:
        """As a journal event's parameters: Twilio's webhook names where there is one."""
        values = {
            "CallSid": self.sid, "ParentCallSid": self.parent_sid, "CallStatus": self.status,
            "StartTime": _rfc2822(self.start_time), "EndTime": _rfc2822(self.end_time), "Duration": self.duration,
            "From": self.from_, "To": self.to, "Direction": self.direction, "DateUpdated": _rfc2822(self.updated),
        }
        return _given(values)


@dataclass(frozen=True)
class RecordingFacts:
    """One recording of a call (the Call's Recordings resource): a voicemail left, or not."""

    sid: str
    call_sid: str
    status: str  # "completed" once it can be played
    duration: str | None  # whole seconds
    source: str | None  # "RecordVerb" for a <Record>, as voicemail is taken
    uri: str | None = None

    def params(self) -> list[tuple[str, str]]:
        """As a journal event's parameters, with the names of Twilio's recording webhooks."""
        values = {"CallSid": self.call_sid, "RecordingSid": self.sid, "RecordingStatus": self.status,
                  "RecordingDuration": self.duration, "RecordingSource": self.source, "RecordingUri": self.uri}
        return _given(values)


def _given(values: Mapping[str, object]) -> list[tuple[str, str]]:
    """The values the API gave, as a webhook's parameters: those it left out are left out."""
    return [(name, str(value)) for name, value in values.items() if value not in (None, "")]


def _rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment) if moment is not None else None


class CallLookup(Protocol):
    def call(self, sid: str) -> CallFacts:
        """The call `sid`. Raises LookupFailed."""

    def legs(self, parent_sid: str) -> list[CallFacts]:
        """The calls `parent_sid` made (its <Dial>'s agent legs). Raises LookupFailed."""

    def recordings(self, call_sid: str) -> list[RecordingFacts]:
        """The recordings of the call `call_sid`. Raises LookupFailed."""

    def calls_to(self, number: str, started_after: datetime, started_before: datetime) -> list[CallFacts]:
        """Every call to `number` that started between the two instants, and maybe others: the
        caller keeps those of the period. Raises LookupFailed."""


def _facts(call) -> CallFacts:
    return CallFacts(sid=str(call.sid), parent_sid=call.parent_call_sid, status=str(call.status or ""),
                     start_time=call.start_time, end_time=call.end_time,
                     duration=str(call.duration) if call.duration not in (None, "") else None,
                     from_=call._from, to=call.to, direction=call.direction, updated=call.date_updated)


def _recording(recording) -> RecordingFacts:
    return RecordingFacts(sid=str(recording.sid), call_sid=str(recording.call_sid), status=str(recording.status or ""),
                          duration=str(recording.duration) if recording.duration not in (None, "") else None,
                          source=recording.source, uri=recording.uri)


class TwilioRest:
    """Asks Twilio's REST API, `timeout` seconds at most a request (`api_base_url`: a mock, in
    tests); every failure is a LookupFailed."""

    http_client_class: type[ApiBaseHttpClient] = ApiBaseHttpClient

    def __init__(self, account_sid: str, auth_token: str, api_base_url: str | None = None, timeout: float = 10):
        self.account_sid, self.auth_token = account_sid, auth_token
        self.api_base_url, self.timeout = api_base_url, timeout

    def _ask(self, what: str, request):
        http = self.http_client_class(self.api_base_url, timeout=self.timeout)
        try:
            return request(Client(self.account_sid, self.auth_token, http_client=http))
        except TwilioRestException as error:
            raise LookupFailed.answered(f"{what}: Twilio answered HTTP {error.status} (code {error.code})",
                                        error.status) from error
        except requests.RequestException as error:
            raise LookupFailed(f"{what}: could not reach Twilio ({type(error).__name__})", unreachable=True) from error
        except (TwilioException, ValueError, TypeError, AttributeError, KeyError) as error:
            # A list page that is not 200 is a plain TwilioException("Unable to fetch page", response).
            status = getattr(error.args[1], "status_code", 0) if len(error.args) > 1 else 0
            if isinstance(status, int) and status >= 300:
                raise LookupFailed.answered(f"{what}: Twilio answered HTTP {status}", status) from error
            raise LookupFailed(f"{what}: Twilio's answer could not be read ({type(error).__name__})") from error
        finally:
            if http.session is not None:
                http.session.close()


class TwilioCallLookup(TwilioRest):
    """The Calls resource."""

    def call(self, sid: str) -> CallFacts:
        return self._ask(f"call {sid}", lambda client: _facts(client.calls(sid).fetch()))

    def legs(self, parent_sid: str) -> list[CallFacts]:
        return self._ask(f"the legs of call {parent_sid}", lambda client: [
            _facts(call) for call in client.calls.page(parent_call_sid=parent_sid, page_size=PAGE_SIZE)])

    def calls_to(self, number: str, started_after: datetime, started_before: datetime) -> list[CallFacts]:
        """Every call to `number` that started between the two instants, and possibly others
        (the caller filters): Twilio documents StartTime filters as whole UTC dates. Should it
        read our instants as their dates, StartTime> still takes in every call from `started_after`,
        but StartTime< would leave out the day of `started_before`, so it is sent a day later."""
        # Every page of the call log (the client follows next_page_uri), however many calls.
        return self._ask(f"the calls to {number}", lambda client: [
            _facts(call) for call in client.calls.stream(to=number, start_time_after=started_after,
                                                         start_time_before=started_before + timedelta(days=1),
                                                         page_size=LOG_PAGE_SIZE)])

    def recordings(self, call_sid: str) -> list[RecordingFacts]:
        return self._ask(f"the recordings of call {call_sid}", lambda client: [
            _recording(recording) for recording in client.calls(call_sid).recordings.page(page_size=PAGE_SIZE)])


@dataclass
class FakeCallLookup:
    """For tests: answers from `calls` (by sid) and `recorded`; with `fail` set, raises it; `asked`
    lists the sids asked about, `asked_recordings` the calls whose recordings were asked for."""

    calls: dict[str, CallFacts] = field(default_factory=dict)
    fail: LookupFailed | None = None
    asked: list[str] = field(default_factory=list)
    recorded: list[RecordingFacts] = field(default_factory=list)
    asked_recordings: list[str] = field(default_factory=list)
    asked_log: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    def add(self, *calls: CallFacts) -> None:
        self.calls.update((call.sid, call) for call in calls)

    def call(self, sid: str) -> CallFacts:
        self.asked.append(sid)
        if self.fail is not None:
            raise self.fail
        if sid not in self.calls:
            raise LookupFailed(f"call {sid}: Twilio answered HTTP 404 (code 20404)", not_found=True)
        return self.calls[sid]

    def legs(self, parent_sid: str) -> list[CallFacts]:
        if self.fail is not None:
            raise self.fail
        return [call for call in self.calls.values() if call.parent_sid == parent_sid]

    def recordings(self, call_sid: str) -> list[RecordingFacts]:
        self.asked_recordings.append(call_sid)
        if self.fail is not None:
            raise self.fail
        return [recording for recording in self.recorded if recording.call_sid == call_sid]

    def calls_to(self, number: str, started_after: datetime, started_before: datetime) -> list[CallFacts]:
        self.asked_log.append((number, started_after, started_before))
        if self.fail is not None:
            raise self.fail
        return [call for call in self.calls.values() if call.to == number and call.start_time is not None
                and started_after <= call.start_time <= started_before]


def lookup_from_environment(environ: Mapping[str, str] | None = None) -> TwilioCallLookup | None:
    """The real lookup from TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (TWILIO_API_BASE_URL: a mock), or None."""
    env = os.environ if environ is None else environ
    sid, token = (env.get(key, "").strip() for key in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"))
    if not sid or not token:
        return None
    return TwilioCallLookup(sid, token, env.get("TWILIO_API_BASE_URL", "").strip() or None)
