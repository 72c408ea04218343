# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The settings in the example inventories are valid for the providers' schemas (what a user copies works)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.selfhost.backup.plugins.module_utils import _borg, _restic
from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract

PLAYBOOKS = Path(__file__).resolve().parents[3] / 'playbooks'


def _without_templates(value):
    """Vault lookups and facts stand for strings: replace each {{ ... }} with a plain word."""
    if isinstance(value, dict):
        return {key: _without_templates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_templates(item) for item in value]
    if isinstance(value, str):
        return re.sub(r'\{\{.*?\}\}', 'templated', value)
    return value


@pytest.mark.parametrize('inventory', ['inventory.example.yml', 'demo/inventory.yml'])
@pytest.mark.parametrize('provider', ['restic', 'borg'])
def test_example_settings_are_valid(inventory, provider):
    group = yaml.safe_load((PLAYBOOKS / inventory).read_text())['all']['children']['databases']
    settings = _without_templates(group['vars'][f'site_{provider}_settings'])
    filled = _contract.validate_settings(settings, _contract.load_provider_schema(provider))
    assert filled['enable'] is True
    # The rules the schema cannot express (the pinned host key names the server, ...) hold too.
    request = {'user': 'postgres', 'backup_name': 'postgres.sql', 'backup_cmd': 'true', 'restore_cmd': 'true'}
    plan = {'restic': _restic.plan, 'borg': _borg.plan}[provider]
    assert plan('postgres', request, filled, '9.9.9', 'db1').timer['name'] == f'{provider}-backup-postgres'
    assert group['hosts'], 'the example names hosts'


def test_site_validates_every_provider_before_any_provider_changes_the_host():
    """A typo in one provider's settings must fail the play before another provider has changed anything."""
    play = yaml.safe_load((PLAYBOOKS / 'site.yml').read_text())[0]
    steps = [(task['ansible.builtin.include_role']['name'].rsplit('.', 1)[1],
              task['ansible.builtin.include_role'].get('tasks_from', 'main'))
             for task in play['tasks'] if 'ansible.builtin.include_role' in task]
    providers = {'restic', 'borg'}
    validations = [index for index, (role, entry) in enumerate(steps) if role in providers and entry == 'validate']
    applies = [index for index, (role, entry) in enumerate(steps) if role in providers and entry == 'main']
    assert {steps[index][0] for index in validations} == providers
    assert {steps[index][0] for index in applies} == providers
    assert max(validations) < min(applies)
    # The requester's request is published before the validations need it.
    assert [role['role'] for role in play['roles']] == ['selfhost.backup.postgresql']
