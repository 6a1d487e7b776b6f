"""Twilio's call log, as the simulator plays it: a read-only stand-in for the Calls resource.

The help desk's scheduler asks Twilio's REST API about calls (helpdesk/voice/lookup.py): how
a call with no ending ended, and which calls to the desk's numbers never reached the app. In a
demo there is no Twilio account, so `helpdesk simulate --call-log-port` serves the calls it
placed here, the way Twilio's API lists them, and the app is pointed at it with
TWILIO_API_BASE_URL. Calls placed "while the app could not be reached" (`--unreached`) are in
the log but sent no webhook, as in a real outage.

Served on 127.0.0.1 only, with HTTP basic authentication by the account SID and auth token:

    GET /2010-04-01/Accounts/{AccountSid}/Calls.json?To=&StartTime=&StartTime>=&StartTime<=&ParentCallSid=&PageSize=&Page=
    GET /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json
    GET /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Recordings.json   (always empty)

With ``outbound`` (helpdesk/simulator_outbound.py), it places calls too, as "Call back now" asks:

    POST /2010-04-01/Accounts/{AccountSid}/Calls.json   (To, From, Url, StatusCallback, ...)

Anything else gets Twilio's 404 answer; any other method, 405.
"""
from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

if TYPE_CHECKING:  # pragma: no cover
    from helpdesk.simulator_outbound import OutboundCalls

logger = logging.getLogger(__name__)

_ACCOUNT = r"/2010-04-01/Accounts/(?P<account>AC[0-9a-fA-F]{32})"
_LIST = re.compile(_ACCOUNT + r"/Calls\.json")
_ONE = re.compile(_ACCOUNT + r"/Calls/(?P<sid>CA[0-9a-fA-F]{32})\.json")
_RECORDINGS = re.compile(_ACCOUNT + r"/Calls/(?P<sid>CA[0-9a-fA-F]{32})/Recordings\.json")
MAX_PAGE_SIZE = 1000  # Twilio's largest page
MAX_BODY = 64 * 1024  # a Calls request is a few hundred bytes


@dataclass(frozen=True)
class LoggedCall:
    """One call as the log lists it: an inbound call to the desk (no parent), or an agent leg."""

    sid: str
    from_: str
    to: str
    start_time: datetime
    end_time: datetime
    status: str = "completed"
    direction: str = "inbound"
    parent_sid: str | None = None

    def resource(self, account_sid: str, now: datetime) -> dict:
        """The Call resource's JSON at `now`, with the fields Twilio gives (times in RFC 2822, as
        Twilio writes them): a call that has not ended by `now` is in progress, with no end."""
        going_on = self.end_time > now
        return {
            "sid": self.sid, "account_sid": account_sid, "parent_call_sid": self.parent_sid,
            "status": "in-progress" if going_on else self.status, "direction": self.direction,
            "from": self.from_, "to": self.to, "start_time": format_datetime(self.start_time),
            "end_time": None if going_on else format_datetime(self.end_time),
            "date_created": format_datetime(self.start_time),
            "date_updated": format_datetime(min(now, self.end_time)),
            "duration": None if going_on else str(int((self.end_time - self.start_time).total_seconds())),
            "api_version": "2010-04-01", "uri": f"/2010-04-01/Accounts/{account_sid}/Calls/{self.sid}.json",
        }


class CallLog:
    """The calls placed so far, safe to add to from the simulator's threads while being served.
    `clock` says when it is: a call not ended by then is listed as going on."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._calls: dict[str, LoggedCall] = {}
        self._lock = threading.Lock()
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    def add(self, call: LoggedCall) -> None:
        with self._lock:
            self._calls[call.sid] = call

    def get(self, sid: str) -> LoggedCall | None:
        with self._lock:
            return self._calls.get(sid)

    def matching(self, *, to: str | None = None, parent_sid: str | None = None, started_after: datetime | None = None,
                 started_before: datetime | None = None) -> list[LoggedCall]:
        """The calls that pass every filter given (started in [started_after, started_before)),
        newest first, as Twilio lists them."""
        with self._lock:
            calls = list(self._calls.values())
        found = [call for call in calls
                 if (to is None or call.to == to) and (parent_sid is None or call.parent_sid == parent_sid)
                 and (started_after is None or call.start_time >= started_after)
                 and (started_before is None or call.start_time < started_before)]
        return sorted(found, key=lambda call: (call.start_time, call.sid), reverse=True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)


class CallLogError(Exception):
    """An answer other than 200: Twilio's error JSON."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _when(values: dict[str, list[str]], name: str) -> tuple[datetime, bool] | None:
    """A StartTime filter: an instant as twilio-python sends it (YYYY-MM-DDTHH:MM:SSZ), or a UTC
    date as Twilio documents (YYYY-MM-DD, its midnight); and whether it was a date."""
    text = (values.get(name) or [""])[0]
    if not text:
        return None
    for layout, day in (("%Y-%m-%dT%H:%M:%SZ", False), ("%Y-%m-%d", True)):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=timezone.utc), day
        except ValueError:
            continue
    raise CallLogError(400, 20001, f"Invalid {name}: {text}")


