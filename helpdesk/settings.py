"""The validated configuration, as the rest of the app reads it: `Settings` from the TOML file
(read and checked by helpdesk.config), `Secrets` from the environment."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from functools import cached_property

from helpdesk.calendar import BusinessCalendar, Closure


@dataclass(frozen=True)
class RoutingSettings:
    mode: str = "dial"
    dial_targets: tuple[str, ...] = ("client:agent-1",)
    dial_timeout_seconds: int = 60
    answer_on_bridge: bool = True
    ring_tone: str = "uk"
    caller_id: str = ""
    queue_name: str = "helpdesk"
    queue_max_wait_seconds: int = 600
    # Queue mode: the Twilio numbers agents call to take the next caller (Voice URL
    # /twilio/voice/agent-dequeue). A call to one is an agent's, never a call to the help desk.
    agents_numbers: frozenset[str] = frozenset()
    # Queue mode: the TwiML Apps (AP...) of agents' Twilio Client apps, whose Voice URL is
    # /twilio/voice/agent-dequeue too; `helpdesk twilio-numbers` checks them.
    agents_apps: tuple[str, ...] = ()
    # Queue mode: a call to the agents' Voice URL from a phone number or SIP address is put
    # through only once the agent types their PIN (helpdesk.agents_pin): a caller ID can be faked.
    agents_pin: bool = False
    # Ring group only: whoever answers an agent's phone must press 1 before the caller is
    # put through, so voicemail picking up is neither connected nor counted as an answer.
    screen_calls: bool = False
    screen_timeout_seconds: int = 6


@dataclass(frozen=True)
class IvrSettings:
    enabled: bool = False
    prompt: str = "If you are calling from DWP, press 1. For all other enquiries, press 2."
    dwp_digit: str = "1"
    customer_digit: str = "2"
    timeout_seconds: int = 5


@dataclass(frozen=True)
class Messages:
    voice: str = "Polly.Amy"
    language: str = "en-GB"
    out_of_hours: str = "We are closed at the moment. Please leave a message after the tone and we will call you back."
    no_answer: str = "Sorry, nobody is free to take your call. Please leave a message after the tone and we will call you back."
    voicemail_thanks: str = "Thank you. We will call you back. Goodbye."
    goodbye: str = "Thank you for calling. We will call you back. Goodbye."
    queue_hold: str = "Thank you for waiting. We will answer your call as soon as we can."
    screen_prompt: str = "Help desk call. Press 1 to take it."
    # Said to a call to the agents' Voice URL (queue mode) that is not from an agent's phone.
    not_an_agent: str = "This line is for the help desk's agents only. Goodbye."
    # Said to an agent's phone on the agents' line when routing.agents_pin is on.
    agents_pin_prompt: str = "Please type your PIN for the agents' line, then press hash."
    agents_pin_wrong: str = "That PIN is not right."
    agents_pin_not_set: str = ("You have no PIN for the agents' line yet. Set one on the help desk's Agents' line PIN "
                               "page, then call again. Goodbye.")
    agents_pin_locked: str = ("Your PIN for the agents' line is locked after too many wrong tries. Set a new one on "
                              "the help desk's Agents' line PIN page, then call again. Goodbye.")
    # Said instead of out_of_hours and no_answer when voicemail is off: no tone, no message.
    out_of_hours_without_voicemail: str = ("We are closed at the moment. Unless your number is withheld, we will call "
                                           "you back when we open. Goodbye.")
    no_answer_without_voicemail: str = ("Sorry, nobody is free to take your call. Unless your number is withheld, "
                                        "we will call you back. Goodbye.")


@dataclass(frozen=True)
class CallbackSettings:
    # "business": only opening hours count towards the deadline; "elapsed": the wall clock.
    clock: str = "business"
    within_minutes: int = 180
    warn_before_minutes: tuple[int, ...] = (30, 10)
    # After an attempt that did not reach the caller, wait this long before the next one
    # (the last value repeats), up to max_attempts in all.
    retry_spacing_minutes: tuple[int, ...] = (30, 60)
    max_attempts: int = 3
    # Shown as "due soon" on the agents' page when this little time is left.
    due_soon_minutes: int = 30


@dataclass(frozen=True)
class SmtpSettings:
    host: str = ""
    port: int = 587
    security: str = "starttls"  # starttls, ssl, none
    from_address: str = ""


@dataclass(frozen=True)
class ImapSettings:
    """A mailbox to poll. Credentials come from IMAP_USERNAME and IMAP_PASSWORD."""

    host: str = ""  # empty: no polling
    port: int = 993
    security: str = "ssl"  # ssl (IMAPS), starttls
    mailbox: str = "INBOX"
    poll_seconds: int = 60
    # A CA certificate (PEM) to trust for the server, for a private or self-signed one; empty:
    # the system's certificate authorities. A relative path is from the configuration file.
    ca_file: str = ""
    # A UK date: messages the mailbox received before it are passed over (never stored or
    # acknowledged), so a mailbox with older mail in it can be used. None: every message.
    take_in_from: date | None = None

    def ssl_context(self):
        """The TLS context to check the server with: `ca_file`'s authorities, or the system's.
        Made once by whoever polls: loading the system's takes about 20 ms."""
        import ssl

        return ssl.create_default_context(cafile=self.ca_file or None)


