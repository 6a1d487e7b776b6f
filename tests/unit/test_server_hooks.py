"""The gunicorn worker hooks that `helpdesk run` and config/gunicorn.conf.py share."""
from __future__ import annotations

import gc
import os
import runpy
from pathlib import Path
from types import SimpleNamespace

from gunicorn.config import Config

from helpdesk import server
from servers import workers_as_nobody

CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "gunicorn.conf.py"


def test_a_worker_that_has_loaded_the_app_keeps_the_collector_off_what_start_up_built():
    gc.unfreeze()
    try:
        server.post_worker_init(SimpleNamespace(pid=1))
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_the_shipped_gunicorn_configuration_sets_both_hooks_and_gunicorn_accepts_them():
    config = Config()
    for name, value in runpy.run_path(str(CONFIG_FILE)).items():
        if name in config.settings:
            config.set(name, value)  # gunicorn checks each hook's number of arguments here
    assert config.post_worker_init is server.post_worker_init
    assert config.child_exit is server.child_exit
    assert config.on_starting is server.on_starting and config.on_exit is server.on_exit
    assert config.on_reload is server.on_reload
    assert config.timeout == 30 and config.threads == 4
    assert "control_socket_disable" not in config.settings or config.control_socket_disable


def test_a_dead_workers_live_gauges_are_forgotten_in_multiprocess_mode(tmp_path, monkeypatch):
    (tmp_path / "gauge_liveall_4242.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")
    monkeypatch.setenv(server.MULTIPROC_ENV, str(tmp_path))
    server.child_exit(None, SimpleNamespace(pid=4242))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db"]


def test_without_multiprocess_mode_a_dead_worker_leaves_nothing_to_do(monkeypatch):
    monkeypatch.delenv(server.MULTIPROC_ENV, raising=False)
    server.child_exit(None, SimpleNamespace(pid=4242))  # no directory: nothing to look at, no error


def keep_value_class(monkeypatch) -> None:
    """on_starting makes this process's new metrics write to the directory (as a gunicorn master's
    workers must); put the value class back afterwards, or later tests' metrics vanish."""
    from prometheus_client import values

    monkeypatch.setattr(values, "ValueClass", values.ValueClass)


def test_plain_gunicorn_gets_a_metrics_directory_of_its_own_removed_at_exit(monkeypatch):
    # Without one, each worker counts only its own requests, and a scrape sees counters jump back.
    import helpdesk.cli

    keep_value_class(monkeypatch)
    monkeypatch.delenv(server.MULTIPROC_ENV, raising=False)
    monkeypatch.setattr(helpdesk.cli, "check_before_serving", lambda **checks: None)
    server.on_starting(None)
    directory = Path(os.environ.pop(server.MULTIPROC_ENV))
    assert directory.is_dir()
    server.on_exit(None)
    assert not directory.exists()


def test_a_metrics_directory_of_the_operators_is_kept_and_its_old_files_removed(tmp_path, monkeypatch):
    import helpdesk.cli

    keep_value_class(monkeypatch)
    (tmp_path / "counter_99.db").write_bytes(b"old")
    monkeypatch.setenv(server.MULTIPROC_ENV, str(tmp_path))
    monkeypatch.setattr(helpdesk.cli, "check_before_serving", lambda **checks: None)
    server.on_starting(None)
    server.on_exit(None)
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []


def test_a_root_master_checks_the_spool_as_the_workers_user_and_makes_it_theirs(open_tmp):
    # As root the check would pass anywhere, and a spool it made would be root's, 0700: the
    # workers could not keep a webhook in it in the next database outage.
    from helpdesk.voice.recovery import spool_problem
    from tests.integration.conftest import make_settings

    arbiter, nobody = workers_as_nobody()
    tmp_path = open_tmp
    theirs, roots = tmp_path / "theirs", tmp_path / "roots"
    theirs.mkdir()
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    roots.mkdir(mode=0o755)
    run = server.as_workers(arbiter)
    assert run(lambda: spool_problem(make_settings(webhooks={"spool_dir": str(theirs / "spool")}))) is None
    assert (theirs / "spool").stat().st_uid == nobody.pw_uid and not any((theirs / "spool").iterdir())
    problem = run(lambda: spool_problem(make_settings(webhooks={"spool_dir": str(roots / "spool")})))
    assert problem.startswith(f"webhooks.spool_dir: cannot write to {roots}/spool (Permission denied)")
    assert not (roots / "spool").exists()
    assert spool_problem(make_settings(webhooks={"spool_dir": str(roots / "spool")})) is None  # as root: fine
    assert run(lambda: 1 / 0) == f"the check could not be made as the workers' user (uid {nobody.pw_uid}, gid {nobody.pw_gid})"


