"""Alembic, driven from Python so `helpdesk db upgrade` needs no alembic.ini."""
from __future__ import annotations

import logging
import os
import re
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config

from helpdesk.dbutil import first_line

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's ini parser treats % specially; URLs may contain escaped characters.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from helpdesk.db import make_engine

    engine = make_engine(database_url)
    quiet = logging.getLogger("alembic.runtime.migration")  # "Context impl SQLiteImpl." on every command
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        quiet.setLevel(level)
        engine.dispose()


class NotReady(Exception):
    """The database cannot be used yet; the message says why and what to do."""


class Unreachable(NotReady):
    """The database server did not answer (down, or not started yet): it may yet, unlike a schema
    or a login it refused."""


@cache
def head() -> str:
    """The newest schema revision this version of the app has."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


# What PostgreSQL answers for a wrong password, user or database name (libpq's words).
_REFUSED = re.compile(r"password authentication failed|database \S+ does not exist|role \S+ does not exist"
                      r"|no pg_hba\.conf entry")


def is_known(revision: str) -> bool:
    """Whether this version of the app has the schema revision `revision` among its migrations."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(revision) is not None
    except CommandError:
        return False


def newer_schema(revision: str) -> str:
    return (f"the database's schema is at revision {revision}, which this version of the app does not have: a "
            f"newer version migrated it (this one goes up to {head()}). Run that version, or restore the database "
            "from before its upgrade")


def without_password(database_url: str) -> str:
    """DATABASE_URL as it may be shown: any password in it replaced by ***."""
    return re.sub(r"(://[^:/@]*:|^[^:/@]*:)[^@/]*@", r"\1***@", database_url)


def database_words(database_url: str) -> str:
    """The database a command acted on, for its output: the URL without its password; for SQLite
    the file's full path, and that it is the default when DATABASE_URL is not set."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = without_password(database_url)
    try:
        url = make_url(database_url)
    except ArgumentError:
        return shown
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        shown = f"the SQLite file {Path(url.database).resolve()}"
    if "DATABASE_URL" not in os.environ:
        shown += " (DATABASE_URL is not set, so the default)"
    return shown


def check_url(database_url: str, missing_file_ok: bool = False) -> None:
    """NotReady if the URL cannot name a database, or names an SQLite file that does not exist
    (SQLite would quietly create an empty one) unless `missing_file_ok`."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from helpdesk.pages.format import quoted

    try:
        parsed = make_url(database_url)
        parsed.port  # noqa: B018 - a port that is not a number fails here
    except ArgumentError:
        raise NotReady(f"DATABASE_URL is not a database URL: {quoted(without_password(database_url), 60)}") from None
    except ValueError:
        raise NotReady("DATABASE_URL has a port that is not a number: "
                       f"{quoted(without_password(database_url), 60)}") from None
    from helpdesk.db import url_settings

    try:
        url_settings(database_url)
    except ArgumentError as problem:
        raise NotReady(str(problem)) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise NotReady(f"DATABASE_URL names a database this app does not use ({backend}): use sqlite:/// or "
                       "postgresql://")
    if backend in ("postgresql", "postgres") and "+" in parsed.drivername and parsed.drivername != "postgresql+psycopg":
        raise NotReady(f"DATABASE_URL asks for the driver {parsed.drivername.split('+', 1)[1]}, which this app does "
                       "not use: write postgresql://... (it uses psycopg 3)")
    if problem := sqlite_file_problem(database_url):
        raise NotReady(problem)
    if (backend == "sqlite" and not missing_file_ok and parsed.database not in (None, "", ":memory:")
            and not Path(parsed.database).exists()):
        raise NotReady(f"the database file {parsed.database} does not exist: check DATABASE_URL, or run "
                       "'helpdesk db upgrade' to create it")


def sqlite_file_problem(database_url: str) -> str | None:
    """Why this user could not use the SQLite file DATABASE_URL names, if it exists and they
    could not: SQLite needs to read and write it, and to make its -wal, -shm and lock files
    beside it. (Otherwise every page and webhook fails with "unable to open database file", as
    when a command run as root made the file, 0600.)"""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(database_url)
    except (ArgumentError, ValueError):  # check_url says what is wrong with it
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).absolute()
    user = _user_name(os.geteuid())
    mend = ("run 'helpdesk db upgrade' and 'helpdesk users' as the app's user, or give them to it "
            f"(chown {user})")
    try:
        if not path.exists():
            return None
    except PermissionError:
        return f"this user ({user}) cannot reach the database file {path}: a folder on its way is closed to it"
    for each in (path, *(path.with_name(path.name + end) for end in ("-wal", "-shm", ".lock"))):
        if each.exists() and not os.access(each, os.R_OK | os.W_OK):
            info = each.stat()
            return (f"this user ({user}) cannot read and write the database file {each} (owned by "
                    f"{_user_name(info.st_uid)}, mode {info.st_mode & 0o777:04o}): {mend}")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return (f"this user ({user}) cannot make files in {path.parent}, where SQLite keeps its -wal and -shm "
                f"files beside the database: {mend}")
    return None


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_migrated(database_url: str) -> None:
    """NotReady unless the database is reachable and its schema is this version's newest."""
    check_url(database_url)
    try:
        revision = current(database_url)
    except Exception as exc:  # driver errors: say what failed, no traceback
        detail = first_line(exc)
        if _REFUSED.search(detail):  # the server answered: the URL is wrong, and waiting will not mend it
            raise NotReady(f"the database server refused DATABASE_URL: {detail}") from None
        raise Unreachable(f"cannot reach the database: {detail}") from None
    problem = revision_problem(revision)
    if problem:
        raise NotReady(problem)


def revision_problem(revision: str | None) -> str | None:
    """Why this version of the app cannot use a database at schema `revision`; None if it can."""
    if revision is None:
        return "the database has no schema yet: run 'helpdesk db upgrade' first"
    newest = head()
    if revision == newest:
        return None
    if not is_known(revision):
        return newer_schema(revision)
    return (f"the database's schema is at revision {revision}, and this version needs {newest}: "
            "run 'helpdesk db upgrade' first")


def schema_problem(connection) -> str | None:
    """Why the app cannot use the database on `connection` as it is now; None if it can.

    Cheap enough for every readiness probe: one catalogue lookup and one small SELECT.
    """
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return revision_problem(None)
    return revision_problem(connection.execute(text("SELECT version_num FROM alembic_version")).scalar())
