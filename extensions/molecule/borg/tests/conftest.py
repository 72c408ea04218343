"""Fixtures shared by the borg scenario's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def scenario() -> dict:
    """The scenario's variables, as converge.yml saw them."""
    return yaml.safe_load((SCENARIO_DIR / "vars.yml").read_text())