@dataclass(frozen=True)
class EmailSettings:
    # The help desk's own addresses: never acknowledged (no mail loops). The first is the
    # address acknowledgements come from, unless smtp.from_address is set.
    addresses: tuple[str, ...] = ()
    ack_within_minutes: int = 15
    # At most this many acknowledgements to one sender within the window (flood guard).
    per_sender_limit: int = 5
    per_sender_window_minutes: int = 60
    # Senders at these domains (and their subdomains) are never held back by the flood guard.
    unlimited_domains: tuple[str, ...] = ()
    # Waits between failed sends (the last value repeats), up to max_send_attempts in all.
    retry_spacing_minutes: tuple[int, ...] = (1, 5, 15, 60)
    max_send_attempts: int = 8
    # Also send a simple HTML part with the plain text.
    html: bool = False
    imap: ImapSettings = ImapSettings()


@dataclass(frozen=True)
class SchedulerSettings:
    sweep_seconds: int = 60
    lease_seconds: int = 120


@dataclass(frozen=True)
class RetentionSettings:
    # Days callers' and senders' personal data is kept after their contact began, then removed by
    # the scheduler (helpdesk/retention.py); 0 keeps it.
    personal_data_days: int = 0


@dataclass(frozen=True)
class WebhookSettings:
    # Where webhooks the database could not take are kept until they are stored (helpdesk/spool.py).
    spool_dir: str = "spool"
    # Minutes after a call arrived, not answered and with no ending, to ask Twilio's REST API how it ended
    # (helpdesk/voice/reconcile.py); 0 never asks.
    reconcile_after_minutes: int = 15
    # The help desk's Twilio numbers: calls to them that never reached the app are looked for in
    # Twilio's call log (helpdesk/voice/missed.py).
    twilio_numbers: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebSettings:
    # Proxies in front of the app that add the address they heard from to X-Forwarded-For: the
    # address recorded for each sign-in is the one the outermost of them heard (helpdesk.app).
    proxies: int = 0
    # Whether the sign-in page offers "Forgotten your password?", which emails a link to choose a
    # new one to a user with an email address (helpdesk.password_links); only once smtp.host is set.
    forgotten_password_links: bool = True
    # The roles whose users must set up two-step sign-in (helpdesk.two_step): they do so when they
    # next sign in, before anything else. Anybody else may set it up for themself.
    two_step_for: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Settings:
    """The validated configuration. `version` identifies the file's content.

    Compared and hashed by identity, so derived objects can be cached per Settings.
    """

    name: str = "Help desk"
    phone: str = ""
    timezone: str = "Europe/London"
    nation: str = "england-and-wales"
    bank_holidays: bool = True  # the nation's bank holidays close the desk
    opening_hours: dict[int, tuple[tuple[time, time], ...]] = field(default_factory=dict)
    closures: tuple[Closure, ...] = ()
    ring_period_seconds: float = 3.0
    max_rings: int = 10
    routing: RoutingSettings = RoutingSettings()
    ivr: IvrSettings = IvrSettings()
    dwp_numbers: frozenset[str] = frozenset()
    voicemail_enabled: bool = True
    voicemail_max_length_seconds: int = 120
    messages: Messages = Messages()
    callback: CallbackSettings = CallbackSettings()
    supervisors: tuple[str, ...] = ()
    smtp: SmtpSettings = SmtpSettings()
    email: EmailSettings = EmailSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    retention: RetentionSettings = RetentionSettings()
    webhooks: WebhookSettings = WebhookSettings()
    web: WebSettings = WebSettings()
    version: str = "defaults"
    source: str = "(built-in defaults)"

    @property
    def answer_target_seconds(self) -> float:
        # Rounded to the microsecond: 3 rings of 0.6 s are 1.8 s, not 1.7999999999999998.
        return round(self.max_rings * self.ring_period_seconds, 6)

    @cached_property
    def calendar(self) -> BusinessCalendar:
        # Built once per Settings so its per-day cache is shared by every request.
        return BusinessCalendar(self.opening_hours, nation=self.nation, closures=self.closures, tz=self.timezone,
                                bank_holidays=self.bank_holidays)


