"""Helpers for tests that start real servers on 127.0.0.1.

Import it as ``servers`` (``tests/`` is on ``sys.path``; ``tests/conftest.py`` makes sure):

    from servers import PostgresServer, free_port, skip_or_fail, wait_for_url

* ``free_port()`` / ``wait_for_port()`` / ``wait_for_url()``: ports and readiness. Ports come from
  a block of this process's own, below the kernel's ephemeral range (see ``PORT_RANGE``).
* ``find_program(name)``: a program on PATH (or in extra directories), else None.
* ``skip_or_fail(reason)``: skip locally, FAIL under ``CI=true`` (a missing server in CI is a
  broken CI machine, not a reason to skip).
* ``workers_as_nobody()``: a gunicorn arbiter whose workers run as ``nobody`` (needs root).
* ``PostgresServer``: a throw-away PostgreSQL cluster (``initdb`` into a temporary directory,
  started with ``pg_ctl`` on a free port, trust authentication for the ``postgres`` role, no
  fsync). PostgreSQL refuses to run as root, so under euid 0 the cluster runs as the ``postgres``
  system user (created by Debian's ``postgresql`` package), or as a dedicated unprivileged user
  created on the fly.
* ``DovecotServer``: a throw-away Dovecot IMAP server (IMAPS and STARTTLS, one passwd-file user,
  Maildir in a temporary directory, a self-signed certificate made with ``openssl``).

Nothing here imports the ``helpdesk`` package.
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shlex
import shutil
import signal
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
# A PostgreSQL cluster lives in this memory file system when it has this much room (durability
# is off anyway: fsync=off): see PostgresServer._data_base.
MEMORY_DIR = "/dev/shm"
MEMORY_DIR_ROOM = 1 << 30


# --------------------------------------------------------------------------- skipping


def in_ci() -> bool:
    """Whether this is CI, where nothing may skip: CI set to anything but empty, 0 or false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str):
    """Skip the test locally; under ``CI=true`` fail it instead (CI must run everything)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(reason)


def workers_as_nobody():
    """An arbiter whose workers run as nobody (gunicorn started as root with --user/--group), and
    nobody's password entry. Only root can switch to another user: skip_or_fail otherwise."""
    from types import SimpleNamespace

    from gunicorn.config import Config

    if os.geteuid() != 0:
        skip_or_fail("switching to the workers' user needs root (CI runs as root)")
    config = Config()
    config.set("user", "nobody")
    config.set("group", str(pwd.getpwnam("nobody").pw_gid))
    return SimpleNamespace(cfg=config), pwd.getpwnam("nobody")


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


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """Ask a server to stop (SIGTERM); kill it if it has not stopped within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Servers' ports come from below Linux's ephemeral range (32768-60999 by default), where the
# kernel picks every client socket's own port and port 0's: a port found free there can be taken
# by any outgoing connection before the server binds it. Each pytest-xdist worker (and each other
# process, by its pid) draws from a block of its own, in turn, so two servers started at once, in
# one process or in two workers, are never handed the same port. The server that fails to bind
# it would otherwise exit while wait_for_port() saw the other one listening.
PORT_RANGE = (20000, 32768)
PORT_BLOCKS = 8
_port_turn = itertools.count()


def port_block(worker: str | None = None, pid: int | None = None) -> range:
    """The ports this process may hand out: pytest-xdist worker "gwN" gets block N (mod 8)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
    if worker.startswith("gw") and worker[2:].isdigit():
        block = int(worker[2:]) % PORT_BLOCKS
    else:
        block = (os.getpid() if pid is None else pid) % PORT_BLOCKS
    low, high = PORT_RANGE
    size = (high - low) // PORT_BLOCKS
    return range(low + block * size, low + (block + 1) * size)


