# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run the borg_repository module under no_log; a failure shows its message (see _secret_module_action)."""

from __future__ import annotations

import typing as t

from ansible_collections.selfhost.backup.plugins.modules import borg_repository as host_module
from ansible_collections.selfhost.backup.plugins.plugin_utils._secret_module_action import SecretModuleAction

UNCHANGED = 'Nothing on this host was changed: the installed secrets, units and restore scripts stay as they are.'


class ActionModule(SecretModuleAction):

    MODULE = 'selfhost.backup.borg_repository'
    ARGUMENT_SPEC = host_module.ARGUMENT_SPEC

    def failure_message(self, args: dict[str, t.Any], msg: str) -> str:
        # The role checks the repositories before it replaces anything.
        return f'{msg} {UNCHANGED}'
