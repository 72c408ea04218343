# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The actions that run a host module on secrets in one task: no_log on the host and for a success, a failure's
message shown as it is (the roles used a no_log task and a fail task for each)."""

from __future__ import annotations

from unittest import mock

import pytest

from ansible.plugins.action import ActionBase
from ansible_collections.selfhost.backup.plugins.action import borg_repository, job_paths, provider_plan, restic_repository

SECRET = 'p\'a"s\\s$w`o%rd'
UNCHANGED = 'Nothing on this host was changed: the installed secrets, units and restore scripts stay as they are.'


def run_action(plugin_module, args, returned):
    """Run the action as the task executor would; the module run on the host is the only thing stubbed. Returns the
    result and the module arguments as they would reach the host."""
    task = mock.MagicMock(args=args, async_val=0, check_mode=False, no_log=False, action='x', diff=False)
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    plugin = plugin_module.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None)
    sent = {}

    def execute_module(module_name, module_args, task_vars):
        sent.update(module_args)
        # What ActionBase._execute_module does before it ships the module.
        plugin._update_module_args(module_name, sent, task_vars)
        return dict(returned)

    with mock.patch.object(ActionBase, '_update_module_args'), \
            mock.patch.object(plugin_module.ActionModule, '_execute_module', side_effect=execute_module) as ran:
        result = plugin.run(task_vars={})
    assert ran.call_args.kwargs['module_name'] == plugin.MODULE
    return result, sent


CHECK = {'init': False, 'repositories': [{'name': 'app', 'passphrase': SECRET}]}


def test_the_repository_check_runs_no_log_and_its_success_is_no_log():
    result, sent = run_action(restic_repository, CHECK, {'changed': False, 'repositories': [
        {'name': 'app', 'state': 'present'}]})
    assert sent['_ansible_no_log'] is True
    assert result['_ansible_no_log'] is True and result['repositories'] == [{'name': 'app', 'state': 'present'}]


def test_a_failed_check_shows_its_message_alone_and_says_nothing_changed():
    result, dummy = run_action(restic_repository, CHECK, {
        'failed': True, 'msg': 'restic_instances.app: the passphrase does not open the existing repository.',
        'invocation': {'module_args': CHECK}})
    assert result == {'failed': True, 'changed': False,
                      'msg': f'restic_instances.app: the passphrase does not open the existing repository. {UNCHANGED}'}


def test_restic_init_reads_its_secrets_from_files_and_shows_its_result():
    args = {'repositories': [{'name': 'app', 'password_file': '/etc/selfhost-backup/restic/app/passphrase'}]}
    result, sent = run_action(restic_repository, args, {'changed': True, 'repositories': [{'name': 'app'}]})
    assert '_ansible_no_log' not in sent and not result.get('_ansible_no_log')
    assert result['changed'] is True
    failed, dummy = run_action(restic_repository, dict(args, init='true'), {'failed': True, 'msg': 'init failed'})
    assert failed['msg'] == 'init failed'


def test_the_borg_check_is_always_no_log_and_says_nothing_changed():
    args = {'repositories': [{'name': 'app', 'passphrase': SECRET}]}
    result, sent = run_action(borg_repository, args, {'changed': False})
    assert sent['_ansible_no_log'] is True and result['_ansible_no_log'] is True
    failed, dummy = run_action(borg_repository, args, {'failed': True})
    assert failed['msg'] == f'selfhost.backup.borg_repository failed {UNCHANGED}'


@pytest.mark.parametrize('secret_files, no_log', [
    ([{'path': '/etc/x/passphrase', 'content': SECRET}], True),
    ([], False),
])
def test_job_paths_is_no_log_when_it_writes_secrets(secret_files, no_log):
    args = {'directories': [], 'secret_files': secret_files, 'prune': {}}
    result, sent = run_action(job_paths, args, {'changed': True, 'diff': []})
    assert sent.get('_ansible_no_log', False) is no_log and result.get('_ansible_no_log', False) is no_log
    failed, dummy = run_action(job_paths, args, {'failed': True, 'msg': '/srv/x is a symbolic link', 'paths': ['x']})
    assert failed == {'failed': True, 'changed': False, 'msg': '/srv/x is a symbolic link'}


def test_a_plan_is_returned_no_log_and_a_planning_failure_shows_its_message():
    task = mock.MagicMock(args={'provider': 'restic', 'instances': {}}, async_val=0, check_mode=False)
    plugin = provider_plan.ActionModule(task, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), mock.MagicMock(),
                                        None)
    assert plugin.run(task_vars={'inventory_hostname': 'db1'})['_ansible_no_log'] is True
    with mock.patch.object(provider_plan._plan, 'plan', side_effect=provider_plan._plan.PlanError('no way')):
        failed = plugin.run(task_vars={'inventory_hostname': 'db1'})
    assert failed['failed'] is True and failed['msg'] == 'no way' and not failed.get('_ansible_no_log')
