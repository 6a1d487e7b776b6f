"""The operating files that come with the app, and writing them out for an installation.

They are the documented example configuration, the dependency versions the app was tested
with, the gunicorn settings, the Prometheus and Grafana set-up (CONFIG_FILES, in config/),
the alert rules with their tests and the Grafana dashboards (metrics/). In a checkout they
are in those folders of the repository. A wheel carries CONFIG_FILES as helpdesk/operating/
(setup.py reads the list from here, so nothing else put in config/, such as a site's own
configuration, is ever packaged), and metrics/'s files as package data. `helpdesk files`
writes them laid out as in a checkout, so the README's commands work from that directory.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import helpdesk
import metrics

# config/'s files that ship, as paths under config/ (setup.py reads this literal).
CONFIG_FILES = (
    "helpdesk.toml",
    "constraints.txt",
    "gunicorn.conf.py",
    "prometheus.yml",
    "grafana/provisioning/datasources/prometheus.yml",
    "grafana/provisioning/dashboards/helpdesk.yml",
)
METRICS_PATTERNS = ("alerts/*.yml", "dashboards/*.json")

PACKAGE = Path(helpdesk.__file__).resolve().parent
METRICS = Path(metrics.__file__).resolve().parent


def config_dir() -> Path:
    packaged = PACKAGE / "operating"
    return packaged if packaged.is_dir() else PACKAGE.parent / "config"


def shipped_files() -> dict[str, Path]:
    """Each file's place in the layout (a relative POSIX path) → where it is now, in order."""
    found = {f"config/{name}": config_dir() / name for name in CONFIG_FILES}
    for pattern in METRICS_PATTERNS:
        found.update({f"metrics/{path.relative_to(METRICS).as_posix()}": path for path in METRICS.glob(pattern)})
    return dict(sorted(found.items()))


def inside_sources(out: Path) -> Path | None:
    """The folder of shipped files that `out` is in (writing there would ship the copies), or None."""
    where = out.resolve()
    for source in (config_dir().resolve(), METRICS):
        if where == source or source in where.parents:
            return source
    return None


def differing(out: Path, files: dict[str, Path]) -> list[str]:
    """The files that `out` already holds with other content (or as something other than a file)."""
    return [name for name, source in files.items()
            if os.path.lexists(out / name) and not _same(out / name, source)]


def _same(target: Path, source: Path) -> bool:
    return target.is_file() and not target.is_symlink() and target.read_bytes() == source.read_bytes()


def write_files(out: Path, files: dict[str, Path]) -> list[tuple[str, str]]:
    """Write each file under `out` (making folders); return (name, "wrote" or "unchanged"). Each
    is written beside its place and renamed over it, so a link there is replaced, never written
    through (it may point at a configuration of the site's own)."""
    done = []
    for name, source in files.items():
        target = out / name
        if _same(target, source):
            done.append((name, "unchanged"))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(source.read_bytes())
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        done.append((name, "wrote"))
    return done
