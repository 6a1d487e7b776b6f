"""gunicorn settings for running the app under gunicorn yourself (`helpdesk run` applies the same):

    PROMETHEUS_MULTIPROC_DIR=/run/helpdesk-metrics \
      gunicorn -c config/gunicorn.conf.py --workers 4 --bind 127.0.0.1:8000 'helpdesk:create_app()'

Add your own settings below; keep the two hooks.
"""
from helpdesk.server import child_exit, post_worker_init  # noqa: F401  (gunicorn finds hooks by name)

# Twilio waits 15 s for a webhook's answer: a worker stuck for twice that is restarted.
timeout = 30
