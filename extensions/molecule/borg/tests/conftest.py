"""Fixtures and test order of the borg scenario: those of every provider scenario (resources/provider_conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# The modules the provider scenarios share (provider_conftest.py, drills.py, failure_paths.py, ...).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))

# pylint: disable-next=wrong-import-position,unused-import
from provider_conftest import provider_fixtures, pytest_collection_modifyitems  # noqa: E402,F401 (a pytest hook)
from drills import BORG  # noqa: E402 pylint: disable=wrong-import-position

tool, scenario = provider_fixtures(BORG)
