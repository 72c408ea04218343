# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from unittest import mock

import pytest

from ansible.errors import AnsibleActionFail
from ansible_collections.selfhost.backup.plugins.action.platform_check import ActionModule

DEBIAN13 = {'distribution': 'Debian', 'distribution_version': '13.1', 'distribution_major_version': '13',
            'os_family': 'Debian', 'pkg_mgr': 'apt'}
UBUNTU = {'distribution': 'Ubuntu', 'distribution_version': '24.04', 'distribution_major_version': '24',
          'os_family': 'Debian', 'pkg_mgr': 'apt'}


def run_action(args, facts, gathered=None):
    """Run the plugin as the task executor would; ``gathered`` is what the setup module returns, if it runs."""
    task = mock.MagicMock(args=args, async_val=0, check_mode=False, action='selfhost.backup.platform_check')
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    plugin = ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None)
    with mock.patch.object(ActionModule, '_execute_module', return_value=gathered) as execute_module:
        result = plugin.run(task_vars={'ansible_facts': facts} if facts is not None else {})
    return result, execute_module


def test_a_supported_host_passes_from_its_facts_without_gathering():
    result, execute_module = run_action({}, DEBIAN13)
    assert execute_module.call_count == 0
    assert not result.get('failed') and not result.get('warnings')
    assert result['supported'] is True and result['changed'] is False
    assert result['msg'] == 'Debian 13.1 is supported.'
    assert result['platform'] == DEBIAN13


def test_an_untested_apt_based_host_fails_and_names_the_os_and_the_variable():
    result, dummy = run_action({}, UBUNTU)
    assert result['failed'] is True
    assert 'this host runs Ubuntu 24.04 (os family Debian, package manager apt)' in result['msg']
    assert 'selfhost_backup_allow_untested_platform: true' in result['msg']


def test_allow_untested_lets_an_apt_based_host_through_with_a_warning():
    result, dummy = run_action({'allow_untested': True}, UBUNTU)
    assert not result.get('failed')
    assert result['supported'] is False
    assert result['warnings'] == [result['msg']]
    assert 'at your own risk' in result['msg']


def test_allow_untested_takes_the_strings_an_extra_var_arrives_as():
    result, dummy = run_action({'allow_untested': 'false'}, UBUNTU)
    assert result['failed'] is True
    result, dummy = run_action({'allow_untested': 'yes'}, UBUNTU)
    assert not result.get('failed')


def test_without_facts_it_gathers_the_minimal_subset_and_strips_the_prefix():
    gathered = {'ansible_facts': {f'ansible_{name}': value for name, value in
                                  dict(DEBIAN13, distribution='Fedora', os_family='RedHat', pkg_mgr='dnf5').items()}}
    result, execute_module = run_action({'allow_untested': True}, None, gathered)
    assert execute_module.call_count == 1
    assert execute_module.call_args.kwargs['module_name'] == 'ansible.legacy.setup'
    assert execute_module.call_args.kwargs['module_args'] == {'gather_subset': ['!all', 'min']}
    assert result['failed'] is True
    assert 'this host runs Fedora 13.1 (os family RedHat, package manager dnf5)' in result['msg']


def test_partial_facts_are_completed_by_gathering():
    partial = {name: value for name, value in DEBIAN13.items() if name != 'pkg_mgr'}
    result, execute_module = run_action({}, partial, {'ansible_facts': {'ansible_pkg_mgr': 'apt'}})
    assert execute_module.call_count == 1
    assert not result.get('failed')


def test_a_failed_gathering_fails_the_task_with_its_message():
    with pytest.raises(AnsibleActionFail, match="Could not read the host's platform: no python"):
        run_action({}, {}, {'failed': True, 'msg': 'no python'})


def test_a_bad_argument_is_refused():
    with pytest.raises(AnsibleActionFail, match="argument 'allow_untested' .* 'maybe' is not a valid boolean"):
        run_action({'allow_untested': 'maybe'}, DEBIAN13)
