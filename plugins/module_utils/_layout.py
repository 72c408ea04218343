# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Names and paths of one instance of a backup provider (restic, borg) on the host, and the error every provider
raises when an instance cannot become a safe job. Pure, no I/O.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re


SECRETS_ROOT = '/etc/selfhost-backup'
SCRIPT_DIR = '/usr/local/bin'
STATE_DIR = '/var/lib/selfhost-backup'
INSTANCE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')

# Directories the converge must never create, chown or chmod, nor any parent of them: with one of them as a
# repository the request's user would own a part of the system (``/etc``, ``/usr/local/bin``, ``/``). Nor may
# selfhost.backup.job_paths' prune.subdirectories_of name one of them (that would be rm -rf of /etc/ssh, ...).
SYSTEM_DIRECTORIES = frozenset({
    '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64', '/libx32', '/media', '/mnt', '/opt',
    '/proc', '/root', '/run', '/sbin', '/srv', '/sys', '/tmp', '/usr', '/usr/bin', '/usr/lib', '/usr/local',
    '/usr/local/bin', '/usr/local/lib', '/usr/local/sbin', '/usr/sbin', '/usr/share', '/var', '/var/backups',
    '/var/cache', '/var/lib', '/var/local', '/var/log', '/var/mail', '/var/opt', '/var/spool', '/var/tmp',
})


class ProviderError(ValueError):
    """An instance cannot be turned into a safe job."""


def job_prefix(provider: str) -> str:
    """What the names of every job of ``provider`` start with: its family, for backup_jobs' prune option."""
    return f'{provider}-backup-'


def drill_prefix(provider: str) -> str:
    """What the names of every restore drill job of ``provider`` start with, for backup_jobs' prune option."""
    return f'{provider}-drill-'


@dataclasses.dataclass(frozen=True)
class Layout:
    """Names and paths of one instance of one provider on the host."""

    provider: str
    instance: str

    def __post_init__(self) -> None:
        if not INSTANCE_NAME.fullmatch(self.instance):
            raise ProviderError(f'instance name {self.instance!r} does not match {INSTANCE_NAME.pattern!r}')

    @property
    def job_name(self) -> str:
        return f'{job_prefix(self.provider)}{self.instance}'

    @property
    def backup_service(self) -> str:
        return f'{self.job_name}.service'

    @property
    def drill_job_name(self) -> str:
        """The restore drill's job: its own service and timer, beside the backup's."""
        return f'{drill_prefix(self.provider)}{self.instance}'

    @property
    def drill_service(self) -> str:
        return f'{self.drill_job_name}.service'

    @property
    def restore_script(self) -> str:
        return f'{self.provider}-restore-{self.instance}'

    @property
    def script_path(self) -> str:
        return posixpath.join(SCRIPT_DIR, self.restore_script)

    @property
    def secrets_dir(self) -> str:
        """Root-only (0700) directory of this instance's secret files (each 0600)."""
        return posixpath.join(SECRETS_ROOT, self.provider, self.instance)

    def secret_path(self, credential: str) -> str:
        return posixpath.join(self.secrets_dir, credential)
