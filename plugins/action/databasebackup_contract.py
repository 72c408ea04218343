# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Validate a database backup contract request (and provider settings) on the controller only."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleActionFail
from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract
from ansible_collections.selfhost.backup.plugins.plugin_utils._controller_action import ControllerAction

ARGUMENT_SPEC = {
    'request': {'type': 'dict', 'required': True},
    'settings': {'type': 'dict'},
    'provider': {'type': 'str'},
    'settings_schema': {'type': 'dict'},
    'name': {'type': 'str'},
}
MUTUALLY_EXCLUSIVE = [('provider', 'settings_schema')]


class ActionModule(ControllerAction):

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE)
        try:
            request, settings = self._validate(args)
        except _contract.ContractError as exc:
            raise AnsibleActionFail(str(exc)) from exc
        except _contract.ContractViolation as exc:
            result.update(failed=True, changed=False, violations=exc.violations,
                          msg=f'The database backup contract is broken ({len(exc.violations)} violations):\n{exc}')
            return result
        result.update(changed=False, request=request, settings=settings)
        return result

    @staticmethod
    def _settings_schema(args: dict[str, t.Any]) -> dict[str, t.Any] | None:
        if args['provider'] is not None:
            return _contract.load_provider_schema(args['provider'])
        if args['settings_schema'] is not None:
            _contract.check_schema(args['settings_schema'])
            return args['settings_schema']
        return None

    def _validate(self, args: dict[str, t.Any]) -> tuple[dict[str, t.Any], dict[str, t.Any] | None]:
        """Validate both parts before failing so that one run reports every violation."""
        violations: list[str] = []
        request: dict[str, t.Any] = {}  # the validated request, or a violation below
        try:
            request = _contract.validate_request(args['request'], args['name'])
        except _contract.ContractViolation as exc:
            violations.extend(exc.violations)
        settings = args['settings']
        schema = self._settings_schema(args)
        if schema is not None:
            try:
                settings = _contract.validate_settings(settings if settings is not None else {}, schema, args['name'])
            except _contract.ContractViolation as exc:
                violations.extend(exc.violations)
        if violations:
            raise _contract.ContractViolation(violations)
        return request, settings
