"""A read-only, consistent view of the database for one export.

Every file of a pack must describe the same moment, even while calls keep arriving. On
PostgreSQL the export runs in one REPEATABLE READ, READ ONLY transaction. On SQLite the app's
engine takes the write lock at BEGIN (see helpdesk/db.py), which would stop webhooks for the
length of an export; this engine issues a plain deferred BEGIN instead, which under WAL gives
the same snapshot to every read without blocking writers.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

from helpdesk.db import make_engine


def snapshot_engine(url: str) -> Engine:
    """An engine whose connections read one snapshot per transaction and never write."""
    if not url.startswith("sqlite"):
        return make_engine(url, isolation_level="REPEATABLE READ", pool_size=1, max_overflow=0)
    engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN")

    return engine


@contextmanager
def snapshot(url: str) -> Iterator[Connection]:
    """One connection inside one read-only transaction, rolled back at the end."""
    engine = snapshot_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection = connection.execution_options(postgresql_readonly=True)
            with connection.begin() as transaction:
                yield connection
                transaction.rollback()
    finally:
        engine.dispose()
