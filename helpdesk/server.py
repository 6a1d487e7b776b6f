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


def serve(bind: str, workers: int = 2, threads: int = 4, scheduler=None) -> None:
    """Run gunicorn. `scheduler` (an APScheduler BackgroundScheduler) runs in the master process:
    started once the master is listening (`when_ready`), before it forks the workers, and shut
    down when the master exits; workers never run it, however many there are."""
    options = {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "accesslog": "-",
        # Twilio waits 15 s; answer well inside that or fail fast.
        "timeout": 30,
        "preload_app": False,
    }
    if scheduler is not None:
        options.update(scheduler_hooks(scheduler))
    HelpdeskServer(options).run()


def scheduler_hooks(scheduler) -> dict:
    """gunicorn server hooks that run `scheduler` in the master (the arbiter), not in the workers."""

    def when_ready(arbiter):
        scheduler.start()
        arbiter.log.info("Scheduler started in the master process (pid %s)", arbiter.pid)

    def on_exit(arbiter):
        if scheduler.running:
            scheduler.shutdown()

    return {"when_ready": when_ready, "on_exit": on_exit}
