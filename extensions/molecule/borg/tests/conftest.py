"""Fixtures shared by the borg scenario's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent
# The checks and failure drills the provider scenarios share (provider_checks.py, drills.py).
sys.path.insert(0, str(SCENARIO_DIR.parent / "resources"))
# Plain asserts in the shared checks and drills explain themselves too (they are not test modules).
pytest.register_assert_rewrite("provider_checks", "drills", "failure_paths")


@pytest.fixture(scope="session")
def scenario() -> dict:
    """The scenario's variables, as converge.yml saw them."""
    return yaml.safe_load((SCENARIO_DIR / "vars.yml").read_text())


def pytest_collection_modifyitems(items: list) -> None:
    """The scenario's own tests first (they expect fresh repositories), then the failure drills and paths
    (test_drills.py, test_failure_paths.py), the converges that must change nothing (test_repository_guards.py),
    then the test that removes instances, and last the one that removes them all."""
    items.sort(key=lambda item: 4 if item.name.startswith("test_finally")
               else 3 if item.name.startswith("test_disabled_and_vanished")
               else 2 if item.fspath.basename == "test_repository_guards.py"
               else 1 if item.fspath.basename in ("test_drills.py", "test_failure_paths.py") else 0)
