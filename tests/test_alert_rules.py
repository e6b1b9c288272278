"""The alerting rules that ship in k8s/prometheus are valid and fire exactly when their unit tests say (promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parent.parent / "k8s" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: `make test` installs Debian's prometheus package as root, or run "
            "'sudo apt-get install -y prometheus'",
            pytrace=False,
        )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=RULES, capture_output=True, text=True, timeout=120, check=False)


def test_the_alerting_rules_are_valid_prometheus_rules() -> None:
    checked = run("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout


def test_each_alert_fires_exactly_when_its_promtool_unit_test_says() -> None:
    tested = run("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_wrong_expectation_fails_the_promtool_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: the same cases with one expectation changed do."""
    broken = (
        (RULES / "alerts.test.yml")
        .read_text()
        .replace('summary: "3 message(s) parked"', 'summary: "4 message(s) parked"')
    )
    (tmp_path / "alerts.yml").write_text((RULES / "alerts.yml").read_text())
    (tmp_path / "alerts.test.yml").write_text(broken)
    tested = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert tested.returncode != 0
    assert "DicomflowMessagesParked" in tested.stdout + tested.stderr
