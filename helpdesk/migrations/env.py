"""Alembic environment: migrations run against the URL helpdesk.migrate passes in."""
from alembic import context
from sqlalchemy import text

from helpdesk.db import make_engine
from helpdesk.models import Base

config = context.config
target_metadata = Base.metadata
# The advisory lock migrations hold on PostgreSQL (any fixed number unlikely to be used elsewhere).
MIGRATION_LOCK = 0x68656C70  # "help"


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                # SQLite alters most of a table by rebuilding it (Alembic's batch mode): with foreign
                # keys enforced, dropping the old table fails once other rows refer to its rows (a
                # user's callbacks and audit entries). Alembic's advice is to switch enforcement off
                # while migrating; it must be done outside a transaction, so on the driver's own
                # connection, which is in autocommit mode until the app's BEGIN. Rebuilding copies
                # every row as it was, so no reference is broken.
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Two upgrades at once (two servers starting, say) take turns: the second
                    # then finds the schema already migrated, rather than failing half-way.
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
