# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The settings schema of the borg provider: defaults, valid and invalid settings, secrets never shown."""

from __future__ import annotations

import pytest

from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract

SCHEMA = _contract.load_provider_schema('borg')
NAME = 'borg_instances.app'
KNOWN_HOSTS = 'borg-server ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3xk0/TRt+7Ng== root@borg-server'


def validate(settings):
    return _contract.validate_settings(settings, SCHEMA, NAME)


def violations(settings):
    with pytest.raises(_contract.ContractViolation) as info:
        validate(settings)
    return info.value.violations


def test_borg_is_a_known_provider():
    assert 'borg' in _contract.known_providers()


def test_defaults_are_filled_in():
    result = validate({'repository': {'path': '/srv/borg/app'}, 'passphrase': 'pw'})
    assert result['enable'] is True
    assert result['encryption'] == 'repokey-blake2'
    assert result['compression'] == 'zstd,3'
    assert result['lock_wait'] == 300
    assert result['schedule'] == {'on_calendar': 'daily', 'randomized_delay_sec': 3600, 'fixed_random_delay': True,
                                  'persistent': True}
    assert result['check'] == {'enabled': False, 'on_calendar': 'Sun *-*-* 04:00:00', 'verify_data': False}
    assert result['retention'] == {} and result['limits'] == {'timeout': 43200}
    assert result['restore'] == {'stop_units': []}


@pytest.mark.parametrize('settings', [
    {'repository': {'path': '/srv/borg/app'}, 'passphrase_file': '/root/pw'},
    {'repository': {'url': 'ssh://borg@borg-server/srv/borg/app'}, 'passphrase': 'pw',
     'ssh': {'known_hosts': KNOWN_HOSTS + '\n'}},
    {'repository': {'url': 'ssh://borg@borg-server:2222/./app'}, 'passphrase': 'pw',
     'ssh': {'known_hosts': '[borg-server]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNh=\n' + KNOWN_HOSTS}},
    {'repository': {'path': '/srv/b'}, 'passphrase': 'pw', 'compression': 'auto,zstd,10',
     'retention': {'keep_daily': 7, 'keep_within': '2d'}, 'check': {'enabled': True, 'max_duration': 600},
     'limits': {'upload_ratelimit': 100, 'nice': 19, 'ionice_class': 'idle'}, 'lock_wait': 0,
     'restore': {'stop_units': ['postgresql@15-main.service']}, 'encryption': 'authenticated-blake2'},
    {'repository': {'path': '/srv/b'}, 'passphrase': 'pw', 'check': {'enabled': True, 'verify_data': True}},
    {'repository': {'path': '/srv/b'}, 'passphrase': 'pw', 'compression': 'none'},
])
def test_valid_settings(settings):
    validate(settings)


def test_invalid_settings_name_every_field_and_hide_secrets():
    found = violations({
        'repository': {'path': '/srv/b', 'url': 'ssh://b@h/x'}, 'passphrase': 'hunter2-secret',
        'passphrase_file': '/root/pw', 'encryption': 'keyfile', 'compression': 'gzip',
        'retention': {'keep_daily': 0, 'keep_within': '2 days'}, 'lock_wait': -1, 'colour': 'blue',
        'limits': {'upload_ratelimit': 0}, 'check': {'verify_data': True, 'max_duration': 10},
    })
    text = '\n'.join(found)
    assert 'hunter2-secret' not in text
    for field in ('repository.url', 'passphrase_file', 'encryption', 'compression', 'retention.keep_daily',
                  'retention.keep_within', 'lock_wait', 'colour', 'limits.upload_ratelimit', 'check.max_duration'):
        assert f'{NAME}.settings.{field}:' in text, field
    assert 'give either repository.path or repository.url, not both' in text
    assert 'give either passphrase or passphrase_file, not both' in text
    assert 'give check.max_duration or check.verify_data, not both' in text


@pytest.mark.parametrize('settings, where', [
    ({'passphrase': 'pw'}, 'settings.repository: is required'),
    ({'repository': {}, 'passphrase': 'pw'}, 'settings.repository.path: is required'),
    ({'repository': {'path': '/srv/b'}}, 'settings.passphrase: is required'),
    ({'repository': {'path': 'relative'}, 'passphrase': 'pw'}, 'settings.repository.path:'),
    ({'repository': {'url': 'ssh://b@h/x'}, 'passphrase': 'pw'}, 'settings.ssh: is required'),
    ({'repository': {'url': 'ssh://b@h/x'}, 'passphrase': 'pw', 'ssh': {}}, 'settings.ssh.known_hosts: is required'),
    ({'repository': {'url': 'ssh://b@h/x'}, 'passphrase': 'pw', 'ssh': {'known_hosts': 'h just-garbage'}},
     'settings.ssh.known_hosts:'),
    ({'repository': {'url': 'sftp://b@h/x'}, 'passphrase': 'pw', 'ssh': {'known_hosts': KNOWN_HOSTS}},
     'settings.repository.url:'),
    ({'repository': {'url': 'ssh://h/x'}, 'passphrase': 'pw', 'ssh': {'known_hosts': KNOWN_HOSTS}},
     'settings.repository.url:'),
    ({'repository': {'path': '/srv/b'}, 'passphrase': ''}, 'settings.passphrase: must not be empty'),
    ({'repository': {'path': '/srv/b'}, 'passphrase': 'pw', 'schedule': {'on_calendar': 'daily\nExecStart=/x'}},
     'settings.schedule.on_calendar:'),
    ({'repository': {'path': '/srv/b'}, 'passphrase': 'pw', 'restore': {'stop_units': ['a b']}},
     'settings.restore.stop_units[0]:'),
    ({'repository': {'path': '/srv/b'}, 'passphrase': 'pw', 'ssh': {'known_hosts': KNOWN_HOSTS, 'key': 'x'}},
     'settings.ssh.key: unknown key'),
    ({'repository': {'path': '/srv/b'}, 'passphrase': 'pw', 'writable_paths': ['relative/dir']},
     'settings.writable_paths[0]:'),
    ({'repository': {'path': '/srv/b'}, 'passphrase': 'pw', 'writable_paths': ['/a b']},
     'settings.writable_paths[0]:'),
])
def test_invalid_settings(settings, where):
    assert any(f'{NAME}.{where}' in violation for violation in violations(settings)), violations(settings)
