# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters shared by every provider role (restic, borg); the logic is in module_utils/_provider.py."""

from __future__ import annotations

import posixpath
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.backup.plugins.module_utils import _provider
from ansible_collections.selfhost.backup.plugins.module_utils._backup_job import JOB_SPEC

ROOT_ONLY = {'owner': 'root', 'group': 'root', 'mode': '0700'}


def provider_stale_instances(manifests: t.Sequence[str], provider: str, wanted: t.Iterable[str]) -> list[str]:
    """Instances of ``provider`` with a backup_timer manifest on the host that are not among the wanted ones."""
    if not isinstance(provider, str) or not provider:
        raise AnsibleFilterError('provider_stale_instances needs the provider name, for example restic')
    found = (_provider.job_name_of_manifest(provider, path) for path in manifests)
    wanted_set = set(wanted)
    return sorted({name for name in found if name is not None and name not in wanted_set})


def provider_shared_repositories(jobs: t.Mapping[str, t.Mapping[str, t.Any]]) -> list[str]:
    """Local repositories shared by instances of different users (see _provider.local_repositories_shared_by_users)."""
    if not isinstance(jobs, t.Mapping):
        raise AnsibleFilterError('provider_shared_repositories needs the provider jobs: instance name -> job')
    return _provider.local_repositories_shared_by_users(jobs)


def _enabled_jobs(enabled: t.Any, name: str) -> list[t.Mapping[str, t.Any]]:
    if not isinstance(enabled, t.Sequence) or not all(isinstance(item, t.Mapping) and 'value' in item for item in enabled):
        raise AnsibleFilterError(f'{name} needs the enabled jobs as dict2items gives them: [{{key, value}}]')
    return [item['value'] for item in enabled]


def _directories(jobs: t.Sequence[t.Mapping[str, t.Any]], provider: str) -> list[dict[str, str]]:
    """In order: the parents of the local repositories, created root-owned with the default mode only when
    missing (a repository's owner and 0700 on a shared parent would lock the other users out of theirs); the
    repositories, owned by the request's user, 0700; the root-only secrets directories."""
    local = [job for job in jobs if job.get('local_path')]
    parents = [{'path': posixpath.dirname(job['local_path'])} for job in local]
    repositories = [{'path': job['local_path'], 'owner': job['user'], 'mode': '0700'} for job in local]
    secrets = [_provider.SECRETS_ROOT, posixpath.join(_provider.SECRETS_ROOT, provider)] + [job['secrets_dir'] for job in jobs]
    wanted = parents + repositories + [{'path': path} | ROOT_ONLY for path in secrets]
    # Two instances on one repository name it twice; once is enough.
    return [dict(entry) for entry in dict.fromkeys(tuple(sorted(entry.items())) for entry in wanted)]


def provider_job_paths(enabled: t.Any, provider: str, keep: t.Sequence[str] = ()) -> dict[str, t.Any]:
    """The directories and pruning options of selfhost.backup.job_paths for the enabled instances.

    Pruning keeps every credential, the root-only secrets (the ping URL) and ``keep`` (the provider's extra
    files, for example the public halves of SSH keys).
    """
    if not isinstance(provider, str) or not provider:
        raise AnsibleFilterError('provider_job_paths needs the provider name, for example restic')
    jobs = _enabled_jobs(enabled, 'provider_job_paths')
    wanted = [path for job in jobs for path in job['credentials'].values()]
    wanted += [path for job in jobs for path in job.get('root_secrets') or []]
    return {
        'directories': _directories(jobs, provider),
        'prune': {'directories': list(dict.fromkeys(job['secrets_dir'] for job in jobs)),
                  'keep': list(dict.fromkeys(wanted + list(keep or [])))},
    }


def provider_timer_jobs(enabled: t.Any) -> list[dict[str, t.Any]]:
    """The ``jobs`` option of selfhost.backup.backup_timer: each enabled instance's timer options, restricted to
    the options a job takes (job facts may carry more than the module knows)."""
    jobs = _enabled_jobs(enabled, 'provider_timer_jobs')
    return [{key: value for key, value in job['timer'].items() if key in JOB_SPEC} for job in jobs]


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'provider_stale_instances': provider_stale_instances,
                'provider_shared_repositories': provider_shared_repositories,
                'provider_job_paths': provider_job_paths,
                'provider_timer_jobs': provider_timer_jobs}
