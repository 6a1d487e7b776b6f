"""gunicorn, embedded, so `helpdesk run` needs no separate configuration file.

Whoever runs gunicorn themselves uses config/gunicorn.conf.py, which takes the worker hooks
(`child_exit`, `post_worker_init`) from here.
"""
from __future__ import annotations

import gc
import glob
import os
import shutil
import sys
import tempfile

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from helpdesk import config_in_force
from helpdesk.config import ConfigError

# prometheus_client's multiprocess mode: each worker writes its request metrics here.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class HelpdeskServer(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:  # gunicorn 25.1 and later (config/gunicorn.conf.py)
            self.cfg.set("control_socket_disable", True)

    def load(self):
        from helpdesk.app import create_app

        return create_app()


class AccessLog(Logger):
    """gunicorn's logger, but an access log line never holds the secret of a link to choose a
    password (helpdesk.password_links): whoever reads the log could otherwise use a link opened
    and not yet used. (config/gunicorn.conf.py names it as logger_class.)"""

    def atoms(self, resp, req, environ, request_time):
        from helpdesk.password_links import hide_secret

        atoms = super().atoms(resp, req, environ, request_time)
        return {key: hide_secret(value) if isinstance(value, str) else value for key, value in atoms.items()}


# gunicorn closes an idle connection after this; its default, 2 s, races clients reusing one.
KEEPALIVE_SECONDS = 75


def serve(bind: str, workers: int = 2, threads: int = 4, scheduler=None) -> None:
    """Run gunicorn. `scheduler` (an APScheduler BackgroundScheduler) runs in the master process:
    started once the master is listening (`when_ready`), before it forks the workers, and shut
    down when the master exits; workers never run it, however many there are."""
    options = {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "accesslog": "-",
        "logger_class": "helpdesk.server.AccessLog",
        # Twilio waits 15 s; answer well inside that or fail fast.
        "timeout": 30,
        # Idle connections stay open longer than a client or proxy keeps them (config/gunicorn.conf.py).
        "keepalive": KEEPALIVE_SECONDS,
        "preload_app": False,
    }
    config_in_force.keep()
    hooks = combine_hooks({"post_worker_init": post_worker_init, "on_reload": on_reload, "on_exit": on_exit},
                          metrics_hooks(prepare_metrics_dir()))
    if scheduler is not None:
        hooks = combine_hooks(hooks, scheduler_hooks(scheduler))
    options.update(hooks)
    HelpdeskServer(options).run()


def prepare_metrics_dir(owner: tuple[int, int] | None = None) -> tuple[str, bool]:
    """Set PROMETHEUS_MULTIPROC_DIR before any worker starts: (directory, whether we made it).

    A fresh temporary directory per server start, unless the operator set one; then its
    old metric files are removed, as prometheus_client requires at start-up. One made here
    is given to `owner` (uid, gid), the workers' user when they are not this process's.
    """
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        try:
            os.makedirs(directory, exist_ok=True)
            for path in glob.glob(os.path.join(directory, "*.db")):
                os.remove(path)
            probe = tempfile.NamedTemporaryFile(dir=directory)  # the workers write here
            probe.close()
        except OSError as error:
            raise MetricsDirError(f"{MULTIPROC_ENV} {directory}: cannot use it for the workers' metrics "
                                  f"({error.strerror or error}): make it a directory this user can write, "
                                  "or leave the variable unset") from None
        made = False
    else:
        directory, made = tempfile.mkdtemp(prefix="helpdesk-prometheus-"), True
        if owner is not None:
            os.chown(directory, *owner)
        os.environ[MULTIPROC_ENV] = directory
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        # Imported in this (master) process before the variable was set, e.g. while
        # create_app checked the configuration: choose the multiprocess value class again,
        # so metrics the forked workers create write to the directory.
        values.ValueClass = values.get_value_class()
    return directory, made


class MetricsDirError(Exception):
    """PROMETHEUS_MULTIPROC_DIR names a directory the workers cannot write their metrics in."""


# What on_starting made, for on_exit to remove (plain gunicorn with config/gunicorn.conf.py).
_started: dict[str, tuple[str, bool]] = {}


