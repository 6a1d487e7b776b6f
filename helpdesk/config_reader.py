"""Reading one table of the configuration file: typed values, and errors that name the key and file."""
from __future__ import annotations

from typing import Any, Sequence

from helpdesk.phones import is_phone_number


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or has an invalid value."""


class Reader:
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
        no_repeats(self, key, numbers)
        return numbers

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            self.fail(key, f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
        return value


_KIND_WORDS = {"str or date": "date such as 2026-12-07",
               "str": "string", "int": "whole number", "float": "number", "bool": "true or false", "list": "list",
               "dict": "table"}


def no_repeats(reader: Reader, key: str, values: Sequence[str]) -> None:
    """Refuse a list that names a value twice."""
    seen = set()
    for value in values:
        if value in seen:
            reader.fail(key, f"has {value!r} twice")
        seen.add(value)
