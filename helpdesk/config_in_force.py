"""The configuration in force under gunicorn, for workers that find a mistake in the file.

gunicorn reloads on SIGHUP (what `systemctl reload` usually sends): it starts new workers, and
each reads the configuration file again. With a mistake in the file, every new worker would
fail to start, gunicorn would stop, and every caller would hear Twilio's error message. So the
master keeps a copy of the file as it last checked it, at start and at each reload that finds
it valid; a worker that finds a mistake in the file says so in the log and runs on that copy.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from helpdesk.config import ConfigError, config_path, load_settings, read_config, settings_from
from helpdesk.settings import Settings

log = logging.getLogger(__name__)

# The copy's path, for the workers (they inherit the master's environment).
IN_FORCE_ENV = "HELPDESK_CONFIG_IN_FORCE"


def keep(owner: tuple[int, int] | None = None) -> str:
    """Copy the configuration file for the workers, once it is found valid (ConfigError if not);
    `owner`: the workers' user and group, when not this process's. Returns the copy's path, also
    set in IN_FORCE_ENV."""
    raw, path = read_config()
    settings_from(raw, path)
    descriptor, copy = tempfile.mkstemp(prefix="helpdesk-config-", suffix=".toml")
    os.close(descriptor)
    _write(copy, raw, owner)
    os.environ[IN_FORCE_ENV] = copy
    return copy


def _write(path: str, raw: bytes, owner: tuple[int, int] | None) -> None:
    new = f"{path}.new"
    with open(new, "wb") as file:  # 0600 under the umask mkstemp's own file has
        os.chmod(new, 0o600)
        file.write(raw)
    if owner is not None:
        os.chown(new, *owner)
    os.replace(new, path)  # a worker starting now reads the old copy or the new, whole


def reload(owner: tuple[int, int] | None = None) -> None:
    """gunicorn's on_reload, in the master before the new workers start (helpdesk.server): the
    file checked again; valid, those same bytes become the copy in force; with a mistake, the
    log says so, and the new workers run on the copy. `owner` as for `keep`."""
    try:
        raw, path = read_config()
        settings = settings_from(raw, path)
    except ConfigError as problem:
        log.error("%s: the workers keep the configuration in force until it is mended (check it with "
                  "'helpdesk check-config', then reload again)", problem)
        return
    copy = os.environ.get(IN_FORCE_ENV)
    if copy:
        try:
            _write(copy, raw, owner)
        except OSError as error:
            log.error("cannot keep a copy of the configuration for the workers (%s)", error.strerror or error)
            return
    log.info("configuration reloaded from %s (version %s)", settings.source, settings.version)


def remove() -> None:
    """At exit: remove the copy."""
    path = os.environ.pop(IN_FORCE_ENV, None)
    if path:
        try:
            os.remove(path)
        except OSError:
            pass


def load_for_app(path: str | Path | None = None) -> Settings:
    """The app's settings from the configuration file; under gunicorn, when the file has a
    mistake, the copy in force, with the mistake logged. `path` given (tests), the file only."""
    try:
        return load_settings(path)
    except ConfigError as problem:
        in_force = os.environ.get(IN_FORCE_ENV)
        if path is not None or not in_force or not os.path.exists(in_force):
            raise
        settings = settings_from(read_config(in_force)[0], config_path())
        log.error("%s: running on the configuration in force before it (version %s) until it is mended",
                  problem, settings.version)
        return settings
