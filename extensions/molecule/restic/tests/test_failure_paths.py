"""The shared failure paths (resources/failure_paths.py) on the restic provider: empty and failed dumps, bad
instances, a calendar systemd refuses and a misspelt instances variable change nothing; removing everything
takes restic_remove_unlisted."""

from __future__ import annotations

import pytest
# pytest collects the tests imported here; the fixture below tells them about the provider.
from failure_paths import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import
from drills import RESTIC, Tool

testinfra_hosts = ["ansible://clients"]


@pytest.fixture(scope="module")
def tool() -> Tool:
    return RESTIC
