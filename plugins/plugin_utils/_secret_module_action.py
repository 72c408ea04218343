# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The base of the actions that run a host module of the same name on secrets, in one task.

A task with no_log hides a failure's message too, so the roles used to register such a module's result under
no_log and show its message in a second task. This action does both: the module runs on the host with no_log (it
logs nothing to the host's journal; an option-level no_log masks a secret only where it appears verbatim), a
success is returned with ``_ansible_no_log`` (its result may hold secrets), and a failure is returned as its
message alone, which the modules write without any secret.
"""

from __future__ import annotations

import typing as t

from ansible.plugins.action import ActionBase


class SecretModuleAction(ActionBase):
    """Run ``MODULE`` with the task's arguments; mask a success that holds secrets, show a failure's message."""

    MODULE = ''
    _secret = False
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def holds_secrets(self, args: dict[str, t.Any]) -> bool:
        """Whether this call passes or returns secrets (then the module and its success are no_log)."""
        del args
        return True

    def failure_message(self, args: dict[str, t.Any], msg: str) -> str:
        """The message a failure shows (the module's own by default)."""
        del args
        return msg

    def _update_module_args(self, module_name: str, module_args: dict[str, t.Any], task_vars: dict[str, t.Any],
                            ignore_unknown_opts: bool = False) -> None:
        super()._update_module_args(module_name, module_args, task_vars, ignore_unknown_opts=ignore_unknown_opts)
        if self._secret:
            module_args['_ansible_no_log'] = True

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        self._secret = self.holds_secrets(args)
        try:
            module = self._execute_module(module_name=self.MODULE, module_args=args, task_vars=task_vars)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        if module.get('failed'):
            # The message alone: the rest of a failed result may hold what the module was given.
            msg = self.failure_message(args, module.get('msg') or f'{self.MODULE} failed')
            result.update(failed=True, changed=False, msg=msg)
            return result
        result.update(module)
        if self._secret:
            result['_ansible_no_log'] = True
        return result
