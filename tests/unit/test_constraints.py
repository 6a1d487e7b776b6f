"""config/constraints.txt pins every dependency, and the test tools, at the versions the suite
runs against: `make install` installs them, and the README's production commands use the file.
These tests fail when pyproject.toml and the pins have drifted apart (run `make constraints`),
or when this environment is not the pinned one (run `make install`)."""
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "config" / "constraints.txt"


def pins() -> dict[str, Version]:
    found = {}
    for number, line in enumerate(CONSTRAINTS.read_text(encoding="utf-8").splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"config/constraints.txt line {number} is not name==version: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in found, f"config/constraints.txt pins {match[1]} twice"
        found[name] = Version(match[2])
    return found


def wanted() -> dict[str, list[Requirement]]:
    """Every distribution the app and its test tools need on this Python, with what asks for it:
    pyproject.toml's dependencies and `test` extra, then what each installed one requires."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    queue = [(Requirement(text), {""}) for text in
             [*project["dependencies"], *project["optional-dependencies"]["test"]]]
    needed: dict[str, list[Requirement]] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        requirement, extras = queue.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": extra}) for extra in extras):
            continue
        name = canonicalize_name(requirement.name)
        needed.setdefault(name, []).append(requirement)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # reported by the test that compares versions
        queue.extend((Requirement(text), {"", *requirement.extras}) for text in distribution.requires or ())
    return needed


def test_constraints_pin_exactly_what_the_app_and_its_tests_need():
    pinned, needed = set(pins()), set(wanted())
    assert not needed - pinned, f"not pinned (run `make constraints`): {sorted(needed - pinned)}"
    assert not pinned - needed, f"pinned but no longer needed (run `make constraints`): {sorted(pinned - needed)}"


def test_every_pin_satisfies_what_asks_for_it():
    pinned = pins()
    for name, requirements in sorted(wanted().items()):
        if name not in pinned:
            continue  # the test above says so
        for requirement in requirements:
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"{name} is pinned at {pinned[name]}, but {requirement} is asked for (run `make constraints`)")


def test_the_installed_versions_are_the_pinned_ones():
    differ = []
    for name, version in sorted(pins().items()):
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            differ.append(f"{name} is not installed (pinned {version})")
            continue
        if installed != version:
            differ.append(f"{name} {installed} is installed, pinned {version}")
    assert not differ, "run `make install`: " + "; ".join(differ)
