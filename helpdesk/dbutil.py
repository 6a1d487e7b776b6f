"""Small helpers for writing SQL that works the same on SQLite and PostgreSQL."""
from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflicts(session: Session, model: type, values: dict[str, Any]):
    """INSERT ... ON CONFLICT DO NOTHING for the session's database; rowcount says if it inserted."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model).values(**values).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
