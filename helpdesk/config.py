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
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from helpdesk.calendar import END_OF_DAY, NATIONS, Closure
from helpdesk.clock import uk_time_problem
from helpdesk.phones import is_phone_number
from helpdesk.settings import (CallbackSettings, EmailSettings, ImapSettings, IvrSettings, Messages, RoutingSettings,
                               SchedulerSettings, Settings, SmtpSettings, WebhookSettings)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_PATH = Path("config/helpdesk.toml")
_INTERVAL = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})\Z")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")


# Calls in a ring group or at the menu end within minutes; asking sooner only finds them live.
RECONCILE_MINIMUM = 5


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or has an invalid value."""


def config_path() -> Path:
    return Path(os.environ.get("HELPDESK_CONFIG") or DEFAULT_PATH)


MAX_CONFIG_BYTES = 1024 * 1024  # the sample, every key documented, is under 10 KB


def load_settings(path: Path | str | None = None) -> Settings:
    """Read and validate the TOML configuration file."""
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
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    version = hashlib.sha256(raw).hexdigest()[:12]
    return parse_settings(data, source=str(path), version=version)


class _Reader:
    """Typed access to one table of the file, with errors that name the key and file."""

    def __init__(self, data: dict[str, Any], table: str, source: str):
        self.data, self.table, self.source = data.get(table, {}), table, source
        self.read: set[str] = set()
        if not isinstance(self.data, dict):
            self.fail(table, "must be a table")

    def all_read(self) -> None:
        """Refuse a key nothing has read: a misspelt one would leave its default in force unseen."""
        for key in self.data:
            if key not in self.read:
                self.fail(key, "is not a known key")

    def fail(self, key: str, problem: str):
        name = key if key == self.table else f"{self.table}.{key}"
        raise ConfigError(f"{self.source}: {name} {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.read.add(key)
        value = self.data.get(key, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            words = _KIND_WORDS.get(names, names)
            self.fail(key, f"must be {'' if words == 'true or false' else 'a '}{words}, not {value!r}")
        return value

    def number(self, key: str, default: float, low: float, high: float, kind: type = float) -> Any:
        value = self.get(key, kind, default)
        if not low <= value <= high:
            self.fail(key, f"must be between {low:g} and {high:g}, not {value!r}")
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(key, list, list(default))
        if not all(isinstance(v, str) for v in value):
            self.fail(key, "must be a list of strings")
        return tuple(value)

    def phone_numbers(self, key: str) -> tuple[str, ...]:
        """A list of whole phone numbers in international form, each once (none by default)."""
        numbers = self.strings(key, ())
        for number in numbers:
            if not is_phone_number(number):
                self.fail(key, f"has {number!r}, which is not a whole number in international form "
                               "(+44 and 9 or 10 digits for a UK number)")
        _no_repeats(self, key, numbers)
        return numbers

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            self.fail(key, f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
        return value


_KIND_WORDS = {"str or date": "date such as 2026-12-07",
               "str": "string", "int": "whole number", "float": "number", "bool": "true or false", "list": "list",
               "dict": "table"}
_KNOWN = {
    "helpdesk", "hours", "closures", "answer", "routing", "ivr", "callers", "voicemail", "messages",
    "callback", "email", "scheduler", "supervisors", "smtp", "webhooks",
}


def parse_settings(data: dict[str, Any], source: str = "(configuration)", version: str | None = None) -> Settings:
    """Validate a parsed TOML document and build Settings."""
    if version is None:
        version = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]
    for table in data:
        if table not in _KNOWN:
            raise ConfigError(f"{source}: unknown table or key {table!r}")
    desk = _Reader(data, "helpdesk", source)
    tz = desk.get("timezone", str, "Europe/London")
    if tz != "Europe/London":
        desk.fail("timezone", f"must be 'Europe/London' (the rules are defined in UK time), not {tz!r}")
    nation = desk.choice("nation", "england-and-wales", NATIONS)
    bank_holidays = desk.get("bank_holidays", bool, True)

    hours = _Reader(data, "hours", source)
    opening = _parse_hours(hours)
    closures = tuple(_parse_closures(data.get("closures", []), source, ZoneInfo(tz)))
    answer = _Reader(data, "answer", source)
    routing = _Reader(data, "routing", source)
    ivr = _Reader(data, "ivr", source)
    callers = _Reader(data, "callers", source)
    dwp_numbers = callers.phone_numbers("dwp_numbers")
    voicemail = _Reader(data, "voicemail", source)
    messages = _Reader(data, "messages", source)
    callback_reader = _Reader(data, "callback", source)
    callback = _parse_callback(callback_reader)
    supervisors = _Reader(data, "supervisors", source)
    supervisor_emails = supervisors.strings("emails", ())
    for address in supervisor_emails:
        if not _EMAIL.match(address):
            supervisors.fail("emails", f"has {address!r}, which is not an email address")
    smtp = _Reader(data, "smtp", source)
    email = _parse_email(_Reader(data, "email", source), source)
    scheduler = _Reader(data, "scheduler", source)

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
        webhooks=_parse_webhooks(_Reader(data, "webhooks", source)),
        version=version,
        source=source,
    )
    for reader in (desk, answer, routing, ivr, callers, voicemail, messages, callback_reader, supervisors, smtp,
                   scheduler):
        reader.all_read()
    if not opening:
        # Every call would be out of hours, and no callback or email acknowledgement could fall due.
        hours.fail("hours", "gives no opening hours on any day, so the help desk would never be open: "
                            "give at least one weekday its hours, for example monday = [\"08:00-18:00\"]")
    return settings


def _parse_hours(hours: _Reader) -> dict[int, tuple[tuple[time, time], ...]]:
    """Each weekday's opening intervals (index 0 is Monday), sorted; a closed day is left out."""
    opening: dict[int, tuple[tuple[time, time], ...]] = {}
    for key in hours.data:
        if key not in WEEKDAYS:
            hours.fail(key, "is not a weekday (monday to sunday)")
    for index, day in enumerate(WEEKDAYS):
        intervals = sorted(_parse_interval(text, hours, day) for text in hours.strings(day, ()))
        for first, second in zip(intervals, intervals[1:]):
            if second[0] < first[1]:
                hours.fail(day, f"has overlapping intervals: {_interval_text(first)} and {_interval_text(second)}")
        if intervals:
            opening[index] = tuple(intervals)
    return opening


