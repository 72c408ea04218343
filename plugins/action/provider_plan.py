# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Plan every host step of one provider on the controller (see plugin_utils/_plan.py)."""

from __future__ import annotations

import typing as t

from ansible_collections.selfhost.backup.plugins.plugin_utils import _plan
from ansible_collections.selfhost.backup.plugins.plugin_utils._controller_action import ControllerAction

ARGUMENT_SPEC = {
    'provider': {'type': 'str', 'required': True, 'choices': sorted(_plan.UNINSTALLED_VERSION)},
    'instances': {'type': 'dict', 'required': True},
    'version': {'type': 'str', 'default': ''},
    'binary': {'type': 'str'},
    'host': {'type': 'str'},
    'reinitialise': {'type': 'list', 'elements': 'str', 'default': []},
    'servers': {'type': 'dict', 'default': {}},
}


class ActionModule(ControllerAction):

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        host = args['host'] or (task_vars or {}).get('inventory_hostname', '')
        try:
            planned = _plan.plan(args['provider'], args['instances'], args['version'], host, args['binary'],
                                 args['reinitialise'], args['servers'])
        except _plan.PlanError as exc:
            # The message alone (it never quotes a secret), shown as the task's failure.
            result.update(failed=True, changed=False, msg=str(exc))
            return result
        # The plan holds the secrets about to be written: the success is no_log, without a no_log on the task
        # that would hide a failure's message too.
        result.update(changed=False, _ansible_no_log=True, **planned)
        return result
