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