def _bindable(port: int, host: str) -> bool:
    # No SO_REUSEADDR: a port still in TIME_WAIT from an earlier server is passed over too.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = HOST) -> int:
    """A TCP port that is free now and that this process has not handed out before.

    Taken in turn from this process's block (see PORT_RANGE), skipping any port something else
    holds; RuntimeError when the whole block is taken.
    """
    block = port_block()
    start = os.getpid() % len(block)  # so that a rerun does not begin where the last run's ports linger
    for _ in range(len(block)):
        port = block[(start + next(_port_turn)) % len(block)]
        if _bindable(port, host):
            return port
    raise RuntimeError(f"no free TCP port on {host} in {block.start}-{block.stop - 1}")


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

    def __init__(self, binaries: dict[str, str] | None = None, host: str = HOST, in_memory: bool = True):
        """`in_memory=False` keeps the cluster on disk whatever room MEMORY_DIR has (benchmarks:
        figures comparable with a server's, and gigabytes of data at full scale)."""
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
        self.in_memory = in_memory
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
        base = self._data_base() if self.in_memory else self._temp_base()
        self.tempdir = Path(tempfile.mkdtemp(prefix="helpdesk-pg-", dir=base))
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

    def pause(self) -> None:
        """Stop the server and keep its data, as an outage would; resume() starts it again."""
        assert self._started and self.tempdir is not None
        self._run([self.binaries["pg_ctl"], "stop", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "30"],
                  what="pg_ctl stop -m fast")

    def resume(self) -> None:
        """Start a paused server again, on the same port."""
        self._pg_ctl_start()

    def freeze(self) -> None:
        """Stop every process of the server where it stands (SIGSTOP): connections stay open, unanswered."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server go on (SIGCONT)."""
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, number: int) -> None:
        assert self._started and self.tempdir is not None
        postmaster = int((self.datadir / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process has gone
            if int(fields[1]) == postmaster:  # its parent: a backend or a background worker
                pids.append(int(status.parent.name))
        for pid in pids:
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass

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
        # Parallel test workers (pytest-xdist) may all get here at once: one useradd makes the
        # user, the others find it taken (9) or /etc/passwd locked (10) and look again.
        for _ in range(50):
            done = subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", FALLBACK_POSTGRES_USER],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            try:
                pwd.getpwnam(FALLBACK_POSTGRES_USER)
                return FALLBACK_POSTGRES_USER
            except KeyError:
                if done.returncode not in (9, 10):
                    raise RuntimeError(f"useradd {FALLBACK_POSTGRES_USER} failed ({done.returncode}): "
                                       f"{done.stderr.strip()}") from None
                time.sleep(0.1)
        raise RuntimeError(f"useradd {FALLBACK_POSTGRES_USER}: /etc/passwd stayed locked")

    @classmethod
    def _data_base(cls) -> str | None:
        """Where the cluster lives: in memory (MEMORY_DIR) when it has room, else as `_temp_base`.

        Most tests make a database and drop it; on a disk that took a quarter of a second a
        test (hundreds of files made and removed each time), in memory a twentieth.
        """
        try:
            room = os.statvfs(MEMORY_DIR)
        except OSError:
            return cls._temp_base()
        if room.f_bavail * room.f_frsize < MEMORY_DIR_ROOM or os.stat(MEMORY_DIR).st_mode & 0o1777 != 0o1777:
            return cls._temp_base()  # small (a container's 64 MB), or not everyone's to write in
        return MEMORY_DIR

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

    def create_database(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE `name` (a copy of `template` if given); return its SQLAlchemy URL."""
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        with self.connect() as connection:
            if template is not None:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
                if connection.info.server_version >= 150000:
                    # Copy the files, not every block through the WAL (15's default): 30 % quicker.
                    statement += sql.SQL(" STRATEGY FILE_COPY")
            connection.execute(statement)
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


# --------------------------------------------------------------------------- Dovecot (IMAP)

DOVECOT_DIRS = ("/usr/sbin",)


class PgBouncer:
    """pgbouncer on 127.0.0.1 in front of one database of a PostgresServer, pooling by transaction
    (server connections change hands after every transaction). Runs as the server's user when
    we are root (pgbouncer refuses to run as root); trust authentication."""

    def __init__(self, postgres: PostgresServer, database: str, pool_mode: str = "transaction"):
        self.postgres, self.database, self.pool_mode = postgres, database, pool_mode
        self.port: int | None = None
        self.tempdir: Path | None = None
        self.process: subprocess.Popen | None = None

    def url(self) -> str:
        return f"postgresql+psycopg://{self.postgres.superuser}@{HOST}:{self.port}/{self.database}"

    def __enter__(self) -> "PgBouncer":
        program = require_program("pgbouncer", "install the `pgbouncer` package", ("/usr/sbin",))
        self.port = free_port()
        self.tempdir = Path(tempfile.mkdtemp(prefix="helpdesk-pgbouncer-", dir=PostgresServer._temp_base()))
        (self.tempdir / "users.txt").write_text(f'"{self.postgres.superuser}" ""\n')
        ini = self.tempdir / "pgbouncer.ini"
        ini.write_text("\n".join([
            "[databases]",
            f"{self.database} = host={self.postgres.host} port={self.postgres.port} dbname={self.database} "
            f"user={self.postgres.superuser}",
            "[pgbouncer]",
            f"listen_addr = {HOST}", f"listen_port = {self.port}", "unix_socket_dir =",
            "auth_type = trust", f"auth_file = {self.tempdir / 'users.txt'}",
            f"pool_mode = {self.pool_mode}", "default_pool_size = 2", "max_client_conn = 200",
            "server_login_retry = 1",  # after an outage, try the server again within a second (not 15)
            f"logfile = {self.tempdir / 'pgbouncer.log'}", "",
        ]))
        if self.postgres.run_as:
            user = pwd.getpwnam(self.postgres.run_as)
            for path in (self.tempdir, *self.tempdir.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.process = subprocess.Popen(self.postgres._command([program, str(ini)]), cwd=self.tempdir,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, process=self.process)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        if self.tempdir is not None:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            self.tempdir = None


class DovecotServer:
    """A throw-away Dovecot IMAP server on 127.0.0.1 (use as a context manager, or start()/stop()).

    One user (`username`, a random `password`, passwd-file), Maildir under a temporary
    directory, IMAPS on `imaps_port` and IMAP with STARTTLS on `imap_port`, a self-signed
    certificate for 127.0.0.1 made with the `openssl` command (`cafile` trusts it; see
    `ssl_context()`). As root, Dovecot's own system users (dovecot, dovenull, from Debian's
    dovecot-core) run the mail and login processes; otherwise everything runs as ourselves.
    Starts in well under a second; `stop()` removes every file.
    """

    username = "enquiries"

    def __init__(self, dovecot: str, openssl: str, host: str = HOST):
        self.dovecot = dovecot
        self.openssl = openssl
        self.host = host
        self.password = secrets_token()
        self.tempdir: Path | None = None
        self.imap_port: int | None = None
        self.imaps_port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def cafile(self) -> str:
        assert self.tempdir is not None
        return str(self.tempdir / "cert.pem")

    @property
    def logfile(self) -> Path:
        assert self.tempdir is not None
        return self.tempdir / "dovecot.log"

    def ssl_context(self):
        import ssl

        return ssl.create_default_context(cafile=self.cafile)

    def __enter__(self) -> "DovecotServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "DovecotServer":
        self.tempdir = Path(tempfile.mkdtemp(prefix="helpdesk-dovecot-", dir=PostgresServer._temp_base()))
        try:
            os.chmod(self.tempdir, 0o755)  # Dovecot's unprivileged processes read the user list here
            self._certificate()
            mail_user = self._write_configuration()
            mail = self.tempdir / "mail"
            mail.mkdir()
            if mail_user is not None:
                os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
            self.process = subprocess.Popen(
                [self.dovecot, "-F", "-c", str(self.tempdir / "dovecot.conf")],
                cwd=self.tempdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            for port in (self.imaps_port, self.imap_port):
                wait_for_port(port, self.host, timeout=10, process=self.process)
            return self
        except BaseException as error:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            self.stop()
            if isinstance(error, Exception):
                raise RuntimeError(f"Dovecot did not start: {error}\n{log}") from error
            raise

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None
        if self.tempdir is not None:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            self.tempdir = None

    def _certificate(self) -> None:
        assert self.tempdir is not None
        subprocess.run(
            [self.openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", f"/CN={self.host}", "-addext", f"subjectAltName=IP:{self.host}",
             "-keyout", str(self.tempdir / "key.pem"), "-out", str(self.tempdir / "cert.pem")],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        os.chmod(self.tempdir / "key.pem", 0o600)  # read by Dovecot's master, which runs as us

    def _write_configuration(self):
        """Write dovecot.conf and the user list; return the system user mail runs as (root only)."""
        assert self.tempdir is not None
        self.imap_port, self.imaps_port = free_port(self.host), free_port(self.host)
        if os.geteuid() == 0:
            try:
                mail_user = pwd.getpwnam("dovecot")
                pwd.getpwnam("dovenull")
            except KeyError:
                raise RuntimeError("running as root, but the dovecot and dovenull users are missing "
                                   "(install Debian's dovecot-core)") from None
            users = ""
        else:
            mail_user = None
            me = pwd.getpwuid(os.geteuid()).pw_name
            users = f"default_login_user = {me}\ndefault_internal_user = {me}\n"
        uid = mail_user.pw_uid if mail_user else os.geteuid()
        gid = mail_user.pw_gid if mail_user else os.getegid()
        t = self.tempdir
        (t / "passwd").write_text(f"{self.username}:{{PLAIN}}{self.password}::::::\n")
        os.chmod(t / "passwd", 0o644)
        (t / "dovecot.conf").write_text(f"""\
base_dir = {t}/run
state_dir = {t}/state
log_path = {t}/dovecot.log
protocols = imap
listen = {self.host}
{users}ssl = yes
ssl_cert = <{t}/cert.pem
ssl_key = <{t}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
# Tests try wrong passwords on purpose: no delay or penalty for that on this machine.
auth_failure_delay = 0
first_valid_uid = {uid}
last_valid_uid = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {t}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={t}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")
        return mail_user

    def client(self):
        """An IMAPS connection, logged in as the test user."""
        import imaplib

        connection = imaplib.IMAP4_SSL(self.host, self.imaps_port, ssl_context=self.ssl_context())
        connection.login(self.username, self.password)
        return connection


def secrets_token() -> str:
    import secrets

    return secrets.token_urlsafe(16)


def own_postgres_server() -> PostgresServer:
    """A PostgreSQL cluster of the test's own, not started (for a test that stops or freezes it).

    Skips the test locally without PostgreSQL's programs; under CI=true fails it instead.
    """
    try:
        return PostgresServer()
    except PostgresUnavailable as missing:
        skip_or_fail(str(missing))
