"""The restore script's operator commands (resources/operator_commands.py) on the restic provider: dump byte for byte
and never to a terminal, exec as the request's user, snapshots --json."""

from __future__ import annotations

# pytest collects the tests imported here; conftest.py's fixture ``tool`` tells them the provider.
from operator_commands import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import

testinfra_hosts = ["ansible://clients"]
