# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The drill_space each requester publishes (its vars/main.yml): valid for the contract, for every compression,
bigger than the dump, and a compressed dump's factor 6 times the plain one's (README numbers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract

ROLES = Path(__file__).resolve().parents[3] / 'roles'
MIB = 1024 * 1024
# The estimates the role READMEs and the changelog give: (factor of a plain dump, base bytes).
DOCUMENTED = {'postgresql': (3, 128 * MIB), 'mariadb': (3, 192 * MIB), 'sqlite': (2, 0)}


def drill_space(role):
    return yaml.safe_load((ROLES / role / 'vars' / 'main.yml').read_text())[f'__{role}_databasebackup_drill_space']


@pytest.mark.parametrize('role', sorted(DOCUMENTED))
def test_every_compression_has_a_valid_drill_space_bigger_than_the_dump(role):
    spaces = drill_space(role)
    suffixes = yaml.safe_load((ROLES / role / 'vars' / 'main.yml').read_text())[f'__{role}_databasebackup_suffixes']
    assert sorted(spaces) == sorted(suffixes)  # one per compression the role takes
    factor, base = DOCUMENTED[role]
    assert spaces['none'] == {'factor': factor, 'base_bytes': base}
    for compression, space in spaces.items():
        request = {'backup_cmd': 'dump', 'restore_cmd': 'restore', 'drill_cmd': 'drill', 'drill_space': space}
        assert _contract.validate_request(request)['drill_space'] == space
        assert space['factor'] >= 2
        if compression != 'none':
            assert space == {'factor': 6 * factor, 'base_bytes': base}


@pytest.mark.parametrize('role', sorted(DOCUMENTED))
def test_every_request_with_drill_cmd_publishes_drill_space(role):
    # The request keys of the tasks (YAML "drill_cmd:" or a dict's 'drill_cmd':): a drill_space beside each.
    text = (ROLES / role / 'tasks' / 'main.yml').read_text()
    key = r"^\s*'?{}'?:"
    drills = re.findall(key.format('drill_cmd'), text, re.M)
    assert drills and len(re.findall(key.format('drill_space'), text, re.M)) == len(drills)
