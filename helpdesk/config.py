"""Configuration: the TOML file of the help desk's rules, read into helpdesk.settings.Settings.

The file is validated once at start-up; every error names the key and the file, so an
administrator can fix it without reading code. Secrets come from the environment
(helpdesk.settings.Secrets).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from helpdesk.calendar import END_OF_DAY, NATIONS
from helpdesk.config_email import EMAIL_ADDRESS, parse_email
from helpdesk.config_reader import ConfigError, Reader, no_repeats
from helpdesk.config_times import WEEKDAYS, clock_text, parse_closures, parse_hours
from helpdesk.phones import is_phone_number, sip_address
from helpdesk.settings import (CallbackSettings, IvrSettings, Messages, RoutingSettings, RetentionSettings,
                               SchedulerSettings, Settings, SmtpSettings, WebhookSettings, WebSettings)

# Also for those who import them from here.
__all__ = ["ConfigError", "DEFAULT_PATH", "END_OF_DAY", "MAX_CONFIG_BYTES", "RECONCILE_MINIMUM", "WEEKDAYS",
           "clock_text", "config_path", "load_settings", "parse_settings"]

DEFAULT_PATH = Path("config/helpdesk.toml")
# A TwiML App's SID, as Twilio's console shows it.
TWIML_APP = re.compile(r"AP[0-9a-f]{32}")


# Calls in a ring group or at the menu end within minutes; asking sooner only finds them live.
RECONCILE_MINIMUM = 5


def config_path() -> Path:
    return Path(os.environ.get("HELPDESK_CONFIG") or DEFAULT_PATH)


MAX_CONFIG_BYTES = 1024 * 1024  # the sample, every key documented, is under 10 KB


def load_settings(path: Path | str | None = None) -> Settings:
    """Read and validate the TOML configuration file."""
    return settings_from(*read_config(path))


def read_config(path: Path | str | None = None) -> tuple[bytes, Path]:
    """The configuration file's bytes, and its path (HELPDESK_CONFIG, or config/helpdesk.toml)."""
    path = Path(path) if path is not None else config_path()
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # before opening: a pipe would wait for a writer
            raise ConfigError(f"{path}: the configuration must be an ordinary file, not a directory, device or pipe")
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        where = "" if path.is_absolute() else f", looked for in {Path.cwd()}"
        raise ConfigError(f"{path}: no configuration file there{where}. Set HELPDESK_CONFIG to its path; "
                          "'helpdesk files --out DIR' writes a documented example") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the configuration file is over {MAX_CONFIG_BYTES // 1024 // 1024} MB; "
                          "is it the right file?")
    return raw, path


