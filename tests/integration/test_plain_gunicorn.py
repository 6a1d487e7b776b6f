"""`gunicorn -c config/gunicorn.conf.py 'helpdesk:create_app()'`, as the README's production set-up
runs it: the master makes `helpdesk run`'s checks before any worker starts, and a mistake stops
it with one line naming the problem, rather than a traceback per worker or a 500 per request."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from servers import free_port, stop_process, wait_for_url

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"SECRET_KEY": "s" * 32, "TWILIO_AUTH_TOKEN": "test-auth-token", "PUBLIC_BASE_URL": "https://h.example"}


def gunicorn(env: dict[str, str], port: int | None = None, *options: str) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", *SECRETS)}
    environment.update(env)
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.conf.py"), "--workers", "2",
               "--bind", f"127.0.0.1:{port or free_port()}", *options, "helpdesk:create_app()"]
    return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def refused(env: dict[str, str]) -> str:
    process = gunicorn(env)
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        stop_process(process)
    assert process.returncode == 1, output
    assert "Traceback" not in output and "Worker failed to boot" not in output
    return output


def test_a_database_never_migrated_stops_gunicorn_before_any_worker_starts(database_url):
    if database_url.startswith("sqlite:///"):
        Path(database_url[len("sqlite:///"):]).touch()  # there, but empty
    output = refused({**SECRETS, "DATABASE_URL": database_url})
    assert "Error: the database has no schema yet: run 'helpdesk db upgrade' first" in output


@pytest.mark.parametrize("missing", ["TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL", "SECRET_KEY"])
def test_a_missing_secret_stops_gunicorn_naming_it(tmp_path, missing):
    env = {**SECRETS, "DATABASE_URL": f"sqlite:///{tmp_path}/h.db"}
    del env[missing]
    assert f"Error: set {missing} in the environment first" in refused(env)


def test_a_configuration_mistake_or_a_short_key_stops_gunicorn_in_one_line(migrated_url, tmp_path):
    config = tmp_path / "helpdesk.toml"
    config.write_text("[scheduler]\nsweep_second = 60\n")
    output = refused({**SECRETS, "DATABASE_URL": migrated_url, "HELPDESK_CONFIG": str(config)})
    assert f"Error: {config}: scheduler.sweep_second is not a known key" in output
    output = refused({**SECRETS, "SECRET_KEY": "changeme", "DATABASE_URL": migrated_url})
    assert "Error: SECRET_KEY is too short (8 characters)" in output


def test_a_metrics_directory_the_workers_cannot_write_stops_gunicorn(migrated_url, tmp_path):
    (tmp_path / "a-file").write_text("")
    directory = tmp_path / "a-file" / "metrics"  # cannot be made: its parent is a file
    output = refused({**SECRETS, "DATABASE_URL": migrated_url, "PROMETHEUS_MULTIPROC_DIR": str(directory)})
    assert f"Error: PROMETHEUS_MULTIPROC_DIR {directory}: cannot use it for the workers' metrics" in output


def test_a_database_name_the_server_does_not_have_stops_gunicorn(postgres_url):
    # The server answered: a misspelt name will not mend itself, unlike a server still starting.
    wrong = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    output = refused({**SECRETS, "DATABASE_URL": wrong})
    assert 'Error: the database server refused DATABASE_URL: ' in output and "no_such_database" in output


def test_a_database_that_does_not_answer_yet_is_served_anyway_with_the_spool(tmp_path):
    # Refusing to start would leave callers with Twilio's error; the spool keeps their webhooks.
    port = free_port()
    env = {**SECRETS, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
           "HELPDESK_CONFIG": str(ROOT / "config" / "helpdesk.toml")}
    process = gunicorn(env, port)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/healthz", process=process)
        assert wait_for_url(f"http://127.0.0.1:{port}/readyz", status=503, process=process) == 503
    finally:
        stop_process(process)
        output = process.stdout.read()
    assert "cannot reach the database" in output and "starting anyway" in output
    assert "Traceback" not in output
    # The app's lines carry time, level and logger, as under `helpdesk run`.
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ERROR helpdesk\.cli: cannot reach the database", output, re.M)


def test_an_idle_connection_is_kept_open_for_the_next_webhook(migrated_url, tmp_path):
    """gunicorn's default keep-alive (2 s) closes an idle connection just as a client or proxy may
    reuse it: the request then meets a reset, and Twilio calls the fallback (a failed call)."""
    import http.client
    import time

    port = free_port()
    env = {**SECRETS, "DATABASE_URL": migrated_url, "HELPDESK_CONFIG": str(ROOT / "config" / "helpdesk.toml")}
    process = gunicorn(env, port)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/healthz", process=process)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        first.read()
        assert first.status == 200 and not first.will_close
        time.sleep(3)  # longer than gunicorn's default keep-alive
        connection.request("GET", "/healthz")  # the same connection, still open
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        stop_process(process)


def test_the_access_log_never_holds_the_secret_of_a_link_to_choose_a_password(migrated_url):
    import urllib.request

    port = free_port()
    env = {**SECRETS, "DATABASE_URL": migrated_url, "HELPDESK_CONFIG": str(ROOT / "config" / "helpdesk.toml")}
    process = gunicorn(env, port, "--access-logfile", "-")
    try:
        wait_for_url(f"http://127.0.0.1:{port}/healthz", process=process)
        for path in ("/password/link/Sekr1t-one_A", "/password/link/Sekr1t-two_B?utm=x", "/healthz"):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                             headers={"Referer": "http://x.example/password/link/Sekr1t-three"})
            opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                                      {"redirect_request": lambda *args: None}))
            try:
                opener.open(request, timeout=10)
            except urllib.error.HTTPError as answer:
                assert answer.code == 302
    finally:
        stop_process(process)
    output = process.stdout.read()
    assert output.count("GET /password/link/[secret]") == 2 and "GET /healthz" in output, output[-2000:]
    assert "Sekr1t" not in output


def test_a_reload_with_a_mistake_in_the_configuration_keeps_serving_on_the_configuration_in_force(
        migrated_url, tmp_path):
    # SIGHUP (systemctl reload) starts new workers, which read the file again: with a mistake in
    # it they failed to start, gunicorn stopped, and every caller heard Twilio's error message.
    import hashlib
    import signal
    import time
    import urllib.request

    config = tmp_path / "helpdesk.toml"
    good = (ROOT / "config" / "helpdesk.toml").read_text()
    config.write_text(good)
    port = free_port()
    process = gunicorn({**SECRETS, "DATABASE_URL": migrated_url, "HELPDESK_CONFIG": str(config)}, port)

    def version(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def served() -> str:
        """The configuration version a worker serves, from /metrics."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        return re.search(r'^helpdesk_build_info\{config_version="(\w+)",version="[^"]+"\} 1\.0$', text, re.M).group(1)

    def until(condition, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline and process.poll() is None, "gave up waiting"
            time.sleep(0.2)

    try:
        wait_for_url(f"http://127.0.0.1:{port}/healthz", process=process)
        assert served() == version(good)
        config.write_text(good + "\n[nonsense]\n")
        process.send_signal(signal.SIGHUP)
        time.sleep(3)  # the new workers have started (or failed to)
        assert process.poll() is None, "gunicorn stopped"
        assert served() == version(good)  # the configuration in force, not the file
        changed = good + "\n# a comment: a new version\n"
        config.write_text(changed)
        process.send_signal(signal.SIGHUP)
        until(lambda: served() == version(changed))  # a mended file is taken up at the next reload
    finally:
        stop_process(process)
        output = process.stdout.read()
    assert "unknown table or key 'nonsense': the workers keep the configuration in force" in output
    assert "running on the configuration in force before it" in output  # each new worker said so
    assert f"configuration reloaded from {config} (version {version(changed)})" in output
    assert "Traceback" not in output and "Worker failed to boot" not in output
