"""What pyproject.toml cannot say: the wheel carries config/ as the package helpdesk.operating.

config/ holds the operating files (the documented example configuration, gunicorn settings,
Prometheus and Grafana set-up). It stays at the top of the repository, where the README points,
and goes into the wheel inside the app's package, so `helpdesk files` can write it out for an
installation made from the wheel alone (helpdesk/shipped.py). Everything else is in pyproject.toml.
"""
from pathlib import Path

from setuptools import find_namespace_packages, setup

OPERATING = ["helpdesk.operating"] + sorted(
    "helpdesk.operating." + ".".join(folder.relative_to("config").parts)
    for folder in Path("config").rglob("*") if folder.is_dir() and folder.name != "__pycache__")

setup(
    packages=find_namespace_packages(include=["helpdesk*", "callbacks*", "metrics*"]) + OPERATING,
    package_dir={"helpdesk.operating": "config"},
)
