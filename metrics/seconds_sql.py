"""Times in whole seconds, worked out in SQL the same way on SQLite and PostgreSQL, for the
figures of how quickly contacts were handled (metrics.handling)."""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, case, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class whole_seconds_up(FunctionElement):
    """A number of seconds rounded up to the whole second, in SQL: CEIL on PostgreSQL; SQLite
    (whose CEIL is not always built in) truncates and adds one for any fraction."""

    type = Integer()
    inherit_cache = True


@compiles(whole_seconds_up)
def _ceil(element, compiler, **kw) -> str:
    return f"CAST(CEIL({compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(whole_seconds_up, "sqlite")
def _ceil_sqlite(element, compiler, **kw) -> str:
    value = compiler.process(element.clauses, **kw)
    return f"(CAST({value} AS INTEGER) + ({value} > CAST({value} AS INTEGER)))"


class seconds_up_between(FunctionElement):
    """The time from one stored instant to another (two UTC datetime columns), in whole seconds
    rounded up, exact to the microsecond on both databases (0 or less when the second is not later,
    rounded differently on each: as_shown makes any of them 0). 64-bit, as 68 years overflow 32."""

    type = BigInteger()
    inherit_cache = True


@compiles(seconds_up_between)
def _between(element, compiler, **kw) -> str:
    # PostgreSQL: the difference of two timestamps is an exact interval, and EXTRACT gives its
    # seconds exactly (numeric).
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"CAST(CEIL(EXTRACT(EPOCH FROM ({end}) - ({start}))) AS BIGINT)"


@compiles(seconds_up_between, "sqlite")
def _between_sqlite(element, compiler, **kw) -> str:
    # SQLite stores "YYYY-MM-DD HH:MM:SS.ffffff". Its date functions round fractions to the
    # millisecond, so they are given the whole seconds only, and the microseconds are added as
    # whole numbers (padded, in case a value has fewer digits or none).
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)

    def seconds(value: str) -> str:
        return f"CAST(strftime('%s', substr({value}, 1, 19)) AS INTEGER)"

    def microseconds(value: str) -> str:
        return f"CAST(substr({value} || '000000', 21, 6) AS INTEGER)"

    total = f"(({seconds(end)} - {seconds(start)}) * 1000000 + {microseconds(end)} - {microseconds(start)})"
    return f"(({total} + 999999) / 1000000)"


class over_days_after(FunctionElement):
    """Whether one stored instant is more than `seconds` (a day or more) after another: exactly
    seconds_up_between(start, end) > seconds. On SQLite, an end on the start's UTC date or before
    is not, which the stored text says without its date functions; only the others are worked
    out (most outcomes are recorded the day their call was answered)."""

    type = Boolean()
    inherit_cache = True

    def __init__(self, start, end, seconds: int):
        if seconds < 86400:
            raise ValueError("over_days_after compares whole days first: give a day or more")
        super().__init__(start, end, literal(seconds))


@compiles(over_days_after)
def _over(element, compiler, **kw) -> str:
    start, end, seconds = element.clauses
    return compiler.process(seconds_up_between(start, end) > seconds, **kw)


@compiles(over_days_after, "sqlite")
def _over_sqlite(element, compiler, **kw) -> str:
    start, end, seconds = element.clauses
    first, last = (compiler.process(clause, **kw) for clause in (start, end))
    exact = compiler.process(seconds_up_between(start, end) > seconds, **kw)
    return f"(CASE WHEN substr({last}, 1, 10) <= substr({first}, 1, 10) THEN 0 ELSE {exact} END)"


def as_shown(seconds):
    """Whole seconds (a SQL expression) rounded up as shown: to the minute from one, and never
    less than 0 (format.shown_seconds, in SQL). Grouping by it leaves a row per shown time."""
    return case((seconds < 0, 0), (seconds < 60, seconds), else_=(seconds + 59) // 60 * 60)
