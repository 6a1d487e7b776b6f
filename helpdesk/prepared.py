"""Statements compiled once per dialect and run straight on the DB-API cursor.

For the webhook journal, the hottest path in the app, where SQLAlchemy's execution layer
costs several times what SQLite itself does. The SQL still comes from the models' tables,
compiled by SQLAlchemy for the connection's dialect, and every value goes through its
column type's own processors, so what is stored and read is exactly what Core would store
and read. Transactions stay SQLAlchemy's: run these inside `connection.begin()`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import Executable


class Prepared:
    """One statement for one dialect; `column_keys` names the columns an INSERT or UPDATE sets."""

    def __init__(self, statement: Executable, dialect: Dialect, column_keys: Iterable[str] | None = None):
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        self.sql = compiled.string
        # qmark drivers (SQLite) take a tuple in this order; named ones (psycopg) take the mapping.
        self.order: tuple[str, ...] | None = tuple(compiled.positiontup) if compiled.positional else None
        # Core refuses a value no parameter takes; so does this, rather than drop it unstored.
        self.names = frozenset(compiled.binds)
        self.binds: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.binds[name] = processor
        self.results: tuple[Callable[[Any], Any] | None, ...] = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in getattr(statement, "selected_columns", ())
        )

    def execute(self, connection: Connection, values: Mapping[str, Any]):
        """Run on the connection's driver cursor; returns the cursor (rowcount, fetch*)."""
        if values.keys() != self.names:
            raise ValueError(f"values for {sorted(values)}, but the statement takes {sorted(self.names)}")
        binds = self.binds
        processed = {name: binds[name](value) if name in binds else value for name, value in values.items()}
        cursor = connection.connection.driver_connection.cursor()
        parameters = tuple(processed[name] for name in self.order) if self.order is not None else processed
        dbapi = connection.dialect.loaded_dbapi
        try:
            cursor.execute(self.sql, parameters)
        except dbapi.Error as error:
            # As Core would raise it (OperationalError, IntegrityError, ...), so that callers tell a
            # database that cannot be reached from one that refused the statement.
            raise exc.DBAPIError.instance(self.sql, parameters, error, dbapi.Error, hide_parameters=True,
                                          dialect=connection.dialect) from error
        return cursor

    def rows(self, connection: Connection, values: Mapping[str, Any]) -> list[tuple]:
        """All result rows, each value through its column type's result processor."""
        results = self.results
        return [tuple(value if process is None else process(value) for process, value in zip(results, row))
                for row in self.execute(connection, values).fetchall()]
