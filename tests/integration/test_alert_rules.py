"""The Prometheus alert rules: promtool accepts them, and each alert has unit tests that fire it
and keep it quiet. Needs `promtool` (Debian `prometheus`); skips locally without it, fails in CI."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from servers import require_program

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "metrics" / "alerts"
RULES = ALERTS / "helpdesk.rules.yml"
RULE_TESTS = ALERTS / "helpdesk.rules.test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_program("promtool", "install the Debian `prometheus` package")


def run(promtool: str, *arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *arguments], cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def alert_cases() -> list[dict]:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    return [case for test in tests for case in test.get("alert_rule_test", [])]


def test_promtool_accepts_the_rules_file(promtool):
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(group["rules"]) for group in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {rules} rules found" in result.stdout


def test_the_scrape_example_loads_the_rules_and_passes_promtool(promtool):
    result = run(promtool, "check", "config", str(ROOT / "config" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_the_unit_tests_of_every_alert_pass(promtool):
    result = run(promtool, "test", "rules", RULE_TESTS.name, cwd=ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_test_that_fires_it_and_one_that_keeps_it_quiet():
    cases = alert_cases()
    for rule in alert_rules():
        name = rule["alert"]
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name} never fires in a test"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), f"{name} is never tested quiet"


def test_every_alert_has_a_severity_a_summary_and_a_description_in_plain_words():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        text = annotations["summary"] + " " + annotations["description"]
        # British spelling, and no unexplained jargon in what managers read.
        assert not re.search(r"\b(acknowledgment|organization|color|SLO|SLI)\b", text), (rule["alert"], text)
        assert annotations["description"].rstrip().endswith("."), rule["alert"]


def test_the_unit_tests_catch_a_broken_rule(promtool, tmp_path):
    """Make one rule wrong (an overdue callback needs 5 before it alerts): promtool test must fail."""
    broken = RULES.read_text().replace("max(helpdesk_callbacks_overdue) > 0", "max(helpdesk_callbacks_overdue) > 5")
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "HelpdeskCallbackOverdue" in result.stdout + result.stderr
