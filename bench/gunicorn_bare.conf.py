"""gunicorn settings for the benchmarks' bare endpoints: config/gunicorn.conf.py's worker
settings, without the help desk's start-up checks (these apps have no database or secrets)."""
from helpdesk.server import KEEPALIVE_SECONDS, post_worker_init  # noqa: F401  (found by name)

timeout = 30
keepalive = KEEPALIVE_SECONDS  # as config/gunicorn.conf.py (sync workers, as the benchmarks run, close each connection anyway)
control_socket_disable = True  # as config/gunicorn.conf.py
