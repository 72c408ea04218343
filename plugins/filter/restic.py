# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Turn a validated restic instance into the options of selfhost.backup.backup_timer (and its secret files).

The logic is in module_utils/_restic.py and module_utils/_provider.py; these filters only adapt it to Jinja.
"""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.backup.plugins.module_utils import _provider, _restic


def _plan(contract: t.Mapping[str, t.Any], instance: str, version: str, host: str, binary: str) -> _restic.Plan:
    if not isinstance(contract, t.Mapping) or 'request' not in contract or 'settings' not in contract:
        raise AnsibleFilterError('restic filters need the result of selfhost.backup.databasebackup_contract '
                                 '(a dict with request and settings)')
    try:
        return _restic.plan(instance, contract['request'], contract['settings'], version, host, binary)
    except (_restic.ResticError, _provider.ProviderError, KeyError) as exc:
        raise AnsibleFilterError(f'restic instance {instance}: {exc}') from exc


def _job(contract: t.Mapping[str, t.Any], instance: str, version: str, host: str, binary: str) -> dict[str, t.Any]:
    the_plan = _plan(contract, instance, version, host, binary)
    job = _provider.job_facts(the_plan.layout, contract, the_plan.timer, the_plan.credentials, the_plan.local_path)
    job['env_files'] = the_plan.env_files
    return job


def _contracts(contracts: t.Any) -> t.Mapping[str, t.Any]:
    if not isinstance(contracts, t.Mapping):
        raise AnsibleFilterError('restic filters need a dict: instance name -> result of databasebackup_contract')
    return contracts


def restic_jobs(contracts: t.Mapping[str, t.Any], version: str, host: str,
                binary: str = _restic.DEFAULT_BINARY) -> dict[str, dict[str, t.Any]]:
    """Per instance, what the role needs on the host, without a secret: backup_timer options and paths."""
    return {name: _job(contract, name, version, host, binary) for name, contract in sorted(_contracts(contracts).items())}


def restic_secret_files(contracts: t.Mapping[str, t.Any]) -> list[dict[str, str]]:
    """The secret files of the enabled instances, to write root-only: [{dest, content}]. Only in no_log tasks."""
    files = []
    for name, contract in sorted(_contracts(contracts).items()):
        if contract.get('settings', {}).get('enable', True):
            the_plan = _plan(contract, name, '0.0.0', 'unused', _restic.DEFAULT_BINARY)
            files += [{'dest': dest, 'content': content} for dest, content in the_plan.secret_files]
    return files


def _names(names: t.Any, what: str) -> frozenset[str]:
    if not isinstance(names, t.Sequence) or isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise AnsibleFilterError(f'{what} must be a list of instance names')
    return frozenset(names)


def restic_repositories(enabled: t.Any, reinitialise: t.Sequence[str] = (),
                        skip: t.Sequence[str] = ()) -> list[dict[str, t.Any]]:
    """The ``repositories`` option of selfhost.backup.restic_repository for the enabled instances, given as
    dict2items gives the restic_jobs result: [{key, value}], without the instances in ``skip`` (found present
    by the check before). Paths only, no secret."""
    if not isinstance(enabled, t.Sequence) or not all(isinstance(item, t.Mapping) and 'value' in item for item in enabled):
        raise AnsibleFilterError('restic_repositories needs the enabled restic jobs as dict2items gives them')
    again, present = _names(reinitialise, 'reinitialise'), _names(skip, 'skip')
    return [{'name': item['key'], 'user': item['value']['user'],
             'password_file': item['value']['credentials']['passphrase'],
             'environment_files': dict(item['value']['env_files']), 'reinitialise': item['key'] in again}
            for item in enabled if item['key'] not in present]


def restic_repository_checks(contracts: t.Mapping[str, t.Any], reinitialise: t.Sequence[str] = ()) -> list[dict[str, t.Any]]:
    """The ``repositories`` option of selfhost.backup.restic_repository with ``init: false`` for the enabled
    instances: the passphrase and environment secrets about to be written, to check them before they are.
    Holds secrets: only in no_log tasks."""
    again = _names(reinitialise, 'reinitialise')
    checks = []
    for name, contract in sorted(_contracts(contracts).items()):
        if not contract.get('settings', {}).get('enable', True):
            continue
        the_plan = _plan(contract, name, '0.0.0', 'unused', _restic.DEFAULT_BINARY)
        contents = dict(the_plan.secret_files)
        password_file = the_plan.credentials['passphrase']
        environment = {env: contents[path] for env, path in the_plan.env_files.items()}
        check = {'name': name, 'user': contract['request']['user'], 'password_file': password_file,
                 'environment_files': {}, 'environment': environment, 'reinitialise': name in again}
        if the_plan.local_path:
            # No secret: given as such, so that the messages name it.
            check['repository'] = environment.pop('RESTIC_REPOSITORY')
        if password_file in contents:
            check['passphrase'] = contents[password_file]
        checks.append(check)
    return checks


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {
            'restic_jobs': restic_jobs,
            'restic_secret_files': restic_secret_files,
            'restic_repositories': restic_repositories,
            'restic_repository_checks': restic_repository_checks,
        }
