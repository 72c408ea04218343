"""The shared failure paths (resources/failure_paths.py) on the restic provider: empty and failed dumps, bad
instances, a calendar systemd refuses and a misspelt instances variable change nothing; removing everything
takes restic_remove_unlisted."""

from __future__ import annotations

# pytest collects the tests imported here; conftest.py's fixture ``tool`` tells them the provider.
from failure_paths import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import

testinfra_hosts = ["ansible://clients"]
