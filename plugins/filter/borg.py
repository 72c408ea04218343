# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The authorized_keys line of a borg job's key on its server (roles/borg/README.md shows where to use it), and
the line the borg role writes on a selfhost.backup.backup_server host."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError
from ansible_collections.selfhost.backup.plugins.module_utils import _borg_ssh


def borg_authorized_keys(public_key: str, path: str, append_only: bool = True) -> str:
    """The authorized_keys line of the server for one job's public key."""
    try:
        return _borg_ssh.authorized_keys_line(public_key, path, append_only)
    except _borg_ssh.SshError as exc:
        raise AnsibleFilterError(f"borg_authorized_keys: {exc}") from None


def borg_server_authorized_keys(content: str, options: str, comment: str, source: str = 'the public key') -> str:
    """A backup server's authorized_keys line of one job: its options, the key of the job's ``.pub`` file (exactly
    one ``ssh-ed25519`` line, else an error naming ``source``) and the planned comment."""
    try:
        return _borg_ssh.server_job_line(options, content, comment)
    except _borg_ssh.SshError as exc:
        raise AnsibleFilterError(f'{source}: {exc}; nothing was written to the server (if this host may be '
                                 'compromised, check it before you remove the file for a new key)') from None


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'borg_authorized_keys': borg_authorized_keys,
                'borg_server_authorized_keys': borg_server_authorized_keys}
