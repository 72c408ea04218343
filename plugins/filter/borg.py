# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Turn a validated borg instance into the options of selfhost.backup.backup_timer (and its secret files).

The logic is in module_utils/_borg.py and module_utils/_provider.py; these filters only adapt it to Jinja.
"""

from __future__ import annotations

import base64
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.backup.plugins.module_utils import _borg, _provider


def _plan(contract: t.Mapping[str, t.Any], instance: str, version: str, host: str, binary: str) -> _borg.Plan:
    if not isinstance(contract, t.Mapping) or 'request' not in contract or 'settings' not in contract:
        raise AnsibleFilterError('borg filters need the result of selfhost.backup.databasebackup_contract '
                                 '(a dict with request and settings)')
    try:
        return _borg.plan(instance, contract['request'], contract['settings'], version, host, binary)
    except (_borg.BorgError, _provider.ProviderError, KeyError) as exc:
        raise AnsibleFilterError(f'borg_instances.{instance}.settings: {exc}') from exc


def _job(contract: t.Mapping[str, t.Any], instance: str, version: str, host: str, binary: str) -> dict[str, t.Any]:
    the_plan = _plan(contract, instance, version, host, binary)
    job = _provider.job_facts(the_plan.layout, contract, the_plan.timer, the_plan.credentials, the_plan.local_path)
    return job | {
        'ssh_key': the_plan.ssh_key,
        'ssh_key_comment': the_plan.layout.job_name,
        'known_hosts': the_plan.known_hosts,
        'known_hosts_file': the_plan.credentials.get('known_hosts'),
        'serve_path': the_plan.serve_path,
    }


def _contracts(contracts: t.Any) -> t.Mapping[str, t.Any]:
    if not isinstance(contracts, t.Mapping):
        raise AnsibleFilterError('borg filters need a dict: instance name -> result of databasebackup_contract')
    return contracts


def borg_jobs(contracts: t.Mapping[str, t.Any], version: str, host: str,
              binary: str = _borg.DEFAULT_BINARY) -> dict[str, dict[str, t.Any]]:
    """Per instance, what the role needs on the host, without a secret: backup_timer options, paths, SSH."""
    return {name: _job(contract, name, version, host, binary) for name, contract in sorted(_contracts(contracts).items())}


def borg_secret_files(contracts: t.Mapping[str, t.Any]) -> list[dict[str, str]]:
    """The secret files of the enabled instances, to write root-only: [{dest, content}]. Only in no_log tasks."""
    files = []
    for name, contract in sorted(_contracts(contracts).items()):
        if contract.get('settings', {}).get('enable', True):
            the_plan = _plan(contract, name, '1.2.0', 'unused', _borg.DEFAULT_BINARY)
            files += [{'dest': dest, 'content': content} for dest, content in the_plan.secret_files]
    return files


def borg_repository_checks(contracts: t.Mapping[str, t.Any], reinitialise: t.Sequence[str] = ()) -> list[dict[str, t.Any]]:
    """The ``repositories`` option of selfhost.backup.borg_repository for the enabled instances: the passphrase
    about to be written (or the passphrase file), the job's marker and SSH details. Holds secrets: only in no_log
    tasks."""
    if not isinstance(reinitialise, t.Sequence) or isinstance(reinitialise, str):
        raise AnsibleFilterError('reinitialise must be a list of instance names')
    checks = []
    for name, contract in sorted(_contracts(contracts).items()):
        if not contract.get('settings', {}).get('enable', True):
            continue
        the_plan = _plan(contract, name, '1.2.0', 'unused', _borg.DEFAULT_BINARY)
        contents = dict(the_plan.secret_files)
        repository = contract['settings']['repository']
        check = {'name': name, 'user': contract['request']['user'],
                 'repository': repository.get('path') or repository['url'],
                 'marker': f'{_borg.CACHE_ROOT}/{the_plan.layout.job_name}/{_borg.INIT_MARKER}',
                 'password_file': the_plan.credentials['passphrase'], 'reinitialise': name in reinitialise}
        if the_plan.credentials['passphrase'] in contents:
            check['passphrase'] = contents[the_plan.credentials['passphrase']]
        if the_plan.ssh_key:
            check['ssh_key'] = the_plan.ssh_key
            check['known_hosts'] = the_plan.known_hosts
        checks.append(check)
    return checks


def borg_known_hosts_files(jobs: t.Any) -> list[dict[str, str]]:
    """The pinned host keys of the enabled instances' remote servers, as secret files [{dest, content}]: like
    the secrets, root-only files that a job loads as a credential."""
    if not isinstance(jobs, t.Mapping):
        raise AnsibleFilterError('borg_known_hosts_files needs the result of borg_jobs: instance name -> job')
    return [{'dest': job['known_hosts_file'], 'content': job['known_hosts']}
            for dummy, job in sorted(jobs.items()) if job.get('enable', True) and job.get('known_hosts_file')]


def borg_authorized_keys(public_key: str, path: str, append_only: bool = True) -> str:
    """The authorized_keys line of the server for one job's public key."""
    return _borg.authorized_keys_line(public_key, path, append_only)


def borg_ssh_keys(slurped: t.Sequence[t.Mapping[str, t.Any]], jobs: t.Mapping[str, t.Any]) -> dict[str, dict[str, str]]:
    """Per instance with a remote repository: its public key, the server path and the authorized_keys line.

    ``slurped`` are the results of ``ansible.builtin.slurp`` looped over ``jobs | dict2items`` (``item.key``).
    """
    keys = {}
    for result in slurped or []:
        if 'content' not in result:
            continue  # check mode on a fresh host: the key does not exist yet
        name = result['item']['key']
        public_key = base64.b64decode(result['content']).decode('ascii').strip()
        serve_path = jobs[name]['serve_path']
        keys[name] = {'public_key': public_key, 'serve_path': serve_path,
                      'authorized_keys': _borg.authorized_keys_line(public_key, serve_path)}
    return keys


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {
            'borg_jobs': borg_jobs,
            'borg_secret_files': borg_secret_files,
            'borg_known_hosts_files': borg_known_hosts_files,
            'borg_repository_checks': borg_repository_checks,
            'borg_authorized_keys': borg_authorized_keys,
            'borg_ssh_keys': borg_ssh_keys,
        }
