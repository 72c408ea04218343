# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The top README speaks to users: its recipes are valid settings, and the test machinery lives in CONTRIBUTING.md."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ansible_collections.selfhost.backup.plugins.plugin_utils import _instances

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / 'README.md').read_text()
REQUEST = {'user': 'postgres', 'backup_name': 'postgres.sql', 'backup_cmd': 'true', 'restore_cmd': 'true'}


def yaml_blocks(text: str) -> list:
    """Every ```yaml block, with each {{ ... }} standing for a plain string."""
    return [yaml.safe_load(re.sub(r'\{\{.*?\}\}', 'templated', block))
            for block in re.findall(r'```yaml\n(.*?)```', text, flags=re.DOTALL)]


def test_the_readme_s_instances_recipes_are_valid():
    recipes = [block['restic_instances'] for block in yaml_blocks(README)
               if isinstance(block, dict) and 'restic_instances' in block]
    assert recipes, 'the README shows a restic_instances recipe'
    for instances in recipes:
        for instance in instances.values():
            instance['request'] = REQUEST
        checked = _instances.check('restic', instances, 'db1', None, [])
        assert checked.violations == []


def test_the_readme_names_every_tag_and_the_platform_variable():
    for tag in ('restic', 'borg', 'postgresql', 'mariadb', 'sqlite'):
        assert f'`{tag}`' in README.split('## Tags')[1].split('## Recipes')[0], tag
    assert 'selfhost_backup_allow_untested_platform: true' in README


def test_the_test_machinery_is_in_contributing_not_in_the_readme():
    for word in ('molecule', 'ansible-test', 'pytest', 'make sanity', 'make lint'):
        assert word not in README, word
    contributing = (ROOT / 'CONTRIBUTING.md').read_text()
    for word in ('molecule', 'make test', 'make lint', 'make sanity'):
        assert word in contributing, word


def test_the_readme_gives_the_two_commands_demo_and_tests():
    # What a user runs on a fresh machine; CI runs the README's test command (.ci/run).
    assert 'Run the tests with `make test`' in README and '`make demo`' in README
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()
