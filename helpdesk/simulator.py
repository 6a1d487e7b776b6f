"""Call simulator: plays Twilio's part against a running help desk, for end-to-end tests and demos.

Each simulated call sends the webhooks Twilio would send for an inbound call, signed with the
auth token (``X-Twilio-Signature``) and carrying an ``I-Twilio-Idempotency-Token``, and executes
the TwiML the app answers with (see :mod:`helpdesk.simulator_call`). Only two URLs are fixed,
as on a real Twilio number: ``{base}/twilio/voice/incoming`` (the Voice URL) and
``{base}/twilio/voice/status`` (the status callback); the agent side of a queue is
``{base}/twilio/voice/dequeue``. Every other URL comes from the TwiML.

Time is virtual: each call keeps its own clock, starting at the wall clock when its incoming
request is sent, and status callback ``Timestamp`` values come from it. With ``speed=0`` nothing
waits; with ``speed=1`` the simulator sleeps in real time (``speed=10``: ten times faster).

    helpdesk simulate --url http://127.0.0.1:5000 --calls 50 --rate 2 --seed 7
"""
from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, NamedTuple, Protocol
from urllib.parse import urlsplit

import click
import requests
from twilio.request_validator import RequestValidator

from helpdesk.clock import LONDON
from helpdesk.simulator_calllog import CallLog, CallLogServer, LoggedCall
from helpdesk.simulator_call import CallSession
from helpdesk.simulator_twiml import WITHHELD, CallTrace, RequestRecord, new_sid

__all__ = [
    "AUTO", "CallScenario", "CallTrace", "RequestRecord", "RequestsTransport", "Simulator", "TrafficProfile",
    "TrafficResult", "TrafficSummary", "Transport", "run_traffic", "simulate_command",
]

logger = logging.getLogger(__name__)

FAKE_ACCOUNT_SID = "AC" + "0" * 32
HELP_DESK_NUMBER = "+448001217479"
AUTO = "auto"  # CallScenario.digits: press the digit for the caller's kind
DEFAULT_IVR_DIGITS = {"dwp": "1", "customer": "2"}
OUTCOMES = ("answered", "abandoned", "no_answer", "voicemail", "failed")
UNREACHED_SECONDS = 6  # Twilio's "an application error has occurred", then it hangs up
# --unreached: an outage before the run, in the OUTAGE_LENGTH that ended OUTAGE_ENDED ago. Long
# enough ago that the scheduler's first look in the call log finds them (it leaves the last
# webhooks.reconcile_after_minutes, 15 by default, to their webhooks).
OUTAGE_ENDED = timedelta(minutes=20)
OUTAGE_LENGTH = timedelta(minutes=10)