def _parse_routing(routing: _Reader) -> RoutingSettings:
    mode = routing.choice("mode", "dial", ("dial", "queue"))
    targets = routing.strings("dial_targets", RoutingSettings.dial_targets)
    for target in targets:
        if not (is_phone_number(target) or target.startswith(("sip:", "client:"))):
            routing.fail("dial_targets", f"has {target!r}: use +44... numbers, sip:... or client:...")
    _no_repeats(routing, "dial_targets", targets)
    if mode == "dial" and not targets:
        routing.fail("dial_targets", "must name at least one target when mode is 'dial'")
    screen_calls = routing.get("screen_calls", bool, False)
    if screen_calls and mode != "dial":
        routing.fail("screen_calls", "works only with mode = 'dial': in a queue, agents take callers themselves")
    answer_on_bridge = routing.get("answer_on_bridge", bool, True)
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
        screen_calls=screen_calls,
        screen_timeout_seconds=routing.number("screen_timeout_seconds", 6, 2, 30, int),
    )


def _parse_ivr(ivr: _Reader) -> IvrSettings:
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


def _parse_webhooks(reader: _Reader) -> WebhookSettings:
    spool_dir = reader.get("spool_dir", str, WebhookSettings.spool_dir).strip()
    if not spool_dir:
        reader.fail("spool_dir", "must not be empty")
    after = reader.number("reconcile_after_minutes", WebhookSettings.reconcile_after_minutes, 0, 24 * 60, int)
    if 0 < after < RECONCILE_MINIMUM:
        reader.fail("reconcile_after_minutes", f"must be 0 (never) or at least {RECONCILE_MINIMUM}, not {after!r}")
    numbers = reader.phone_numbers("twilio_numbers")
    reader.all_read()
    return WebhookSettings(spool_dir=spool_dir, reconcile_after_minutes=after, twilio_numbers=numbers)


