"""The email corpus: awkward messages (one .eml file each) and expected.toml, what must happen to each."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
OWN_ADDRESS = "enquiries@desk.example.org"
PER_SENDER_LIMIT = 3


@dataclass(frozen=True)
class Case:
    file: str
    classify: str | None
    decision: str
    duplicate: bool = False
    joins: str | None = None
    text_contains: str | None = None
    attachments: int | None = None

    @property
    def raw(self) -> bytes:
        return (DIRECTORY / self.file).read_bytes()


def cases() -> list[Case]:
    """Every case, in the order expected.toml gives (the order the intake test stores them)."""
    data = tomllib.loads((DIRECTORY / "expected.toml").read_text(encoding="utf-8"))
    found = [Case(**{**case, "classify": case["classify"] or None}) for case in data["case"]]
    listed = {case.file for case in found}
    on_disk = {path.name for path in DIRECTORY.glob("*.eml")}
    assert listed == on_disk, f"expected.toml and the .eml files disagree: {sorted(listed ^ on_disk)}"
    return found