def test_a_root_master_checks_an_sqlite_file_as_the_workers_user(open_tmp):
    # Set up as root (db upgrade, users add), the file is root's, 0600: the workers could open
    # nothing, and every page and webhook failed with "unable to open database file".
    from helpdesk.migrate import sqlite_file_problem, upgrade

    arbiter, nobody = workers_as_nobody()
    run = server.as_workers(arbiter)
    url = f"sqlite:///{open_tmp}/helpdesk.db"
    upgrade(url)
    assert sqlite_file_problem(url) is None  # as root: fine
    assert run(lambda: sqlite_file_problem(url)) == (
        f"this user (nobody) cannot read and write the database file {open_tmp}/helpdesk.db (owned by root, "
        "mode 0600): run 'helpdesk db upgrade' and 'helpdesk users' as the app's user, or give them to it "
        "(chown nobody)")
    for each in open_tmp.iterdir():
        os.chown(each, nobody.pw_uid, nobody.pw_gid)
    assert run(lambda: sqlite_file_problem(url)) == (
        f"this user (nobody) cannot make files in {open_tmp}, where SQLite keeps its -wal and -shm files beside "
        "the database: run 'helpdesk db upgrade' and 'helpdesk users' as the app's user, or give them to it "
        "(chown nobody)")
    os.chown(open_tmp, nobody.pw_uid, nobody.pw_gid)
    assert run(lambda: sqlite_file_problem(url)) is None
    open_tmp.chmod(0o700)
    os.chown(open_tmp, 0, 0)
    assert run(lambda: sqlite_file_problem(url)) == (
        f"this user (nobody) cannot reach the database file {open_tmp}/helpdesk.db: a folder on its way is "
        "closed to it")


def test_a_root_master_gives_the_metrics_directory_it_makes_to_the_workers_user(monkeypatch):
    arbiter, nobody = workers_as_nobody()
    keep_value_class(monkeypatch)
    monkeypatch.delenv(server.MULTIPROC_ENV, raising=False)
    directory, made = server.prepare_metrics_dir(owner=server.workers_owner(arbiter))
    try:
        assert made and os.stat(directory).st_uid == nobody.pw_uid
    finally:
        os.environ.pop(server.MULTIPROC_ENV, None)
        os.rmdir(directory)
    assert server.workers_owner(SimpleNamespace(cfg=Config())) is None and server.workers_owner(None) is None


def test_gunicorns_master_makes_its_checks_as_the_workers_user(monkeypatch):
    import helpdesk.cli

    arbiter, nobody = workers_as_nobody()
    keep_value_class(monkeypatch)
    monkeypatch.delenv(server.MULTIPROC_ENV, raising=False)
    given = {}
    monkeypatch.setattr(helpdesk.cli, "check_before_serving", lambda **checks: given.update(checks))
    server.on_starting(arbiter)
    directory = os.environ.pop(server.MULTIPROC_ENV)
    try:
        assert given["as_workers"](lambda: f"{os.geteuid()}:{os.getegid()}") == f"{nobody.pw_uid}:{nobody.pw_gid}"
        assert os.stat(directory).st_uid == nobody.pw_uid
    finally:
        server.on_exit(arbiter)
    assert not os.path.exists(directory)


def test_helpdesk_run_keeps_idle_connections_open_as_the_shipped_configuration_does(monkeypatch, tmp_path):
    from helpdesk import config_in_force, server

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    keep_value_class(monkeypatch)  # serve() prepares the directory as on_starting does
    monkeypatch.setenv(config_in_force.IN_FORCE_ENV, "")  # put back as it was after the test
    seen = {}
    monkeypatch.setattr(server.HelpdeskServer, "run", lambda self: seen.update(self.options))
    server.serve("127.0.0.1:0")
    config_in_force.remove()
    assert seen["on_reload"] and seen["on_exit"]
    namespace = {}
    exec(compile(CONFIG_FILE.read_text(), str(CONFIG_FILE), "exec"), namespace)
    assert seen["keepalive"] == namespace["keepalive"] == server.KEEPALIVE_SECONDS >= 60
