# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Repositories on a selfhost.backup.backup_server host (``repository: {server: <inventory hostname>}``).

On the controller, before the provider's plan: an instance whose repository names a backup server gets the
repository URL of that server (restic: the append-only rest-server with this client's htpasswd user in the URL;
borg: ``borg serve --append-only`` restricted to this instance's repository, with the server's pinned host key),
and loses its retention (the client cannot delete on an append-only server: the server applies the retention).
What the server needs for each instance is a *registration*: its repository on the server's disk, the
root-only credential the server's maintenance uses and the data file of selfhost-backup-server-maintenance.

Pure functions, no I/O.
"""

from __future__ import annotations

import copy
import dataclasses
import posixpath
import re
import typing as t
import urllib.parse

from ansible_collections.selfhost.backup.plugins.module_utils import _borg, _borg_ssh, _job_data, _restic

SERVER_ETC = '/etc/selfhost-backup-server'
DATA_DIR = f'{SERVER_ETC}/instances'
CREDENTIALS_DIR = f'{SERVER_ETC}/credentials'
# This client's rest-server password, generated on the client (root-only), one per backup server.
CLIENT_CREDENTIALS_DIR = '/etc/selfhost-backup/servers'
# A host name as it goes into a URL, an htpasswd user name, a path on the server and a file name.
HOST_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$')
# What the planner assumes of a server whose host variables do not say otherwise (the role's defaults).
DEFAULTS: dict[str, t.Any] = {
    'restic_port': 8000,
    'restic_tls': False,
    'restic_directory': '/srv/restic',
    'restic_owner': 'restic-rest-server',
    'borg_user': 'borg',
    'borg_port': 22,
    'borg_directory': '/srv/borg',
    'borg_storage_quota': '',
}
QUOTA = re.compile(r'^[0-9]+(\.[0-9]+)?[KMGTP]?$')
# Stands in for the server's URL in the controller's checks before the server is known (provider_instances).
PLACEHOLDER = {'restic': {'url': 'rest:http://backup-server:8000/client/instance/'},
               'borg': {'url': 'ssh://borg@backup-server/srv/borg/client/instance'}}
PLACEHOLDER_KNOWN_HOSTS = 'backup-server ssh-ed25519 AAAA\n'


class ServerError(ValueError):
    """A server repository that cannot be planned (an unknown server, a bad name, a missing host key)."""


@dataclasses.dataclass(frozen=True)
class Server:
    """One backup server as a client sees it. ``restic_password`` is this client's htpasswd password there;
    ``host_key`` the server's SSH host public key (``ssh-ed25519 AAAA...``)."""
    name: str
    address: str
    restic_port: int = DEFAULTS['restic_port']
    restic_tls: bool = DEFAULTS['restic_tls']
    restic_directory: str = DEFAULTS['restic_directory']
    restic_owner: str = DEFAULTS['restic_owner']
    borg_user: str = DEFAULTS['borg_user']
    borg_port: int = DEFAULTS['borg_port']
    borg_directory: str = DEFAULTS['borg_directory']
    borg_storage_quota: str = DEFAULTS['borg_storage_quota']
    restic_password: str = ''
    host_key: str = ''


def server_name(settings: t.Mapping[str, t.Any]) -> str | None:
    """The backup server an instance's repository names, or None."""
    return (settings.get('repository') or {}).get('server')


def for_precheck(provider: str, settings: t.Mapping[str, t.Any]) -> t.Mapping[str, t.Any]:
    """The settings a provider's precheck sees: a server repository stands as a placeholder URL (the server's
    details are known only to the plan), everything else as given."""
    if not server_name(settings):
        return settings
    checked = dict(settings, repository=PLACEHOLDER[provider])
    if provider == 'borg':
        checked['ssh'] = {'known_hosts': PLACEHOLDER_KNOWN_HOSTS}
    return checked


def _name(value: t.Any, what: str) -> str:
    if not isinstance(value, str) or not HOST_NAME.fullmatch(value):
        raise ServerError(f'{what} {value!r} is not a host name (letters, digits, ".", "_", "-")')
    return value


def _absolute(value: t.Any, what: str) -> str:
    if not isinstance(value, str) or not value.startswith('/') or value != posixpath.normpath(value) or value == '/':
        raise ServerError(f'{what} {value!r} is not an absolute, normalised path')
    return value


