# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The data of one instance's job script (the restore script on PATH), which job.sh reads.

The job script itself is static shell (roles/provider_common/files/job.sh and the provider's half,
roles/<provider>/files/<provider>.sh). A provider module (``_restic.py``, ``_borg.py``) adds the data its half
reads (its command lines, as arrays). Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
import re
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _job_data, _layout, _monitoring


# The data variables job.sh reads (its JOB_DATA), in the order script_data writes them; no secret can take these
# names (_secrets.check_environment_names).
JOB_DATA = (
    'PROVIDER', 'SCRIPT', 'INSTANCE', 'BACKUP_SERVICE', 'JOB_NAME', 'JOB_USER', 'BACKUP_NAME', 'BACKUP_CMD',
    'RESTORE_CMD', 'STOP_UNITS', 'ENV_SECRETS', 'SECRET_FILES', 'SNAPSHOT_PATTERN', 'SNAPSHOT_WORD', 'MAINTENANCE',
    'NOTES', 'NOTIFY_CMD', 'LATE_AFTER', 'METRICS_FILE', 'PING_URL_FILE', 'PING_TIMEOUT', 'PING_RETRIES', 'LIBRARY',
    'DRILL_CMD', 'DRILL_SERVICE', 'LOCK_WAIT', 'RESTORE_INTO_CMD', 'RESTORE_DATABASE_CMD', 'DRILL_SPACE_FACTOR',
    'DRILL_SPACE_BASE', 'RESTORE_CHECKS_NAMES',
)


@dataclasses.dataclass(frozen=True)
class ScriptSpec:
    """One instance's job script: the restore script on PATH, whose internal subcommands the units run."""

    layout: _layout.Layout
    user: str
    backup_name: str
    backup_cmd: str
    restore_cmd: str
    credentials: dict[str, str]
    env_names: tuple[str, ...]
    stop_units: tuple[str, ...]
    provider_data: tuple[tuple[str, _job_data.Value], ...]  # what the provider's half reads: its command lines
    maintenance: tuple[str, ...] = ('backup',)  # subcommands only the units run: provider_<name>
    snapshot_pattern: str = '^[0-9a-f]{8,64}$'
    snapshot_word: str = 'snapshot'
    notes: tuple[str, ...] = ()
    monitoring: _monitoring.Monitoring = _monitoring.Monitoring()
    library: str = _job_data.LIBRARY
    drill_cmd: str = ''  # the request's drill_cmd ('' without one: the drill subcommand refuses to run)
    # The request's drill_space: the drill wants factor x the dump's size + base bytes free for its scratch copy.
    drill_space_factor: int = 1
    drill_space_base: int = 0
    restore_into_cmd: str = ''  # the request's restore_into_cmd ('' without one: restore --into refuses)
    restore_database_cmd: str = ''  # the request's restore_database_cmd ('' without one: restore --database refuses)
    # The request's restore_checks_names: its restore_into_cmd and restore_database_cmd know SELFHOST_BACKUP_CHECK=1,
    # and the restore script asks them about the names before it opens the repository. Without it, never.
    restore_checks_names: bool = False
    lock_wait: int = 300  # seconds a backup, restore or drill waits for the instance lock another one holds


def instance_spec(layout: _layout.Layout, request: t.Mapping[str, t.Any], settings: t.Mapping[str, t.Any],
                  credentials: dict[str, str], provider_data: tuple[tuple[str, _job_data.Value], ...],
                  **provider_parts: t.Any) -> ScriptSpec:
    """The script of one instance from what every provider takes the same way (the request with its drill_cmd,
    the restore's stop units, the monitoring settings, the lock wait), and the provider's own parts: its
    credentials, command lines and words."""
    return ScriptSpec(
        layout=layout,
        user=request['user'],
        backup_name=request['backup_name'],
        backup_cmd=request['backup_cmd'],
        restore_cmd=request['restore_cmd'],
        drill_cmd=request.get('drill_cmd') or '',
        drill_space_factor=int((request.get('drill_space') or {}).get('factor', 1)),
        drill_space_base=int((request.get('drill_space') or {}).get('base_bytes', 0)),
        restore_into_cmd=request.get('restore_into_cmd') or '',
        restore_database_cmd=request.get('restore_database_cmd') or '',
        restore_checks_names=request.get('restore_checks_names') is True,
        lock_wait=settings['lock_wait'],
        credentials=credentials,
        stop_units=stop_units(settings),
        monitoring=_monitoring.monitoring(layout, settings),
        provider_data=provider_data,
        **provider_parts,
    )


