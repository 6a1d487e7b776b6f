"""The database fixtures give each test a working, empty database of its own.

Uses only psycopg and SQLAlchemy: nothing from the helpdesk package.
"""
from __future__ import annotations

import os

import psycopg
import pytest
import sqlalchemy as sa

from servers import PostgresServer, free_port, skip_or_fail

# Names of the PostgreSQL databases handed out so far in this module (to check they are dropped).
_seen_postgres_databases: list[str] = []

MARKER_TABLE = "isolation_marker"


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _create_marker_table_after_checking_it_is_absent(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        assert MARKER_TABLE not in sa.inspect(engine).get_table_names()
        with engine.begin() as connection:
            connection.execute(sa.text(f"CREATE TABLE {MARKER_TABLE} (id INTEGER PRIMARY KEY, note TEXT)"))
            connection.execute(sa.text(f"INSERT INTO {MARKER_TABLE} (id, note) VALUES (1, 'left behind')"))
        assert MARKER_TABLE in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    if url.startswith("postgresql"):
        _seen_postgres_databases.append(url.rsplit("/", 1)[1])


def test_the_postgres_server_accepts_connections_as_the_postgres_superuser(postgres_server):
    with postgres_server.connect() as connection:
        user, version = connection.execute("SELECT current_user, current_setting('server_version_num')").fetchone()
        is_superuser = connection.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    assert user == "postgres"
    assert is_superuser
    assert int(version) >= 130000  # DROP DATABASE ... WITH (FORCE) needs 13


def test_the_postgres_server_listens_on_localhost_with_durability_switched_off(postgres_server):
    with postgres_server.connect() as connection:
        settings = dict(
            connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'fsync', 'synchronous_commit', 'full_page_writes', 'server_encoding')"
            ).fetchall()
        )
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "server_encoding": "UTF8",
    }


def test_the_postgres_server_never_runs_as_root(postgres_server):
    owner = os.stat(postgres_server.datadir).st_uid
    assert owner != 0
    if os.geteuid() == 0:
        assert postgres_server.run_as is not None


def test_a_fresh_database_is_empty(database_url):
    assert _tables(database_url) == set()


def test_a_table_created_in_one_test_is_absent_in_the_next(database_url):
    _create_marker_table_after_checking_it_is_absent(database_url)


def test_a_table_created_in_another_test_is_absent_in_this_one(database_url):
    # Same as the test above: whichever of the two runs second proves the isolation.
    _create_marker_table_after_checking_it_is_absent(database_url)


def test_postgres_databases_used_by_earlier_tests_have_been_dropped(postgres_server, postgres_url):
    current = postgres_url.rsplit("/", 1)[1]
    existing = postgres_server.databases()
    assert current in existing
    assert not (set(_seen_postgres_databases) - {current}) & existing


def test_each_postgres_database_is_new_and_reachable_through_sqlalchemy_and_psycopg(postgres_url, postgres_server):
    assert postgres_url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/t_")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE roundtrip (id SERIAL PRIMARY KEY, body TEXT NOT NULL)"))
            connection.execute(sa.text("INSERT INTO roundtrip (body) VALUES ('ünïcødé ✓')"))
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT body FROM roundtrip")).scalar_one() == "ünïcødé ✓"
    finally:
        engine.dispose()
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as connection:
        assert connection.execute("SELECT count(*) FROM roundtrip").fetchone()[0] == 1


def test_a_database_still_in_use_is_dropped_at_the_end_of_the_test(postgres_server):
    url = postgres_server.create_database("t_still_in_use")
    engine = sa.create_engine(url)
    connection = engine.connect()  # left open on purpose, like a leaked app engine
    try:
        postgres_server.drop_database("t_still_in_use")
        assert "t_still_in_use" not in postgres_server.databases()
    finally:
        connection.invalidate()
        connection.close()
        engine.dispose()


def test_a_second_server_can_run_next_to_the_session_one_and_cleans_up_after_itself(postgres_server):
    with PostgresServer(postgres_server.binaries) as server:
        assert server.port != postgres_server.port
        url = server.create_database("other")
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/other"
        tempdir = server.tempdir
        assert tempdir is not None and tempdir.exists()
    assert not tempdir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", connect_timeout=2)


def test_a_missing_server_skips_locally(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("no such server")


def test_a_missing_server_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no such server"):
        skip_or_fail("no such server")


def test_free_port_gives_a_port_nobody_listens_on():
    port = free_port()
    assert 1024 <= port <= 65535
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", connect_timeout=2)
