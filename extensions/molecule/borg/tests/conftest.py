"""Fixtures shared by the borg scenario's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent
# The checks the provider scenarios share (provider_checks.py).
sys.path.insert(0, str(SCENARIO_DIR.parent / "resources"))


@pytest.fixture(scope="session")
def scenario() -> dict:
    """The scenario's variables, as converge.yml saw them."""
    return yaml.safe_load((SCENARIO_DIR / "vars.yml").read_text())
