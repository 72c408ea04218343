# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from unittest import mock

import pytest

from ansible.errors import AnsibleError

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


def test_a_success_is_no_log_and_a_failure_shows_only_its_message():
    result = run_action({'provider': 'restic', 'instances': {
        'app': {'request': REQUEST, 'settings': {'repository': {'path': '/srv/r'}, 'passphrase': SECRET}}}})
    assert result['_ansible_no_log'] is True
    settings = {'repository': {'path': '/srv/b'}, 'passphrase': SECRET, 'retention': {'keep_daily': 7.0}}
    failed = run_action({'provider': 'borg', 'instances': {'app': {'request': REQUEST, 'settings': settings}}})
    # Shown as it is (no no_log on the task): every violation, one per line, and none of the instances' secrets.
    assert failed['failed'] is True and not failed.get('_ansible_no_log')
    assert failed['msg'] == '\n'.join(failed['violations'])
    assert 'instances' not in failed and SECRET not in repr(failed)


class TemplatingHostVars(dict):
    """A server's host variables as hostvars gives them: templated on access, which may fail."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if isinstance(value, Exception):
            raise value
        return value


@pytest.mark.parametrize('provider', ['restic', 'borg'])
def test_a_client_its_server_no_longer_lists_fails_before_any_change(provider):
    """The server's backup_server_clients, read from its host variables, does not name this host: refused before
    the host is touched (run_action asserts that), naming the server, the variable and the host."""
    instances = {'app': {'request': REQUEST, 'settings': {'repository': {'server': 'vault'}, 'passphrase': SECRET}}}
    hostvars = {'vault': TemplatingHostVars(backup_server_clients=['db1', 'db2'])}
    result = run_action({'provider': provider, 'instances': instances},
                        task_vars={'inventory_hostname': 'db3', 'hostvars': hostvars})
    assert result['failed'] is True and not result.get('_ansible_no_log')
    assert result['msg'].startswith(f'{provider}_instances.app: this host db3 is not in backup_server_clients of '
                                    'server vault')
    assert result['violations'] == [result['msg']] and SECRET not in repr(result)
    # Listed, or a server that does not set the variable (or not in the inventory): no refusal.
    for task_vars in ({'inventory_hostname': 'db1', 'hostvars': hostvars},
                      {'inventory_hostname': 'db3', 'hostvars': {'vault': TemplatingHostVars()}},
                      {'inventory_hostname': 'db3', 'hostvars': {}},
                      {'inventory_hostname': 'db3', 'hostvars': {'vault': TemplatingHostVars(backup_server_clients=[])}}):
        assert not run_action({'provider': provider, 'instances': instances}, task_vars=task_vars).get('failed')


def test_a_server_list_that_cannot_be_templated_fails_clearly():
    instances = {'app': {'request': REQUEST, 'settings': {'repository': {'server': 'vault'}, 'passphrase': SECRET}}}
    hostvars = {'vault': TemplatingHostVars(backup_server_clients=AnsibleError("'databases' is undefined"))}
    result = run_action({'provider': 'restic', 'instances': instances},
                        task_vars={'inventory_hostname': 'db3', 'hostvars': hostvars})
    assert result['failed'] is True
    assert result['msg'] == ("restic_instances: backup_server_clients of server vault cannot be read: 'databases' is "
                             'undefined')


def run_on_host(args, stderr='', rc=0, found=None, task_vars=None):
    """Run the plugin with check_host; the host's command runner and modules are the only things stubbed."""
    task = mock.MagicMock(args=dict(args, check_host=True), async_val=0, check_mode=False,
                          action='selfhost.backup.provider_instances')
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    plugin = ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None)
    with mock.patch.object(ActionModule, '_execute_module', return_value=found or {'files': []}) as execute_module, \
            mock.patch.object(ActionModule, '_low_level_execute_command',
                              return_value={'rc': rc, 'stdout': '', 'stderr': stderr}) as low_level:
        result = plugin.run(task_vars=task_vars or {'inventory_hostname': 'db1'})
    return result, low_level, execute_module


