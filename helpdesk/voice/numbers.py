"""Whether the help desk's Twilio numbers send their calls to the app: `helpdesk twilio-numbers`.

Each number's Voice configuration (README, "Pointing a Twilio number at the app") is typed
into Twilio's console by hand. A Voice URL with a typo, a staging address, or a TwiML App or
SIP trunk set on the number (either overrides the Voice URL) sends every call elsewhere, and
nothing here would hear of them until the look in Twilio's call log finds them: each one a
caller who heard someone else's answer, or Twilio's error message. A missing fallback URL
loses the record of calls the app failed to answer; a missing status callback URL, the ending
of calls whose last webhook never came.

So this reads each number's configuration from the IncomingPhoneNumbers resource and compares
it with the URLs the app serves under PUBLIC_BASE_URL; `fix=True` sets the ones that differ,
and reads back what Twilio then holds. A number with a TwiML App or a SIP trunk is reported and
left alone: that was set on purpose, by someone, and is theirs to undo in the console.

The agents' numbers (queue mode's routing.agents_numbers) are checked too, against what an
agents' number should hold: the agents' Voice URL, and no fallback or status callback URL (an
agent's call is not a caller's); and so are the TwiML Apps of agents' Twilio Client apps
(routing.agents_apps), from the Applications resource, which hold the same three settings.
`fix` sets the Voice URL; it does not clear a URL (Twilio's OpenAPI description takes only a URL
there): the report says to remove it in the console.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import click

from helpdesk.voice.lookup import LookupFailed, TwilioRest

# (resource field, its method's field, the console's words for it, the app's path, or None for
# "not set"): for a number callers ring, and for an agents' number in queue mode.
SETTINGS = (
    ("voice_url", "voice_method", "A call comes in", "/twilio/voice/incoming"),
    ("voice_fallback_url", "voice_fallback_method", "Primary handler fails", "/twilio/voice/fallback"),
    ("status_callback", "status_callback_method", "Call status changes", "/twilio/voice/status"),
)
AGENTS_SETTINGS = (
    ("voice_url", "voice_method", "A call comes in", "/twilio/voice/agent-dequeue"),
    ("voice_fallback_url", "voice_fallback_method", "Primary handler fails", None),
    ("status_callback", "status_callback_method", "Call status changes", None),
)
METHOD = "POST"
NOT_SET = "not set"


class NumbersError(Exception):
    """Twilio could not be asked, or refused; the text says why (never a phone number's owner)."""


@dataclass(frozen=True)
class Difference:
    label: str  # "A call comes in"
    found: str  # "POST https://old.example/voice", or "not set"
    wanted: str  # "POST https://helpdesk.example.org/twilio/voice/incoming", or "not set"

    @property
    def settable(self) -> bool:
        """Whether `fix` can set it: a URL, not a URL's removal."""
        return self.wanted != NOT_SET


@dataclass
class NumberCheck:
    number: str  # or a TwiML App's SID (AP...), with `app`
    agents: bool = False  # an agents' number (routing.agents_numbers), not one callers ring
    app: bool = False  # an agents' TwiML App (routing.agents_apps): `number` is its SID
    sid: str | None = None  # PN...; None when the account has no such number
    differences: list[Difference] = field(default_factory=list)
    overridden_by: str | None = None  # "the TwiML App AP..." or "the SIP trunk TK...": left alone
    fixed: bool = False  # the differences were set, and Twilio's answer shows none left
    error: str | None = None  # Twilio could not be asked about it, or refused: why

    @property
    def pointed_at_app(self) -> bool:
        return self.sid is not None and not self.differences and not self.overridden_by


def wanted_settings(public_base_url: str, *, agents: bool = False) -> dict[str, str]:
    """The parameters to send to point a number (an agents' number, with `agents`) at the app at
    `public_base_url`: its URLs, not the ones it should not have."""
    base = public_base_url.rstrip("/")
    wanted = {}
    for url_field, method_field, _, path in AGENTS_SETTINGS if agents else SETTINGS:
        if path is not None:
            wanted[url_field], wanted[method_field] = base + path, METHOD
    return wanted


def differences(record, public_base_url: str, *, agents: bool = False) -> list[Difference]:
    """How one IncomingPhoneNumber's Voice configuration differs from the app's URLs (for an
    agents' number, with `agents`: the agents' Voice URL, and no other)."""
    wanted = wanted_settings(public_base_url, agents=agents)
    found = []
    for url_field, method_field, label, path in AGENTS_SETTINGS if agents else SETTINGS:
        url, method = getattr(record, url_field, None) or "", (getattr(record, method_field, None) or METHOD).upper()
        shown = f"{method} {url}" if url else NOT_SET
        if path is None and url:
            found.append(Difference(label, shown, NOT_SET))
        elif path is not None and (url != wanted[url_field] or method != METHOD):
            found.append(Difference(label, shown, f"{METHOD} {wanted[url_field]}"))
    return found


def _override(record) -> str | None:
    application, trunk = getattr(record, "voice_application_sid", None), getattr(record, "trunk_sid", None)
    if application:
        return f"the TwiML App {application}"
    if trunk:
        return f"the SIP trunk {trunk}"
    return None


class TwilioNumbers(TwilioRest):
    """The IncomingPhoneNumbers resource; every failure is a NumbersError."""

    def _numbers(self, what: str, request, *, none_if_absent: bool = False):
        try:
            return self._ask(what, request)
        except LookupFailed as failure:
            if none_if_absent and failure.not_found:
                return None
            if failure.refused:
                raise NumbersError("Twilio refused the credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
                                   ) from None
            raise NumbersError(failure.reason) from None

    def find(self, number: str):
        """The account's IncomingPhoneNumber for `number`, or None."""
        records = self._numbers(f"looking up {number}", lambda client: list(
            client.incoming_phone_numbers.page(phone_number=number, page_size=20)))
        return next((record for record in records if record.phone_number == number), None)

    def update(self, sid: str, number: str, values: dict[str, str]):
        return self._numbers(f"setting {number}",
                             lambda client: client.incoming_phone_numbers(sid).update(**values))

    def find_app(self, sid: str):
        """The account's TwiML App `sid` (the Applications resource), or None."""
        return self._numbers(f"looking up {sid}", lambda client: client.applications(sid).fetch(),
                             none_if_absent=True)

    def update_app(self, sid: str, values: dict[str, str]):
        return self._numbers(f"setting {sid}", lambda client: client.applications(sid).update(**values))


def check_numbers(twilio: TwilioNumbers, numbers: list[str], public_base_url: str, *,
                  fix: bool = False, agents_numbers: Collection[str] = ()) -> list[NumberCheck]:
    """Each number's check (those in `agents_numbers` as agents' numbers; a TwiML App's SID as an
    agents' TwiML App); with `fix`, the differing ones set and read back. When Twilio cannot be
    asked, or refuses, the last check says why and the numbers after it are not asked about."""
    checks = []
    for number in numbers:
        app = number.startswith("AP")
        check = NumberCheck(number, agents=app or number in agents_numbers, app=app)
        checks.append(check)
        try:
            record = twilio.find_app(number) if app else twilio.find(number)
            if record is None:
                continue
            check.sid = record.sid
            check.overridden_by = None if app else _override(record)
            check.differences = differences(record, public_base_url, agents=check.agents)
            if fix and any(d.settable for d in check.differences) and not check.overridden_by:
                wanted = wanted_settings(public_base_url, agents=check.agents)
                record = twilio.update_app(number, wanted) if app else twilio.update(record.sid, number, wanted)
                # what Twilio's answer still shows
                check.differences = differences(record, public_base_url, agents=check.agents)
                check.fixed = not any(d.settable for d in check.differences)
        except NumbersError as exc:
            check.error = str(exc)
            break
    return checks


def report_lines(checks: list[NumberCheck], *, fix: bool) -> list[str]:
    """What the command prints: a line for each number, and one for each setting that differs."""
    lines = []
    for check in checks:
        if check.error:
            lines.append(f"{check.number}: stopped: {check.error}.")
            continue
        if check.sid is None:
            lines.append(f"{check.number}: not a {'TwiML App' if check.app else 'number'} of this Twilio account "
                         "(TWILIO_ACCOUNT_SID).")
            continue
        if check.app:
            name = f"{check.number}, the agents' TwiML App"
        else:
            name = f"{check.number} ({check.sid})" + (", an agents' number" if check.agents else "")
        to_do, does = (("put agents through to the callers waiting", "puts agents through to the callers waiting")
                       if check.agents else ("send its calls to the app", "sends its calls to the app"))
        count = len(check.differences)
        if check.overridden_by:
            lines.append(f"{name}: its calls go to {check.overridden_by}, not to its Voice URL. Remove it in "
                         "Twilio's console (the number's Voice configuration), then run this again.")
        elif check.fixed and check.differences:
            lines.append(f"{name}: set, and {count} setting{'' if count == 1 else 's'} to remove:")
        elif check.fixed:
            lines.append(f"{name}: set to {to_do}.")
        elif not check.differences:
            lines.append(f"{name}: {does}.")
        elif fix and any(d.settable for d in check.differences):
            lines.append(f"{name}: set, but Twilio's answer still differs:")
        else:
            lines.append(f"{name}: {count} setting{'' if count == 1 else 's'} differ{'s' if count == 1 else ''}:")
        lines += [f"  {d.label}: {d.found}; should be {d.wanted}" for d in check.differences]
    shown = [check for check in checks if check.sid and not check.overridden_by]  # with their differences
    if not fix and any(d.settable for check in shown for d in check.differences):
        lines.append("Run it again with --fix to set them.")
    removed = [check for check in shown if any(not d.settable for d in check.differences)]
    if removed:
        where = " or ".join(dict.fromkeys("the TwiML App's" if check.app else "the number's" for check in removed))
        lines.append(f"--fix does not remove a URL: remove each that should be {NOT_SET} in Twilio's console "
                     f"({where} Voice configuration).")
    return lines


@click.command("twilio-numbers")
@click.argument("numbers", nargs=-1, metavar="[NUMBER]...")
@click.option("--fix", is_flag=True, help="Set each setting that differs (a number with a TwiML App or a SIP trunk "
                                          "is left alone).")
def twilio_numbers_command(numbers: tuple[str, ...], fix: bool) -> None:
    """Check that the help desk's Twilio numbers send their calls to the app.

    Reads each number's Voice configuration from Twilio and compares it with the app's URLs under
    PUBLIC_BASE_URL: a call comes in, the fallback URL and the status callback URL, each POST.
    An agents' number (routing.agents_numbers, queue mode) should have the agents' Voice URL,
    /twilio/voice/agent-dequeue, and no fallback or status callback URL; so should the TwiML App
    of agents' Twilio Client apps (routing.agents_apps). Checks NUMBER (as typed: 0114 496 0000
    or +441144960000, or a TwiML App's SID, AP...), or by default [webhooks] twilio_numbers,
    routing.agents_numbers and routing.agents_apps. Exits 1 unless every one is set as it should
    be. Needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL.
    """
    import os

    from helpdesk.config import TWIML_APP, ConfigError, load_settings
    from helpdesk.phones import international
    from helpdesk.settings import Secrets

    secrets = Secrets.from_environ()
    if not (secrets.twilio_account_sid and secrets.twilio_auth_token):
        raise click.ClickException("set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the environment to ask Twilio")
    if not secrets.public_base_url:
        raise click.ClickException("set PUBLIC_BASE_URL in the environment: the address Twilio reaches the app at")
    try:
        settings = load_settings()
    except ConfigError as exc:
        if not numbers:
            raise click.ClickException(str(exc)) from None
        settings = None  # named numbers are checked as numbers callers ring
    agents_numbers = settings.routing.agents_numbers if settings else frozenset()
    if numbers:
        wanted = []
        for typed in numbers:
            number = typed.strip() if TWIML_APP.fullmatch(typed.strip()) else international(typed)
            if number is None:
                raise click.BadParameter(f"{typed!r} is not a whole phone number, or a TwiML App's SID (AP and 32 "
                                         "letters a-f and digits)", param_hint="NUMBER")
            wanted.append(number)
    else:
        wanted = [*settings.webhooks.twilio_numbers, *sorted(agents_numbers), *settings.routing.agents_apps]
        if not wanted:
            raise click.ClickException(f"{settings.source}: set [webhooks] twilio_numbers to the help desk's Twilio "
                                       "numbers, or name the numbers to check")
    twilio = TwilioNumbers(secrets.twilio_account_sid, secrets.twilio_auth_token,
                           os.environ.get("TWILIO_API_BASE_URL", "").strip() or None)
    wanted = list(dict.fromkeys(wanted))
    checks = check_numbers(twilio, wanted, secrets.public_base_url, fix=fix, agents_numbers=agents_numbers)
    for line in report_lines(checks, fix=fix):
        click.echo(line)
    if len(checks) < len(wanted):
        click.echo(f"Not checked: {', '.join(wanted[len(checks):])}.")
    if len(checks) < len(wanted) or not all(check.pointed_at_app for check in checks):
        raise SystemExit(1)
