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
    assert set(filters) == {'restic_jobs', 'restic_secret_files', 'restic_repositories', 'restic_repository_checks'}
    assert _restic.DEFAULT_BINARY == '/usr/bin/restic'


def test_repositories_of_the_enabled_jobs_hold_paths_only():
    jobs = restic_filter.restic_jobs({'app': contract(), 'old': contract(enable=False)}, 'restic 0.14.0', 'h1')
    enabled = [{'key': name, 'value': job} for name, job in jobs.items() if job['enable']]
    repositories = restic_filter.restic_repositories(enabled)
    assert repositories == [{'name': 'app', 'user': 'postgres', 'password_file': '/etc/selfhost-backup/restic/app/passphrase',
                             'environment_files': jobs['app']['env_files'], 'reinitialise': False}]
    assert 'pw-123' not in str(repositories)


def test_repositories_skip_the_present_ones_and_mark_the_reinitialised():
    jobs = restic_filter.restic_jobs({'app': contract(), 'db': contract(), 'new': contract()}, 'restic 0.14.0', 'h1')
    enabled = [{'key': name, 'value': job} for name, job in jobs.items()]
    repositories = restic_filter.restic_repositories(enabled, ['db'], ['app'])
    assert [(item['name'], item['reinitialise']) for item in repositories] == [('db', True), ('new', False)]
    with pytest.raises(AnsibleFilterError, match='list of instance names'):
        restic_filter.restic_repositories(enabled, 'db')


def test_repository_checks_carry_the_secrets_about_to_be_written():
    contracts = {
        'app': contract(),
        'remote': contract(repository={'url': 'rest:http://u:restpw@h:8000/x/'}, passphrase=None,
                           passphrase_file='/etc/pass', environment_secrets={'AWS_SECRET_ACCESS_KEY': 'aws-1'}),
        'old': contract(enable=False),
    }
    del contracts['remote']['settings']['passphrase']
    checks = restic_filter.restic_repository_checks(contracts, ['remote'])
    assert checks == [
        {'name': 'app', 'user': 'postgres', 'password_file': '/etc/selfhost-backup/restic/app/passphrase',
         'environment_files': {}, 'environment': {}, 'repository': '/srv/b', 'reinitialise': False,
         'passphrase': 'pw-123'},
        # A passphrase file already on the host: the module reads it there.
        {'name': 'remote', 'user': 'postgres', 'password_file': '/etc/pass', 'environment_files': {},
         'environment': {'RESTIC_REPOSITORY': 'rest:http://u:restpw@h:8000/x/', 'AWS_SECRET_ACCESS_KEY': 'aws-1'},
         'reinitialise': True},
    ]


@pytest.mark.parametrize('enabled', [{'app': {}}, [{'key': 'app'}], 'app'])
def test_repositories_need_dict2items(enabled):
    with pytest.raises(AnsibleFilterError, match='dict2items'):
        restic_filter.restic_repositories(enabled)
