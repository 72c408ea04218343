# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Server repositories (repository.server): the URL, the pinned key, the registration on the server, the plan."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract, _instances, _plan, _servers

REQUEST = {'user': 'postgres', 'backup_name': 'dump', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql'}
HOST_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKey root@vault'


def instance(provider='restic', enable=True, **settings):
    values = {'enable': enable, 'repository': {'server': 'vault'}, 'passphrase': 'pw-123'}
    values.update(settings)
    return {'request': dict(REQUEST), 'settings': _contract.fill_defaults(values, _contract.load_provider_schema(provider))}


SERVERS = {'vault': {'restic_password': 'p@ss/word', 'host_key': HOST_KEY}}


def test_restic_url_quotes_the_password_and_keeps_each_client_under_its_own_user():
    server = _servers.server_from_vars('vault', {'address': '10.0.0.5', 'restic_password': 'a:b@c', 'restic_port': '8443',
                                                 'restic_tls': True})
    assert _servers.restic_url(server, 'db1', 'app') == 'rest:https://db1:a%3Ab%40c@10.0.0.5:8443/db1/app/'
    assert _servers.restic_url(_servers.server_from_vars('vault', {'restic_password': 'x'}), 'db1', 'app') == \
        'rest:http://db1:x@vault:8000/db1/app/'


def test_restic_url_needs_the_password():
    with pytest.raises(_servers.ServerError, match='no rest-server password'):
        _servers.restic_url(_servers.server_from_vars('vault', {}), 'db1', 'app')


def test_borg_url_and_known_hosts_name_the_port_only_when_not_22():
    server = _servers.server_from_vars('vault', {'host_key': HOST_KEY})
    assert _servers.borg_url(server, 'db1', 'app') == 'ssh://borg@vault/srv/borg/db1/app'
    assert _servers.known_hosts(server) == 'vault ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKey\n'
    other = _servers.server_from_vars('vault', {'host_key': HOST_KEY, 'borg_port': 2222, 'address': 'b.example'})
    assert _servers.borg_url(other, 'db1', 'app') == 'ssh://borg@b.example:2222/srv/borg/db1/app'
    assert _servers.known_hosts(other).startswith('[b.example]:2222 ssh-ed25519 ')


def test_known_hosts_needs_the_host_key():
    with pytest.raises(_servers.ServerError, match='host key of server vault is unknown'):
        _servers.known_hosts(_servers.server_from_vars('vault', {}))


@pytest.mark.parametrize('values, message', [
    ({'address': 'a b'}, 'backup_server_address'),
    ({'restic_port': 0}, 'not a TCP port'),
    ({'borg_port': 'x'}, 'not a TCP port'),
    ({'restic_directory': 'srv/restic'}, 'absolute'),
    ({'borg_directory': '/srv/../etc'}, 'absolute'),
    ({'borg_storage_quota': '10 GB'}, 'borg size'),
    ({'borg_user': 'bad user'}, 'not a host name'),
])
def test_bad_server_variables_are_refused(values, message):
    with pytest.raises(_servers.ServerError, match=message):
        _servers.server_from_vars('vault', values)


def test_authorized_keys_line_is_append_only_restricted_to_the_repository_with_quota():
    server = _servers.server_from_vars('vault', {'borg_storage_quota': '10G'})
    line = _servers.authorized_keys_line(server, 'ssh-ed25519 AAAA c@db1\n', 'db1', 'app')
    assert line == ('command="borg serve --append-only --restrict-to-repository /srv/borg/db1/app --storage-quota 10G",'
                    'restrict ssh-ed25519 AAAA c@db1')


def test_resolve_restic_gives_a_url_drops_retention_and_registers_the_kept_rules():
    resolved, registrations = _servers.resolve('restic', {
        'app': instance(retention={'keep_last': 3}, host='db1-old'),
        'off': instance(enable=False),
        'local': instance(repository={'path': '/srv/x'}),
    }, 'db1', SERVERS)
    assert resolved['app']['settings']['repository'] == {'url': 'rest:http://db1:p%40ss%2Fword@vault:8000/db1/app/'}
    assert resolved['app']['settings']['retention'] == {}
    assert resolved['local']['settings']['repository'] == {'path': '/srv/x'}
    assert resolved['off']['settings']['repository']['url'].endswith('/db1/off/')
    assert [r['instance'] for r in registrations] == ['app']  # a disabled instance is not registered
    registration = registrations[0]
    assert registration['repository'] == '/srv/restic/db1/app' and registration['parent'] == '/srv/restic/db1'
    assert registration['owner'] == 'restic-rest-server'
    assert registration['credential'] == '/etc/selfhost-backup-server/credentials/restic-db1-app'
    assert registration['data_path'] == '/etc/selfhost-backup-server/instances/restic-db1-app.sh'
    # The server forgets with the client's rules, its tag and its recorded host name.
    assert "readonly RETENTION=(forget --tag selfhost-backup:app --host db1-old --group-by host,tags --keep-last 3 " \
           "--prune)" in registration['data']
    assert 'readonly CHECK=(check)' in registration['data']
    assert 'p@ss' not in registration['data']


def test_resolve_borg_pins_the_host_key_and_registers_prune_and_compact():
    resolved, registrations = _servers.resolve('borg', {'app': instance('borg', retention={'keep_daily': 7})}, 'db1',
                                               SERVERS)
    settings = resolved['app']['settings']
    assert settings['repository'] == {'url': 'ssh://borg@vault/srv/borg/db1/app'}
    assert settings['ssh'] == {'known_hosts': 'vault ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKey\n'}
    assert settings['retention'] == {}
    registration = registrations[0]
    assert registration['owner'] == 'borg'
    assert registration['authorized_keys_options'] == \
        'command="borg serve --append-only --restrict-to-repository /srv/borg/db1/app",restrict'
    assert "readonly RETENTION=(prune --glob-archives 'app@db1-" in registration['data']
    assert "' --keep-daily 7)" in registration['data']
    assert 'readonly COMPACT=(compact)' in registration['data']


def test_without_retention_the_server_keeps_everything_but_checks():
    dummy, registrations = _servers.resolve('borg', {'app': instance('borg')}, 'db1', SERVERS)
    assert 'readonly RETENTION=()' in registrations[0]['data'] and 'readonly COMPACT=()' in registrations[0]['data']
    assert 'readonly CHECK=(check)' in registrations[0]['data']


def test_maintenance_data_is_valid_bash():
    dummy, registrations = _servers.resolve('restic', {'app': instance(retention={'keep_within': '30d'})}, 'db1',
                                            SERVERS)
    out = subprocess.run(['bash', '-c', 'source "$1"; echo "$TOOL ${#RETENTION[@]} $REPOSITORY"', 'bash', '/dev/stdin'],
                         input=registrations[0]['data'], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ['restic', '10', '/srv/restic/db1/app']


@pytest.mark.parametrize('servers, client, message', [
    ({}, 'db1', "'vault' is not a host of the inventory"),
    (SERVERS, 'db1/x', 'not a host name'),
    ({'vault': {}}, 'db1', 'no rest-server password'),
])
def test_resolve_failures(servers, client, message):
    with pytest.raises(_servers.ServerError, match=message):
        _servers.resolve('restic', {'app': instance()}, client, servers)


def test_plan_with_a_server_repository():
    planned = _plan.plan('borg', {'app': instance('borg', retention={'keep_last': 2})}, 'borg 1.4.0', 'db1', None, (),
                         SERVERS)
    registration, = planned['server_registrations']
    assert registration['client_password_file'] == '/etc/selfhost-backup/borg/app/passphrase'
    assert registration['ssh_key'] == '/etc/selfhost-backup/borg/app/ssh_key'
    assert planned['ssh_keys'][0]['path'] == registration['ssh_key']
    # The server's line carries (and is found by) the comment ssh-keygen gives the key: <job>@<this host>.
    assert registration['key_comment'] == f"{planned['ssh_keys'][0]['comment']}@db1" == 'borg-backup-app@db1'
    assert planned['repository_checks'][0]['repository'] == 'ssh://borg@vault/srv/borg/db1/app'
    # The client's job never prunes: its data carries no prune command line.
    job = planned['backup_jobs']['jobs'][0]
    assert '--keep-last' not in str(job)


def test_plan_without_servers_has_no_registrations_and_an_unknown_server_fails():
    assert _plan.plan('restic', {}, 'restic 0.18.0', 'db1')['server_registrations'] == []
    with pytest.raises(_plan.PlanError, match='is not a host of the inventory'):
        _plan.plan('restic', {'app': instance()}, 'restic 0.18.0', 'db1')


@pytest.mark.parametrize('provider', ['restic', 'borg'])
def test_validation_accepts_a_server_and_refuses_it_beside_a_path_or_url(provider):
    checked = _instances.check(provider, {'app': {'request': REQUEST, 'settings': {
        'repository': {'server': 'vault'}, 'passphrase': 'x'}}}, 'db1')
    assert checked.violations == []
    for other in ({'path': '/srv/x'}, {'url': 'rest:http://h/' if provider == 'restic' else 'ssh://b@h/x'}):
        bad = _instances.check(provider, {'app': {'request': REQUEST, 'settings': {
            'repository': {'server': 'vault', **other}, 'passphrase': 'x'}}}, 'db1')
        assert any('give one of repository.path, repository.url or repository.server' in v for v in bad.violations), \
            bad.violations
    bad = _instances.check(provider, {'app': {'request': REQUEST, 'settings': {
        'repository': {'server': 'not a host'}, 'passphrase': 'x'}}}, 'db1')
    assert any('repository.server' in v for v in bad.violations)


@pytest.mark.parametrize('provider', ['restic', 'borg'])
def test_a_client_its_server_no_longer_lists_is_refused_naming_server_variable_and_host(provider):
    """backup_server_clients set and not naming this host: the server removed its access, and its own converge must
    not register it again (enabled instances or not: restic registers this host's user for both)."""
    instances = {'app': instance(provider), 'off': instance(provider, enable=False),
                 'local': instance(provider, repository={'path': '/srv/x'})}
    refusal = _servers.unlisted_refusal(provider, instances, 'db3', {'vault': ['db1', 'db2']})
    assert refusal.splitlines() == [
        f'{provider}_instances.{name}: this host db3 is not in backup_server_clients of server vault, which removed '
        '(or removes) its access there; it does not register itself again. Add db3 to backup_server_clients of vault '
        'and converge vault first, or point the instance at another repository.' for name in ('app', 'off')]
    with pytest.raises(_servers.ServerError, match='this host db3 is not in backup_server_clients of server vault'):
        _servers.resolve(provider, instances, 'db3', {'vault': dict(SERVERS['vault'], clients=['db1', 'db2'])})
    with pytest.raises(_plan.PlanError, match='this host db3 is not in backup_server_clients'):
        _plan.plan(provider, instances, '', 'db3', None, (), {'vault': dict(SERVERS['vault'], clients=['db1'])})


@pytest.mark.parametrize('clients', [None, [], ['db1', 'db3'], ('db3',)])
def test_a_listed_client_or_a_server_without_a_list_is_not_refused(clients):
    assert _servers.unlisted_refusal('borg', {'app': instance('borg')}, 'db3', {'vault': clients}) == ''
    dummy, registrations = _servers.resolve('borg', {'app': instance('borg')}, 'db3',
                                            {'vault': dict(SERVERS['vault'], clients=clients)})
    assert [item['instance'] for item in registrations] == ['app']


def test_only_the_servers_the_instances_name_count_and_a_bad_list_is_refused():
    assert _servers.unlisted_refusal('restic', {'app': instance()}, 'db3', {'other': ['db1']}) == ''
    assert _servers.unlisted_refusal('restic', {'app': instance()}, 'db3', {}) == ''
    for bad in ('db1,db3', {'db3': 1}, [1, 2]):
        assert _servers.unlisted_refusal('restic', {'app': instance()}, 'db3', {'vault': bad}) == \
            'restic_instances.app: backup_server_clients of server vault is not a list of inventory hostnames'
