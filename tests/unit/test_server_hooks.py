"""The gunicorn worker hooks that `helpdesk run` and config/gunicorn.conf.py share."""
from __future__ import annotations

import gc
import os
import runpy
from pathlib import Path
from types import SimpleNamespace

from gunicorn.config import Config

from helpdesk import server

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
    assert config.timeout == 30
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
    monkeypatch.setattr(helpdesk.cli, "check_before_serving", lambda: None)
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
    monkeypatch.setattr(helpdesk.cli, "check_before_serving", lambda: None)
    server.on_starting(None)
    server.on_exit(None)
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []
