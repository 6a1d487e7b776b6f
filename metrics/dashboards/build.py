"""Generate the help desk's Grafana dashboards as JSON files beside this script.

    python -m metrics.dashboards.build                  # write the JSON files
    python -m metrics.dashboards.build --check          # exit 1 if a committed file is out of date
    python -m metrics.dashboards.build --target answer_within_rings=0.95 --out /var/lib/grafana/dashboards/helpdesk

The dashboards themselves are defined in `metrics.dashboards.boards`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metrics.dashboards.boards import (
    PERIODS, RULES, callbacks_email_dashboard, calls_dashboard, compliance_dashboard,
)

__all__ = ["PERIODS", "RULES", "build", "render", "main"]

HERE = Path(__file__).resolve().parent


def build(targets: dict[str, float] | None = None) -> dict[str, dict]:
    """Every dashboard by file name; `targets` overrides the 100 % contractual targets per rule."""
    chosen = {sla: 1.0 for sla in RULES} | (targets or {})
    return {
        "helpdesk-compliance.json": compliance_dashboard(chosen),
        "helpdesk-calls.json": calls_dashboard(),
        "helpdesk-callbacks-email.json": callbacks_email_dashboard(),
    }


def render(board: dict) -> str:
    """The file text: stable key order, two-space indent, final newline (diffs stay readable)."""
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def _target_option(text: str) -> tuple[str, float]:
    sla, _, value = text.partition("=")
    if sla not in RULES:
        raise argparse.ArgumentTypeError(f"unknown rule {sla!r}: choose from {', '.join(RULES)}")
    try:
        ratio = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the target for {sla} must be a number from 0 to 1, not {value!r}")
    if not 0 < ratio <= 1:
        raise argparse.ArgumentTypeError(f"the target for {sla} must be above 0 and at most 1, not {value}")
    return sla, ratio


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the dashboard files; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory for the JSON files")
    parser.add_argument("--target", type=_target_option, action="append", default=[], metavar="RULE=RATIO",
                        help="a rule's target as a ratio, e.g. answer_within_rings=0.95 (default 1)")
    parser.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any")
    options = parser.parse_args(argv)
    stale = []
    for name, board in build(dict(options.target)).items():
        path = options.out / name
        text = render(board)
        if options.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    for name in stale:
        print(f"{name} is out of date: run python -m metrics.dashboards.build", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
