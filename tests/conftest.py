"""Fixtures shared by the whole suite: databases (SQLite and a real PostgreSQL).

* ``skip_or_fail(reason)``: skip locally, fail under ``CI=true``. Defined in ``tests/servers.py``
  (import it from there: ``from servers import skip_or_fail``) and re-exported here.
* ``postgres_server`` (session): one throw-away PostgreSQL cluster for the whole run.
* ``database_url``: a fresh, EMPTY database per test, parametrised ``sqlite`` / ``postgresql``.
  The ``postgresql`` case carries the ``postgres`` marker (``-m "not postgres"`` deselects it).
* ``postgres_url``: a fresh, empty PostgreSQL database (for PostgreSQL-only tests).
* ``migrated_url``: ``database_url`` with the schema upgraded to head by ``helpdesk.migrate``.
* ``open_tmp``: a temporary directory another user can reach (for tests that switch user).

App fixtures live in ``tests/integration/conftest.py``.
"""
from __future__ import annotations

import itertools
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# `import servers` must work from every test directory, whatever the import mode.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from servers import (  # noqa: E402
    PostgresServer,
    find_postgres_binaries,
    require_program,
    skip_or_fail,
)

__all__ = ["skip_or_fail", "require_program"]

_database_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def fast_password_hashing(request, monkeypatch):
    """Hash passwords cheaply in-process: scrypt's 0.1 s a hash, at every sign-in, is minutes of
    the suite. Tests marked `real_password_hashing` (and servers in other processes) keep scrypt."""
    if request.node.get_closest_marker("real_password_hashing"):
        return
    from functools import partial

    from werkzeug.security import generate_password_hash

    import helpdesk.users

    monkeypatch.setattr(helpdesk.users, "generate_password_hash",
                        partial(generate_password_hash, method="pbkdf2:sha256:1"))


def pytest_collection_modifyitems(config, items):
    """Tests that use the PostgreSQL server (directly or through a fixture) get `postgres`."""
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.postgres)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster started once per session on 127.0.0.1 (superuser `postgres`, trust)."""
    binaries = find_postgres_binaries()
    if binaries is None:
        skip_or_fail(
            "PostgreSQL server programs (initdb, pg_ctl, postgres) not found on PATH or in "
            "/usr/lib/postgresql/*/bin; install the `postgresql` package"
        )
    server = PostgresServer(binaries)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def _fresh_postgres_database(server: PostgresServer, template: str | None = None) -> Iterator[str]:
    name = f"t_{next(_database_numbers)}"
    url = server.create_database(name, template=template)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped after the test): postgresql+psycopg://..."""
    with _fresh_postgres_database(postgres_server) as url:
        yield url


# --------------------------------------------------------------------------- both backends


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, EMPTY database for this test, once on SQLite and once on PostgreSQL.

    (For a test that asks for `migrated_url`, the PostgreSQL database is made as the migrated
    copy at once: making it empty first, to drop it and copy, cost a fifth of a second a test.)
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/helpdesk.db"
        return
    server = request.getfixturevalue("postgres_server")
    template = None
    if "migrated_url" in request.fixturenames:
        template = _postgres_template(server, request.getfixturevalue("_migrated_templates"))
    with _fresh_postgres_database(server, template) as url:
        yield url


@pytest.fixture(scope="session")
def _migrated_templates(tmp_path_factory) -> dict[str, object]:
    """Databases migrated to head once per run, copied for each test (migrating each time is slow)."""
    return {"sqlite_dir": tmp_path_factory.mktemp("migrated-template")}


def _postgres_template(server: PostgresServer, templates: dict) -> str:
    """The name of the PostgreSQL database migrated to head, made at the first call."""
    if "postgres_template" not in templates:
        from helpdesk.migrate import upgrade

        templates["postgres_template"] = server.create_database(_PG_TEMPLATE)
        upgrade(templates["postgres_template"])
    return _PG_TEMPLATE


@pytest.fixture
def migrated_url(request, database_url: str, _migrated_templates: dict) -> str:
    """`database_url` with the schema brought to head by the project's migrations.

    The migrations run once per test run and database kind; each test gets a copy (a file
    copy on SQLite, CREATE DATABASE ... TEMPLATE on PostgreSQL), which is the same schema.
    """
    from helpdesk.migrate import upgrade

    if database_url.startswith("sqlite"):
        template = _migrated_templates["sqlite_dir"] / "template.db"
        if not template.exists():
            upgrade(f"sqlite:///{template}")
        shutil.copyfile(template, database_url[len("sqlite:///"):])
    return database_url  # on PostgreSQL, `database_url` made it as the copy


_PG_TEMPLATE = "helpdesk_migrated_template"


def pytest_report_header(config):
    binaries = find_postgres_binaries()
    where = os.path.dirname(binaries["postgres"]) if binaries else "not found"
    return [f"CI={os.environ.get('CI', '')!r} (true: missing servers fail instead of skip); PostgreSQL: {where}"]


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory another user can reach (pytest's own are under a 0700 one)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="helpdesk-owner-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)
