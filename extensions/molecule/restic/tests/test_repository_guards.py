"""The converges that must stop before they change anything (resources/repository_guards.py) on the restic
provider: a wrong passphrase changes nothing; a repository this host opened before that is missing now (a wiped
volume, a server that lost it) fails the converge until restic_reinitialise_repositories names it, and then the
converge initialises a new, empty one."""

from __future__ import annotations

# pytest collects the tests imported here; conftest.py's fixture ``tool`` tells them the provider.
from repository_guards import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import

testinfra_hosts = ["ansible://clients"]