def _parse_callback(reader: _Reader) -> CallbackSettings:
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


def _parse_email(reader: _Reader, source: str) -> EmailSettings:
    addresses = reader.strings("addresses", ())
    for address in addresses:
        if not _EMAIL.match(address):
            reader.fail("addresses", f"has {address!r}, which is not an email address")
    spacing = reader.get("retry_spacing_minutes", list, list(EmailSettings.retry_spacing_minutes))
    if not spacing or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in spacing):
        reader.fail("retry_spacing_minutes", "must be a non-empty list of whole numbers of minutes above 0")
    imap = _Reader({"email.imap": reader.get("imap", dict, {})}, "email.imap", source)
    settings = EmailSettings(
        addresses=tuple(a.lower() for a in addresses),
        ack_within_minutes=reader.number("ack_within_minutes", 15, 1, 7 * 24 * 60, int),
        per_sender_limit=reader.number("per_sender_limit", 5, 1, 1000, int),
        per_sender_window_minutes=reader.number("per_sender_window_minutes", 60, 1, 7 * 24 * 60, int),
        unlimited_domains=_domains(reader, "unlimited_domains"),
        retry_spacing_minutes=tuple(spacing),
        max_send_attempts=reader.number("max_send_attempts", 8, 1, 50, int),
        html=reader.get("html", bool, False),
        imap=ImapSettings(
            host=imap.get("host", str, ""),
            port=imap.number("port", 993, 1, 65535, int),
            security=imap.choice("security", "ssl", ("ssl", "starttls")),
            mailbox=imap.get("mailbox", str, "INBOX") or imap.fail("mailbox", "must not be empty"),
            poll_seconds=imap.number("poll_seconds", 60, 5, 3600, int),
            ca_file=_ca_file(imap, source),
            take_in_from=_day(imap, "take_in_from"),
        ),
    )
    imap.all_read()
    reader.all_read()
    return settings


def _day(reader: "_Reader", key: str) -> date | None:
    """A date written as TOML's 2026-12-07 or the string "2026-12-07" (None when not set)."""
    value = reader.get(key, (str, date), "")
    if isinstance(value, datetime):
        reader.fail(key, f"must be a date such as 2026-12-07, without a time, not {value.isoformat()!r}")
    if isinstance(value, date):
        return value
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        reader.fail(key, f"must be a date such as \"2026-12-07\", not {value!r}")


_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def _domains(reader: "_Reader", key: str) -> tuple[str, ...]:
    """A list of mail domains ("dwp.gov.uk"), lower-cased."""
    domains = []
    for value in reader.get(key, list, []):
        domain = value.strip().lower().lstrip("@") if isinstance(value, str) else ""
        if not _DOMAIN.fullmatch(domain):
            reader.fail(key, f"has {value!r}, which is not a mail domain (for example \"dwp.gov.uk\")")
        domains.append(domain)
    return tuple(domains)


def _ca_file(imap: "_Reader", source: str) -> str:
    """email.imap.ca_file as a path that exists and holds a PEM certificate ("" when not set)."""
    text = imap.get("ca_file", str, "").strip()
    if not text:
        return ""
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path(source).resolve().parent / path
    if not path.is_file():
        imap.fail("ca_file", f"names {path}, which is not a file")
    import ssl

    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, UnicodeDecodeError):
        imap.fail("ca_file", f"names {path}, which holds no certificate in PEM form")
    return str(path)


