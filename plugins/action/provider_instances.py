# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Check every instance of one provider before any change (see plugin_utils/_instances.py).

On the controller: names, contracts, the provider's own rules, units two instances would share. With check_host,
two reads on the host follow: the calendars as the host's own systemd reads them (versions differ), and the
installed instances when the instances dict is empty (an empty or misspelt dict never uninstalls). A success holds
the instances' secrets and is returned no_log; a failure is its message alone, which never quotes a secret.
"""

from __future__ import annotations

import json
import re
import shlex
import typing as t

from ansible.errors import AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract, _instances, _servers

ARGUMENT_SPEC = {
    'provider': {'type': 'str', 'required': True, 'choices': sorted(_instances.PRECHECKS)},
    'instances': {'type': 'raw', 'required': True},
    'host': {'type': 'str'},
    'name': {'type': 'str'},
    'reinitialise': {'type': 'raw', 'default': []},
    'check_host': {'type': 'bool', 'default': False},
    'remove_unlisted': {'type': 'raw', 'default': False},
}
MANIFESTS = '/var/lib/selfhost-backup'
SECRETS = '/etc/selfhost-backup'


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True  # it only reads, in check mode too
    _supports_async = False

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        task_vars = task_vars or {}
        host = args['host'] or task_vars.get('inventory_hostname', '')
        try:
            checked = _instances.check(args['provider'], args['instances'], host, args['name'], args['reinitialise'])
        except _contract.ContractError as exc:
            result.update(failed=True, changed=False, violations=[str(exc)], msg=str(exc))
            return result
        if checked.violations:
            # Without the instances: the rest of the result holds their secrets.
            result.update(failed=True, changed=False, violations=checked.violations,
                          msg='\n'.join(checked.violations))
            return result
        # A backup server that dropped this host (its backup_server_clients): refused before any change, so that
        # this host does not register itself there again.
        try:
            refusal = _servers.unlisted_refusal(args['provider'], checked.instances, host,
                                                self._server_clients(checked.instances, task_vars))
        except AnsibleError as exc:
            refusal = f'{args["provider"]}_instances: {exc}'
        if refusal:
            result.update(failed=True, changed=False, violations=[refusal], msg=refusal)
            return result
        if args['check_host']:
            try:
                refusal = self._calendar_refusal(checked.calendars)
                if not refusal and not checked.instances and not boolean(args['remove_unlisted'], strict=False):
                    refusal = self._uninstall_refusal(args['provider'], task_vars)
            finally:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            if refusal:
                result.update(failed=True, changed=False, violations=[], msg=refusal)
                return result
        # The instances hold secrets: the success is no_log, without a no_log on the task that would hide a
        # failure's message too.
        result.update(changed=False, instances=checked.instances, calendars=checked.calendars,
                      violations=checked.violations, _ansible_no_log=True)
        return result

    @staticmethod
    def _server_clients(instances: t.Mapping[str, t.Any], task_vars: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        """backup_server_clients of each backup server the instances name, as this host sees the server's host
        variables (None when the server does not set it or is not in the inventory); AnsibleError when it cannot be
        templated."""
        hostvars = task_vars.get('hostvars') or {}
        found: dict[str, t.Any] = {}
        for valid in instances.values():
            name = _servers.server_name(valid['settings'])
            if not name or name in found:
                continue
            found[name] = None
            if name in hostvars and 'backup_server_clients' in hostvars[name]:
                try:
                    found[name] = hostvars[name]['backup_server_clients']
                except AnsibleError as exc:
                    raise AnsibleError(f'backup_server_clients of server {name} cannot be read: {exc}') from None
        return found

    def _calendar_refusal(self, calendars: dict[str, list[str]]) -> str:
        """Why the host's systemd refuses a calendar expression, or ''."""
        if not calendars:
            return ''
        ran = self._low_level_execute_command(shlex.join(['systemd-analyze', 'calendar', '--', *calendars]))
        if ran.get('rc') == 0:
            return ''
        stderr = ran.get('stderr', '')
        refused = [f"{', '.join(paths)}: {json.dumps(expression)} is not a systemd calendar expression on this "
                   'host (rule: systemd-analyze calendar).'
                   for expression, paths in calendars.items() if f"specification '{expression}'" in stderr]
        return ' '.join(refused) or f'systemd-analyze calendar failed: {stderr.strip()}'

    def _uninstall_refusal(self, provider: str, task_vars: dict[str, t.Any]) -> str:
        """Why an empty instances dict may not run on this host (it has instances installed), or ''.

        Installed means a job manifest, or a secrets directory (left by a first converge that failed before its
        jobs; for borg it holds the SSH key the server trusts).
        """
        found = self._execute_module(module_name='ansible.legacy.find', task_vars=task_vars, module_args={
            'paths': [MANIFESTS, f'{SECRETS}/{provider}'], 'file_type': 'any'})
        if found.get('failed'):
            return f"Could not list the installed {provider} instances: {found.get('msg', '')}"
        manifest = re.compile(rf'{re.escape(MANIFESTS)}/{provider}-backup-([^/]*)[.]json$')
        names = set()
        for entry in found.get('files', []):
            path = entry.get('path', '')
            if match := manifest.match(path):
                names.add(match.group(1))
            elif entry.get('isdir') and path.startswith(f'{SECRETS}/{provider}/'):
                names.add(path.rsplit('/', 1)[-1])
        if not names:
            return ''
        return (f"{provider}_instances is empty or undefined, but this host has {provider} instances installed: "
                f"{', '.join(sorted(names))}. Nothing was changed. An empty instances dict never removes them (a "
                'misspelt variable name would otherwise uninstall every job). To remove them on purpose, list each '
                f'with settings.enable: false, or set {provider}_remove_unlisted: true.')
