"""The converges that must stop before they change anything (resources/repository_guards.py) on the borg provider:
a wrong passphrase changes nothing; a repository the job initialised before that is missing now (a wiped volume, a
server that lost it) fails the converge (the backups refuse it already) until borg_reinitialise_repositories names
it, and then the next backup initialises a new one."""

from __future__ import annotations

# pytest collects the tests imported here; conftest.py's fixture ``tool`` tells them the provider.
from repository_guards import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import

testinfra_hosts = ["ansible://clients"]
