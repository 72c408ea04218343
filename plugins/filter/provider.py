# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters shared by every provider role (restic, borg); the logic is in module_utils/_provider.py."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.backup.plugins.module_utils import _provider


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


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'provider_stale_instances': provider_stale_instances,
                'provider_shared_repositories': provider_shared_repositories}
