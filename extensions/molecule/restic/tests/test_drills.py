"""The failure drills (resources/drills.py) on the restic provider: kill -9 mid-stream, a manual start during a
run, a live lock beside a second instance, an unreachable remote repository, no secret at ansible-playbook -v."""

from __future__ import annotations

# pytest collects the drills imported here; conftest.py's fixture ``tool`` tells them the provider.
from drills import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import

testinfra_hosts = ["ansible://clients"]
