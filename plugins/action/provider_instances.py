# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Check every instance of one provider on the controller, before any host task (see plugin_utils/_instances.py)."""

from __future__ import annotations

import typing as t

from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract, _instances
from ansible_collections.selfhost.backup.plugins.plugin_utils._controller_action import ControllerAction

ARGUMENT_SPEC = {
    'provider': {'type': 'str', 'required': True, 'choices': sorted(_instances.PRECHECKS)},
    'instances': {'type': 'raw', 'required': True},
    'host': {'type': 'str'},
    'name': {'type': 'str'},
    'reinitialise': {'type': 'raw', 'default': []},
}


class ActionModule(ControllerAction):

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        host = args['host'] or (task_vars or {}).get('inventory_hostname', '')
        try:
            checked = _instances.check(args['provider'], args['instances'], host, args['name'], args['reinitialise'])
        except _contract.ContractError as exc:
            # Shown by the role's next task: the caller registers this result under no_log.
            result.update(failed=True, changed=False, violations=[str(exc)], msg=str(exc))
            return result
        result.update(changed=False, instances=checked.instances, calendars=checked.calendars,
                      violations=checked.violations)
        if checked.violations:
            result.update(failed=True, msg=f'{len(checked.violations)} violations:\n' + '\n'.join(checked.violations))
        return result
