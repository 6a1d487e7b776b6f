"""The TwiML the help desk answers with, built with the twilio library.

Every URL is absolute, made from PUBLIC_BASE_URL, so Twilio requests exactly the URL
that the signature check will rebuild.
"""
from __future__ import annotations

from functools import cache

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from helpdesk.settings import Settings, SipLogin

AGENT_EVENTS = "initiated ringing answered completed"


class Urls:
    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def __getattr__(self, name: str) -> str:
        return f"{self.base}/twilio/voice/{name.replace('_', '-')}"


def _say(response, settings: Settings, text: str) -> None:
    response.say(text, voice=settings.messages.voice, language=settings.messages.language)


def menu(settings: Settings, urls: Urls) -> str:
    """The IVR menu; no key press goes straight to the agents."""
    response = VoiceResponse()
    gather = Gather(num_digits=1, action=urls.menu, method="POST", timeout=settings.ivr.timeout_seconds)
    _say(gather, settings, settings.ivr.prompt)
    response.append(gather)
    response.redirect(urls.agents, method="POST")
    return str(response)


def agents(settings: Settings, urls: Urls, sip_login: SipLogin | None = None) -> str:
    """Ring the agents (a ring group) or put the caller in the queue. A SIP address is dialled
    with `sip_login`, when there is one, for a phone system that asks Twilio to log in."""
    response = VoiceResponse()
    routing = settings.routing
    if routing.mode == "queue":
        response.enqueue(routing.queue_name, action=urls.queue_action, method="POST",
                         wait_url=urls.queue_wait, wait_url_method="POST")
        return str(response)
    dial = Dial(
        action=urls.dial_action,
        method="POST",
        timeout=routing.dial_timeout_seconds,
        answer_on_bridge=routing.answer_on_bridge,
        ring_tone=routing.ring_tone,
        caller_id=routing.caller_id or None,
    )
    callback = {"status_callback": urls.agent_status, "status_callback_event": AGENT_EVENTS,
                "status_callback_method": "POST"}
    if routing.screen_calls:
        # Run on the agent's leg when it answers, before the caller is put through.
        callback.update(url=urls.screen, method="POST")
    for target in routing.dial_targets:
        if target.startswith("client:"):
            dial.client(target[len("client:"):], **callback)
        elif target.startswith("sip:"):
            login = {"username": sip_login.username, "password": sip_login.password} if sip_login else {}
            dial.sip(target, **login, **callback)
        else:
            dial.number(target, **callback)
    response.append(dial)
    return str(response)


def screen(settings: Settings, urls: Urls) -> str:
    """Said to an agent's phone that answered: press 1 to take the call, or the leg hangs up.

    Voicemail presses nothing, so it is never put through to the caller.
    """
    response = VoiceResponse()
    gather = Gather(num_digits=1, action=urls.screen_accept, method="POST",
                    timeout=settings.routing.screen_timeout_seconds)
    _say(gather, settings, settings.messages.screen_prompt)
    response.append(gather)
    response.hangup()
    return str(response)


def voicemail(settings: Settings, urls: Urls, message: str, without_voicemail: str) -> str:
    """A message, then a voicemail recording if voicemail is on; if it is off, the message
    written for that (which asks for no message after a tone), then goodbye."""
    response = VoiceResponse()
    if settings.voicemail_enabled:
        _say(response, settings, message)
        response.record(action=urls.voicemail, method="POST", max_length=settings.voicemail_max_length_seconds,
                        play_beep=True, timeout=5, recording_status_callback=urls.recording,
                        recording_status_callback_method="POST")
        _say(response, settings, settings.messages.goodbye)
    else:
        _say(response, settings, without_voicemail)
    response.hangup()
    return str(response)


def out_of_hours(settings: Settings, urls: Urls) -> str:
    return voicemail(settings, urls, settings.messages.out_of_hours, settings.messages.out_of_hours_without_voicemail)


def no_agent(settings: Settings, urls: Urls) -> str:
    return voicemail(settings, urls, settings.messages.no_answer, settings.messages.no_answer_without_voicemail)


def queue_wait(settings: Settings, queue_seconds: float) -> str:
    """Played while the caller waits in the queue, repeated by Twilio when it runs out."""
    response = VoiceResponse()
    if queue_seconds >= settings.routing.queue_max_wait_seconds:
        response.leave()
        return str(response)
    _say(response, settings, settings.messages.queue_hold)
    response.pause(length=15)
    return str(response)


def thanks(settings: Settings, urls: Urls) -> str:
    """After a voicemail."""
    response = VoiceResponse()
    _say(response, settings, settings.messages.voicemail_thanks)
    response.hangup()
    return str(response)


@cache
def hang_up() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def not_an_agent(settings: Settings, urls: Urls) -> str:
    """For a call to the agents' Voice URL from no agent's phone: said goodbye to, and hung up on."""
    return _goodbye(settings, settings.messages.not_an_agent)


def agents_pin(settings: Settings, urls: Urls, attempt: int = 1, wrong: bool = False) -> str:
    """Ask an agent's phone on the agents' line for its PIN (routing.agents_pin): digits, then #,
    to /twilio/voice/agent-pin with the try it is; after a `wrong` one, say so first. Nothing
    typed is a try too (`actionOnEmptyResult`), though not a wrong PIN."""
    response = VoiceResponse()
    if wrong:
        _say(response, settings, settings.messages.agents_pin_wrong)
    gather = Gather(action=f"{urls.agent_pin}?try={attempt}", method="POST", finish_on_key="#", timeout=10,
                    action_on_empty_result=True)
    _say(gather, settings, settings.messages.agents_pin_prompt)
    response.append(gather)
    _say(response, settings, settings.messages.not_an_agent)
    response.hangup()
    return str(response)


def agents_pin_not_set(settings: Settings, urls: Urls) -> str:
    return _goodbye(settings, settings.messages.agents_pin_not_set)


def agents_pin_locked(settings: Settings, urls: Urls) -> str:
    return _goodbye(settings, settings.messages.agents_pin_locked)


def _goodbye(settings: Settings, message: str) -> str:
    response = VoiceResponse()
    _say(response, settings, message)
    response.hangup()
    return str(response)


def agent_dequeue(settings: Settings, urls: Urls) -> str:
    """For an agent's phone or client: take the next caller from the queue."""
    response = VoiceResponse()
    dial = Dial()
    dial.queue(settings.routing.queue_name, url=urls.dequeue, method="POST")
    response.append(dial)
    return str(response)


@cache
def empty() -> str:
    return str(VoiceResponse())
