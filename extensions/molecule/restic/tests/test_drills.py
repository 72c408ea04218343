"""The failure drills (resources/drills.py) on the restic provider: kill -9 mid-stream, a manual start during a
run, a live lock beside a second instance, an unreachable remote repository, no secret at ansible-playbook -v."""

from __future__ import annotations

import pytest
# pytest collects the drills imported here; the fixture below tells them about the provider.
from drills import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import
from drills import RESTIC, Tool

testinfra_hosts = ["ansible://clients"]


@pytest.fixture(scope="module")
def tool() -> Tool:
    return RESTIC
