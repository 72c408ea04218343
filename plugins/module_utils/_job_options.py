# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The options of ``selfhost.backup.backup_jobs`` for one instance: its units and its restore script. They
hold paths, never secrets. Pure, no I/O.
"""

from __future__ import annotations

import dataclasses
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _job_script


@dataclasses.dataclass(frozen=True)
class Schedule:
    on_calendar: str = 'daily'
    randomized_delay_sec: int = 0
    persistent: bool = True


def job_options_from_settings(spec: _job_script.ScriptSpec, settings: t.Mapping[str, t.Any], local_path: str | None,
                              check_enabled: bool) -> dict[str, t.Any]:
    """job_options from the settings every provider shares: schedule, limits, check calendar, repository kind."""
    schedule, limits, check = settings['schedule'], settings['limits'], settings['check']
    return job_options(
        spec,
        Schedule(on_calendar=schedule['on_calendar'], randomized_delay_sec=schedule['randomized_delay_sec'],
                 persistent=schedule['persistent']),
        read_write_paths=([local_path] if local_path else []) + list(settings['writable_paths']),
        extra_jobs=[('check', check['on_calendar'])] if check_enabled else [],
        nice=limits.get('nice'),
        io_scheduling_class=limits.get('ionice_class'),
        timeout_sec=limits.get('timeout'),
        # A remote repository needs the network up before the job runs.
        wants=[] if local_path else ['network-online.target'],
    )


def job_options(spec: _job_script.ScriptSpec, schedule: Schedule, *, read_write_paths: t.Sequence[str] = (),
                extra_jobs: t.Sequence[tuple[str, str]] = (), nice: int | None = None,
                io_scheduling_class: str | None = None, wants: t.Sequence[str] = (),
                timeout_sec: int | None = None) -> dict[str, t.Any]:
    """Options of selfhost.backup.backup_jobs for one instance; they hold paths, never secrets.

    ``extra_jobs`` are (maintenance subcommand, OnCalendar) pairs, each its own timer and service.
    The units run the script through /bin/bash so that systemd-analyze verify passes before it is installed.
    """
    layout = spec.layout
    options: dict[str, t.Any] = {
        'name': layout.job_name,
        'state': 'present',
        'description': f'{layout.provider} backup of instance {layout.instance}',
        'user': spec.user,
        'exec_start': [['/bin/bash', layout.script_path, 'backup']],
        'environment': {},
        'credentials': dict(spec.credentials),
        'cache_directory': layout.job_name,
        'read_write_paths': list(read_write_paths),
        'wants': list(wants),
        'after': list(wants),
        'on_calendar': schedule.on_calendar,
        'randomized_delay_sec': schedule.randomized_delay_sec,
        'persistent': schedule.persistent,
        'restore_script': {'name': layout.restore_script, 'content': _job_script.render_script(spec)},
        'extra_jobs': [
            {'suffix': name, 'on_calendar': calendar, 'exec_start': [['/bin/bash', layout.script_path, name]],
             'description': f'{layout.provider} {name} of instance {layout.instance}'}
            for name, calendar in extra_jobs
        ],
    }
    if spec.monitoring.has_hooks:
        options['hooks'] = {'start': [['/bin/bash', layout.script_path, 'started']],
                            'finish': [['/bin/bash', layout.script_path, 'finished']]}
    if spec.monitoring.notify_cmd:
        options['on_failure'] = {
            'description': f'Failure notification of {layout.provider} instance {layout.instance}',
            'exec_start': [['/bin/bash', layout.script_path, 'notify']],
        }
    if nice is not None:
        options['nice'] = nice
    if io_scheduling_class is not None:
        options['io_scheduling_class'] = io_scheduling_class
    if timeout_sec is not None:
        options['timeout_sec'] = timeout_sec
    return options
