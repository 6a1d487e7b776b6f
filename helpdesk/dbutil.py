"""Small helpers for writing SQL that works the same on SQLite and PostgreSQL."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session


def dialect_name(executor: Session | Connection) -> str:
    """"sqlite" or "postgresql", for an ORM Session or a Core Connection alike."""
    if isinstance(executor, Connection):
        return executor.dialect.name
    return executor.get_bind().dialect.name


def dialect_insert(dialect: str):
    """The INSERT constructor of "postgresql" or "sqlite": both have ON CONFLICT."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def insert_ignoring_conflicts(executor: Session | Connection, model: type, values: dict[str, Any]):
    """INSERT ... ON CONFLICT DO NOTHING for the executor's database; rowcount says if it inserted."""
    insert = dialect_insert(dialect_name(executor))
    return insert(model).values(**values).on_conflict_do_nothing().execution_options(preserve_rowcount=True)


def database_error(exc: SQLAlchemyError) -> str:
    """A database failure in one line for a command's user: the driver's own first line."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"database error: {detail[0] if detail else type(exc).__name__}"


def first_line(exc: BaseException) -> str:
    """An error's first line (SQLAlchemy appends a line pointing at its website), or its type's name."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextmanager
def command_errors(writing: str, out: Path | None) -> Iterator[None]:
    """A command's database and file errors as one line naming the problem, not a traceback;
    `writing` names what it writes into `out` ("pack", "copy")."""
    import click

    try:
        yield
    except SQLAlchemyError as exc:
        raise click.ClickException(database_error(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot write the {writing}: {exc.strerror or exc} ({exc.filename or out})") from None
