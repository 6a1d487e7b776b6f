"""Helpers for tests that start real servers on 127.0.0.1.

Import it as ``servers`` (``tests/`` is on ``sys.path``; ``tests/conftest.py`` makes sure):

    from servers import PostgresServer, free_port, skip_or_fail, wait_for_url

* ``free_port()`` / ``wait_for_port()`` / ``wait_for_url()``: ports and readiness.
* ``find_program(name)``: a program on PATH (or in extra directories), else None.
* ``skip_or_fail(reason)``: skip locally, FAIL under ``CI=true`` (a missing server in CI is a
  broken CI machine, not a reason to skip).
* ``PostgresServer``: a throw-away PostgreSQL cluster (``initdb`` into a temporary directory,
  started with ``pg_ctl`` on a free port, trust authentication for the ``postgres`` role, no
  fsync). PostgreSQL refuses to run as root, so under euid 0 the cluster runs as the ``postgres``
  system user (created by Debian's ``postgresql`` package), or as a dedicated unprivileged user
  created on the fly.

Nothing here imports the ``helpdesk`` package.
"""
from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HOST = "127.0.0.1"

# Debian/Ubuntu install the server programs outside PATH.
POSTGRES_BIN_GLOBS = ("/usr/lib/postgresql/*/bin",)
POSTGRES_PROGRAMS = ("initdb", "pg_ctl", "postgres")
# Used when running as root and there is no `postgres` system user.
FALLBACK_POSTGRES_USER = "helpdesk-pgtest"


# --------------------------------------------------------------------------- skipping


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def skip_or_fail(reason: str):
    """Skip the test locally; under ``CI=true`` fail it instead (CI must run everything)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(reason)


def require_program(name: str, hint: str = "", extra_dirs: tuple[str, ...] = ()) -> str:
    """Return the path of `name`, or skip_or_fail with a clear reason."""
    path = find_program(name, extra_dirs)
    if path is None:
        skip_or_fail(f"`{name}` not found on PATH" + (f"; {hint}" if hint else ""))
    return path


# --------------------------------------------------------------------------- programs


def find_program(name: str, extra_dirs: tuple[str, ...] | list[str] = ()) -> str | None:
    """`name` on PATH, else in the first of `extra_dirs` (globs allowed, newest version first)."""
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_dirs:
        for directory in sorted(glob.glob(pattern), key=_version_key, reverse=True):
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None


def _version_key(path: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in Path(path).parts)


# --------------------------------------------------------------------------- ports


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _check_process(process: subprocess.Popen | None, what: str) -> None:
    if process is not None and process.poll() is not None:
        raise RuntimeError(f"{what}: the server process exited early with code {process.returncode}")


def wait_for_port(
    port: int,
    host: str = HOST,
    timeout: float = 30.0,
    process: subprocess.Popen | None = None,
) -> None:
    """Wait until something accepts TCP connections on host:port.

    Gives up early (RuntimeError) when `process` is given and has exited.
    """
    deadline = time.monotonic() + timeout
    while True:
        if port_is_open(port, host):
            return
        _check_process(process, f"waiting for {host}:{port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")
        time.sleep(0.05)


def wait_for_url(
    url: str,
    timeout: float = 30.0,
    status: int | None = 200,
    process: subprocess.Popen | None = None,
) -> int:
    """Wait until GET `url` answers (with `status`, or with anything when status is None).

    Returns the status code. Gives up early when `process` is given and has exited.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                code = response.status
        except urllib.error.HTTPError as error:
            code = error.code
            error.close()
        except (urllib.error.URLError, OSError) as error:
            code, last = None, error
        if code is not None:
            if status is None or code == status:
                return code
            last = f"HTTP {code}"
        _check_process(process, f"waiting for {url}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer {status or 'anything'} in {timeout:.0f}s (last: {last})")
        time.sleep(0.1)


# --------------------------------------------------------------------------- PostgreSQL


class PostgresUnavailable(Exception):
    """The PostgreSQL server programs are not installed."""


def find_postgres_binaries() -> dict[str, str] | None:
    """Paths of initdb, pg_ctl and postgres, all from one installation, or None.

    PATH first (all three must be there), then /usr/lib/postgresql/*/bin (newest version).
    """
    on_path = {name: shutil.which(name) for name in POSTGRES_PROGRAMS}
    if all(on_path.values()):
        return on_path  # type: ignore[return-value]
    for pattern in POSTGRES_BIN_GLOBS:
        for directory in sorted(glob.glob(pattern), key=_version_key, reverse=True):
            paths = {name: os.path.join(directory, name) for name in POSTGRES_PROGRAMS}
            if all(os.path.isfile(p) and os.access(p, os.X_OK) for p in paths.values()):
                return paths
    return None


class PostgresServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (use as a context manager, or start()/stop()).

    Superuser `postgres`, trust authentication, durability off (fsync, synchronous_commit,
    full_page_writes), C locale, UTF8. Everything lives in one temporary directory that is
    removed by stop().
    """

    superuser = "postgres"

    def __init__(self, binaries: dict[str, str] | None = None, host: str = HOST):
        binaries = binaries or find_postgres_binaries()
        if binaries is None:
            raise PostgresUnavailable(
                "PostgreSQL server programs (initdb, pg_ctl, postgres) not found on PATH or in "
                "/usr/lib/postgresql/*/bin; install the `postgresql` package"
            )
        self.binaries = binaries
        self.host = host
        self.port: int | None = None
        self.tempdir: Path | None = None
        self.run_as: str | None = None  # system user the server runs as (None: ourselves)
        self._started = False

    # ----------------------------------------------------------------- paths

    @property
    def datadir(self) -> Path:
        assert self.tempdir is not None
        return self.tempdir / "data"

    @property
    def logfile(self) -> Path:
        assert self.tempdir is not None
        return self.tempdir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) for `database` as the superuser."""
        return f"postgresql+psycopg://{self.superuser}@{self.host}:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """libpq connection string for psycopg.connect()."""
        return f"host={self.host} port={self.port} user={self.superuser} dbname={database}"

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> "PostgresServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> "PostgresServer":
        if self._started:
            return self
        self.run_as = self._unprivileged_user() if os.geteuid() == 0 else None
        self.tempdir = Path(tempfile.mkdtemp(prefix="helpdesk-pg-", dir=self._temp_base()))
        try:
            if self.run_as:
                user = pwd.getpwnam(self.run_as)
                os.chown(self.tempdir, user.pw_uid, user.pw_gid)
            self._run(
                [
                    self.binaries["initdb"],
                    "-D", str(self.datadir),
                    "-A", "trust",
                    "-U", self.superuser,
                    "--no-sync",
                    "-E", "UTF8",
                    "--locale=C",
                ],
                what="initdb",
            )
            last_error: Exception | None = None
            for _ in range(attempts):  # another process may grab the free port first
                self.port = free_port(self.host)
                try:
                    self._pg_ctl_start()
                    self._started = True
                    return self
                except RuntimeError as error:
                    last_error = error
            raise RuntimeError(f"PostgreSQL did not start after {attempts} attempts: {last_error}")
        except BaseException:
            self._remove_tempdir()
            raise

    def stop(self) -> None:
        """Stop the server (fast shutdown, then immediate, then kill) and remove its files."""
        try:
            if self._started:
                self._started = False
                self._stop_server()
        finally:
            self._remove_tempdir()

    def _pg_ctl_start(self) -> None:
        assert self.tempdir is not None
        options = " ".join(
            shlex.quote(part)
            for part in [
                "-k", str(self.tempdir),
                "-h", self.host,
                "-p", str(self.port),
                "-F",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=200",
            ]
        )
        self._run(
            [
                self.binaries["pg_ctl"],
                "start",
                "-D", str(self.datadir),
                "-l", str(self.logfile),
                "-p", self.binaries["postgres"],
                "-o", options,
                "-w",
                "-t", "60",
            ],
            what="pg_ctl start",
        )

    def _stop_server(self) -> None:
        for mode in ("fast", "immediate"):
            try:
                self._run(
                    [self.binaries["pg_ctl"], "stop", "-D", str(self.datadir), "-m", mode, "-w", "-t", "30"],
                    what=f"pg_ctl stop -m {mode}",
                )
                return
            except RuntimeError:
                continue
        # Last resort: kill the postmaster named in postmaster.pid.
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 9)
        except (OSError, ValueError, IndexError):
            pass

    def _remove_tempdir(self) -> None:
        if self.tempdir is not None:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            self.tempdir = None

    # ----------------------------------------------------------------- running commands

    def _command(self, argv: list[str]) -> list[str]:
        if not self.run_as:
            return argv
        if shutil.which("runuser"):
            return ["runuser", "-u", self.run_as, "--", *argv]
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={self.run_as}", f"--regid={self.run_as}", "--init-groups", *argv]
        raise RuntimeError("running as root, but neither `runuser` nor `setpriv` is available to drop privileges")

    def _run(self, argv: list[str], what: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.setdefault("LC_ALL", "C")
        result = subprocess.run(
            self._command(argv),
            cwd=self.tempdir,  # the unprivileged user may not be able to read our cwd
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if result.returncode != 0:
            log = ""
            if self.tempdir is not None and self.logfile.exists():
                log = "\n--- server log ---\n" + self.logfile.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{what} failed with code {result.returncode}:\n{result.stdout}{log}")

    # ----------------------------------------------------------------- root handling

    @staticmethod
    def _unprivileged_user() -> str:
        """The `postgres` system user when it exists, else a dedicated one (created if needed)."""
        for name in ("postgres", FALLBACK_POSTGRES_USER):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", FALLBACK_POSTGRES_USER],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return FALLBACK_POSTGRES_USER

    @staticmethod
    def _temp_base() -> str | None:
        """A temp base directory the unprivileged user can traverse (TMPDIR may be private)."""
        if os.geteuid() != 0:
            return None
        base = Path(tempfile.gettempdir()).resolve()
        for directory in (base, *base.parents):
            if not os.stat(directory).st_mode & stat.S_IXOTH:
                return "/tmp"
        return str(base)

    # ----------------------------------------------------------------- databases

    def connect(self, database: str = "postgres", autocommit: bool = True):
        import psycopg

        return psycopg.connect(self.conninfo(database), autocommit=autocommit)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name`; return its SQLAlchemy URL (postgresql+psycopg://...)."""
        from psycopg import sql

        with self.connect() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE `name`, disconnecting whoever is still connected to it."""
        from psycopg import sql

        with self.connect() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def databases(self) -> set[str]:
        """Names of the non-template databases."""
        with self.connect() as connection:
            rows = connection.execute("SELECT datname FROM pg_database WHERE NOT datistemplate").fetchall()
        return {row[0] for row in rows}
