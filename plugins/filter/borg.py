# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The authorized_keys line of a borg job's key on its server (roles/borg/README.md shows where to use it)."""

from __future__ import annotations

import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _borg_ssh


def borg_authorized_keys(public_key: str, path: str, append_only: bool = True) -> str:
    """The authorized_keys line of the server for one job's public key."""
    return _borg_ssh.authorized_keys_line(public_key, path, append_only)


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'borg_authorized_keys': borg_authorized_keys}
