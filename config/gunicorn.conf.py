"""gunicorn settings for running the app under gunicorn yourself (`helpdesk run` applies the same):

    gunicorn -c config/gunicorn.conf.py --workers 4 --threads 4 --bind 127.0.0.1:8000 'helpdesk:create_app()'

Before any worker starts, the master makes the checks `helpdesk run` makes (the secrets in the
environment, the configuration file, the spool directory, the database's schema) and stops
with one line naming a problem. Started as root with --user, it checks the spool as that user.
It also prepares PROMETHEUS_MULTIPROC_DIR, where the workers add up their request metrics: a
fresh temporary directory (the workers' own), removed at exit, unless you set one.

On SIGHUP (a reload) it checks the configuration file again: with a mistake in it, the log says
so and the new workers run on the configuration in force, rather than fail to start.

Add your own settings below; keep the five hooks, and logger_class.
"""
from helpdesk.server import child_exit, on_exit, on_reload, on_starting, post_worker_init  # noqa: F401  (found by name)

# Twilio waits 15 s for a webhook's answer: a worker stuck for twice that is restarted.
timeout = 30
# An idle connection is kept open this long (gunicorn's default is 2 s). A client or proxy that
# sends on a connection just as gunicorn closes it gets a reset: Twilio then calls the fallback
# URL, and the call is recorded as failed. Keep a proxy's idle timeout for its connections to
# the app shorter than this (nginx: keepalive_timeout in the upstream block; a load balancer's
# idle timeout), so the proxy always closes first.
keepalive = 75
# Threads, as `helpdesk run` has: a worker answers webhooks while another of its requests runs
# long (an evidence pack for a quarter takes up to half a minute), and that request is not cut
# off by the timeout above, which a worker with a single thread would apply to it.
threads = 4
# The access log (if you turn it on) leaves out the secret of a link to choose a password.
logger_class = "helpdesk.server.AccessLog"
# No control socket (gunicorn 25.1 and later): the app needs none, and every gunicorn run by
# one user would otherwise share the same one, $HOME/.gunicorn/gunicorn.ctl.
control_socket_disable = True
