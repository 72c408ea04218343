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
    fixed_random_delay: bool = False


def job_options_from_settings(spec: _job_script.ScriptSpec, settings: t.Mapping[str, t.Any], local_path: str | None,
                              check_enabled: bool) -> dict[str, t.Any]:
    """job_options from the settings every provider shares: schedule, limits, check calendar, repository kind."""
    schedule, limits, check = settings['schedule'], settings['limits'], settings['check']
    return job_options(
        spec,
        Schedule(on_calendar=schedule['on_calendar'], randomized_delay_sec=schedule['randomized_delay_sec'],
                 persistent=schedule['persistent'], fixed_random_delay=schedule['fixed_random_delay']),
        read_write_paths=([local_path] if local_path else []) + list(settings['writable_paths']),
        extra_jobs=[('check', check['on_calendar'])] if check_enabled else [],
        nice=limits.get('nice'),
        io_scheduling_class=limits.get('ionice_class'),
        timeout_sec=limits.get('timeout'),
        # A remote repository needs the network up before the job runs.
        wants=[] if local_path else ['network-online.target'],
    )


def drill_job_options(spec: _job_script.ScriptSpec, settings: t.Mapping[str, t.Any],
                      local_path: str | None) -> dict[str, t.Any] | None:
    """The restore drill's job (``settings.drill``), or None when it is not enabled.

    Its own service and timer, run as the request's user like the backup, with the backup's Nice= and I/O class
    and its hardening (a private /tmp for the scratch copy). It shares the backup's CacheDirectory=: the tool's
    cache, borg's home and the instance lock job.sh takes (a drill never runs beside a backup or a restore). It
    may write the local repository (the tools' repository locks) but not the backup's writable_paths: the drill
    never touches the live database. No restore script: the backup job installs it.
    """
    drill, limits = settings['drill'], settings['limits']
    if not drill['enabled']:
        return None
    layout = spec.layout
    options = _unit_options(spec, name=layout.drill_job_name, subcommand=['drill', 'latest'],
                            description=f'{layout.provider} restore drill of instance {layout.instance}',
                            read_write_paths=[local_path] if local_path else [],
                            schedule=Schedule(on_calendar=drill['on_calendar'],
                                              randomized_delay_sec=drill['randomized_delay_sec'],
                                              persistent=settings['schedule']['persistent'],
                                              fixed_random_delay=settings['schedule']['fixed_random_delay']))
    options['timeout_sec'] = drill['timeout']
    # Only a finish hook: the drill's metrics and a failed drill's ping. Nothing to reset before it, and no /start
    # ping: the monitor's check follows the backups.
    options.update(_run_options(spec, None, 'drill-finished', limits.get('nice'), limits.get('ionice_class'),
                                [] if local_path else ['network-online.target']))
    return options


def _unit_options(spec: _job_script.ScriptSpec, *, name: str, subcommand: t.Sequence[str], description: str,
                  read_write_paths: t.Sequence[str], schedule: Schedule) -> dict[str, t.Any]:
    """What every job of an instance is: a service running one subcommand of the instance's script as the
    request's user, with the instance's credentials and cache directory (the tool's cache, borg's home and the
    instance lock job.sh takes), and its timer. No extra jobs unless the caller adds them."""
    layout = spec.layout
    return {
        'name': name,
        'state': 'present',
        'description': description,
        'user': spec.user,
        'exec_start': [['/bin/bash', layout.script_path, *subcommand]],
        'environment': {},
        'credentials': dict(spec.credentials),
        'cache_directory': layout.job_name,
        'read_write_paths': list(read_write_paths),
        'on_calendar': schedule.on_calendar,
        'randomized_delay_sec': schedule.randomized_delay_sec,
        'persistent': schedule.persistent,
        'fixed_random_delay': schedule.fixed_random_delay,
        'extra_jobs': [],
    }


def _run_options(spec: _job_script.ScriptSpec, started: str | None, finished: str, nice: int | None,
                 io_scheduling_class: str | None, wants: t.Sequence[str]) -> dict[str, t.Any]:
    """What the backup and the drill jobs share: the root hooks (metrics, pings), the failure notification,
    scheduling, and the network a remote repository needs."""
    layout = spec.layout
    options: dict[str, t.Any] = {'wants': list(wants), 'after': list(wants)}
    if spec.monitoring.has_hooks:
        options['hooks'] = {'finish': [['/bin/bash', layout.script_path, finished]]}
        if started:
            options['hooks']['start'] = [['/bin/bash', layout.script_path, started]]
    if spec.monitoring.notify_cmd:
        options['on_failure'] = {
            'description': f'Failure notification of {layout.provider} instance {layout.instance}',
            'exec_start': [['/bin/bash', layout.script_path, 'notify']],
        }
    if nice is not None:
        options['nice'] = nice
    if io_scheduling_class is not None:
        options['io_scheduling_class'] = io_scheduling_class
    return options


def job_options(spec: _job_script.ScriptSpec, schedule: Schedule, *, read_write_paths: t.Sequence[str] = (),
                extra_jobs: t.Sequence[tuple[str, str]] = (), nice: int | None = None,
                io_scheduling_class: str | None = None, wants: t.Sequence[str] = (),
                timeout_sec: int | None = None) -> dict[str, t.Any]:
    """Options of selfhost.backup.backup_jobs for one instance; they hold paths, never secrets.

    ``extra_jobs`` are (maintenance subcommand, OnCalendar) pairs, each its own timer and service.
    The units run the script through /bin/bash so that systemd-analyze verify passes before it is installed.
    """
    layout = spec.layout
    options = _unit_options(spec, name=layout.job_name, subcommand=['backup'],
                            description=f'{layout.provider} backup of instance {layout.instance}',
                            read_write_paths=read_write_paths, schedule=schedule)
    options['restore_script'] = {'name': layout.restore_script, 'content': _job_script.render_script(spec)}
    options['extra_jobs'] = [
        {'suffix': name, 'on_calendar': calendar, 'exec_start': [['/bin/bash', layout.script_path, name]],
         'description': f'{layout.provider} {name} of instance {layout.instance}'}
        for name, calendar in extra_jobs
    ]
    options.update(_run_options(spec, 'started', 'finished', nice, io_scheduling_class, wants))
    if timeout_sec is not None:
        options['timeout_sec'] = timeout_sec
    return options