def on_starting(arbiter) -> None:
    """gunicorn hook (config/gunicorn.conf.py), in the master before any worker starts: the
    checks `helpdesk run` makes, and the metrics directory it prepares. A problem stops gunicorn
    with one line naming it."""
    import click

    from helpdesk.cli import check_before_serving, configure_logging

    configure_logging()  # the app's own log lines, as under `helpdesk run`; the workers inherit it
    try:
        check_before_serving(as_workers=as_workers(arbiter))
        _started["metrics"] = prepare_metrics_dir(owner=workers_owner(arbiter))
        config_in_force.keep(owner=workers_owner(arbiter))
    except (click.ClickException, MetricsDirError, ConfigError) as problem:
        message = problem.format_message() if isinstance(problem, click.ClickException) else str(problem)
        print(f"Error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def workers_owner(arbiter) -> tuple[int, int] | None:
    """(uid, gid) the workers will run as, when not this process's: gunicorn started as root
    with `--user`/`--group` keeps its master as root and switches only the workers."""
    cfg = getattr(arbiter, "cfg", None)
    if cfg is None or (cfg.uid, cfg.gid) == (os.geteuid(), os.getegid()):
        return None
    return cfg.uid, cfg.gid


def as_workers(arbiter):
    """A runner for a check that must be made as the workers will run: in this process, or,
    when they are another user, in a child process switched to that user and group (a spool
    this root master can write, or one it made, is no use to them). The check returns a
    problem or None."""
    owner = workers_owner(arbiter)
    if owner is None:
        return lambda check: check()

    def run(check):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become the workers' user, check, say what was found
            status = 1
            try:
                os.close(read)
                util.set_owner_process(owner[0], owner[1], initgroups=arbiter.cfg.initgroups)
                os.write(write, (check() or "").encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            said = pipe.read().decode()
        _, waited = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(waited) != 0:
            return f"the check could not be made as the workers' user (uid {owner[0]}, gid {owner[1]})"
        return said or None

    return run


def on_exit(arbiter) -> None:
    """gunicorn hook (config/gunicorn.conf.py, and `helpdesk run`): remove the metrics directory
    on_starting made, if it did, and the copy of the configuration in force."""
    directory, made = _started.pop("metrics", (None, False))
    if made:
        shutil.rmtree(directory, ignore_errors=True)
    config_in_force.remove()


def on_reload(arbiter) -> None:
    """gunicorn hook (config/gunicorn.conf.py, and `helpdesk run`), on SIGHUP before the new workers
    start: the configuration file checked again (helpdesk.config_in_force)."""
    config_in_force.reload(workers_owner(arbiter))


def post_worker_init(worker) -> None:
    """gunicorn hook, once a worker has loaded the app: store what the spool holds, and the
    collector leaves what start-up built.

    Without the freeze, every full collection walks every module, model and template again, a
    pause of about a tenth of a second in the middle of some webhook.
    """
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from helpdesk.voice.recovery import check_at_start

        check_at_start(app)
    gc.freeze()


def child_exit(server, worker) -> None:
    """gunicorn hook: forget a dead worker's live gauges (prometheus_client multiprocess mode)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, directory)


def metrics_hooks(prepared: tuple[str, bool]) -> dict:
    """gunicorn hooks: forget a dead worker's live gauges; remove our own directory at exit."""
    directory, made = prepared

    def on_exit(arbiter):
        if made:
            shutil.rmtree(directory, ignore_errors=True)

    return {"child_exit": child_exit, "on_exit": on_exit}


def combine_hooks(*hook_sets: dict) -> dict:
    """One gunicorn hook per name, calling each set's hook in order.

    Only hooks taking the arbiter alone may appear in more than one set (gunicorn checks
    each hook's number of arguments).
    """
    combined: dict = {}
    for hooks in hook_sets:
        for name, hook in hooks.items():
            previous = combined.get(name)
            combined[name] = hook if previous is None else _chain(previous, hook)
    return combined


def _chain(first, second):
    def both(arbiter):
        first(arbiter)
        second(arbiter)

    return both


def scheduler_hooks(scheduler) -> dict:
    """gunicorn server hooks that run `scheduler` in the master (the arbiter), not in the workers."""

    def when_ready(arbiter):
        scheduler.start()
        arbiter.log.info("Scheduler started in the master process (pid %s)", arbiter.pid)

    def on_exit(arbiter):
        if scheduler.running:
            scheduler.shutdown()

    return {"when_ready": when_ready, "on_exit": on_exit}
