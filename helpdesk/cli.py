"""The `helpdesk` command."""
from __future__ import annotations

import logging
import os
import sys

import click

from helpdesk.config import ConfigError, Secrets, load_settings

log = logging.getLogger(__name__)


@click.group()
@click.option("--verbose", "-v", is_flag=True, help="Log more detail.")
def main(verbose: bool) -> None:
    """Help-desk telephony and contact SLA monitor."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def database_url() -> str:
    return Secrets.from_environ().database_url


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Schema revision to upgrade to.")
def db_upgrade(revision: str) -> None:
    """Create or migrate the database named by DATABASE_URL."""
    from helpdesk.migrate import upgrade

    try:
        upgrade(database_url(), revision)
    except Exception as exc:  # alembic and driver errors: say what failed, no traceback
        raise click.ClickException(f"could not migrate the database: {exc}") from None
    click.echo("Database is up to date.")


@db.command("current")
def db_current() -> None:
    """Show the database's schema revision."""
    from helpdesk.migrate import current

    click.echo(current(database_url()) or "empty (run 'helpdesk db upgrade')")


@main.command("check-config")
@click.argument("path", required=False)
def check_config(path: str | None) -> None:
    """Validate the configuration file (HELPDESK_CONFIG, or config/helpdesk.toml)."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{settings.source}: valid (version {settings.version}).")


def build_app():
    """The app, or a clear message about what is missing."""
    from helpdesk.app import create_app

    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes.")
def run(host: str, port: int, workers: int) -> None:
    """Serve the app with gunicorn (the one-machine set-up)."""
    missing = [name for name in ("SECRET_KEY", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL") if not os.environ.get(name)]
    if missing:
        raise click.ClickException(f"set {', '.join(missing)} in the environment first")
    build_app()  # fail here, with a message, rather than in every worker
    from helpdesk.server import serve

    serve(f"{host}:{port}", workers=workers)


def _register() -> None:
    from helpdesk.simulator import simulate_command
    from helpdesk.users import users_cli

    main.add_command(simulate_command)
    main.add_command(users_cli)


_register()

if __name__ == "__main__":
    sys.exit(main())
