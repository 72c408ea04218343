# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fail unless the host is a supported platform (see plugin_utils/_platform.py); the first task of every role."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.selfhost.backup.plugins.plugin_utils import _platform

ARGUMENT_SPEC = {
    'allow_untested': {'type': 'bool', 'default': False},
}
# The smallest fact subset that holds the distribution and the package manager.
GATHER_SUBSET = ['!all', 'min']


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        task_vars = task_vars or {}
        facts = task_vars.get('ansible_facts') or {}
        if any(name not in facts for name in _platform.FACTS):
            # A play with gather_facts: false: read the distribution from the host (it changes nothing).
            gathered = self._execute_module(module_name='ansible.legacy.setup',
                                            module_args={'gather_subset': GATHER_SUBSET}, task_vars=task_vars)
            if gathered.get('failed'):
                raise AnsibleActionFail(f"Could not read the host's platform: {gathered.get('msg', '')}")
            # The module's facts carry the prefix ansible_, which ansible_facts drops.
            facts = dict(facts, **{name.removeprefix('ansible_'): value
                                   for name, value in gathered.get('ansible_facts', {}).items()})
        verdict = _platform.verdict(facts, args['allow_untested'])
        result.update(changed=False, supported=verdict.supported,
                      platform={name: facts.get(name) for name in _platform.FACTS})
        if not verdict.allowed:
            result.update(failed=True, msg=verdict.message)
        elif verdict.message:
            result['warnings'] = result.get('warnings', []) + [verdict.message]
            result['msg'] = verdict.message
        else:
            result['msg'] = f"{facts['distribution']} {facts['distribution_version']} is supported."
        return result
