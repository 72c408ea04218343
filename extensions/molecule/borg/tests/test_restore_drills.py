"""The restore drills (resources/restore_drills.py) on the borg provider: a good backup's drill passes and is
monitored, a cut dump's drill fails reported, a missing snapshot fails clearly, the drill waits for a running
backup, a disabled drill loses its units."""

from __future__ import annotations

# pytest collects the tests imported here; conftest.py's fixture ``tool`` tells them the provider.
from restore_drills import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import

testinfra_hosts = ["ansible://clients"]