def _port(value: t.Any, what: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536 or isinstance(value, bool):
        raise ServerError(f'{what} {value!r} is not a TCP port')
    return port


def server_from_vars(name: str, values: t.Mapping[str, t.Any]) -> Server:
    """A Server from what the role gathered of that host: ``address`` (its backup_server_address, else its
    inventory hostname) and the ``backup_server_*`` variables without their prefix; missing ones take DEFAULTS."""
    _name(name, 'repository.server')
    merged = dict(DEFAULTS, **{key: value for key, value in values.items() if value is not None})
    address = merged.get('address') or name
    if not isinstance(address, str) or not re.fullmatch(r'[A-Za-z0-9._:-]+', address):
        raise ServerError(f'backup_server_address {address!r} of {name} is not a host name or an IP address')
    quota = str(merged['borg_storage_quota'] or '')
    if quota and not QUOTA.fullmatch(quota):
        raise ServerError(f'backup_server_borg_storage_quota {quota!r} of {name} is not a borg size such as 10G')
    return Server(
        name=name, address=address,
        restic_port=_port(merged['restic_port'], f'backup_server_restic_port of {name}'),
        restic_tls=bool(merged['restic_tls']),
        restic_directory=_absolute(merged['restic_directory'], f'backup_server_restic_directory of {name}'),
        restic_owner=_name(merged['restic_owner'], f'the rest-server user of {name}'),
        borg_user=_name(merged['borg_user'], f'backup_server_borg_user of {name}'),
        borg_port=_port(merged['borg_port'], f'backup_server_borg_port of {name}'),
        borg_directory=_absolute(merged['borg_directory'], f'backup_server_borg_directory of {name}'),
        borg_storage_quota=quota,
        restic_password=str(merged.get('restic_password') or ''),
        host_key=str(merged.get('host_key') or '').strip(),
    )


def _url_host(address: str) -> str:
    return f'[{address}]' if ':' in address else address


def restic_url(server: Server, client: str, instance: str) -> str:
    """The rest-server URL of one instance: ``/<client>/<instance>/``, which --private-repos lets only the htpasswd
    user ``<client>`` reach. It holds the password: it is stored like a secret (RESTIC_REPOSITORY)."""
    if not server.restic_password:
        raise ServerError(f'no rest-server password of this client for server {server.name}')
    scheme = 'https' if server.restic_tls else 'http'
    user = urllib.parse.quote(client, safe='')
    password = urllib.parse.quote(server.restic_password, safe='')
    return (f'rest:{scheme}://{user}:{password}@{_url_host(server.address)}:{server.restic_port}'
            f'/{client}/{instance}/')


def restic_server_path(server: Server, client: str, instance: str) -> str:
    return posixpath.join(server.restic_directory, client, instance)


def borg_server_path(server: Server, client: str, instance: str) -> str:
    return posixpath.join(server.borg_directory, client, instance)


def borg_url(server: Server, client: str, instance: str) -> str:
    port = '' if server.borg_port == 22 else f':{server.borg_port}'
    return f'ssh://{server.borg_user}@{server.address}{port}{borg_server_path(server, client, instance)}'


def known_hosts(server: Server) -> str:
    """The pinned host key line of the server, named as ssh names it (``[host]:port`` on another port than 22)."""
    fields = server.host_key.split()
    if len(fields) < 2:
        raise ServerError(f'the SSH host key of server {server.name} is unknown (read from its '
                          '/etc/ssh/ssh_host_ed25519_key.pub)')
    name = server.address if server.borg_port == 22 else f'[{server.address}]:{server.borg_port}'
    return f'{name} {fields[0]} {fields[1]}\n'


def authorized_keys_line(server: Server, public_key: str, client: str, instance: str) -> str:
    """The server's authorized_keys line of one borg job's key: append-only, this instance's repository only."""
    return _borg_ssh.server_authorized_keys_line(public_key, borg_server_path(server, client, instance),
                                                 server.borg_storage_quota or None)


def file_stem(provider: str, client: str, instance: str) -> str:
    return f'{provider}-{client}-{instance}'


def maintenance_data(provider: str, repository: str, owner: str, credential: str, client: str, instance: str,
                     settings: t.Mapping[str, t.Any]) -> str:
    """The data file of one instance that selfhost-backup-server-maintenance sources: readonly assignments only.
    RETENTION and COMPACT are empty without keep rules (the server keeps everything); CHECK is always run."""
    host = settings.get('host') or client
    retention = settings.get('retention') or {}
    if provider == 'restic':
        forget = _restic.forget_args(instance, host, retention) or []
        compact: list[str] = []
        check = _restic.check_args()
    else:
        forget = _borg.prune_args(instance, host, retention) or []
        compact = _borg.compact_args() if forget else []
        check = _borg.check_args()
    data: list[tuple[str, _job_data.Value]] = [
        ('TOOL', provider), ('CLIENT', client), ('INSTANCE', instance), ('REPOSITORY', repository),
        ('OWNER', owner), ('CREDENTIAL', credential), ('RETENTION', forget), ('COMPACT', compact), ('CHECK', check)]
    lines = [_job_data.SHEBANG, f'# {provider} instance {instance} of {client}: written by the {provider} role of '
             'selfhost.backup, read by selfhost-backup-server-maintenance']
    return '\n'.join(lines + [_job_data.assignment(name, value) for name, value in data]) + '\n'


def unlisted_refusal(provider: str, instances: t.Mapping[str, t.Mapping[str, t.Any]], client: str,
                     server_clients: t.Mapping[str, t.Any]) -> str:
    """Why this client must not register on a backup server that dropped it, or ''.

    ``server_clients``: server -> its ``backup_server_clients`` as the client sees it (None when not set). A server
    whose list is set and not empty removes the access of every client it does not name; such a client registering
    itself again at its own converge would undo that (and the fleet would never converge idempotently). Every
    instance naming the server counts, enabled or not (the restic role registers this host's user for both)."""
    found = []
    for name, valid in sorted(instances.items()):
        wanted = server_name(valid['settings'])
        if not wanted or wanted not in server_clients:
            continue
        listed = server_clients[wanted]
        if listed is None or (isinstance(listed, (list, tuple)) and not listed):
            continue
        if not isinstance(listed, (list, tuple)) or not all(isinstance(item, str) for item in listed):
            found.append(f'{provider}_instances.{name}: backup_server_clients of server {wanted} is not a list of '
                         'inventory hostnames')
        elif client not in listed:
            found.append(f'{provider}_instances.{name}: this host {client} is not in backup_server_clients of server '
                         f'{wanted}, which removed (or removes) its access there; it does not register itself '
                         f'again. Add {client} to backup_server_clients of {wanted} and converge {wanted} first, or '
                         'point the instance at another repository.')
    return '\n'.join(found)


def resolve(provider: str, instances: t.Mapping[str, t.Mapping[str, t.Any]], client: str,
            servers: t.Mapping[str, t.Mapping[str, t.Any]]) -> tuple[dict[str, t.Any], list[dict[str, t.Any]]]:
    """The instances with every server repository turned into a URL the provider plans as any other remote
    one, and the registrations of the enabled ones on their servers (sorted by instance)."""
    refusal = unlisted_refusal(provider, instances, client,
                               {name: values.get('clients') for name, values in servers.items()})
    if refusal:
        raise ServerError(refusal)
    resolved: dict[str, t.Any] = {}
    registrations: list[dict[str, t.Any]] = []
    for name, valid in sorted(instances.items()):
        settings = valid['settings']
        wanted = server_name(settings)
        if not wanted:
            resolved[name] = valid
            continue
        if wanted not in servers:
            raise ServerError(f'{provider}_instances.{name}.settings.repository.server: {wanted!r} is not a host '
                              'of the inventory')
        _name(client, 'the client\'s inventory hostname')
        server = server_from_vars(wanted, servers[wanted])
        new = copy.deepcopy(dict(settings))
        new['retention'] = {}
        if provider == 'restic':
            new['repository'] = {'url': restic_url(server, client, name)}
            path, owner = restic_server_path(server, client, name), server.restic_owner
            options = ''
        else:
            new['repository'] = {'url': borg_url(server, client, name)}
            new['ssh'] = {'known_hosts': known_hosts(server)}
            path, owner = borg_server_path(server, client, name), server.borg_user
            options = _borg_ssh.server_authorized_keys_options(path, server.borg_storage_quota or None)
        resolved[name] = {'request': valid['request'], 'settings': new}
        if not settings.get('enable', True):
            continue
        stem = file_stem(provider, client, name)
        credential = posixpath.join(CREDENTIALS_DIR, stem)
        registrations.append({
            'server': wanted, 'provider': provider, 'client': client, 'instance': name,
            'repository': path, 'parent': posixpath.dirname(path), 'owner': owner, 'credential': credential,
            'data_path': posixpath.join(DATA_DIR, f'{stem}.sh'),
            'data': maintenance_data(provider, path, owner, credential, client, name, settings),
            # borg: the server's authorized_keys line of this job's key is these options, a space and the key.
            'authorized_keys_options': options,
        })
    return resolved, registrations
