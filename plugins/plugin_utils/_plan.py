# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The plan of one provider on one host (selfhost.backup.provider_plan): everything the provider role's host steps
need, computed once on the controller from the instances that selfhost.backup.provider_instances validated.

The data flow: contract -> provider_instances (validation) -> provider_plan (this) -> the host modules
(restic_repository / borg_repository, job_paths, backup_jobs). Per instance ``_restic.plan`` or ``_borg.plan``
make the job (its backup_jobs options, with the restore script's data, and its secret files); this module
gathers them into the options of each host step. Pure functions, no I/O.
"""

from __future__ import annotations

import posixpath
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _borg, _layout, _monitoring, _restic
from ansible_collections.selfhost.backup.plugins.module_utils._backup_job import JOB_SPEC
from ansible_collections.selfhost.backup.plugins.plugin_utils import _servers

ROOT_ONLY = {'owner': 'root', 'group': 'root', 'mode': '0700'}
# The version planned with where the tool is not installed yet (check mode on a fresh host): its oldest command
# lines. A real run reads the installed tool's version first.
UNINSTALLED_VERSION = {'restic': 'restic 0.0.0', 'borg': 'borg 1.2.0'}


class PlanError(ValueError):
    """An instance that passed validation cannot be planned (a tool version below what the jobs need)."""


def _plan_instance(provider: str, name: str, valid: t.Mapping[str, t.Any], version: str, host: str,
                   binary: str | None) -> t.Any:
    try:
        if provider == 'restic':
            return _restic.plan(name, valid['request'], valid['settings'], version, host,
                                binary or _restic.DEFAULT_BINARY)
        return _borg.plan(name, valid['request'], valid['settings'], version, host, binary or _borg.DEFAULT_BINARY)
    except (_layout.ProviderError, _restic.ResticError, _borg.BorgError) as exc:
        raise PlanError(f'{provider}_instances.{name}.settings: {exc}') from exc


def _directories(provider: str, jobs: t.Sequence[tuple[t.Any, t.Mapping[str, t.Any]]]) -> list[dict[str, str]]:
    """In order: the parents of the local repositories, created root-owned with the default mode only when
    missing (a repository's owner and 0700 on a shared parent would lock the other users out of theirs); the
    repositories, owned by the request's user, 0700; the root-only secrets directories."""
    local = [(plan.local_path, valid['request']['user']) for plan, valid in jobs if plan.local_path]
    parents = [{'path': posixpath.dirname(path)} for path, dummy in local]
    repositories = [{'path': path, 'owner': user, 'mode': '0700'} for path, user in local]
    secrets = [_layout.SECRETS_ROOT, posixpath.join(_layout.SECRETS_ROOT, provider)]
    secrets += [plan.layout.secrets_dir for plan, dummy in jobs]
    wanted = parents + repositories + [{'path': path} | ROOT_ONLY for path in secrets]
    # Two instances on one repository name it twice; once is enough.
    return [dict(entry) for entry in dict.fromkeys(tuple(sorted(entry.items())) for entry in wanted)]


def _restic_steps(plans: t.Mapping[str, t.Any], valid: t.Mapping[str, t.Mapping[str, t.Any]],
                  reinitialise: t.Collection[str]) -> dict[str, t.Any]:
    """restic_repository's options: the checks with the secrets about to be written (init: false), and the
    repositories to initialise where the check found none (paths only)."""
    checks, repositories = [], []
    for name, plan in plans.items():
        contents = dict(plan.secret_files)
        password_file = plan.credentials['passphrase']
        environment = {env: contents[path] for env, path in plan.env_files.items()}
        check = {'name': name, 'user': valid[name]['request']['user'], 'password_file': password_file,
                 'environment_files': {}, 'environment': environment, 'reinitialise': name in reinitialise}
        if plan.local_path:
            # No secret: given as such, so that the messages name it.
            check['repository'] = environment.pop('RESTIC_REPOSITORY')
        if password_file in contents:
            check['passphrase'] = contents[password_file]
        repository = {'name': name, 'user': valid[name]['request']['user'], 'password_file': password_file,
                      'environment_files': dict(plan.env_files), 'reinitialise': name in reinitialise}
        cacert = valid[name]['settings'].get('cacert')
        if cacert:
            check['cacert'] = repository['cacert'] = cacert
        checks.append(check)
        repositories.append(repository)
    return {'repository_checks': checks, 'repositories': repositories}


def _borg_steps(plans: t.Mapping[str, t.Any], valid: t.Mapping[str, t.Mapping[str, t.Any]],
                reinitialise: t.Collection[str]) -> dict[str, t.Any]:
    """borg_repository's checks (the passphrase about to be written, the job's marker, the SSH details), the SSH
    keys to generate for remote repositories, and the pinned host keys, written like the secrets."""
    checks, ssh_keys, known_hosts = [], [], []
    for name, plan in plans.items():
        contents = dict(plan.secret_files)
        repository = valid[name]['settings']['repository']
        check = {'name': name, 'user': valid[name]['request']['user'],
                 'repository': repository.get('path') or repository['url'],
                 'marker': f'{_borg.CACHE_ROOT}/{plan.layout.job_name}/{_borg.INIT_MARKER}',
                 'password_file': plan.credentials['passphrase'], 'reinitialise': name in reinitialise}
        if plan.credentials['passphrase'] in contents:
            check['passphrase'] = contents[plan.credentials['passphrase']]
        if plan.ssh_key:
            check['ssh_key'] = plan.ssh_key
            check['known_hosts'] = plan.known_hosts
            ssh_keys.append({'name': name, 'path': plan.ssh_key, 'comment': plan.layout.job_name,
                             'serve_path': plan.serve_path})
            known_hosts.append({'dest': plan.credentials['known_hosts'], 'content': plan.known_hosts})
        checks.append(check)
    return {'repository_checks': checks, 'ssh_keys': ssh_keys, 'known_hosts_files': known_hosts}


def _result(planned: t.Any) -> dict[str, str]:
    """The contract's result of one instance; drill_service only while its drill is enabled."""
    result = {'backup_service': planned.layout.backup_service, 'restore_script': planned.layout.restore_script}
    if planned.drill:
        result['drill_service'] = planned.layout.drill_service
    return result


def plan(provider: str, instances: t.Mapping[str, t.Mapping[str, t.Any]], version: str, host: str,
         binary: str | None = None, reinitialise: t.Collection[str] = (),
         servers: t.Mapping[str, t.Mapping[str, t.Any]] | None = None) -> dict[str, t.Any]:
    """Everything the host steps of ``provider`` need for its validated ``instances`` (request and settings with
    the defaults filled in), planned for the installed ``version`` of the tool.

    ``servers`` (name -> what the role read of each backup server the instances name, see _servers) turns the
    server repositories into URLs first; ``server_registrations`` says what each such instance needs on its server.

    The result holds secrets (``secret_files``, ``repository_checks``): register it with no_log.
    """
    if provider not in UNINSTALLED_VERSION:
        raise PlanError(f'unknown provider {provider!r} (known: {", ".join(sorted(UNINSTALLED_VERSION))})')
    try:
        instances, registrations = _servers.resolve(provider, instances, host, servers or {})
    except _servers.ServerError as exc:
        raise PlanError(str(exc)) from exc
    version = version or UNINSTALLED_VERSION[provider]
    plans = {name: _plan_instance(provider, name, valid, version, host, binary) for name, valid in sorted(instances.items())}
    enabled = [name for name in plans if instances[name]['settings'].get('enable', True)]
    jobs = [(plans[name], instances[name]) for name in enabled]
    steps = (_restic_steps if provider == 'restic' else _borg_steps)(
        {name: plans[name] for name in enabled}, instances, frozenset(reinitialise))
    secret_files = [{'dest': dest, 'content': content} for plan_, dummy in jobs for dest, content in plan_.secret_files]
    secret_files += steps.pop('known_hosts_files', [])
    monitoring = [_monitoring.monitoring(plan_.layout, valid['settings']) for plan_, valid in jobs]
    # Pruning keeps every credential, the root-only ping URLs and the public halves of the SSH keys.
    keep = [path for plan_, dummy in jobs for path in plan_.credentials.values()]
    keep += [watch.ping_url_file for watch in monitoring if watch.ping_url_file]
    keep += [f'{key["path"]}.pub' for key in steps.get('ssh_keys', [])]
    for registration in registrations:
        # The client's side of the registration: its passphrase (restic: to add the server's key; borg: the
        # server's copy) and, for borg, the job's SSH key whose public half the server authorizes.
        planned = plans[registration['instance']]
        registration['client_password_file'] = planned.credentials['passphrase']
        if provider == 'borg':
            registration['ssh_key'] = planned.ssh_key
            # The comment ssh-keygen gives the key (tasks/main.yml) and the server's line carries: the line is
            # built and found by this planned comment, never by the one in the client's .pub file.
            registration['key_comment'] = f'{planned.layout.job_name}@{host}'
    return {
        'instances': list(plans),
        'enabled': enabled,
        'disabled': [name for name in plans if name not in enabled],
        'users': sorted({valid['request']['user'] for dummy, valid in jobs}),
        'pings': any(watch.ping_url_file for watch in monitoring),
        'job_paths': {'directories': _directories(provider, jobs),
                      'prune': {'directories': list(dict.fromkeys(plan_.layout.secrets_dir for plan_, dummy in jobs)),
                                'keep': list(dict.fromkeys(keep))}},
        # After the jobs (a failure before leaves a removed instance whole): the secrets directories of the
        # instances no longer enabled go with everything in them; those of the enabled ones stay.
        'gone_secrets': {'directories': [{'path': plan_.layout.secrets_dir} for plan_, dummy in jobs],
                         'prune': {'subdirectories_of': [posixpath.join(_layout.SECRETS_ROOT, provider)]}},
        'secret_files': secret_files,
        # The jobs of the enabled instances; every other installed job of this provider goes.
        # The jobs of the enabled instances and their enabled drills; every other installed backup or drill job of
        # this provider goes (a drill that was disabled, an instance that was disabled or dropped).
        'backup_jobs': {'jobs': [{key: value for key, value in options.items() if key in JOB_SPEC}
                                 for plan_, dummy in jobs for options in (plan_.timer, plan_.drill) if options],
                        'prune': [_layout.job_prefix(provider), _layout.drill_prefix(provider)]},
        'results': {plan_.layout.instance: _result(plan_) for plan_, dummy in jobs},
        'ssh_keys': [],
        'repositories': [],
        'server_registrations': registrations,
        **steps,
    }