class Transport(Protocol):
    """Delivers one form-encoded POST; answers ``(status, body)``, status 0 when unreachable."""

    def post(self, url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> tuple[int, str]: ...


class RequestsTransport:
    """The real transport: requests, one session per thread, a 15 s timeout as Twilio's."""

    def __init__(self, timeout: float = 15.0):
        self.timeout = timeout
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def post(self, url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> tuple[int, str]:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(session)
        try:
            response = session.post(url, data=params, headers=headers, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            logger.warning("Could not reach %s: %s", urlsplit(url).path, type(exc).__name__)
            return 0, ""
        return response.status_code, response.text

    def close(self) -> None:
        """Close every thread's connection pool."""
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


@dataclass(frozen=True)
class CallScenario:
    """One simulated caller. Times are seconds after the call arrives at Twilio.

    ``answer_after``: when a person becomes free to answer (None: nobody ever does).
    ``abandon_after``: when the caller gives up if still unanswered (None: they never do, though
    the simulator's ``max_call_seconds`` still ends an endless wait).
    ``talk_seconds``: how long the conversation lasts, or the voicemail message if they leave one.
    ``digits``: what the caller presses at an IVR menu: ``AUTO`` for the kind's digit,
    None for nothing, or the keys themselves. ``seed`` fixes the call's SIDs and choices.
    ``agent_voicemail_after``: when one agent's phone sends the call to its own voicemail, if
    nobody has answered by then (None: no phone does).
    """

    caller: str = "+447700900123"
    kind: str = "customer"  # "dwp" or "customer"
    answer_after: float | None = 12.0
    abandon_after: float | None = None
    leaves_voicemail: bool = False
    talk_seconds: float = 90.0
    digits: str | None = AUTO
    seed: int | None = None
    agent_voicemail_after: float | None = None


class Simulator:
    """Plays Twilio's part for inbound calls to the help desk at ``base_url``.

    ``duplicate`` is the probability that any request is delivered twice (same parameters, same
    idempotency token); ``out_of_order`` the probability that a call's status callbacks are held
    back until it ends and arrive shuffled (otherwise each arrives as it fires). ``clock`` gives
    the wall clock (aware datetime); ``sleep`` is used when ``speed > 0``. With ``call_log``,
    every call placed is entered in it, as Twilio's call log would list it.
    """

    def __init__(self, base_url: str, auth_token: str, account_sid: str = FAKE_ACCOUNT_SID,
                 transport: Transport | None = None, clock: Callable[[], datetime] | None = None,
                 rng: random.Random | None = None, speed: float = 0.0, *, to_number: str = HELP_DESK_NUMBER,
                 duplicate: float = 0.0, out_of_order: float = 0.0, ivr_digits: dict[str, str] | None = None,
                 max_call_seconds: float = 1800.0, sleep: Callable[[float], None] = time.sleep,
                 call_log: CallLog | None = None):
        if not auth_token:
            raise ValueError("an auth token is needed to sign requests")
        self.base_url = base_url.rstrip("/")
        self.account_sid = account_sid
        self.transport = transport if transport is not None else RequestsTransport()
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.rng = rng or random.Random()
        self.speed = speed
        self.to_number = to_number
        self.duplicate = duplicate
        self.out_of_order = out_of_order
        self.ivr_digits = dict(DEFAULT_IVR_DIGITS if ivr_digits is None else ivr_digits)
        self.max_call_seconds = max_call_seconds
        self.sleep = sleep
        self.call_log = call_log
        self._validator = RequestValidator(auth_token)
        self._lock = threading.Lock()

    def sign(self, url: str, params: list[tuple[str, str]]) -> str:
        """The ``X-Twilio-Signature`` Twilio would send for this exact URL and body."""
        return self._validator.compute_signature(url, dict(params))

    def digits_for(self, scenario: CallScenario) -> str | None:
        """The keys this caller presses at an IVR menu, or None."""
        if scenario.digits == AUTO:
            return self.ivr_digits.get(scenario.kind)
        return scenario.digits or None

    def run_call(self, scenario: CallScenario) -> CallTrace:
        """Play one inbound call from start to finish, status callbacks included."""
        session = CallSession(self, scenario, random.Random(self._seed(scenario)))
        trace = session.run()
        if self.call_log is not None:
            start = session.start.replace(microsecond=0)  # the log has whole seconds
            self.call_log.add(LoggedCall(trace.call_sid, scenario.caller, self.to_number, start,
                                         start + timedelta(seconds=round(trace.duration))))
        return trace

    def _seed(self, scenario: CallScenario) -> int:
        """The scenario's seed, or one from the simulator's generator (shared by the call threads)."""
        if scenario.seed is not None:
            return scenario.seed
        with self._lock:
            return self.rng.getrandbits(64)

    def unreached_call(self, scenario: CallScenario, start: datetime) -> LoggedCall:
        """A call that rang while the app could not be reached: Twilio played its error message
        for a few seconds and hung up, and sent no webhook. Only the call log has it."""
        start = start.replace(microsecond=0)
        call = LoggedCall(new_sid(random.Random(self._seed(scenario)), "CA"), scenario.caller, self.to_number, start,
                          start + timedelta(seconds=UNREACHED_SECONDS))
        if self.call_log is not None:
            self.call_log.add(call)
        return call


@dataclass(frozen=True)
class TrafficProfile:
    """How simulated callers behave, as distributions; deterministic for a given ``seed``.

    ``abandon_rate``: share of callers nobody reaches in time, who hang up after a time uniform in
    ``abandon_min..abandon_max`` s. ``no_answer_rate``: share nobody answers and who never give up.
    Everybody else is answerable after a lognormal time (``answer_median``, ``answer_sigma``).
    ``voicemail_rate``: the chance that a caller nobody answers leaves a message.
    ``agent_voicemail_rate``: the share of calls on which one agent's phone sends the call to its
    own voicemail ``agent_voicemail_after`` seconds after arrival, if nobody answered first.
    """

    answer_median: float = 12.0
    answer_sigma: float = 0.8
    abandon_rate: float = 0.08
    abandon_min: float = 5.0
    abandon_max: float = 90.0
    no_answer_rate: float = 0.05
    voicemail_rate: float = 0.6
    dwp_share: float = 0.3
    withheld_rate: float = 0.05
    talk_median: float = 90.0
    talk_sigma: float = 0.6
    seed: int | None = None
    agent_voicemail_rate: float = 0.0
    agent_voicemail_after: float = 20.0

    def __post_init__(self) -> None:
        if self.abandon_rate + self.no_answer_rate > 1:
            raise ValueError("abandon_rate + no_answer_rate cannot exceed 1")

    def scenarios(self, count: int) -> list[CallScenario]:
        """``count`` callers, the same ones every time for the same seed."""
        rng = random.Random(self.seed)
        return [self._scenario(rng) for _ in range(count)]

    def _scenario(self, rng: random.Random) -> CallScenario:
        kind = "dwp" if rng.random() < self.dwp_share else "customer"
        caller = WITHHELD if rng.random() < self.withheld_rate else "+447700900%03d" % rng.randrange(1000)
        roll = rng.random()
        answer: float | None = round(rng.lognormvariate(math.log(self.answer_median), self.answer_sigma), 1)
        patience = round(rng.uniform(self.abandon_min, self.abandon_max), 1)
        if roll < self.abandon_rate + self.no_answer_rate:
            answer = None
        scenario = CallScenario(
            caller=caller, kind=kind, answer_after=answer,
            abandon_after=patience if roll < self.abandon_rate else None,
            leaves_voicemail=rng.random() < self.voicemail_rate,
            talk_seconds=max(5, round(rng.lognormvariate(math.log(self.talk_median), self.talk_sigma))),
            seed=rng.getrandbits(64),
        )
        # Drawn from the call's own seed, so a seed gives the same callers whatever the rate.
        if (self.agent_voicemail_rate
                and random.Random(f"agent-voicemail {scenario.seed}").random() < self.agent_voicemail_rate):
            scenario = replace(scenario, agent_voicemail_after=self.agent_voicemail_after)
        return scenario


@dataclass
class TrafficSummary:
    """What a traffic run did, in numbers."""

    calls: int
    outcomes: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    redeliveries: int = 0
    errors: int = 0
    elapsed_seconds: float = 0.0

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def describe(self) -> str:
        counts = ", ".join(f"{name} {self.outcomes.get(name, 0)}" for name in OUTCOMES)
        return (f"{self.calls} call{'' if self.calls == 1 else 's'}: {counts}\n{self.requests} requests ({self.redeliveries} redelivered) in "
                f"{self.elapsed_seconds:.1f} s, {self.requests_per_second:.1f} requests/s; {self.errors} errors")


class TrafficResult(NamedTuple):
    traces: list[CallTrace]
    summary: TrafficSummary


def run_traffic(simulator: Simulator, profile: TrafficProfile, calls: int, rate_per_second: float | None = 2.0,
                concurrency: int = 8) -> TrafficResult:
    """Place ``calls`` calls at ``rate_per_second`` (None or 0: all at once) on ``concurrency`` threads.

    Traces come back in the order the calls were placed.
    """
    scenarios = profile.scenarios(calls)
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="simulated-call") as pool:
        futures = []
        for index, scenario in enumerate(scenarios):
            if rate_per_second:
                delay = began + index / rate_per_second - time.monotonic()
                if delay > 0:
                    simulator.sleep(delay)
            futures.append(pool.submit(simulator.run_call, scenario))
        traces = [future.result() for future in futures]
    summary = TrafficSummary(
        calls=len(traces), outcomes=dict(Counter(trace.outcome for trace in traces)),
        requests=sum(len(trace.requests) for trace in traces),
        redeliveries=sum(record.duplicate for trace in traces for record in trace.requests),
        errors=sum(len(trace.errors) for trace in traces), elapsed_seconds=time.monotonic() - began,
    )
    logger.info("Simulated %d calls: %s", summary.calls, summary.outcomes)
    return TrafficResult(traces, summary)


def _ready(base_url: str, seconds: float) -> bool:
    """Whether the app answers /readyz with 200 within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(base_url.rstrip("/") + "/readyz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


_DEFAULTS = TrafficProfile()
_RATE = click.FloatRange(0, 1)


@click.command("simulate")
@click.option("--url", "base_url", required=True, help="The app's public base URL, for example http://127.0.0.1:5000.")
@click.option("--calls", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="Calls to place (every call is planned before the first is placed).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="New calls per second.")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True, help="Calls at once.")
@click.option("--answer-median", type=click.FloatRange(0, 3600, min_open=True), default=_DEFAULTS.answer_median,
              show_default=True, help="Median seconds until a person can answer.")
@click.option("--answer-sigma", type=click.FloatRange(0, 5), default=_DEFAULTS.answer_sigma, show_default=True,
              help="Spread (lognormal sigma) of the answer time.")
@click.option("--abandon-rate", type=_RATE, default=_DEFAULTS.abandon_rate, show_default=True,
              help="Share of callers who hang up before anyone answers.")
@click.option("--no-answer-rate", type=_RATE, default=_DEFAULTS.no_answer_rate, show_default=True,
              help="Share of callers nobody answers.")
@click.option("--voicemail-rate", type=_RATE, default=_DEFAULTS.voicemail_rate, show_default=True,
              help="Chance that an unanswered caller leaves a message.")
@click.option("--agent-voicemail-rate", type=_RATE, default=0.0, show_default=True,
              help="Share of calls on which an agent's phone sends the call to its voicemail after "
                   f"{_DEFAULTS.agent_voicemail_after:.0f} s, if nobody has answered.")
@click.option("--dwp-share", type=_RATE, default=_DEFAULTS.dwp_share, show_default=True,
              help="Share of callers from DWP (they press 1 at the menu, others 2).")
@click.option("--duplicate-rate", type=_RATE, default=0.05, show_default=True,
              help="Chance that a request is delivered twice.")
@click.option("--out-of-order-rate", type=_RATE, default=0.2, show_default=True,
              help="Chance that a call's status callbacks are held back until it ends, then arrive shuffled.")
@click.option("--speed", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="0: never wait; 1: real time; 10: ten times faster.")
@click.option("--seed", type=int, default=None, help="Repeat a run exactly (printed at the end).")
@click.option("--call-log-port", type=click.IntRange(1, 65535), default=None,
              help="Also serve Twilio's call log of these calls on 127.0.0.1 at this port, for the app's "
                   "TWILIO_API_BASE_URL; it stays served after the calls, until stopped.")
@click.option("--unreached", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Calls that rang while the app could not be reached, in the 10 minutes that ended 20 minutes "
                   "ago: no webhook, only in the call log (needs --call-log-port).")
@click.option("--wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait for the app to answer /readyz before the first call (the call log is "
                   "served meanwhile).")
@click.option("--quiet", is_flag=True, help="Print the summary only.")
def simulate_command(base_url: str, calls: int, rate: float, concurrency: int, answer_median: float,
                     answer_sigma: float, abandon_rate: float, no_answer_rate: float, voicemail_rate: float,
                     agent_voicemail_rate: float, dwp_share: float, duplicate_rate: float, out_of_order_rate: float, speed: float,
                     seed: int | None, call_log_port: int | None, unreached: int, wait: float, quiet: bool) -> None:
    """Play Twilio's part: send signed, realistic call webhooks to a running help desk."""
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    if not token:
        raise click.UsageError("TWILIO_AUTH_TOKEN is not set: export the auth token the app checks signatures with.")
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        raise click.BadParameter("give an http:// or https:// base URL", param_hint="--url")
    if abandon_rate + no_answer_rate > 1:
        raise click.BadParameter("--abandon-rate plus --no-answer-rate cannot exceed 1", param_hint="--abandon-rate")
    if unreached and call_log_port is None:
        raise click.BadParameter("only Twilio's call log has calls that never reached the app: give --call-log-port "
                                 "too", param_hint="--unreached")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    profile = TrafficProfile(answer_median=answer_median, answer_sigma=answer_sigma, abandon_rate=abandon_rate,
                             no_answer_rate=no_answer_rate, voicemail_rate=voicemail_rate, dwp_share=dwp_share,
                             agent_voicemail_rate=agent_voicemail_rate,
                             seed=seed)
    account_sid = os.environ.get("TWILIO_ACCOUNT_SID") or FAKE_ACCOUNT_SID
    log = server = None
    if call_log_port is not None:
        log = CallLog()
        try:
            server = CallLogServer(log, account_sid, token, call_log_port).start()
        except OSError as exc:
            raise click.ClickException(f"cannot serve the call log on 127.0.0.1:{call_log_port}: "
                                       f"{exc.strerror or exc}") from None
        click.echo(f"Serving Twilio's call log at {server.url} (the app's TWILIO_API_BASE_URL)")
    transport = RequestsTransport()
    simulator = Simulator(base_url, token, account_sid, transport, rng=random.Random(seed), speed=speed,
                          duplicate=duplicate_rate, out_of_order=out_of_order_rate, call_log=log)
    if unreached:
        # Callers of their own, after the traffic's: the traffic is the same for a seed either way.
        outage = datetime.now(timezone.utc) - OUTAGE_ENDED - OUTAGE_LENGTH
        missed = [simulator.unreached_call(scenario, outage + OUTAGE_LENGTH * index / unreached)
                  for index, scenario in enumerate(profile.scenarios(calls + unreached)[calls:])]
        first, last = (call.start_time.astimezone(LONDON) for call in (missed[0], missed[-1]))
        click.echo(f"{unreached} call{'' if unreached == 1 else 's'} rang while the app could not be reached, from "
                   f"{first:%H:%M} to {last:%H:%M %Z}: only the call log has {'it' if unreached == 1 else 'them'}")
    if wait and not _ready(base_url, wait):
        if server is not None:
            server.stop()
        raise click.ClickException(f"the app did not answer {base_url.rstrip('/')}/readyz within {wait:g} s")
    try:
        traces, summary = run_traffic(simulator, profile, calls, rate, concurrency)
    finally:
        if hasattr(transport, "close"):
            transport.close()
    if not quiet:
        for trace in traces:
            delay = "" if trace.answer_delay is None else f" after {trace.answer_delay:.0f} s"
            click.echo(f"{trace.call_sid} {trace.outcome}{delay}")
            for error in trace.errors:
                click.echo(f"    {error}")
    click.echo(summary.describe())
    click.echo(f"seed {seed}")
    if any("HTTP 403" in error for trace in traces for error in trace.errors):
        click.echo("The app refused requests with 403: their signature did not verify. The auth token must be "
                   "the app's TWILIO_AUTH_TOKEN, and --url the app's PUBLIC_BASE_URL exactly (scheme, host and port).")
    if server is not None:
        click.echo(f"The call log ({len(log)} call{'' if len(log) == 1 else 's'}) stays served at {server.url} "
                   "until stopped (Ctrl-C).")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    if summary.errors:
        raise click.exceptions.Exit(1)  # something went wrong that Twilio would have reported
