"""Traffic for :mod:`helpdesk.simulator`: many callers drawn from a :class:`TrafficProfile`, placed at
a rate by :func:`run_traffic`, and what they did in a :class:`TrafficSummary`."""
from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from helpdesk.simulator_twiml import WITHHELD, CallTrace
from helpdesk.simulator_twilio import CallScenario, Simulator

# The simulator's log, as before this was split from it: its lines keep the name they had.
logger = logging.getLogger("helpdesk.simulator")

OUTCOMES = ("answered", "abandoned", "no_answer", "voicemail", "failed")


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
    sip_refused: int = 0

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def describe(self) -> str:
        counts = ", ".join(f"{name} {self.outcomes.get(name, 0)}" for name in OUTCOMES)
        legs = f"{self.sip_refused} SIP leg{'' if self.sip_refused == 1 else 's'}"
        refused = (f"\n{legs} refused: the phone system asked Twilio to log in, and the app's <Sip> gave no login "
                   "or another (SIP_USERNAME, SIP_PASSWORD)" if self.sip_refused else "")
        return (f"{self.calls} call{'' if self.calls == 1 else 's'}: {counts}\n{self.requests} requests ({self.redeliveries} redelivered) in "
                f"{self.elapsed_seconds:.1f} s, {self.requests_per_second:.1f} requests/s; {self.errors} errors"
                + refused)


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
        sip_refused=sum(trace.sip_refused for trace in traces),
    )
    logger.info("Simulated %d calls: %s", summary.calls, summary.outcomes)
    return TrafficResult(traces, summary)
