"""`helpdesk email`: poll the IMAP mailbox by hand, and simulate SendGrid's posts for the demo."""
from __future__ import annotations

import os

import click

from helpdesk.config import ConfigError, load_settings


@click.group("email")
def email_cli() -> None:
    """Inbound email enquiries: poll the IMAP mailbox, simulate SendGrid posts."""


@email_cli.command("poll")
@click.option("--once", is_flag=True, help="Poll once and exit (otherwise every [email.imap] poll_seconds).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="Trust this CA certificate for the IMAP server (a private or self-signed certificate); "
                   "default: email.imap.ca_file.")
def email_poll(once: bool, ca_file: str | None) -> None:
    """Read new messages from the [email.imap] mailbox into email enquiries.

    Needs DATABASE_URL, IMAP_USERNAME and IMAP_PASSWORD. The scheduler does this on its own;
    this command is for checking the set-up or running the poller by hand. Ctrl-C stops it.
    """
    import ssl
    import time

    from callbacks.email.imap import ImapError, poll_mailbox
    from helpdesk.cli import migrated_database_url  # here: helpdesk.cli adds this module's commands
    from helpdesk.clock import now_utc
    from helpdesk.db import Database

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else settings.email.imap.ssl_context()
    except ssl.SSLError:
        raise click.BadParameter(f"{ca_file} holds no certificate in PEM form", param_hint="--ca-file") from None
    db = Database(migrated_database_url())
    try:
        while True:
            try:
                result = poll_mailbox(db, settings, username=os.environ.get("IMAP_USERNAME", ""),
                                      password=os.environ.get("IMAP_PASSWORD", ""), now=now_utc(), ssl_context=context)
            except ImapError as exc:
                raise click.ClickException(str(exc)) from None
            passed_over = (f" {result.passed_over} passed over, received before "
                           f"{settings.email.imap.take_in_from:%-d %B %Y}." if result.passed_over else "")
            click.echo(f"{settings.email.imap.mailbox}: {result.fetched} read, {result.stored} new, "
                       f"{result.duplicates} already stored (last UID {result.last_uid}).{passed_over}")
            if once:
                return
            time.sleep(settings.email.imap.poll_seconds)
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        db.dispose()


@email_cli.command("simulate")
@click.option("--url", required=True, help="The help desk's base URL, or its /email/inbound URL.")
@click.option("--count", default=9, show_default=True, type=click.IntRange(1, 1000), help="How many posts.")
def email_simulate(url: str, count: int) -> None:
    """Post realistic SendGrid Inbound Parse requests: enquiries, replies, an auto-reply, a bounce, a redelivery.

    Authenticates with SENDGRID_INBOUND_SECRET from the environment, as SendGrid would.
    """
    from urllib.parse import urlsplit

    from callbacks.email.simulate import simulate
    from helpdesk.clock import now_utc

    secret = os.environ.get("SENDGRID_INBOUND_SECRET")
    if not secret:
        raise click.ClickException("set SENDGRID_INBOUND_SECRET in the environment first (the server's secret)")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise click.BadParameter("give an http:// or https:// URL", param_hint="--url")
    try:
        sent = simulate(url, secret, count, now_utc(), report=click.echo)
    except OSError as exc:
        raise click.ClickException(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    failed = [s for s in sent if not 200 <= s.status < 300]
    if failed:
        raise click.ClickException(f"{len(failed)} of {count} posts were not accepted "
                                   f"(first: HTTP {failed[0].status} {failed[0].answer.get('error', '')})")