RESERVED_SUBCOMMANDS = ('snapshots', 'restore', 'dump', 'exec', 'drill', 'help', 'notify', 'newest', 'started',
                        'finished')


def script_data(spec: ScriptSpec) -> list[tuple[str, _job_data.Value]]:
    """The data of one instance's job script: the variables job.sh reads (its JOB_DATA), then the provider's."""
    layout = spec.layout
    for name in spec.maintenance:
        if not re.fullmatch(r'[a-z][a-z0-9_]*', name) or name in RESERVED_SUBCOMMANDS:
            raise _layout.ProviderError(f'maintenance subcommand {name!r} is not a plain name of its own')
    common: list[tuple[str, _job_data.Value]] = [
        ('PROVIDER', layout.provider),
        ('SCRIPT', layout.restore_script),
        ('INSTANCE', layout.instance),
        ('BACKUP_SERVICE', layout.backup_service),
        ('JOB_NAME', layout.job_name),
        ('JOB_USER', spec.user),
        ('BACKUP_NAME', spec.backup_name),
        ('BACKUP_CMD', spec.backup_cmd),
        ('RESTORE_CMD', spec.restore_cmd),
        ('STOP_UNITS', list(spec.stop_units)),
        ('ENV_SECRETS', list(spec.env_names)),
        ('SECRET_FILES', dict(spec.credentials)),
        ('SNAPSHOT_PATTERN', spec.snapshot_pattern),
        ('SNAPSHOT_WORD', spec.snapshot_word),
        ('MAINTENANCE', list(spec.maintenance)),
        ('NOTES', list(spec.notes)),
        ('NOTIFY_CMD', spec.monitoring.notify_cmd),
        ('LATE_AFTER', int(spec.monitoring.late_after)),
        ('METRICS_FILE', spec.monitoring.metrics_file),
        ('PING_URL_FILE', spec.monitoring.ping_url_file),
        ('PING_TIMEOUT', int(spec.monitoring.ping_timeout)),
        ('PING_RETRIES', int(spec.monitoring.ping_retries)),
        ('LIBRARY', spec.library),
        ('DRILL_CMD', spec.drill_cmd),
        ('DRILL_SERVICE', layout.drill_service),
        ('LOCK_WAIT', int(spec.lock_wait)),
        ('RESTORE_INTO_CMD', spec.restore_into_cmd),
        ('RESTORE_DATABASE_CMD', spec.restore_database_cmd),
        ('DRILL_SPACE_FACTOR', int(spec.drill_space_factor)),
        ('DRILL_SPACE_BASE', int(spec.drill_space_base)),
        ('RESTORE_CHECKS_NAMES', 1 if spec.restore_checks_names else 0),
    ]
    return common + list(spec.provider_data)


def render_script(spec: ScriptSpec) -> str:
    """The restore script of one instance: its data, then ``source $LIBRARY/job.sh`` (the program)."""
    layout = spec.layout
    header = (
        'Managed by Ansible (selfhost.backup): local changes will be overwritten.',
        f'{layout.restore_script}: restore script of {layout.provider} instance {layout.instance}; see --help.',
        f'The data of the instance only, no secret. The program: {spec.library}/job.sh and {layout.provider}.sh.',
    )
    return _job_data.render(script_data(spec), header)


def stop_units(settings: t.Mapping[str, t.Any]) -> tuple[str, ...]:
    """The units a restore stops first (``settings.restore.stop_units``), as the script spec wants them."""
    return tuple(settings['restore']['stop_units'])
