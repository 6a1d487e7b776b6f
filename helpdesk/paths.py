"""Where a command may write its output: a new directory in one that exists and is writable."""
from __future__ import annotations

import os
from pathlib import Path


def parent_problem(out: Path, what: str) -> str | None:
    """Why no new directory `out` can be made for the `what` ("pack", "copy"), or None."""
    parent = out.absolute().parent
    if not parent.is_dir():
        return f"{parent} does not exist: create it first, or choose another place for the {what}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write in {parent}: permission denied"
    return None
