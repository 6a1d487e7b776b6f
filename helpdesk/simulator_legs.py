"""How a simulated call reaches the agents: a ``<Dial>`` ring group (with screening, voicemail
picking up, the agent legs' status callbacks) or an ``<Enqueue>`` queue an agent dequeues from.
Part of :class:`helpdesk.simulator_call.CallSession`, which provides the clock and the requests.
"""
from __future__ import annotations

import hashlib
import math
import xml.etree.ElementTree as ET

from helpdesk.simulator_twiml import (AGENT_DEQUEUE_PATH, API_VERSION, END, PROGRESS, RING_DELAY, SIP_REFUSED_CODE,
                                      SIP_REFUSED_SECONDS, SPOKEN, TwiMLError, answered_twiml, dial_targets,
                                      events_of, new_sid, number_of, spoken_seconds)


class AgentLegs:
    """The verbs that reach agents, for CallSession (whose attributes and methods they use)."""

    def dial(self, verb: ET.Element, url: str) -> str | tuple | None:
        try:
            targets = dial_targets(verb)
        except TwiMLError as exc:
            return self.fail(f"{exc} (from {url})")
        began, timeout = self.now, number_of(verb, "timeout", 30.0)
        answer, quit_at = self.answer_at(began + RING_DELAY), max(self.give_up_at(), began)
        caller_id = verb.get("callerId") or self.scenario.caller
        machine, pickup = self.voicemail_pickup(len(targets), began + timeout, answer, quit_at)
        refused = self.refused_legs(targets)
        if machine in refused:
            machine = None  # it never rang, so its voicemail cannot pick up
        screens = [self.resolve(url, noun.get("url")) for _, noun in targets]
        machine_leg = None  # (sid, hung up at) of a screened leg that voicemail answered
        if machine is not None and screens[machine] is None:
            answer, self.trace.machine_answered = pickup, True  # nothing stops it: put through
        elif machine is not None:
            sid = new_sid(self.rng, "CA")
            self.tick(pickup)
            heard = self.screen_leg(screens[machine], sid, targets[machine][0], caller_id, person=False)
            if heard is None:
                return END
            seconds, put_through = heard
            if put_through:  # the screening TwiML let voicemail through
                answer, self.trace.machine_answered, machine_leg = pickup + seconds, True, None
            else:
                machine_leg = (sid, pickup + seconds)
        people = [index for index in range(len(targets))
                  if (machine_leg is None or index != machine) and index not in refused]
        if len(refused) == len(targets) and began + SIP_REFUSED_SECONDS < quit_at:
            ended, result = began + SIP_REFUSED_SECONDS, "failed"  # nobody could be rung at all
        elif answer is not None and answer < began + timeout and answer < quit_at and people:
            ended, result = answer, "completed"
        elif machine_leg is not None and len(targets) == 1 and machine_leg[1] < min(quit_at, began + timeout):
            ended, result = machine_leg[1], "unbridged"  # its only leg was screened out
        elif quit_at <= began + timeout:
            ended, result = quit_at, "canceled"
        else:
            ended, result = began + timeout, "no-answer"
        if result == "completed" and self.trace.machine_answered:
            winner = machine
        elif result == "completed":
            winner = people[self.rng.randrange(len(people))]
        else:
            winner = -1
        talk = round(self.scenario.talk_seconds) if result == "completed" else 0
        legs = [new_sid(self.rng, "CA") for _ in targets]
        if machine_leg is not None:
            legs[machine] = machine_leg[0]
        picked_up = ended  # when the winner's phone answered; it is put through at `ended`
        if winner >= 0 and screens[winner] is not None and not self.trace.machine_answered:
            self.tick(answer)
            heard = self.screen_leg(screens[winner], legs[winner], targets[winner][0], caller_id, person=True,
                                    deadline=quit_at)
            if heard is None:
                return END
            if heard[1]:
                ended = answer + heard[0]
            else:  # the caller hung up while the agent heard the prompt
                ended, result, talk = quit_at, "canceled", 0
        for index, ((to, noun), leg) in enumerate(zip(targets, legs)):
            callback = self.resolve(url, noun.get("statusCallback"))
            if not callback:
                continue
            wanted = events_of(noun, "statusCallbackEvent")
            if index in refused:
                over = min(ended, began + SIP_REFUSED_SECONDS)
                self.leg_callbacks(leg, to, caller_id, callback, wanted, began, over, None, "failed", 0,
                                   sip_code=SIP_REFUSED_CODE)
            elif machine_leg is not None and index == machine:
                self.leg_callbacks(leg, to, caller_id, callback, wanted, began, machine_leg[1], pickup, "completed",
                                   round(machine_leg[1] - pickup))
            elif index == winner:  # talk is 0 unless the caller was put through
                self.leg_callbacks(leg, to, caller_id, callback, wanted, began, ended + talk, picked_up, "completed",
                                   talk + round(ended - picked_up))
            else:
                terminal = "no-answer" if result == "no-answer" else "canceled"
                self.leg_callbacks(leg, to, caller_id, callback, wanted, began, ended, None, terminal, 0)
        self.trace.sip_refused += len(refused)
        self.tick(ended)
        if result == "completed":
            self.answered, self.status, self.trace.answer_delay = True, "in-progress", ended
            self.trace.picked_up = picked_up
            self.tick(ended + talk)
        elif result == "canceled":
            self.abandoned = self.over = True
        else:
            self.missed = True
        action = self.resolve(url, verb.get("action"))
        dial_status = "completed" if result == "unbridged" else result
        if result == "canceled":
            # Twilio documents "canceled" for a Dial cancelled through its API, and not what a
            # caller hanging up while the phones ring gives: send each plausible value, chosen
            # by the call's SID (drawing from the generator would change every later call).
            dial_status = ("canceled", "no-answer", "completed")[int(self.sid[-4:], 16) % 3]
        dialled = legs[winner] if winner >= 0 else (legs[machine] if machine_leg is not None else legs[0])
        extra = [("DialBridged", str(result == "completed").lower()), ("DialCallDuration", str(talk)),
                 ("DialCallSid", dialled), ("DialCallStatus", dial_status)]
        if action:
            return self.follow("dial-action", action, extra)
        return END if self.over else None

    def refused_legs(self, targets: list[tuple[str, ET.Element]]) -> set[int]:
        """The ``<Sip>`` legs the phone system refuses: when it asks Twilio to log in
        (``Simulator.sip_login``), those whose noun gives no login, or another."""
        return {index for index, (to, noun) in enumerate(targets)
                if noun.tag == "Sip" and self.sim.refuses_sip(to, (noun.get("username"), noun.get("password")))}

    def voicemail_pickup(self, count: int, give_up: float, answer: float | None,
                         quit_at: float) -> tuple[int | None, float]:
        """Which leg's voicemail picks up, and when: only if it comes before anybody answers."""
        after = self.scenario.agent_voicemail_after
        if after is None:
            return None, 0.0
        pickup = max(after, self.now + RING_DELAY)
        if pickup >= min(give_up, quit_at, math.inf if answer is None else answer):
            return None, 0.0
        return self.rng.randrange(count), pickup

    def leg_params(self, leg: str, to: str, caller_id: str, status: str) -> list[tuple[str, str]]:
        """What Twilio sends about one agent leg of a ``<Dial>``."""
        return [("AccountSid", self.sim.account_sid), ("ApiVersion", API_VERSION), ("CallSid", leg),
                ("CallStatus", status), ("Called", to), ("Caller", caller_id), ("Direction", "outbound-dial"),
                ("From", caller_id), ("ParentCallSid", self.sid), ("To", to)]

    def screen_leg(self, url: str, leg: str, to: str, caller_id: str, *, person: bool,
                   deadline: float = math.inf) -> tuple[float, bool] | None:
        """Run a ``<Number url>`` document on an agent leg that answered, as whoever answered it.

        A person presses 1 once the prompt has been said (the session's clock moves on with it);
        voicemail presses nothing and sends nothing more. Returns the seconds it took and whether
        the leg is then put through to the caller; None (the error recorded) if Twilio could not
        have run it. A person stops when the caller hangs up (``deadline``).
        """
        status, body = self.deliver("screen", url, self.leg_params(leg, to, caller_id, "in-progress"), self.now)
        began = self.now
        seconds = 0.0
        try:
            verbs = answered_twiml(status, body)
            for verb in verbs:
                if verb.tag in SPOKEN:
                    seconds += spoken_seconds(verb)
                elif verb.tag == "Hangup":
                    return seconds, False
                elif verb.tag == "Gather":
                    seconds += sum(spoken_seconds(child) for child in verb if child.tag in SPOKEN)
                    if not person:
                        seconds += number_of(verb, "timeout", 5.0)
                        continue
                    seconds += 0.8  # finds the key and presses it
                    if began + seconds >= deadline:
                        return deadline - began, False
                    self.tick(began + seconds)
                    action = self.resolve(url, verb.get("action")) or url
                    status, body = self.deliver("screen-accept", action, self.leg_params(
                        leg, to, caller_id, "in-progress") + [("Digits", "1"), ("FinishedOnKey", "")], self.now)
                    if any(answer.tag == "Hangup" for answer in answered_twiml(status, body)):
                        raise TwiMLError("the app hung up on an agent who pressed 1")
                    return seconds, True
                else:
                    raise TwiMLError(f"12100 <{verb.tag}> cannot be run on an agent's leg")
        except TwiMLError as exc:
            self.fail(f"{exc} (from {url})")
            return None
        return seconds, True

    def leg_callbacks(self, leg: str, to: str, caller_id: str, url: str, wanted: list[str], began: float,
                      ended: float, answered_at: float | None, terminal: str, duration: int, *,
                      sip_code: str | None = None) -> None:
        """Queue the status callbacks that one agent leg's noun asked for (`sip_code`: the SIP
        response that ended it, when not the usual 200 answered or 487 cancelled)."""
        timeline = [("initiated", "initiated", began)]
        if began + RING_DELAY <= (ended if answered_at is None else answered_at):
            timeline.append(("ringing", "ringing", began + RING_DELAY))
        if answered_at is not None:
            timeline.append(("answered", "in-progress", answered_at))
        timeline.append(("completed", terminal, ended))
        sequence = 0
        for event, status, at in timeline:
            if event not in wanted:
                continue
            params = self.leg_params(leg, to, caller_id, status) + [
                ("CallbackSource", PROGRESS), ("SequenceNumber", str(sequence)), ("Timestamp", self.stamp(at))]
            if event == "completed":
                params += [("CallDuration", str(duration)), ("Duration", str(math.ceil(duration / 60))),
                           ("SipResponseCode", sip_code or ("200" if answered_at is not None else "487"))]
            self.pending.append(("leg-status", url, params, at))
            sequence += 1

    def enqueue(self, verb: ET.Element, url: str) -> str | tuple | None:
        name = (verb.text or "").strip()
        queued = [("QueueSid", "QU" + hashlib.md5(name.encode()).hexdigest())]
        action = self.resolve(url, verb.get("action"))
        wait_url = self.resolve(url, verb.get("waitUrl"))
        entered = self.now
        answer = self.answer_at(entered)
        quit_at = max(min(self.give_up_at(), entered + self.sim.max_call_seconds), entered)
        event_at = quit_at if answer is None else min(answer, quit_at)
        fetched = False
        while wait_url and (not fetched or self.now < event_at):
            fetched = True
            waited = str(int(self.now - entered))
            verbs = self.fetch("wait", wait_url, queued + [
                ("AvgQueueTime", waited), ("CurrentQueueSize", "1"), ("MaxQueueSize", "100"),
                ("QueuePosition", "1"), ("QueueTime", waited)])
            if verbs is None:
                return END
            result, wait_url = self.hold(verbs, wait_url, event_at)
            if result in ("leave", "hangup"):
                self.over, self.missed = result == "hangup", True
                extra = [("QueueResult", result)] + queued + [("QueueTime", str(int(self.now - entered)))]
                return self.follow("enqueue-action", action, extra) if action else (END if self.over else None)
            if result == END:
                return END
        self.tick(event_at)
        queued.append(("QueueTime", str(int(event_at - entered))))
        if answer is not None and answer <= quit_at:
            agent = new_sid(self.rng, "CA")
            reached, dequeue_url = self.agent_dequeues(agent, name)
            if not reached:
                return END
            # A <Queue url> is asked about the caller, and its TwiML played to them, before the bridge.
            verbs = self.fetch("dequeue", dequeue_url, queued + [("DequeingCallSid", agent)]) if dequeue_url else []
            if verbs is None:
                return END
            self.answered, self.trace.answer_delay = True, event_at
            self.tick(self.now + sum(spoken_seconds(v) for v in verbs) + round(self.scenario.talk_seconds))
            result = "bridged"
        else:
            self.abandoned = self.over = True
            result = "hangup"
        if action:
            return self.follow("enqueue-action", action, [("QueueResult", result)] + queued)
        return END if self.over else None

    def agent_dequeues(self, agent: str, queue: str) -> tuple[bool, str | None]:
        """An agent's phone calls the help desk to take the next caller: Twilio asks the agents'
        Voice URL, whose ``<Dial><Queue>`` must name the caller's queue. Returns whether the agent
        reaches the caller (the error recorded if not), and the ``<Queue url>``, if any."""
        url = self.sim.base_url + AGENT_DEQUEUE_PATH
        params = [("AccountSid", self.sim.account_sid), ("ApiVersion", API_VERSION), ("CallSid", agent),
                  ("CallStatus", "ringing"), ("Called", self.sim.to_number), ("Caller", "client:agent"),
                  ("Direction", "inbound"), ("From", "client:agent"), ("To", self.sim.to_number)]
        status, body = self.deliver("agent-dequeue", url, params, self.now)
        try:
            verbs = answered_twiml(status, body)
            nouns = [noun for verb in verbs if verb.tag == "Dial" for noun in verb if noun.tag == "Queue"]
            if not nouns:
                raise TwiMLError("12100 the agents' Voice URL dials no <Queue>")
            named = (nouns[0].text or "").strip()
            if named != queue:
                raise TwiMLError(f"the agents' phones take callers from the queue {named!r}, but they wait in "
                                 f"{queue!r}: nobody would ever reach them")
        except TwiMLError as exc:
            self.fail(f"{exc} (from {url})")
            return False, None
        return True, self.resolve(url, nouns[0].get("url"))

    def hold(self, verbs: list[ET.Element], url: str, until: float) -> tuple[str, str]:
        """Run wait TwiML until it runs out or ``until``; the result and the next wait URL."""
        began = self.now
        for verb in verbs:
            if verb.tag in SPOKEN or verb.tag == "Gather":  # nobody presses keys on hold
                seconds = spoken_seconds(verb) + sum(spoken_seconds(c) for c in verb)
                seconds += number_of(verb, "timeout", 5.0) if verb.tag == "Gather" else 0.0
                self.tick(min(until, self.now + seconds))
                if self.now >= until:
                    return "more", url
            elif verb.tag in ("Leave", "Hangup"):
                return verb.tag.lower(), url
            elif verb.tag == "Redirect" and self.resolve(url, verb.text):
                return "more", self.resolve(url, verb.text)
            else:
                return self.fail(f"12100 <{verb.tag}> is not allowed in wait TwiML (from {url})"), url
        self.tick(min(until, began + 1.0))  # never re-request the wait URL more than once a second
        return "more", url
