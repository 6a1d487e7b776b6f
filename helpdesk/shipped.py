"""The operating files that come with the app, and writing them out for an installation.

They are the documented example configuration, the gunicorn settings, the Prometheus and
Grafana set-up (config/), the alert rules with their tests and the Grafana dashboards
(metrics/). In a checkout they are those folders of the repository. A wheel carries config/
as helpdesk/operating/ (setup.py), and metrics/'s files as package data. `helpdesk files`
writes them laid out as in a checkout, so the README's commands work from that directory.
"""
from __future__ import annotations

from pathlib import Path

import helpdesk
import metrics

PACKAGE = Path(helpdesk.__file__).resolve().parent
NOT_SHIPPED = {"demo.toml"}  # the demo's own configuration (make demo), not an example


def config_dir() -> Path:
    packaged = PACKAGE / "operating"
    return packaged if packaged.is_dir() else PACKAGE.parent / "config"


def shipped_files() -> dict[str, Path]:
    """Each file's place in the layout (a relative POSIX path) → where it is now, in order."""
    config, metrics_dir = config_dir(), Path(metrics.__file__).resolve().parent
    found = {f"config/{path.relative_to(config).as_posix()}": path for path in config.rglob("*")
             if path.is_file() and path.name not in NOT_SHIPPED and "__pycache__" not in path.parts}
    for pattern in ("alerts/*.yml", "dashboards/*.json"):
        found.update({f"metrics/{path.relative_to(metrics_dir).as_posix()}": path
                      for path in metrics_dir.glob(pattern)})
    return dict(sorted(found.items()))


def differing(out: Path, files: dict[str, Path]) -> list[str]:
    """The files that `out` already holds with other content."""
    return [name for name, source in files.items()
            if (out / name).exists() and (not (out / name).is_file() or (out / name).read_bytes() != source.read_bytes())]


def write_files(out: Path, files: dict[str, Path]) -> list[tuple[str, str]]:
    """Write each file under `out` (making folders); return (name, "wrote" or "unchanged")."""
    done = []
    for name, source in files.items():
        target = out / name
        content = source.read_bytes()
        if target.is_file() and target.read_bytes() == content:
            done.append((name, "unchanged"))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        done.append((name, "wrote"))
    return done
