"""What pyproject.toml cannot say: the wheel carries config/'s operating files as the package
helpdesk.operating.

config/ holds the documented example configuration, the gunicorn settings and the Prometheus
and Grafana set-up. It stays at the top of the repository, where the README points, and its
files named in helpdesk/shipped.py's CONFIG_FILES (read from there, not imported: nothing is
installed yet) go into the wheel inside the app's package, so `helpdesk files` can write them
out for an installation made from the wheel alone. Nothing else in config/ is packaged: not
the demo's configuration, and not a site's own configuration kept beside the example.
"""
import ast
from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py


def config_files() -> list[str]:
    module = ast.parse(Path("helpdesk/shipped.py").read_text(encoding="utf-8"))
    for node in module.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["CONFIG_FILES"]:
            return list(ast.literal_eval(node.value))
    raise SystemExit("helpdesk/shipped.py has no CONFIG_FILES")


class BuildPy(build_py):
    """config/ is files, named one by one: no module found there by its .py name goes in."""

    def find_package_modules(self, package, package_dir):
        return [] if package == "helpdesk.operating" else super().find_package_modules(package, package_dir)


setup(
    packages=find_namespace_packages(include=["helpdesk*", "callbacks*", "metrics*"]) + ["helpdesk.operating"],
    package_dir={"helpdesk.operating": "config"},
    package_data={
        "helpdesk": ["templates/**/*", "static/**/*", "migrations/*", "migrations/**/*"],
        "helpdesk.operating": config_files(),
        "metrics": ["alerts/*.yml", "dashboards/*.json", "dashboards/schema/*"],
    },
    cmdclass={"build_py": BuildPy},
)