def clock_text(moment: time) -> str:
    """A time of day as the configuration writes it: "08:30", and "24:00" for the end of the day."""
    return "24:00" if moment == END_OF_DAY else f"{moment:%H:%M}"


def _no_repeats(reader: _Reader, key: str, values: Sequence[str]) -> None:
    seen = set()
    for value in values:
        if value in seen:
            reader.fail(key, f"has {value!r} twice")
        seen.add(value)


def _interval_text(interval: tuple[time, time]) -> str:
    start, end = interval
    return f"{clock_text(start)}-{clock_text(end)}"


def _parse_interval(text: str, reader: _Reader, day: str) -> tuple[time, time]:
    match = _INTERVAL.match(text.strip())
    if not match:
        reader.fail(day, f"has {text!r}: write intervals as \"HH:MM-HH:MM\"")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        reader.fail(day, f"has {text!r}, which is not a valid time of day")
    start = time(h1, m1)
    end = END_OF_DAY if h2 == 24 else time(h2, m2)
    if end <= start:
        reader.fail(day, f"has {text!r}: the closing time must be after the opening time")
    return start, end


def _is_date_and_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _parse_closures(items: Any, source: str, tz: ZoneInfo) -> list[Closure]:
    if not isinstance(items, list):
        raise ConfigError(f"{source}: closures must be a list of [[closures]] tables")
    closures = []
    for number, item in enumerate(items, 1):
        where = f"{source}: closures[{number}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = set(item) - {"date", "from", "to", "reason"}
        if unknown:
            raise ConfigError(f"{where} has unknown key {sorted(unknown)[0]!r}")
        reason = item.get("reason", "")
        if "date" in item and ({"from", "to"} & set(item)):
            raise ConfigError(f"{where} has both 'date' and 'from'/'to': use 'date' for a whole day, or 'from' and "
                              "'to' for part of one or several")
        written = item.get("date")
        if isinstance(written, datetime) or (isinstance(written, str) and len(written.strip()) > len("2026-12-24")
                                             and _is_date_and_time(written)):
            # Its time would be dropped, closing the whole day (and hiding that morning's calls).
            raise ConfigError(f"{where}.date has {str(written)!r}, a date and time: 'date' closes a whole day, "
                              "so use 'from' and 'to' for part of one")
        key = "date"
        try:
            if "date" in item:
                day = item["date"]
                day = datetime.fromisoformat(day) if isinstance(day, str) else day
                start = datetime(day.year, day.month, day.day, tzinfo=tz)
                end = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=tz)
            else:
                key = "from"
                start = _local(item["from"], tz, f"{where}.from")
                key = "to"
                end = _local(item["to"], tz, f"{where}.to")
        except KeyError as exc:
            raise ConfigError(f"{where} needs 'date', or both 'from' and 'to' (missing {exc.args[0]!r})") from None
        except ConfigError:
            raise
        except (TypeError, ValueError, AttributeError):
            raise ConfigError(f"{where}.{key} has {item.get(key)!r}, a date or time that cannot be read "
                              "(use \"2026-12-24\" or \"2026-12-24T13:00\")") from None
        if end <= start:
            raise ConfigError(f"{where}: 'to' must be after 'from'")
        closures.append(Closure(start=start, end=end, reason=str(reason)))
    return closures


def _local(value: Any, tz: ZoneInfo, where: str) -> datetime:
    """A closure's time: UK time unless it carries an offset. A time the clocks skipped or
    repeated is refused, as it does not say which instant is meant."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise TypeError(value)
    if moment.tzinfo is not None:
        return moment
    problem = uk_time_problem(moment, tz)
    if problem:
        raise ConfigError(f"{where} has {str(value)!r}, which {problem}: write it with its offset, for example "
                          f"\"{moment:%Y-%m-%dT%H:%M}+01:00\" for British Summer Time or \"+00:00\" for GMT")
    return moment.replace(tzinfo=tz)