@dataclass(frozen=True)
class SipLogin:
    """The username and password Twilio gives a phone system that asks who is calling (SIP digest
    authentication), for every SIP address the app dials: a ring group's, or an agent's desk phone
    for "Call back now". Never shown, logged or stored: it is in the TwiML Twilio fetches only."""

    username: str
    password: str

    def __repr__(self) -> str:  # in a traceback or a debugger, not the password
        return f"SipLogin(username={self.username!r}, password='•••')"

    @staticmethod
    def _given(environ: Mapping[str, str] | None) -> tuple[str, str]:
        """SIP_USERNAME and SIP_PASSWORD as set ("" for either not set)."""
        env = os.environ if environ is None else environ
        return env.get("SIP_USERNAME") or "", env.get("SIP_PASSWORD") or ""

    @staticmethod
    def problem(environ: Mapping[str, str] | None = None) -> str | None:
        """What is wrong with SIP_USERNAME and SIP_PASSWORD as set, or None: both or neither, and
        neither with a space at either end or a control character (an env file saved with
        Windows line endings leaves a carriage return on each value), which the phone system
        would refuse on every call."""
        username, password = SipLogin._given(environ)
        if bool(username) != bool(password):
            have, lack = ("SIP_USERNAME", "SIP_PASSWORD") if username else ("SIP_PASSWORD", "SIP_USERNAME")
            return (f"{have} is set but {lack} is not: set both, for a phone system that asks Twilio to log in, "
                    "or neither")
        for name, value in (("SIP_USERNAME", username), ("SIP_PASSWORD", password)):
            if value != value.strip() or any(ord(char) < 32 or ord(char) == 127 for char in value):
                return (f"{name} has a space at its start or end, or a control character such as a carriage "
                        "return (from an env file saved with Windows line endings?): the phone system would "
                        "refuse it. Set it again without")
        return None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "SipLogin | None":
        """The login, or None when neither is set; call `problem` first (a half-set pair is None)."""
        username, password = cls._given(environ)
        return cls(username, password) if username and password else None


@dataclass(frozen=True)
class Secrets:
    """Everything secret comes from the environment."""

    twilio_account_sid: str | None
    twilio_auth_token: str | None
    # While the auth token is being changed: a webhook signed with either verifies.
    twilio_auth_token_secondary: str | None
    secret_key: str | None
    database_url: str
    public_base_url: str | None

    @staticmethod
    def database_url_problem(environ: dict[str, str] | None = None) -> str | None:
        """What is wrong with DATABASE_URL as set, or None. Unset means the SQLite file
        helpdesk.db in the working directory; set but empty (an env file's `DATABASE_URL=`, a
        variable that did not expand) is refused, as the default would be a surprise."""
        env = os.environ if environ is None else environ
        if "DATABASE_URL" in env and not env["DATABASE_URL"].strip():
            return ("DATABASE_URL is set but empty: give the database's URL (postgresql://...), or unset it "
                    "for the SQLite file helpdesk.db in the working directory")
        return None

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> "Secrets":
        env = os.environ if environ is None else environ
        return cls(
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or None,
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or None,
            twilio_auth_token_secondary=env.get("TWILIO_AUTH_TOKEN_SECONDARY") or None,
            secret_key=env.get("SECRET_KEY") or None,
            database_url=env.get("DATABASE_URL") or "sqlite:///helpdesk.db",
            public_base_url=(env.get("PUBLIC_BASE_URL") or "").rstrip("/") or None,
        )
