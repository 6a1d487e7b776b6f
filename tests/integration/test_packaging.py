"""The wheel: built from this checkout as pip builds it, it carries what an installation made
from it alone needs (templates, static files, migrations, and the operating files that
`helpdesk files` writes out), and that command works from it outside the repository."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpdesk.shipped import shipped_files

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source")
    # From a copy of the files git would commit, so no build/ folder left from an earlier build
    # (which can hold files since deleted) or other untracked file finds its way in.
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # A site's own configuration kept beside the example must never be packaged.
    (source / "config" / "production.toml").write_text('[supervisors]\nemails = ["someone@example.org"]\n')
    (source / "config" / "local.py").write_text("SECRET = 1\n")
    # Built in an isolated environment, as pip install does: setuptools comes from the index.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                           "-q", "-w", str(out), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = out.glob("helpdesk_sla-*.whl")
    return built


def test_the_wheel_carries_the_app_and_every_operating_file_as_in_the_checkout(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for layout, source in shipped_files().items():
            inside = layout.replace("config/", "helpdesk/operating/", 1)
            assert inside in names, f"{layout} is not in the wheel"
            assert archive.read(inside) == source.read_bytes(), f"{inside} differs from {source}"
    assert {"helpdesk/templates/base.html", "helpdesk/static/helpdesk.css", "helpdesk/migrations/env.py",
            "metrics/dashboards/schema/dashboard.jsonschema.json"} <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not any(name.startswith("helpdesk/operating/") for name in names
                   if name.replace("helpdesk/operating/", "config/", 1) not in shipped_files()), sorted(names)
    assert "helpdesk/operating/demo.toml" not in names and "helpdesk/operating/production.toml" not in names
    assert not any("/tests/" in name or name.startswith(("tests/", "bench/")) for name in names)


def test_files_writes_them_out_from_the_wheel_alone_outside_the_repository(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}  # the wheel's packages before the checkout's
    done = subprocess.run([sys.executable, "-c", "import helpdesk, sys; print(helpdesk.__file__); "
                           "from helpdesk.cli import main; sys.argv = ['helpdesk', 'files', '--out', 'deploy']; main()"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(site / "helpdesk" / "__init__.py")
    written = sorted(p.relative_to(tmp_path / "deploy").as_posix() for p in (tmp_path / "deploy").rglob("*")
                     if p.is_file())
    assert written == sorted(shipped_files()) and "config/helpdesk.toml" in written
    assert "metrics/alerts/helpdesk.rules.yml" in written and "config/gunicorn.conf.py" in written
    for layout, source in shipped_files().items():
        assert (tmp_path / "deploy" / layout).read_bytes() == source.read_bytes()
