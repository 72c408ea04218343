# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""From the options of selfhost.backup.backup_jobs to the files of one job (pure: no I/O)."""

from __future__ import annotations

import dataclasses
import os
import re
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _systemd_units as units
from ansible_collections.selfhost.backup.plugins.module_utils._job_files import SCRIPT_MODE, UNIT_MODE, DesiredFile

JOB_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$')
SUFFIX = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$')
USER = re.compile(r'^[a-z_][a-z0-9_-]{0,31}[$]?$')
SCRIPT_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}$')
ENV_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
CREDENTIAL_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$')
UNIT_NAME = re.compile(r'^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.[a-z]+$')
# A credential path is written verbatim after "name:"; whitespace and quotes there would be ambiguous.
CREDENTIAL_PATH = re.compile(r'^/[^\s"\'\\]*$')


EXTRA_JOB_SPEC = {
    'suffix': {'type': 'str', 'required': True},
    'exec_start': {'type': 'list', 'elements': 'list', 'required': True},
    'on_calendar': {'type': 'str', 'required': True},
    'description': {'type': 'str'},
    'user': {'type': 'str'},
}

ON_FAILURE_SPEC = {
    'exec_start': {'type': 'list', 'elements': 'list', 'required': True},
    'description': {'type': 'str'},
}

