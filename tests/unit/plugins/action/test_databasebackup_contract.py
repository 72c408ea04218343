# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
from unittest import mock

import pytest

from ansible.errors import AnsibleActionFail

from ansible_collections.selfhost.backup.plugins.action.databasebackup_contract import ActionModule
from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract

REQUEST = {'user': 'postgres', 'backupCmd': 'pg_dumpall', 'restoreCmd': 'psql postgres'}
SETTINGS_SCHEMA = {
    'type': 'object',
    'additionalProperties': False,
    'properties': {
        'repository': {'type': 'object', 'properties': {'path': {'type': 'string'}}},
        'keep_daily': {'type': 'integer', 'default': 7},
    },
}


@pytest.fixture
def settings_dir(tmp_path, monkeypatch):
    (tmp_path / 'restic.json').write_text(json.dumps(SETTINGS_SCHEMA))
    monkeypatch.setattr(_contract, 'SETTINGS_SCHEMA_DIR', str(tmp_path))
    return tmp_path


def run_action(args, check_mode=False):
    """Run the plugin as the task executor would; fail the test if it touches the host in any way."""
    task = mock.MagicMock(args=args, async_val=0, check_mode=check_mode, action='selfhost.backup.databasebackup_contract')
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    plugin = ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None)
    with mock.patch.object(ActionModule, '_execute_module') as execute_module, \
            mock.patch.object(ActionModule, '_low_level_execute_command') as low_level:
        result = plugin.run(task_vars={})
    assert execute_module.call_count == 0
    assert low_level.call_count == 0
    assert connection.mock_calls == []
    return result


def test_valid_request_is_normalised_without_touching_the_host():
    result = run_action({'request': REQUEST})
    assert result == {
        'changed': False,
        'request': {'user': 'postgres', 'backup_name': 'dump', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql postgres'},
        'settings': None,
    }


def test_check_mode_validates_the_same():
    assert run_action({'request': REQUEST}, check_mode=True)['request']['backup_cmd'] == 'pg_dumpall'


def test_settings_without_schema_are_returned_unchanged():
    assert run_action({'request': REQUEST, 'settings': {'anything': [1]}})['settings'] == {'anything': [1]}


def test_provider_schema_fills_settings_defaults(settings_dir):
    result = run_action({'request': REQUEST, 'provider': 'restic', 'settings': {'repository': {'path': '/srv'}}})
    assert result['settings'] == {'repository': {'path': '/srv'}, 'keep_daily': 7}


def test_provider_without_settings_validates_an_empty_dict(settings_dir):
    assert run_action({'request': REQUEST, 'provider': 'restic'})['settings'] == {'keep_daily': 7}


def test_explicit_settings_schema():
    result = run_action({'request': REQUEST, 'settings_schema': SETTINGS_SCHEMA, 'settings': {'keep_daily': 3}})
    assert result['settings'] == {'keep_daily': 3}


def test_every_violation_of_request_and_settings_at_once(settings_dir):
    args = {
        'name': 'restic_instances.app',
        'request': {'backup_name': '../x', 'restore_cmd': 'psql'},
        'provider': 'restic',
        'settings': {'keep_daily': 'seven', 'bogus': True},
    }
    result = run_action(args)
    assert result['failed'] is True and result['changed'] is False
    assert result['violations'] == [
        "restic_instances.app.request.backup_cmd: is required (rule: required)",
        "restic_instances.app.request.backup_name: '../x' does not match '^[A-Za-z0-9_][A-Za-z0-9._-]*$' (rule: pattern)",
        "restic_instances.app.settings.bogus: unknown key (rule: additionalProperties)",
        "restic_instances.app.settings.keep_daily: 'seven' is not of type 'integer' (rule: type)",
    ]
    assert result['msg'].splitlines()[1:] == result['violations']
    assert result['msg'].startswith('The database backup contract is broken (4 violations):')


def test_unknown_provider_fails_clearly(settings_dir):
    with pytest.raises(AnsibleActionFail, match=r"Unknown provider 'borg'.*known providers: restic"):
        run_action({'request': REQUEST, 'provider': 'borg'})


def test_invalid_settings_schema_fails_clearly():
    with pytest.raises(AnsibleActionFail, match='settings_schema is not a valid JSON Schema'):
        run_action({'request': REQUEST, 'settings_schema': {'type': 42}})


@pytest.mark.parametrize('args, words', [
    ({}, 'missing required arguments: request'),
    ({'request': REQUEST, 'provider': 'restic', 'settings_schema': {}}, 'mutually exclusive'),
    ({'request': REQUEST, 'colour': 'blue'}, 'colour'),
    ({'request': 'not a dict'}, 'request'),
])
def test_bad_arguments_are_refused(args, words):
    with pytest.raises(AnsibleActionFail, match=words):
        run_action(args)
