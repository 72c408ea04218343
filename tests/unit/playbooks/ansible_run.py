# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run ansible-playbook (of the interpreter running the tests) against this checkout, found as selfhost.backup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COLLECTION = Path(__file__).resolve().parents[3]


def collections_path() -> str:
    """The directory above ansible_collections/selfhost/backup (tests/unit/conftest.py builds one if needed)."""
    for entry in sys.path:
        if (Path(entry) / 'ansible_collections' / 'selfhost' / 'backup').resolve() == COLLECTION:
            return entry
    pytest.fail('this checkout is not importable as ansible_collections.selfhost.backup')
    raise AssertionError  # unreachable: for the type checker


def ansible_playbook(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = Path(sys.executable).parent / 'ansible-playbook'
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1',
               ANSIBLE_DEPRECATION_WARNINGS='0', ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    return subprocess.run([str(command), *args], capture_output=True, text=True, check=False, env=env,
                          cwd=cwd or COLLECTION)