# The argument spec of one job of selfhost.backup.backup_jobs (one element of its jobs option).
JOB_SPEC: dict[str, dict[str, t.Any]] = {
    'name': {'type': 'str', 'required': True},
    'state': {'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
    'description': {'type': 'str'},
    'user': {'type': 'str', 'default': 'root'},
    'exec_start': {'type': 'list', 'elements': 'list'},
    'environment': {'type': 'dict', 'default': {}},
    'credentials': {'type': 'dict', 'default': {}},
    'nice': {'type': 'int'},
    'io_scheduling_class': {'type': 'str', 'choices': ['realtime', 'best-effort', 'idle']},
    'io_scheduling_priority': {'type': 'int'},
    'timeout_sec': {'type': 'int'},
    'hardening': {'type': 'bool', 'default': True},
    'read_write_paths': {'type': 'list', 'elements': 'str', 'default': []},
    'cache_directory': {'type': 'str'},
    'after': {'type': 'list', 'elements': 'str', 'default': []},
    'wants': {'type': 'list', 'elements': 'str', 'default': []},
    'on_calendar': {'type': 'str', 'default': 'daily'},
    'persistent': {'type': 'bool', 'default': True},
    'randomized_delay_sec': {'type': 'int', 'default': 0},
    'fixed_random_delay': {'type': 'bool', 'default': False},
    'timer_enabled': {'type': 'bool', 'default': True},
    'restore_script': {'type': 'dict', 'options': {
        'name': {'type': 'str', 'required': True},
        'content': {'type': 'str', 'required': True},
    }},
    'extra_jobs': {'type': 'list', 'elements': 'dict', 'default': [], 'options': EXTRA_JOB_SPEC},
    'on_failure': {'type': 'dict', 'options': ON_FAILURE_SPEC},
    'hooks': {'type': 'dict', 'options': {
        'start': {'type': 'list', 'elements': 'list'},
        'finish': {'type': 'list', 'elements': 'list'},
    }},
}


class JobSpecError(ValueError):
    """An option value that cannot become a safe unit file."""


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    files: tuple[DesiredFile, ...]
    timers: tuple[str, ...]
    calendars: tuple[str, ...]
    restore_script: str | None

    @property
    def units(self) -> tuple[DesiredFile, ...]:
        return tuple(item for item in self.files if item.is_unit)


def _match(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise JobSpecError(f'{what} {value!r} does not match {pattern.pattern!r}')
    return value


def _argv_list(commands: t.Any, what: str) -> tuple[tuple[str, ...], ...]:
    """exec_start is a list of argv lists: the module, not the caller, does all systemd quoting."""
    if not commands:
        raise JobSpecError(f'{what} needs at least one command')
    result = []
    for index, argv in enumerate(commands):
        if not isinstance(argv, list) or not argv or not all(isinstance(arg, str) for arg in argv):
            raise JobSpecError(f'{what}[{index}] must be a non-empty list of strings (an argv), got {argv!r}')
        if not argv[0].startswith('/'):
            raise JobSpecError(f'{what}[{index}][0] must be an absolute path, got {argv[0]!r}')
        result.append(tuple(argv))
    return tuple(result)


def _environment(environment: dict[str, t.Any]) -> tuple[tuple[str, str], ...]:
    for key in environment:
        _match(ENV_NAME, key, 'environment variable')
    return tuple((key, str(environment[key])) for key in sorted(environment))


def _credentials(credentials: dict[str, t.Any]) -> tuple[tuple[str, str], ...]:
    for name, path in credentials.items():
        _match(CREDENTIAL_NAME, name, 'credential name')
        _match(CREDENTIAL_PATH, str(path), f'path of credential {name!r}')
    return tuple((name, str(credentials[name])) for name in sorted(credentials))


def _paths(paths: t.Sequence[str], what: str) -> tuple[str, ...]:
    # A leading "-" tells systemd to ignore a path that does not exist.
    for path in paths:
        if not path.lstrip('-').startswith('/'):
            raise JobSpecError(f'{what} must be absolute paths, got {path!r}')
    return tuple(paths)


def _units(names: t.Sequence[str], what: str) -> tuple[str, ...]:
    return tuple(_match(UNIT_NAME, name, f'{what} unit') for name in names)


def _scheduling(params: dict[str, t.Any]) -> dict[str, t.Any]:
    nice, priority = params['nice'], params['io_scheduling_priority']
    if nice is not None and not -20 <= nice <= 19:
        raise JobSpecError(f'nice must be between -20 and 19, got {nice}')
    if priority is not None and not 0 <= priority <= 7:
        raise JobSpecError(f'io_scheduling_priority must be between 0 and 7, got {priority}')
    timeout = params.get('timeout_sec')
    if timeout is not None and timeout < 1:
        raise JobSpecError(f'timeout_sec must be at least 1, got {timeout}')
    return {'nice': nice, 'io_scheduling_class': params['io_scheduling_class'], 'io_scheduling_priority': priority,
            'timeout_sec': timeout}


def base_service(params: dict[str, t.Any]) -> units.ServiceSpec:
    name = _match(JOB_NAME, params['name'], 'name')
    return units.ServiceSpec(
        description=params['description'] or f'Backup job {name}',
        exec_start=_argv_list(params['exec_start'], 'exec_start'),
        user=_match(USER, params['user'], 'user'),
        environment=_environment(params['environment'] or {}),
        credentials=_credentials(params['credentials'] or {}),
        hardening=params['hardening'],
        read_write_paths=_paths(params['read_write_paths'] or [], 'read_write_paths'),
        cache_directory=params['cache_directory'],
        after=_units(params['after'] or [], 'after'),
        wants=_units(params['wants'] or [], 'wants'),
        start_hooks=_hooks(params.get('hooks') or {}, 'start'),
        finish_hooks=_hooks(params.get('hooks') or {}, 'finish'),
        **_scheduling(params),
    )


def _hooks(hooks: dict[str, t.Any], when: str) -> tuple[tuple[str, ...], ...]:
    return _argv_list(hooks[when], f'hooks.{when}') if hooks.get(when) else ()


def _timer(name: str, description: str, params: dict[str, t.Any], on_calendar: str) -> units.TimerSpec:
    if params['randomized_delay_sec'] < 0:
        raise JobSpecError(f'randomized_delay_sec must not be negative, got {params["randomized_delay_sec"]}')
    return units.TimerSpec(
        description=f'Timer of {description}', unit=f'{name}.service', on_calendar=on_calendar,
        persistent=params['persistent'], randomized_delay_sec=params['randomized_delay_sec'],
        fixed_random_delay=params['fixed_random_delay'],
    )


def _extra_service(main: units.ServiceSpec, extra: dict[str, t.Any]) -> units.ServiceSpec:
    return dataclasses.replace(
        main,
        description=extra['description'] or f'{main.description} ({extra["suffix"]})',
        exec_start=_argv_list(extra['exec_start'], f'extra_jobs[{extra["suffix"]}].exec_start'),
        user=_match(USER, extra['user'], 'user') if extra['user'] else main.user,
        # The hooks report on the backup itself (metrics, pings), not on its maintenance jobs.
        start_hooks=(),
        finish_hooks=(),
    )


def _pair(unit_dir: str, name: str, service: units.ServiceSpec, timer: units.TimerSpec) -> list[DesiredFile]:
    try:
        return [
            DesiredFile(os.path.join(unit_dir, f'{name}.service'), units.render_service(service), UNIT_MODE),
            DesiredFile(os.path.join(unit_dir, f'{name}.timer'), units.render_timer(timer), UNIT_MODE),
        ]
    except units.UnitSpecError as exc:
        raise JobSpecError(str(exc)) from exc


def _notify_service(params: dict[str, t.Any], name: str) -> units.ServiceSpec | None:
    """The OnFailure= unit: a root service without timer that the failing services start.

    Not sandboxed: the administrator's notification command may send mail, write a spool or call a tool.
    """
    notify = params.get('on_failure')
    if not notify:
        return None
    return units.ServiceSpec(
        description=notify.get('description') or f'Failure notification of {name}',
        exec_start=_argv_list(notify.get('exec_start'), 'on_failure.exec_start'),
        user='root',
        hardening=False,
    )


def _service_file(unit_dir: str, name: str, service: units.ServiceSpec) -> DesiredFile:
    try:
        return DesiredFile(os.path.join(unit_dir, f'{name}.service'), units.render_service(service), UNIT_MODE)
    except units.UnitSpecError as exc:
        raise JobSpecError(str(exc)) from exc


def _restore_script(params: dict[str, t.Any]) -> DesiredFile | None:
    script = params['restore_script']
    if script is None:
        return None
    name = _match(SCRIPT_NAME, script['name'], 'restore_script.name')
    return DesiredFile(os.path.join(params['script_dir'], name), script['content'], SCRIPT_MODE)


def build_job(params: dict[str, t.Any]) -> Job:
    """All files of the job: main service + timer, one pair per extra job, the optional restore script."""
    main = base_service(params)
    name, unit_dir = params['name'], params['unit_dir']
    notify = _notify_service(params, name)
    if notify is not None:
        main = dataclasses.replace(main, on_failure=(f'{name}-notify.service',))
    files = _pair(unit_dir, name, main, _timer(name, main.description, params, params['on_calendar']))
    timers, calendars = [f'{name}.timer'], [params['on_calendar']]
    for extra in params['extra_jobs'] or []:
        extra_name = f'{name}-{_match(SUFFIX, extra["suffix"], "extra_jobs suffix")}'
        if f'{extra_name}.timer' in timers:
            raise JobSpecError(f'extra_jobs suffix {extra["suffix"]!r} is used twice')
        service = _extra_service(main, extra)
        files += _pair(unit_dir, extra_name, service, _timer(extra_name, service.description, params, extra['on_calendar']))
        timers.append(f'{extra_name}.timer')
        calendars.append(extra['on_calendar'])
    if notify is not None:
        files.append(_service_file(unit_dir, f'{name}-notify', notify))
    script = _restore_script(params)
    files += [script] if script else []
    return Job(name=name, files=tuple(files), timers=tuple(timers), calendars=tuple(dict.fromkeys(calendars)),
               restore_script=os.path.basename(script.path) if script else None)


def removal_candidates(params: dict[str, t.Any], installed: t.Sequence[str], timers: t.Sequence[str]) -> tuple[list[str], list[str]]:
    """Files and timers to remove: the manifest's, plus the main pair whose names are ours by definition."""
    name = _match(JOB_NAME, params['name'], 'name')
    main_units = [os.path.join(params['unit_dir'], f'{name}.{kind}') for kind in ('service', 'timer')]
    return sorted(set(installed) | set(main_units)), sorted(set(timers) | {f'{name}.timer'})