def app(calendar='daily'):
    return {'app': {'request': REQUEST, 'settings': {'repository': {'path': '/srv/r'}, 'passphrase': SECRET,
                                                     'schedule': {'on_calendar': calendar}}}}


def test_the_host_s_systemd_reads_every_calendar_in_one_call():
    result, low_level, execute_module = run_on_host({'provider': 'restic', 'instances': app('Mon *-*-* 02:00')})
    assert not result.get('failed') and result['_ansible_no_log'] is True
    assert low_level.call_args.args == ("systemd-analyze calendar -- 'Mon *-*-* 02:00'",)
    assert execute_module.call_count == 0  # instances are listed: nothing installed is looked for


def test_a_calendar_the_host_refuses_fails_naming_its_settings_path():
    stderr = "Failed to parse calendar specification 'hourly-ish': Invalid argument\n"
    result, dummy, dummy = run_on_host({'provider': 'restic', 'instances': app('hourly-ish')}, stderr=stderr, rc=1)
    assert result['failed'] is True and not result.get('_ansible_no_log')
    assert result['msg'] == ('restic_instances.app.settings.schedule.on_calendar: "hourly-ish" is not a systemd '
                             'calendar expression on this host (rule: systemd-analyze calendar).')
    assert 'instances' not in result


def test_a_calendar_check_that_fails_otherwise_says_so():
    result, dummy, dummy = run_on_host({'provider': 'borg', 'instances': app()}, stderr='no systemd\n', rc=127)
    assert result['failed'] is True
    assert result['msg'] == 'systemd-analyze calendar failed: no systemd'


INSTALLED = {'files': [
    {'path': '/var/lib/selfhost-backup/restic-backup-app.v2.json', 'isdir': False},
    {'path': '/var/lib/selfhost-backup/borg-backup-other.json', 'isdir': False},
    {'path': '/var/lib/selfhost-backup/restic-repositories.json', 'isdir': False},
    {'path': '/etc/selfhost-backup/restic/leftover', 'isdir': True},
    {'path': '/etc/selfhost-backup/restic/stray-file', 'isdir': False},
]}


def test_an_empty_instances_dict_is_refused_while_instances_are_installed():
    result, low_level, execute_module = run_on_host({'provider': 'restic', 'instances': None}, found=INSTALLED)
    assert low_level.call_count == 0  # no calendar to check
    assert execute_module.call_args.kwargs['module_name'] == 'ansible.legacy.find'
    assert execute_module.call_args.kwargs['module_args'] == {
        'paths': ['/var/lib/selfhost-backup', '/etc/selfhost-backup/restic'], 'file_type': 'any'}
    assert result['failed'] is True
    assert result['msg'] == (
        'restic_instances is empty or undefined, but this host has restic instances installed: app.v2, leftover. '
        'Nothing was changed. An empty instances dict never removes them (a misspelt variable name would otherwise '
        'uninstall every job). To remove them on purpose, list each with settings.enable: false, or set '
        'restic_remove_unlisted: true.')


@pytest.mark.parametrize('remove_unlisted', [True, 'true'])
def test_remove_unlisted_lets_an_empty_instances_dict_through(remove_unlisted):
    result, dummy, execute_module = run_on_host(
        {'provider': 'restic', 'instances': {}, 'remove_unlisted': remove_unlisted}, found=INSTALLED)
    assert not result.get('failed') and result['instances'] == {}
    assert execute_module.call_count == 0


@pytest.mark.parametrize('remove_unlisted', [False, 'false'])
def test_an_empty_instances_dict_on_a_clean_host_passes(remove_unlisted):
    result, dummy, execute_module = run_on_host(
        {'provider': 'borg', 'instances': {}, 'remove_unlisted': remove_unlisted})
    assert not result.get('failed') and result['instances'] == {}
    assert execute_module.call_count == 1


def test_an_unreadable_host_fails_the_uninstall_guard():
    result, dummy, dummy = run_on_host({'provider': 'borg', 'instances': {}}, found={'failed': True, 'msg': 'denied'})
    assert result['failed'] is True
    assert result['msg'] == 'Could not list the installed borg instances: denied'
