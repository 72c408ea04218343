# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run the restic_repository module; its check (init=false) under no_log, a failure showing its message."""

from __future__ import annotations

import typing as t

from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.selfhost.backup.plugins.modules import restic_repository as host_module
from ansible_collections.selfhost.backup.plugins.plugin_utils._secret_module_action import SecretModuleAction

UNCHANGED = 'Nothing on this host was changed: the installed secrets, units and restore scripts stay as they are.'


class ActionModule(SecretModuleAction):

    MODULE = 'selfhost.backup.restic_repository'
    ARGUMENT_SPEC = host_module.ARGUMENT_SPEC

    def holds_secrets(self, args: dict[str, t.Any]) -> bool:
        # The check runs with the new secrets, before the role writes them; init reads them from their files.
        return not boolean(args.get('init', True), strict=False)

    def failure_message(self, args: dict[str, t.Any], msg: str) -> str:
        return f'{msg} {UNCHANGED}' if self.holds_secrets(args) else msg
