# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run the job_paths module; with secret_files no_log, and a failure shows its message (see _secret_module_action)."""

from __future__ import annotations

import typing as t

from ansible_collections.selfhost.backup.plugins.modules import job_paths as host_module
from ansible_collections.selfhost.backup.plugins.plugin_utils._secret_module_action import SecretModuleAction


class ActionModule(SecretModuleAction):

    MODULE = 'selfhost.backup.job_paths'
    ARGUMENT_SPEC = host_module.ARGUMENT_SPEC

    def holds_secrets(self, args: dict[str, t.Any]) -> bool:
        return bool(args.get('secret_files'))