def _period(values: dict[str, list[str]]) -> tuple[datetime | None, datetime | None]:
    """The StartTime filters as [from, until) instants, as Twilio describes them: StartTime=D,
    calls that started on the date D; StartTime>=D (the parameter StartTime>), on or after it;
    StartTime<=D (StartTime<), before it. An instant instead of a date means that instant."""
    after = before = None
    if (on := _when(values, "StartTime")) is not None:
        after, before = on[0], on[0] + (timedelta(days=1) if on[1] else timedelta(seconds=1))
    if (given := _when(values, "StartTime>")) is not None:
        after = given[0]
    if (given := _when(values, "StartTime<")) is not None:
        before = given[0]
    return after, before


def _whole(values: dict[str, list[str]], name: str, default: int, highest: int) -> int:
    text = (values.get(name) or [str(default)])[0]
    if not text.isdigit() or int(text) > highest:
        raise CallLogError(400, 20001, f"Invalid {name}: {text}")
    return int(text)


def list_page(log: CallLog, account_sid: str, path: str, query: str) -> dict:
    """One page of Calls.json for `query`, with next_page_uri when there are more."""
    values = parse_qs(query, keep_blank_values=True)
    after, before = _period(values)
    size = _whole(values, "PageSize", 50, MAX_PAGE_SIZE)
    if size < 1:
        raise CallLogError(400, 20001, "Invalid PageSize: 0")
    page = _whole(values, "Page", 0, 10**6)
    calls = log.matching(to=(values.get("To") or [None])[0], parent_sid=(values.get("ParentCallSid") or [None])[0],
                         started_after=after, started_before=before)
    shown = calls[page * size:(page + 1) * size]
    more = (page + 1) * size < len(calls)
    kept = [(name, value) for name, value in parse_qs(query).items() if name not in ("Page", "PageToken")]

    def uri(number: int) -> str:
        pairs = [(name, item) for name, items in kept for item in items] + [("Page", str(number))]
        return f"{path}?{urlencode(pairs)}"

    now = log.clock()
    return {"calls": [call.resource(account_sid, now) for call in shown], "page": page, "page_size": size,
            "start": page * size, "end": page * size + max(len(shown) - 1, 0), "uri": uri(page),
            "first_page_uri": uri(0), "previous_page_uri": uri(page - 1) if page else None,
            "next_page_uri": uri(page + 1) if more else None}


def answer(log: CallLog, account_sid: str, auth_token: str, method: str, target: str,
           authorization: str | None, body: str = "", outbound: "OutboundCalls | None" = None) -> tuple[int, dict]:
    """The status and JSON body Twilio would give for one request."""
    try:
        parts = urlsplit(target)
        path = parts.path
        calls = _LIST.fullmatch(path)
        placing = method == "POST" and outbound is not None and calls is not None
        if method != "GET" and not placing:
            raise CallLogError(405, 20004, "Method not allowed: this stand-in only reads the call log")
        expected = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        if not hmac.compare_digest((authorization or "").encode(), expected.encode()):
            raise CallLogError(401, 20003, "Authenticate")
        if calls and calls["account"] == account_sid:
            if placing:
                # twilio-python sends a list parameter once for each value: StatusCallbackEvent.
                form = {name: " ".join(values) if name == "StatusCallbackEvent" else values[-1]
                        for name, values in parse_qs(body).items()}
                return 201, outbound.create(form)
            return 200, list_page(log, account_sid, path, parts.query)
        if (found := _ONE.fullmatch(path)) and found["account"] == account_sid:
            call = log.get(found["sid"])
            if call is not None:
                return 200, call.resource(account_sid, log.clock())
        if (found := _RECORDINGS.fullmatch(path)) and found["account"] == account_sid:
            return 200, {"recordings": [], "page": 0, "page_size": 50, "next_page_uri": None,
                         "uri": path, "first_page_uri": path, "previous_page_uri": None, "start": 0, "end": 0}
        raise CallLogError(404, 20404, f"The requested resource {path} was not found")
    except CallLogError as error:
        return error.status, {"code": error.code, "message": error.message, "status": error.status,
                              "more_info": f"https://www.twilio.com/docs/errors/{error.code}"}


class CallLogServer:
    """Serves `log` on 127.0.0.1:`port` (0: any free port) in a background thread."""

    def __init__(self, log: CallLog, account_sid: str, auth_token: str, port: int = 0, host: str = "127.0.0.1",
                 outbound: "OutboundCalls | None" = None):
        served = (log, account_sid, auth_token)

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                sent = self.rfile.read(min(length, MAX_BODY)).decode("utf-8", "replace") if length else ""
                status, body = answer(*served, self.command, self.path, self.headers.get("Authorization"), sent,
                                      outbound)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _reply

            def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
                logger.debug("call log: %s", format % args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="call-log", daemon=True)

    def start(self) -> "CallLogServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
