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

import os
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import click
import requests

from helpdesk.clock import LONDON
from helpdesk.simulator_calllog import CallLog, CallLogServer
from helpdesk.simulator_outbound import OutboundCalls
from helpdesk.simulator_traffic import OUTCOMES, TrafficProfile, TrafficResult, TrafficSummary, run_traffic
from helpdesk.simulator_twiml import CallTrace, RequestRecord
from helpdesk.simulator_twilio import (AUTO, DEFAULT_IVR_DIGITS, FAKE_ACCOUNT_SID, HELP_DESK_NUMBER, UNREACHED_SECONDS,
                                       CallScenario, RequestsTransport, Simulator, Transport)

# Also for those who import them from here.
__all__ = [
    "AUTO", "CallScenario", "CallTrace", "RequestRecord", "RequestsTransport", "Simulator", "TrafficProfile",
    "TrafficResult", "TrafficSummary", "Transport", "run_traffic", "simulate_command",
    "DEFAULT_IVR_DIGITS", "FAKE_ACCOUNT_SID", "HELP_DESK_NUMBER", "OUTCOMES", "UNREACHED_SECONDS",
]

# --unreached: an outage before the run, in the OUTAGE_LENGTH that ended OUTAGE_ENDED ago. Long
# enough ago that the scheduler's first look in the call log finds them (it leaves the last
# webhooks.reconcile_after_minutes, 15 by default, to their webhooks).
OUTAGE_ENDED = timedelta(minutes=20)
OUTAGE_LENGTH = timedelta(minutes=10)


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
                   "TWILIO_API_BASE_URL, and place the app's \"Call back now\" calls there as Twilio would; it "
                   "stays served after the calls, until stopped.")
@click.option("--call-back-now-unanswered-rate", type=_RATE, default=0.0, show_default=True,
              help="Share of the \"Call back now\" calls placed through --call-log-port that the agent's phone "
                   "does not take: half ring out, half go to its voicemail, which presses nothing.")
@click.option("--unreached", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Calls that rang while the app could not be reached, in the 10 minutes that ended 20 minutes "
                   "ago: no webhook, only in the call log (needs --call-log-port).")
@click.option("--wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait for the app to answer /readyz before the first call (the call log is "
                   "served meanwhile).")
@click.option("--sip-login-required", is_flag=True,
              help="Play a phone system that asks Twilio to log in: a <Sip> the app dials without SIP_USERNAME and "
                   "SIP_PASSWORD (from this environment, as the app's) is refused, and that leg fails.")
@click.option("--quiet", is_flag=True, help="Print the summary only.")
def simulate_command(base_url: str, calls: int, rate: float, concurrency: int, answer_median: float,
                     answer_sigma: float, abandon_rate: float, no_answer_rate: float, voicemail_rate: float,
                     agent_voicemail_rate: float, dwp_share: float, duplicate_rate: float, out_of_order_rate: float, speed: float,
                     seed: int | None, call_log_port: int | None, call_back_now_unanswered_rate: float,
                     unreached: int, wait: float, sip_login_required: bool, quiet: bool) -> None:
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
    if call_back_now_unanswered_rate and call_log_port is None:
        raise click.BadParameter("\"Call back now\" calls are placed through the call log's port: give --call-log-port "
                                 "too", param_hint="--call-back-now-unanswered-rate")
    sip_login = None
    if sip_login_required:
        from helpdesk.settings import SipLogin

        if problem := SipLogin.problem():
            raise click.UsageError(problem)
        if (login := SipLogin.from_environ()) is None:
            raise click.UsageError("--sip-login-required needs SIP_USERNAME and SIP_PASSWORD: the login the phone "
                                   "system asks for, as the app is given it")
        sip_login = (login.username, login.password)
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    profile = TrafficProfile(answer_median=answer_median, answer_sigma=answer_sigma, abandon_rate=abandon_rate,
                             no_answer_rate=no_answer_rate, voicemail_rate=voicemail_rate, dwp_share=dwp_share,
                             agent_voicemail_rate=agent_voicemail_rate,
                             seed=seed)
    account_sid = os.environ.get("TWILIO_ACCOUNT_SID") or FAKE_ACCOUNT_SID
    log = server = outbound = None
    if call_log_port is not None:
        log = CallLog()
        # "Call back now" calls the app places through the stand-in, played with their own connections.
        outbound = OutboundCalls(Simulator(base_url, token, account_sid, RequestsTransport(), speed=speed, call_log=log,
                                           sip_login=sip_login), random.Random(seed),
                                 agent_unanswered=call_back_now_unanswered_rate)
        try:
            server = CallLogServer(log, account_sid, token, call_log_port, outbound=outbound).start()
        except OSError as exc:
            raise click.ClickException(f"cannot serve the call log on 127.0.0.1:{call_log_port}: "
                                       f"{exc.strerror or exc}") from None
        click.echo(f"Serving Twilio's call log at {server.url} (the app's TWILIO_API_BASE_URL)")
    transport = RequestsTransport()
    simulator = Simulator(base_url, token, account_sid, transport, rng=random.Random(seed), speed=speed,
                          duplicate=duplicate_rate, out_of_order=out_of_order_rate, call_log=log, sip_login=sip_login)
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
