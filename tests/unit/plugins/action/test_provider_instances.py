# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from unittest import mock

from ansible_collections.selfhost.backup.plugins.action.provider_instances import ActionModule

REQUEST = {'user': 'postgres', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql'}
SECRET = 'p\'a"s\\s$w`o%rd'


def run_action(args, task_vars=None):
    """Run the plugin as the task executor would; fail the test if it touches the host in any way."""
    task = mock.MagicMock(args=args, async_val=0, check_mode=False, action='selfhost.backup.provider_instances')
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    plugin = ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None)
    with mock.patch.object(ActionModule, '_execute_module') as execute_module, \
            mock.patch.object(ActionModule, '_low_level_execute_command') as low_level:
        result = plugin.run(task_vars=task_vars or {'inventory_hostname': 'db1'})
    assert execute_module.call_count == 0
    assert low_level.call_count == 0
    assert connection.mock_calls == []
    return result


def test_valid_instances_are_returned_without_touching_the_host():
    result = run_action({'provider': 'restic', 'instances': {
        'app': {'request': REQUEST, 'settings': {'repository': {'path': '/srv/r'}, 'passphrase': SECRET}}}})
    assert not result.get('failed')
    assert result['violations'] == []
    assert result['instances']['app']['settings']['passphrase'] == SECRET
    assert result['calendars'] == {'daily': ['restic_instances.app.settings.schedule.on_calendar']}


def test_violations_fail_the_task_and_never_quote_a_secret():
    settings = {'repository': {'path': '/srv/b'}, 'passphrase': SECRET + '\n', 'retention': {'keep_daily': 7.0}}
    result = run_action({'provider': 'borg', 'instances': {'app': {'request': REQUEST, 'settings': settings}}})
    assert result['failed'] is True
    assert result['violations'] == [
        'borg_instances.app.settings.passphrase: must not be empty, start or end with white space, or hold a line '
        'break (rule: pattern)',
        "borg_instances.app.settings.retention.keep_daily: 7.0 is not of type 'integer' (rule: type)",
    ]
    assert SECRET not in result['msg']


def test_the_host_name_for_the_borg_archives_comes_from_the_inventory():
    settings = {'repository': {'path': '/srv/b'}, 'passphrase': SECRET}
    result = run_action({'provider': 'borg', 'instances': {'app': {'request': REQUEST, 'settings': settings}}},
                        task_vars={'inventory_hostname': 'bad host'})
    assert result['violations'] == ["borg_instances.app.settings: host 'bad host' is not a host name "
                                    '([A-Za-z0-9._-], starting with a letter or digit); set settings.host']
