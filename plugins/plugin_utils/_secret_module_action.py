# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The base of the actions that run a host module of the same name on secrets, in one task.

A task with no_log hides a failure's message too, so the roles used to register such a module's result under
no_log and show its message in a second task. This action does both: the module runs on the host with no_log (it
logs nothing to the host's journal; an option-level no_log masks a secret only where it appears verbatim), a
success is returned with ``_ansible_no_log`` (its result may hold secrets), and a failure is returned as its
message, which the modules write without any secret (the rest of a failed result, which may hold what the module
was given, is dropped).

A module that crashed (a traceback, output that is not JSON) masked nothing itself: its failure keeps what it
printed (``module_stdout``, ``module_stderr``) and ``rc``, so the operator can read why, with every value of the
task's no_log options (the module's argument spec) masked, also where it stands escaped or quoted. A Python
exception in the module, which ansible-core (2.19 and later) returns as ``exception`` (no msg, no output), gives the
failure its message, and the summary is kept for Ansible to display (with its traceback where enabled), all masked
the same way.
"""

from __future__ import annotations

import dataclasses
import typing as t

from ansible.plugins.action import ActionBase
from ansible_collections.selfhost.backup.plugins.module_utils._masking import masker

# What a failed module's result keeps besides its message; the output is there only when the module crashed.
KEPT_ON_FAILURE = ('module_stdout', 'module_stderr', 'rc')


def secret_values(spec: t.Mapping[str, t.Any], params: t.Any) -> set[str]:
    """The values of the options ``spec`` marks no_log, in its sub-options too, as Ansible collects them (every
    string and number of a no_log option's value, of a dict's values or a list's items; a malformed value is
    taken as it comes)."""
    found: set[str] = set()
    if not isinstance(params, t.Mapping):
        return found
    for name, option in spec.items():
        value = params.get(name)
        if option.get('no_log'):
            found.update(_leaves(value))
        elif 'options' in option:
            for item in value if isinstance(value, list) else [value]:
                found.update(secret_values(option['options'], item))
    return found


def _leaves(value: t.Any) -> t.Iterator[str]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (str, int, float)):
        if str(value):
            yield str(value)
    elif isinstance(value, t.Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from _leaves(item)


def masked(value: t.Any, mask: t.Callable[[str], str]) -> t.Any:
    """``value`` with every text in it masked: a string, a tuple's items, a dataclass's fields (ansible-core's
    frozen error summary of a module's exception, its events and their chain), recursively; anything else as it
    is."""
    # Exactly str: a str enum of the summary stays what it is.
    if type(value) is str:  # pylint: disable=unidiomatic-typecheck
        return mask(value)
    if isinstance(value, tuple):
        return tuple(masked(item, mask) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{field.name: masked(getattr(value, field.name), mask)
                                             for field in dataclasses.fields(value) if field.init})
    return value


def exception_message(summary: t.Any) -> str:
    """The message of a module's exception as ansible-core (2.19 and later) returns it (``exception``, an error
    summary whose event chains to the event of its cause), each cause's message after it, or ''."""
    parts: list[str] = []
    event = getattr(summary, 'event', None)
    while event is not None and isinstance(getattr(event, 'msg', None), str):
        if not parts or event.msg not in parts[-1]:
            parts.append(event.msg)
        chain = getattr(event, 'chain', None)
        event = chain.event if chain is not None and getattr(chain, 'follow', True) else None
    return ': '.join(parts)


class SecretModuleAction(ActionBase):
    """Run ``MODULE`` with the task's arguments; mask a success that holds secrets, show a failure's message
    (and a crash's output, the secrets of ``ARGUMENT_SPEC``'s no_log options masked)."""

    MODULE = ''
    # The module's own argument spec: its no_log options name the task's secrets.
    ARGUMENT_SPEC: t.Mapping[str, t.Any] = {}
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
            # The message, and what a crashed module printed, with the task's secrets masked: the rest of a
            # failed result may hold what the module was given.
            mask = masker(secret_values(self.ARGUMENT_SPEC, args))
            # A Python exception that escaped the module (its work runs in module_utils/_crash.reported, which fails
            # it masked; this is what escapes that, e.g. while AnsibleModule is made): ansible-core >= 2.19 returns
            # it as ``exception``, without a msg and without the module's output, and nothing in it is masked. Its
            # message, and the summary itself (which Ansible displays, with the traceback where enabled), masked.
            crash = module.get('exception') if not module.get('msg') else None
            if crash is not None:
                result['exception'] = masked(crash, mask)
            # The module's message is masked before this action's own sentence joins it, which a short secret (a
            # region name given as a secret) would garble otherwise.
            reason = mask(str(module.get('msg') or exception_message(crash) or f'{self.MODULE} failed'))
            result.update(failed=True, changed=False, msg=self.failure_message(args, reason))
            result.update((key, mask(value) if isinstance(value, str) else value)
                          for key, value in module.items() if key in KEPT_ON_FAILURE)
            return result
        result.update(module)
        if self._secret:
            result['_ansible_no_log'] = True
        return result