def settings_from(raw: bytes, path: Path) -> Settings:
    """Validate the bytes of the configuration file at `path`; its version is their SHA-256."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    version = hashlib.sha256(raw).hexdigest()[:12]
    return parse_settings(data, source=str(path), version=version)


_KNOWN = {
    "helpdesk", "hours", "closures", "answer", "routing", "ivr", "callers", "voicemail", "messages",
    "callback", "email", "scheduler", "retention", "supervisors", "smtp", "webhooks", "web",
}
# The most proxies one after another in front of the app (web.proxies).
MOST_PROXIES = 5
# The shortest retention period taken: a month of contacts is always kept, so a slip of the
# pen (1 for 100, days for months) cannot remove what the desk is still working on.
SHORTEST_RETENTION_DAYS = 31


def parse_settings(data: dict[str, Any], source: str = "(configuration)", version: str | None = None) -> Settings:
    """Validate a parsed TOML document and build Settings."""
    if version is None:
        version = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]
    for table in data:
        if table not in _KNOWN:
            raise ConfigError(f"{source}: unknown table or key {table!r}")
    desk = Reader(data, "helpdesk", source)
    tz = desk.get("timezone", str, "Europe/London")
    if tz != "Europe/London":
        desk.fail("timezone", f"must be 'Europe/London' (the rules are defined in UK time), not {tz!r}")
    nation = desk.choice("nation", "england-and-wales", NATIONS)
    bank_holidays = desk.get("bank_holidays", bool, True)

    hours = Reader(data, "hours", source)
    opening = parse_hours(hours)
    closures = tuple(parse_closures(data.get("closures", []), source, ZoneInfo(tz)))
    answer = Reader(data, "answer", source)
    routing = Reader(data, "routing", source)
    ivr = Reader(data, "ivr", source)
    callers = Reader(data, "callers", source)
    dwp_numbers = callers.phone_numbers("dwp_numbers")
    voicemail = Reader(data, "voicemail", source)
    messages = Reader(data, "messages", source)
    callback_reader = Reader(data, "callback", source)
    callback = _parse_callback(callback_reader)
    supervisors = Reader(data, "supervisors", source)
    supervisor_emails = supervisors.strings("emails", ())
    for address in supervisor_emails:
        if not EMAIL_ADDRESS.match(address):
            supervisors.fail("emails", f"has {address!r}, which is not an email address")
    smtp = Reader(data, "smtp", source)
    email = parse_email(Reader(data, "email", source), source)
    scheduler = Reader(data, "scheduler", source)
    retention = Reader(data, "retention", source)
    web = Reader(data, "web", source)
    personal_data_days = retention.number("personal_data_days", 0, 0, 36500, int)
    if 0 < personal_data_days < SHORTEST_RETENTION_DAYS:
        retention.fail("personal_data_days", f"must be 0 (kept) or at least {SHORTEST_RETENTION_DAYS}, not "
                                             f"{personal_data_days}")

    settings = Settings(
        name=desk.get("name", str, "Help desk"),
        phone=desk.get("phone", str, ""),
        timezone=tz,
        nation=nation,
        bank_holidays=bank_holidays,
        opening_hours=opening,
        closures=closures,
        ring_period_seconds=answer.number("ring_period_seconds", 3.0, 0.5, 10.0),
        max_rings=answer.number("max_rings", 10, 1, 100, int),
        routing=_parse_routing(routing),
        ivr=_parse_ivr(ivr),
        dwp_numbers=frozenset(dwp_numbers),
        voicemail_enabled=voicemail.get("enabled", bool, True),
        voicemail_max_length_seconds=voicemail.number("max_length_seconds", 120, 5, 3600, int),
        messages=Messages(**{
            name: messages.get(name, str, getattr(Messages, name)).strip() or messages.fail(name, "must not be empty")
            for name in Messages.__dataclass_fields__
        }),
        callback=callback,
        supervisors=supervisor_emails,
        smtp=SmtpSettings(
            host=smtp.get("host", str, ""),
            port=smtp.number("port", 587, 1, 65535, int),
            security=smtp.choice("security", "starttls", ("starttls", "ssl", "none")),
            from_address=smtp.get("from_address", str, ""),
        ),
        email=email,
        scheduler=SchedulerSettings(
            sweep_seconds=scheduler.number("sweep_seconds", 60, 5, 3600, int),
            lease_seconds=scheduler.number("lease_seconds", 120, 10, 7200, int),
        ),
        retention=RetentionSettings(personal_data_days=personal_data_days),
        webhooks=_parse_webhooks(Reader(data, "webhooks", source)),
        web=WebSettings(proxies=web.number("proxies", 0, 0, MOST_PROXIES, int),
                        forgotten_password_links=web.get("forgotten_password_links", bool, True),
                        two_step_for=_two_step_roles(web)),
        version=version,
        source=source,
    )
    for reader in (desk, answer, routing, ivr, callers, voicemail, messages, callback_reader, supervisors, smtp,
                   scheduler, retention, web):
        reader.all_read()
    if shared := sorted(settings.routing.agents_numbers & set(settings.webhooks.twilio_numbers)):
        # A caller's call to it would be taken for an agent's, and left out of every figure.
        routing.fail("agents_numbers", f"has {', '.join(shared)}, which webhooks.twilio_numbers has as a number "
                                       "callers ring: the agents' numbers must be numbers of their own")
    if not opening:
        # Every call would be out of hours, and no callback or email acknowledgement could fall due.
        hours.fail("hours", "gives no opening hours on any day, so the help desk would never be open: "
                            "give at least one weekday its hours, for example monday = [\"08:00-18:00\"]")
    return settings


def _two_step_roles(web: Reader) -> tuple[str, ...]:
    from helpdesk.models.user import ROLES

    roles = web.strings("two_step_for", ())
    for role in roles:
        if role not in ROLES:
            web.fail("two_step_for", f"has {role!r}, which is not a role: give some of {', '.join(ROLES)}")
    return tuple(dict.fromkeys(roles))


def _dial_target(routing: Reader, target: str) -> str:
    """A ring group's target as it is dialled: a SIP address with its scheme and host in lower
    case (so it is dialled as <Sip>, and compared as SIP does); a number or Client identity as
    written."""
    if target.lower().startswith("sip"):
        address = sip_address(target, longest=None)
        if address is None:
            routing.fail("dial_targets", f"has {target!r}, which is not a SIP address: write sip:, the extension "
                                         "or name, @ and the phone system's address, for example sip:1001@pbx.example.org")
        return address
    if not (is_phone_number(target) or target.startswith("client:")):
        routing.fail("dial_targets", f"has {target!r}: use +44... numbers, sip:... or client:...")
    return target


def _parse_routing(routing: Reader) -> RoutingSettings:
    mode = routing.choice("mode", "dial", ("dial", "queue"))
    targets = tuple(_dial_target(routing, target) for target in routing.strings("dial_targets",
                                                                                  RoutingSettings.dial_targets))
    no_repeats(routing, "dial_targets", targets)
    if mode == "dial" and not targets:
        routing.fail("dial_targets", "must name at least one target when mode is 'dial'")
    screen_calls = routing.get("screen_calls", bool, False)
    if screen_calls and mode != "dial":
        routing.fail("screen_calls", "works only with mode = 'dial': in a queue, agents take callers themselves")
    answer_on_bridge = routing.get("answer_on_bridge", bool, True)
    agents_pin = routing.get("agents_pin", bool, False)
    if agents_pin and mode != "queue":
        routing.fail("agents_pin", "works only with mode = 'queue': in a ring group, the app rings the agents")
    if screen_calls and not answer_on_bridge:
        routing.fail("screen_calls", "needs answer_on_bridge = true: without it, the caller hears silence, "
                                     "not ringing, while the agent's phone is asked to press 1")
    return RoutingSettings(
        mode=mode,
        dial_targets=targets,
        dial_timeout_seconds=routing.number("dial_timeout_seconds", 60, 5, 600, int),
        answer_on_bridge=answer_on_bridge,
        ring_tone=routing.get("ring_tone", str, "uk"),
        caller_id=routing.get("caller_id", str, ""),
        queue_name=routing.get("queue_name", str, "helpdesk") or routing.fail("queue_name", "must not be empty"),
        queue_max_wait_seconds=routing.number("queue_max_wait_seconds", 600, 30, 3600, int),
        agents_numbers=frozenset(routing.phone_numbers("agents_numbers")),
        agents_apps=_twiml_apps(routing, "agents_apps"),
        agents_pin=agents_pin,
        screen_calls=screen_calls,
        screen_timeout_seconds=routing.number("screen_timeout_seconds", 6, 2, 30, int),
    )


def _twiml_apps(reader: Reader, key: str) -> tuple[str, ...]:
    """A list of TwiML App SIDs (AP and 32 hex digits, as Twilio's console shows them), each once."""
    apps = reader.strings(key, ())
    for app in apps:
        if not TWIML_APP.fullmatch(app):
            reader.fail(key, f"has {app!r}, which is not a TwiML App's SID (AP and 32 letters a-f and digits, "
                             "as Twilio's console shows it)")
    no_repeats(reader, key, apps)
    return apps


def _parse_ivr(ivr: Reader) -> IvrSettings:
    dwp_digit = ivr.get("dwp_digit", str, "1")
    customer_digit = ivr.get("customer_digit", str, "2")
    for key, digit in (("dwp_digit", dwp_digit), ("customer_digit", customer_digit)):
        if len(digit) != 1 or digit not in "0123456789*#":
            ivr.fail(key, f"must be a single key (0-9, * or #), not {digit!r}")
    if dwp_digit == customer_digit:
        ivr.fail("customer_digit", "must differ from ivr.dwp_digit")
    return IvrSettings(
        enabled=ivr.get("enabled", bool, False),
        prompt=ivr.get("prompt", str, IvrSettings.prompt),
        dwp_digit=dwp_digit,
        customer_digit=customer_digit,
        timeout_seconds=ivr.number("timeout_seconds", 5, 1, 60, int),
    )


def _parse_webhooks(reader: Reader) -> WebhookSettings:
    spool_dir = reader.get("spool_dir", str, WebhookSettings.spool_dir).strip()
    if not spool_dir:
        reader.fail("spool_dir", "must not be empty")
    after = reader.number("reconcile_after_minutes", WebhookSettings.reconcile_after_minutes, 0, 24 * 60, int)
    if 0 < after < RECONCILE_MINIMUM:
        reader.fail("reconcile_after_minutes", f"must be 0 (never) or at least {RECONCILE_MINIMUM}, not {after!r}")
    numbers = reader.phone_numbers("twilio_numbers")
    reader.all_read()
    return WebhookSettings(spool_dir=spool_dir, reconcile_after_minutes=after, twilio_numbers=numbers)


def _parse_callback(reader: Reader) -> CallbackSettings:
    within = reader.number("within_minutes", 180, 1, 7 * 24 * 60, int)
    warnings = reader.get("warn_before_minutes", list, [30, 10])
    spacing = reader.get("retry_spacing_minutes", list, [30, 60])
    for key, values in (("warn_before_minutes", warnings), ("retry_spacing_minutes", spacing)):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            reader.fail(key, "must be a list of whole numbers of minutes above 0")
    if any(lead >= within for lead in warnings):
        reader.fail("warn_before_minutes", f"must all be less than callback.within_minutes ({within})")
    if not spacing:
        reader.fail("retry_spacing_minutes", "must have at least one value")
    return CallbackSettings(
        clock=reader.choice("clock", "business", ("business", "elapsed")),
        within_minutes=within,
        warn_before_minutes=tuple(sorted(set(warnings), reverse=True)),
        retry_spacing_minutes=tuple(spacing),
        max_attempts=reader.number("max_attempts", 3, 1, 20, int),
        due_soon_minutes=reader.number("due_soon_minutes", 30, 1, within, int),
    )
