# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filters every provider role shares."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.backup.plugins.filter import provider as provider_filter

MANIFESTS = [
    '/var/lib/selfhost-backup/restic-backup-app.json',
    '/var/lib/selfhost-backup/restic-backup-gone.json',
    '/var/lib/selfhost-backup/restic-backup-app-check.json.tmp',
    '/var/lib/selfhost-backup/borg-backup-x.json',
    '/var/lib/selfhost-backup/borg-backup-app.json',
]


@pytest.mark.parametrize('provider, wanted, stale', [
    ('restic', ['app'], ['gone']),
    ('restic', [], ['app', 'gone']),
    ('borg', ['app'], ['x']),
    ('borg', ['app', 'x'], []),
])
def test_stale_instances_of_one_provider_only(provider, wanted, stale):
    assert provider_filter.provider_stale_instances(MANIFESTS, provider, wanted) == stale


@pytest.mark.parametrize('provider', ['', None])
def test_provider_name_is_required(provider):
    with pytest.raises(AnsibleFilterError, match='provider name'):
        provider_filter.provider_stale_instances(MANIFESTS, provider, [])


def test_filter_is_registered():
    assert set(provider_filter.FilterModule().filters()) == {
        'provider_stale_instances', 'provider_shared_repositories', 'provider_job_paths', 'provider_timer_jobs'}


def _job(path, user, enable=True):
    return {'enable': enable, 'local_path': path, 'user': user}


def test_shared_repositories_of_different_users_are_named():
    jobs = {
        'pg': _job('/srv/r', 'postgres'), 'maria': _job('/srv/r', 'mysql'),       # shared by two users
        'pg2': _job('/srv/p', 'postgres'), 'pg3': _job('/srv/p', 'postgres'),      # one user: fine
        'off': _job('/srv/q', 'mysql', enable=False), 'q': _job('/srv/q', 'postgres'),  # disabled does not count
        'remote': _job(None, 'mysql'),
    }
    assert provider_filter.provider_shared_repositories(jobs) == ['/srv/r: maria (user mysql), pg (user postgres)']
    assert provider_filter.provider_shared_repositories({}) == []


def test_shared_repositories_needs_a_dict():
    with pytest.raises(AnsibleFilterError):
        provider_filter.provider_shared_repositories(['x'])


def _enabled(name, local_path, user, credentials, root_secrets=(), timer=None):
    return {'key': name, 'value': {
        'enable': True, 'local_path': local_path, 'user': user, 'secrets_dir': f'/etc/selfhost-backup/restic/{name}',
        'credentials': credentials, 'root_secrets': list(root_secrets), 'timer': timer or {}}}


ENABLED = [
    _enabled('app', '/srv/backup/app', 'postgres', {'passphrase': '/etc/selfhost-backup/restic/app/passphrase'},
             ['/etc/selfhost-backup/restic/app/ping_url']),
    _enabled('shop', '/srv/backup/shop', 'mysql', {'passphrase': '/etc/selfhost-backup/restic/shop/passphrase'}),
    _enabled('app2', '/srv/backup/app', 'postgres', {'passphrase': '/etc/selfhost-backup/restic/app2/passphrase'}),
    _enabled('remote', None, 'postgres', {'passphrase': '/etc/selfhost-backup/restic/remote/passphrase'}),
]


def test_job_paths_parents_first_then_repositories_then_secrets():
    paths = provider_filter.provider_job_paths(ENABLED, 'restic', ['/etc/selfhost-backup/restic/app/key.pub'])
    root_only = {'owner': 'root', 'group': 'root', 'mode': '0700'}
    assert paths['directories'] == [
        # the shared parent once, without owner or mode: created when missing, else left alone
        {'path': '/srv/backup'},
        {'path': '/srv/backup/app', 'owner': 'postgres', 'mode': '0700'},
        {'path': '/srv/backup/shop', 'owner': 'mysql', 'mode': '0700'},
        {'path': '/etc/selfhost-backup'} | root_only,
        {'path': '/etc/selfhost-backup/restic'} | root_only,
    ] + [{'path': f'/etc/selfhost-backup/restic/{name}'} | root_only for name in ('app', 'shop', 'app2', 'remote')]
    assert paths['prune']['directories'] == [f'/etc/selfhost-backup/restic/{name}' for name in ('app', 'shop', 'app2', 'remote')]
    assert paths['prune']['keep'] == [
        '/etc/selfhost-backup/restic/app/passphrase', '/etc/selfhost-backup/restic/shop/passphrase',
        '/etc/selfhost-backup/restic/app2/passphrase', '/etc/selfhost-backup/restic/remote/passphrase',
        '/etc/selfhost-backup/restic/app/ping_url', '/etc/selfhost-backup/restic/app/key.pub']


def test_job_paths_without_instances_still_make_the_secrets_root():
    paths = provider_filter.provider_job_paths([], 'borg')
    assert [entry['path'] for entry in paths['directories']] == ['/etc/selfhost-backup', '/etc/selfhost-backup/borg']
    assert paths['prune'] == {'directories': [], 'keep': []}


@pytest.mark.parametrize('enabled, provider, message', [
    (ENABLED, '', 'provider name'),
    ({'app': {}}, 'restic', 'dict2items'),
])
def test_job_paths_errors(enabled, provider, message):
    with pytest.raises(AnsibleFilterError, match=message):
        provider_filter.provider_job_paths(enabled, provider)


def test_timer_jobs_keep_only_the_options_of_a_job():
    timer = {'name': 'restic-backup-app', 'state': 'present', 'exec_start': [['/bin/true']], 'nice': 5,
             'not_an_option': 'x'}
    jobs = provider_filter.provider_timer_jobs([_enabled('app', None, 'root', {}, timer=timer)])
    assert jobs == [{'name': 'restic-backup-app', 'state': 'present', 'exec_start': [['/bin/true']], 'nice': 5}]
