# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The borg role's filters: jobs without secrets, secret files only for enabled instances, SSH keys."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.backup.plugins.filter import borg as borg_filter

REQUEST = {'user': 'postgres', 'backup_name': 'dump', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql'}


def contract(enable=True, **settings):
    values = {'enable': enable, 'repository': {'path': '/srv/b'}, 'passphrase': 'pw-123'}
    values.update(settings)
    return {'request': dict(REQUEST), 'settings': values, 'changed': False}


def test_jobs_hold_no_secret_and_name_the_result():
    remote = contract(repository={'url': 'ssh://borg@srv/srv/borg/r'}, ssh={'known_hosts': 'srv ssh-ed25519 AAAA'})
    jobs = borg_filter.borg_jobs({'app': contract(), 'old': contract(enable=False), 'r': remote}, 'borg 1.2.4', 'db1')
    assert set(jobs) == {'app', 'old', 'r'}
    assert jobs['app']['enable'] is True and jobs['old']['enable'] is False
    assert jobs['app']['result'] == {'backup_service': 'borg-backup-app.service', 'restore_script': 'borg-restore-app'}
    assert jobs['app']['local_path'] == '/srv/b' and jobs['app']['ssh_key'] is None
    assert jobs['app']['secrets_dir'] == '/etc/selfhost-backup/borg/app'
    assert jobs['app']['user'] == 'postgres'
    assert jobs['r']['ssh_key'] == '/etc/selfhost-backup/borg/r/ssh_key'
    assert jobs['r']['known_hosts_file'] == '/etc/selfhost-backup/borg/r/known_hosts'
    assert jobs['r']['known_hosts'] == 'srv ssh-ed25519 AAAA\n'
    assert jobs['r']['serve_path'] == '/srv/borg/r'
    assert jobs['r']['ssh_key_comment'] == 'borg-backup-r'
    assert 'pw-123' not in str(jobs)


def test_secret_files_only_for_enabled_instances():
    files = borg_filter.borg_secret_files({'app': contract(), 'old': contract(enable=False),
                                           'f': contract(passphrase=None, passphrase_file='/root/pw')})
    assert files == [{'dest': '/etc/selfhost-backup/borg/app/passphrase', 'content': 'pw-123'}]


def test_authorized_keys():
    line = borg_filter.borg_authorized_keys('ssh-ed25519 AAAA c', '/srv/borg/r')
    assert line == 'command="borg serve --restrict-to-path /srv/borg/r --append-only",restrict ssh-ed25519 AAAA c'


@pytest.mark.parametrize('contracts, version', [
    ([], '1.2.4'), ({'app': {'request': REQUEST}}, '1.2.4'), ({'../x': contract()}, '1.2.4'),
    ({'app': contract()}, 'borg 1.1.18'), ({'app': contract()}, 'garbage'),
    ({'app': contract(repository={'url': 'ssh://b@h/x'})}, '1.4.0'),
])
def test_errors_become_filter_errors(contracts, version):
    with pytest.raises(AnsibleFilterError):
        borg_filter.borg_jobs(contracts, version, 'db1')


def test_filters_are_registered():
    assert set(borg_filter.FilterModule().filters()) == {
        'borg_jobs', 'borg_secret_files', 'borg_authorized_keys', 'borg_ssh_keys', 'borg_known_hosts_files',
        'borg_repository_checks'}


def test_ssh_keys_from_slurped_public_keys():
    jobs = {'r': {'serve_path': '/srv/borg/r'}}
    slurped = [{'item': {'key': 'r'}, 'content': 'c3NoLWVkMjU1MTkgQUFBQSBjCg=='}, {'item': {'key': 'new'}, 'failed': True}]
    assert borg_filter.borg_ssh_keys(slurped, jobs) == {'r': {
        'public_key': 'ssh-ed25519 AAAA c', 'serve_path': '/srv/borg/r',
        'authorized_keys': 'command="borg serve --restrict-to-path /srv/borg/r --append-only",restrict ssh-ed25519 AAAA c'}}
    assert borg_filter.borg_ssh_keys(None, jobs) == {}


@pytest.mark.parametrize('host', ['fe80::1', 'db 1', '-db', ''])
def test_a_host_name_that_cannot_name_archives_is_refused(host):
    with pytest.raises(AnsibleFilterError, match='settings.host'):
        borg_filter.borg_jobs({'app': contract()}, 'borg 1.2.4', host)
    assert borg_filter.borg_jobs({'app': contract(host='db1')}, 'borg 1.2.4', host)['app']['enable'] is True


def test_known_hosts_files_of_enabled_remote_jobs():
    jobs = {
        'remote': {'enable': True, 'known_hosts_file': '/etc/selfhost-backup/borg/remote/known_hosts',
                   'known_hosts': 'server ssh-ed25519 AAAA\n'},
        'local': {'enable': True, 'known_hosts_file': None, 'known_hosts': None},
        'off': {'enable': False, 'known_hosts_file': '/etc/selfhost-backup/borg/off/known_hosts', 'known_hosts': 'x\n'},
    }
    assert borg_filter.borg_known_hosts_files(jobs) == [
        {'dest': '/etc/selfhost-backup/borg/remote/known_hosts', 'content': 'server ssh-ed25519 AAAA\n'}]
    with pytest.raises(AnsibleFilterError, match='borg_jobs'):
        borg_filter.borg_known_hosts_files([])


def test_repository_checks_name_the_marker_and_carry_the_passphrase_about_to_be_written():
    remote = contract(repository={'url': 'ssh://borg@srv/srv/borg/r'}, ssh={'known_hosts': 'srv ssh-ed25519 AAAA'},
                      passphrase=None, passphrase_file='/root/pw')
    checks = borg_filter.borg_repository_checks({'app': contract(), 'old': contract(enable=False), 'r': remote}, ['r'])
    assert checks == [
        {'name': 'app', 'user': 'postgres', 'repository': '/srv/b',
         'marker': '/var/cache/borg-backup-app/selfhost-backup-initialised',
         'password_file': '/etc/selfhost-backup/borg/app/passphrase', 'reinitialise': False, 'passphrase': 'pw-123'},
        # The passphrase file already on the host: the module reads it there.
        {'name': 'r', 'user': 'postgres', 'repository': 'ssh://borg@srv/srv/borg/r',
         'marker': '/var/cache/borg-backup-r/selfhost-backup-initialised', 'password_file': '/root/pw',
         'reinitialise': True, 'ssh_key': '/etc/selfhost-backup/borg/r/ssh_key', 'known_hosts': 'srv ssh-ed25519 AAAA\n'},
    ]
    with pytest.raises(AnsibleFilterError, match='list of instance names'):
        borg_filter.borg_repository_checks({'app': contract()}, 'app')
