"""gunicorn, embedded, so `helpdesk run` needs no separate configuration file."""
from __future__ import annotations

from gunicorn.app.base import BaseApplication


class HelpdeskServer(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from helpdesk.app import create_app

        return create_app()


def serve(bind: str, workers: int = 2, threads: int = 4) -> None:
    HelpdeskServer({
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "accesslog": "-",
        # Twilio waits 15 s; answer well inside that or fail fast.
        "timeout": 30,
        "preload_app": False,
    }).run()
