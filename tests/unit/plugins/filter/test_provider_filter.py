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
    assert set(provider_filter.FilterModule().filters()) == {'provider_stale_instances', 'provider_shared_repositories'}


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
