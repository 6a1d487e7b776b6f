"""The app under gunicorn on 127.0.0.1, as in production: for end-to-end tests and benchmarks."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from servers import free_port, stop_process, wait_for_url

ROOT = Path(__file__).resolve().parent.parent
PORT_ATTEMPTS = 3


class LiveApp:
    """`gunicorn -c config/gunicorn.conf.py 'helpdesk:create_app()'` with its own environment,
    migrated database and log (another `app` runs under the same settings)."""

    def __init__(self, database_url: str, env: dict[str, str], workers: int = 2, threads: int = 1,
                 app: str = "helpdesk:create_app()", migrate: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.workers, self.threads, self.app, self.migrate = workers, threads, app, migrate
        # The help desk's own settings, with its start-up checks; the benchmarks' bare apps have
        # neither a database nor secrets, and take the same worker settings without the checks.
        self.config = "config/gunicorn.conf.py" if app.startswith("helpdesk") else "bench/gunicorn_bare.conf.py"
        self.env = {**os.environ, "DATABASE_URL": database_url, "PUBLIC_BASE_URL": self.url, **env}
        self.log = Path(tempfile.mkstemp(prefix="gunicorn-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    def start(self) -> "LiveApp":
        if self.migrate:
            from helpdesk.migrate import upgrade

            upgrade(self.database_url)
        for attempt in range(PORT_ATTEMPTS):
            if attempt:  # another server took the port between free_port() and gunicorn's bind
                taken, self.port = self.url, free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                if self.env.get("PUBLIC_BASE_URL") == taken:
                    self.env["PUBLIC_BASE_URL"] = self.url
            if self._started():
                return self
        self.stop()
        raise RuntimeError(f"gunicorn found no free port in {PORT_ATTEMPTS} tries; its log:\n"
                           f"{self.log.read_text()[-3000:]}")

    def _started(self) -> bool:
        """Start gunicorn on self.port: True once it answers there, False if the port was taken.
        Only its own "Listening at" counts: another server answering on that port (free_port()
        gave two servers the same one) must not stand in for it."""
        command = [
            sys.executable, "-m", "gunicorn", "--config", str(ROOT / self.config),
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers), "--threads", str(self.threads), "--worker-class",
            "gthread" if self.threads > 1 else "sync", "--timeout", "30", self.app,
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while f"Listening at: {self.url} " not in (text := self.log.read_text(errors="replace")):
                if "Connection in use" in text:
                    self.stop()
                    return False
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not bind its port")
                time.sleep(0.05)
            wait_for_url(self.url + ("/readyz" if "helpdesk" in self.app else "/"), process=self.process,
                         status=None if "helpdesk" not in self.app else 200)
        except Exception:
            self.stop()
            raise RuntimeError(f"gunicorn did not start; its log:\n{self.log.read_text()[-3000:]}") from None
        return True

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=15)
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> "LiveApp":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
