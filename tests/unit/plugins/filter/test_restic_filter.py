# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's filters: jobs without secrets, secret files only for enabled instances."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.backup.plugins.filter import restic as restic_filter
from ansible_collections.selfhost.backup.plugins.module_utils import _restic

REQUEST = {'user': 'postgres', 'backup_name': 'dump', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql'}


def contract(enable=True, **settings):
    values = {'enable': enable, 'repository': {'path': '/srv/b'}, 'passphrase': 'pw-123'}
    values.update(settings)
    return {'request': dict(REQUEST), 'settings': values, 'changed': False}


def test_jobs_hold_no_secret_and_name_the_result():
    jobs = restic_filter.restic_jobs({'app': contract(), 'old': contract(enable=False)}, 'restic 0.14.0', 'h1')
    assert set(jobs) == {'app', 'old'}
    assert jobs['app']['enable'] is True and jobs['old']['enable'] is False
    assert jobs['app']['result'] == {'backup_service': 'restic-backup-app.service', 'restore_script': 'restic-restore-app'}
    assert jobs['app']['local_path'] == '/srv/b'
    assert jobs['app']['secrets_dir'] == '/etc/selfhost-backup/restic/app'
    assert jobs['app']['user'] == 'postgres'
    assert 'pw-123' not in str(jobs)


def test_secret_files_only_for_enabled_instances():
    files = restic_filter.restic_secret_files({'app': contract(), 'old': contract(enable=False)})
    assert {'dest': '/etc/selfhost-backup/restic/app/passphrase', 'content': 'pw-123'} in files
    assert not any('/old/' in item['dest'] for item in files)


@pytest.mark.parametrize('contracts', [[], {'app': {'request': REQUEST}}, {'../x': contract()},
                                       {'app': contract(environment_secrets={'RESTIC_PASSWORD': 'x'})}])
def test_errors_become_filter_errors(contracts):
    with pytest.raises(AnsibleFilterError):
        restic_filter.restic_jobs(contracts, '0.18.0', 'h')


def test_filters_are_registered():
    filters = restic_filter.FilterModule().filters()
    assert set(filters) == {'restic_jobs', 'restic_secret_files', 'restic_repositories'}
    assert _restic.DEFAULT_BINARY == '/usr/bin/restic'


def test_repositories_of_the_enabled_jobs_hold_paths_only():
    jobs = restic_filter.restic_jobs({'app': contract(), 'old': contract(enable=False)}, 'restic 0.14.0', 'h1')
    enabled = [{'key': name, 'value': job} for name, job in jobs.items() if job['enable']]
    repositories = restic_filter.restic_repositories(enabled)
    assert repositories == [{'user': 'postgres', 'password_file': '/etc/selfhost-backup/restic/app/passphrase',
                             'environment_files': jobs['app']['env_files']}]
    assert 'pw-123' not in str(repositories)


@pytest.mark.parametrize('enabled', [{'app': {}}, [{'key': 'app'}], 'app'])
def test_repositories_need_dict2items(enabled):
    with pytest.raises(AnsibleFilterError, match='dict2items'):
        restic_filter.restic_repositories(enabled)
