#!/usr/bin/python
# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_jobs
short_description: Install, update and prune scheduled backup jobs (systemd services, timers, restore scripts)
version_added: 0.1.0
description:
  - Installs, updates or removes backup jobs on the target, the host side of the database backup contract, in one
    call for any number of jobs.
  - A job is C(<name>.service) (C(Type=oneshot)) started by C(<name>.timer), optionally a restore script on PATH,
    optionally one service and timer pair C(<name>-<suffix>) per maintenance job in O(jobs[].extra_jobs), and
    optionally a failure notification service.
  - Every file is written to a temporary file in its target directory and atomically moved into place. Before any
    unit is moved into place, all changed units of all jobs are copied under their real names into a temporary
    directory and checked with one C(systemd-analyze verify); when that fails nothing is changed.
  - Every calendar expression is checked with C(systemd-analyze calendar), once per distinct expression.
  - C(systemctl daemon-reload) runs once, and only when a unit file was written or removed. Timers are enabled and
    started only when they are not already enabled and active.
  - The files and timers of each job are recorded in a manifest, C(<state_dir>/<name>.json). A job with
    O(jobs[].state=absent) loses everything its manifest lists; a job with O(jobs[].state=present) loses what its
    manifest lists but is no longer wanted (for example an extra job dropped from O(jobs[].extra_jobs)).
  - O(prune) removes, in the same run, every installed job of a family that O(jobs) does not list, so that a list of
    the wanted jobs is all a caller keeps.
  - Unit files start with a comment saying that they are managed by this module. They never contain secrets;
    secrets reach the service as files through O(jobs[].credentials) (C(LoadCredential=)).
author:
  - selfhost.backup developers (!UNKNOWN)
options:
  jobs:
    description:
      - The jobs, all planned and their changed units verified together before anything is written;
        C(systemctl daemon-reload) runs once at the end when a unit file of any job changed.
      - The result has one entry per job in RV(jobs), and RV(diff) holds the diffs of all jobs.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the job and of its units, for example V(restic-backup-app).
          - Letters, digits, V(_), V(.) and V(-), starting with a letter or digit.
        type: str
        required: true
      state:
        description:
          - V(present) installs or updates the job, V(absent) stops its timers and removes every file it installed.
        type: str
        choices: [present, absent]
        default: present
      description:
        description:
          - C(Description=) of the service; the timer's is derived from it. Defaults to C(Backup job <name>).
        type: str
      user:
        description:
          - Unix user that runs the service (C(User=)). The user must exist when the timer fires.
        type: str
        default: root
      exec_start:
        description:
          - The commands of the service, each one C(ExecStart=) line, run in order; the job fails at the first failure.
          - Each command is an argv list, not a string. The first element must be an absolute path. The module quotes
            every argument for systemd, doubles V(%) and V($), so each argument reaches the program verbatim and
            systemd expands neither specifiers nor environment variables. Use V([/bin/sh, -c, "..."]) for a pipeline.
          - Required when O(jobs[].state=present).
        type: list
        elements: list
      environment:
        description:
          - Non-secret environment variables of the service (C(Environment=)). Never put secrets here; use O(jobs[].credentials).
        type: dict
        default: {}
      credentials:
        description:
          - Files handed to the service with C(LoadCredential=<name>:<path>); the service reads them from
            C($CREDENTIALS_DIRECTORY/<name>) even as a non-root O(jobs[].user).
          - Maps the credential name to an absolute path on the host (no whitespace or quotes). Only the path is
            written into the unit, never the secret.
        type: dict
        default: {}
      nice:
        description:
          - C(Nice=) of the service, from -20 to 19.
        type: int
      timeout_sec:
        description:
          - C(TimeoutStartSec=) of the services, the seconds one run may take before systemd stops it and marks it
            failed (result C(timeout)). Without it, systemd's default for oneshot services applies (no limit).
        type: int
      io_scheduling_class:
        description:
          - C(IOSchedulingClass=) of the service.
        type: str
        choices: [realtime, best-effort, idle]
      io_scheduling_priority:
        description:
          - C(IOSchedulingPriority=) of the service, from 0 (highest) to 7 (lowest).
        type: int
      hardening:
        description:
          - Adds systemd sandboxing that stays compatible with a job that dumps a database through a local socket or
            the network and writes to a repository.
          - C(ProtectSystem=strict) makes the whole file system read-only except O(jobs[].read_write_paths) and
            O(jobs[].cache_directory); C(ProtectHome=read-only), C(PrivateTmp=yes) (so a database socket in C(/tmp) is not
            reachable), C(PrivateDevices=yes), C(NoNewPrivileges=yes) (no C(sudo) in the commands),
            C(ProtectKernelTunables=), C(ProtectKernelModules=), C(ProtectKernelLogs=), C(ProtectControlGroups=),
            C(ProtectClock=), C(ProtectHostname=), C(RestrictSUIDSGID=), C(RestrictRealtime=), C(RestrictNamespaces=),
            C(LockPersonality=), C(SystemCallArchitectures=native),
            C(RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK) and C(UMask=0077).
        type: bool
        default: true
      read_write_paths:
        description:
          - Absolute paths the service may write to when O(jobs[].hardening=true) (C(ReadWritePaths=)), for example a local
            repository. A leading V(-) ignores a path that does not exist; otherwise it must exist when the job runs.
        type: list
        elements: str
        default: []
      cache_directory:
        description:
          - C(CacheDirectory=) of the service, relative to C(/var/cache). systemd creates it owned by O(jobs[].user), mode
            V(0700) (C(CacheDirectoryMode=)), keeps it writable under O(jobs[].hardening) and sets C($CACHE_DIRECTORY).
            Several jobs may share one (a provider's backup and drill jobs share the backup's cache, and with it its lock).
        type: str
      after:
        description:
          - Units the service starts after (C(After=)), for example V(postgresql.service).
        type: list
        elements: str
        default: []
      wants:
        description:
          - Units the service wants (C(Wants=)), for example V(network-online.target).
        type: list
        elements: str
        default: []
      on_calendar:
        description:
          - C(OnCalendar=) of the main timer; any expression C(systemd-analyze calendar) accepts.
        type: str
        default: daily
      persistent:
        description:
          - C(Persistent=) of every timer of the job, to catch up a run missed while the host was off.
        type: bool
        default: true
      randomized_delay_sec:
        description:
          - C(RandomizedDelaySec=) of every timer of the job, in seconds.
        type: int
        default: 0
      fixed_random_delay:
        description:
          - C(FixedRandomDelay=) of every timer of the job (systemd 247 or later); the random delay is drawn once
            from the machine ID and the timer's name and stays the same across reboots and reloads.
        type: bool
        default: false
      timer_enabled:
        description:
          - Whether the timers are enabled and started (V(true)) or stopped and disabled (V(false)).
        type: bool
        default: true
      restore_script:
        description:
          - A restore script installed as O(script_dir)/O(jobs[].restore_script.name) with mode C(0755), owned by root.
        type: dict
        suboptions:
          name:
            description:
              - File name of the script, a command name without slash, for example V(restic-restore-app).
            type: str
            required: true
          content:
            description:
              - Full content of the script, including its C(#!) line. It must not contain secrets.
            type: str
            required: true
      extra_jobs:
        description:
          - Maintenance jobs (check, prune) rendered as C(<name>-<suffix>.service) and C(<name>-<suffix>.timer).
          - They share the main job's O(jobs[].environment), O(jobs[].credentials), scheduling, O(jobs[].hardening), O(jobs[].read_write_paths),
            O(jobs[].cache_directory), O(jobs[].after), O(jobs[].wants), O(jobs[].persistent),
            O(jobs[].randomized_delay_sec) and O(jobs[].fixed_random_delay).
        type: list
        elements: dict
        default: []
        suboptions:
          suffix:
            description:
              - Suffix of the units' names, for example V(check) or V(prune).
            type: str
            required: true
          exec_start:
            description:
              - Commands of the service, in the same argv form as the main O(jobs[].exec_start).
            type: list
            elements: list
            required: true
          on_calendar:
            description:
              - C(OnCalendar=) of this job's timer.
            type: str
            required: true
          description:
            description:
              - C(Description=) of this job's service. Defaults to the main description followed by the suffix.
            type: str
          user:
            description:
              - User of this job's service. Defaults to O(jobs[].user).
            type: str
      on_failure:
        description:
          - A failure notification. When set, the module also writes C(<name>-notify.service), a root service
            without timer and without sandbox, and adds C(OnFailure=<name>-notify.service) to the main service and
            to every O(jobs[].extra_jobs) service. systemd starts it when one of them fails and tells it which one in
            C($MONITOR_UNIT) and how in C($MONITOR_SERVICE_RESULT).
        type: dict
        suboptions:
          exec_start:
            description:
              - Commands of the notification service, in the same argv form as O(jobs[].exec_start).
            type: list
            elements: list
            required: true
          description:
            description:
              - C(Description=) of the notification service.
            type: str
      hooks:
        description:
          - Commands run as root around the main service's command, for reporting (metrics, monitoring pings),
            O(jobs[].hooks.start) as C(ExecStartPre=-+...), O(jobs[].hooks.finish) as C(ExecStopPost=-+...), which systemd runs
            after the command whatever its result, with C($SERVICE_RESULT), C($EXIT_CODE) and C($EXIT_STATUS) set.
          - The C(+) prefix runs them with full privileges outside the sandbox, the C(-) prefix ignores their failure,
            so a hook never fails the job nor changes its result. The O(jobs[].extra_jobs) services get no hooks.
        type: dict
        suboptions:
          start:
            description:
              - Commands before the main command, in the same argv form as O(jobs[].exec_start).
            type: list
            elements: list
          finish:
            description:
              - Commands after the main command, in the same argv form as O(jobs[].exec_start).
            type: list
            elements: list
  prune:
    description:
      - Name prefixes of the families of jobs this call owns, for example V([restic-backup-]) for the restic jobs of
        selfhost.backup.restic.
      - Every installed job (a manifest C(<state_dir>/<name>.json)) whose name starts with one of them and that
        O(jobs) does not name is removed like a job with O(jobs[].state=absent), its timers stopped and disabled
        and every file it installed removed. RV(pruned) names them.
      - Each is letters, digits, V(_), V(.) and V(-), starting with a letter or digit. Empty, nothing is pruned.
    type: list
    elements: str
    default: []
  unit_dir:
    description:
      - Directory of the unit files.
    type: path
    default: /etc/systemd/system
  script_dir:
    description:
      - Directory of the restore script; it should be on PATH.
    type: path
    default: /usr/local/bin
  state_dir:
    description:
      - Directory of the job manifests (C(<name>.json)), which list the files and timers installed. It is removed
        when the last job is removed and it is empty.
    type: path
    default: /var/lib/selfhost-backup
  daemon_reload:
    description:
      - Run C(systemctl daemon-reload) after a unit file was written or removed.
    type: bool
    default: true
attributes:
  check_mode:
    description: Reports what would change without writing files or running mutating systemctl commands.
    support: full
    details:
      - C(systemd-analyze verify) is skipped in check mode, because the programs of O(jobs[].exec_start) may not be
        installed yet. Calendar expressions are still checked.
  diff_mode:
    description: Returns the before and after content of every file that changes.
    support: full
  idempotent:
    description: A second run with the same options reports no change.
    support: full
  platform:
    description: Targets with systemd.
    support: full
    platforms: posix
notes:
  - Requires systemd (C(systemctl), C(systemd-analyze)) on the target.
seealso:
  - module: selfhost.backup.databasebackup_contract
  - name: systemd.exec
    description: Execution environment configuration, including the sandboxing options.
    link: https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html
"""

EXAMPLES = r"""
- name: Install the restic backup job of instance app, with a weekly check job and a restore script
  selfhost.backup.backup_jobs:
    jobs:
      - name: restic-backup-app
        description: restic backup of app
        user: postgres
        after: [postgresql.service]
        exec_start:
          - [/bin/bash, /usr/local/bin/restic-restore-app, backup]
        environment:
          RESTIC_REPOSITORY: /srv/backup/app
        credentials:
          passphrase: /etc/selfhost-backup/restic/app/passphrase
        read_write_paths: [/srv/backup/app]
        cache_directory: restic-app
        nice: 10
        io_scheduling_class: idle
        on_calendar: "*-*-* 02:30:00"
        randomized_delay_sec: 900
        restore_script:
          name: restic-restore-app
          content: "{{ lookup('ansible.builtin.file', 'restic-restore-app') }}"
        extra_jobs:
          - suffix: check
            on_calendar: weekly
            exec_start:
              - [/bin/bash, /usr/local/bin/restic-restore-app, check]
  register: installed
# installed.jobs[0].backup_service == "restic-backup-app.service"
# installed.jobs[0].restore_script == "restic-restore-app"

- name: Keep exactly these two restic jobs; remove every other installed restic-backup-* job, one daemon-reload
  selfhost.backup.backup_jobs:
    jobs:
      - name: restic-backup-app
        user: postgres
        exec_start:
          - [/bin/bash, /usr/local/bin/restic-restore-app, backup]
      - name: restic-backup-shop
        user: mysql
        on_calendar: "*-*-* 03:00:00"
        exec_start:
          - [/bin/bash, /usr/local/bin/restic-restore-shop, backup]
    prune: [restic-backup-]
  register: installed
# installed.pruned lists the jobs removed, for example ["restic-backup-old"]

- name: Remove one job, its extra jobs and its restore script
  selfhost.backup.backup_jobs:
    jobs:
      - name: restic-backup-app
        state: absent
"""

RETURN = r"""
jobs:
  description: The result of each job, in the order given, then of each pruned job.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The job's name.
      type: str
      sample: restic-backup-app
    changed:
      description: Whether this job changed (or would change) the host.
      type: bool
    backup_service:
      description: The service that backs up now (C(systemctl start --wait <it>)); the contract result's C(backup_service).
      type: str
      sample: restic-backup-app.service
    restore_script:
      description: Name of the installed restore script, the contract result's C(restore_script); null without one.
      type: str
      sample: restic-restore-app
    files:
      description:
        - With O(jobs[].state=present), every file of the job. With O(jobs[].state=absent) and for a pruned job, the
          files removed (or to remove in check mode).
      type: list
      elements: str
      sample:
        - /etc/systemd/system/restic-backup-app.service
        - /etc/systemd/system/restic-backup-app.timer
        - /usr/local/bin/restic-restore-app
    timers:
      description: The timers of the job (O(jobs[].state=present)) or the timers stopped and disabled (removed jobs).
      type: list
      elements: str
      sample: [restic-backup-app.timer, restic-backup-app-check.timer]
pruned:
  description: The names of the installed jobs that O(prune) removed (or would remove in check mode).
  returned: always
  type: list
  elements: str
  sample: [restic-backup-old]
diff:
  description: Before and after content of each file that changes, of every job.
  returned: when diff mode is enabled
  type: list
  elements: dict
  contains:
    before_header:
      description: Path of the file.
      type: str
    after_header:
      description: Path of the file.
      type: str
    before:
      description: Content before, empty for a new file.
      type: str
    after:
      description: Content after, empty for a removed file.
      type: str
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfhost.backup.plugins.module_utils import _backup_jobs
from ansible_collections.selfhost.backup.plugins.module_utils._backup_job import JOB_SPEC, JobSpecError
from ansible_collections.selfhost.backup.plugins.module_utils._job_files import CommandRunner, JobFilesError

# What every job of one call shares.
SHARED_SPEC: dict[str, dict[str, t.Any]] = {
    'unit_dir': {'type': 'path', 'default': '/etc/systemd/system'},
    'script_dir': {'type': 'path', 'default': '/usr/local/bin'},
    'state_dir': {'type': 'path', 'default': '/var/lib/selfhost-backup'},
    'daemon_reload': {'type': 'bool', 'default': True},
}

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    'jobs': {
        'type': 'list', 'elements': 'dict', 'required': True,
        'options': JOB_SPEC,
        'required_if': [('state', 'present', ['exec_start'])],
    },
    'prune': {'type': 'list', 'elements': 'str', 'default': []},
    **SHARED_SPEC,
}


def result(jobs: t.Sequence[_backup_jobs.BackupJob], pruned: t.Sequence[str], with_diff: bool) -> dict[str, t.Any]:
    outcome: dict[str, t.Any] = {
        'changed': any(job.changed for job in jobs),
        'jobs': [{'name': job.params['name']} | job.result() for job in jobs],
        'pruned': list(pruned),
    }
    if with_diff:
        outcome['diff'] = [entry for job in jobs for entry in job.diff()]
    return outcome


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    runner = CommandRunner(module)
    jobs: list[_backup_jobs.BackupJob] = []
    pruned: list[str] = []
    try:
        shared = {key: params[key] for key in SHARED_SPEC}
        wanted = _backup_jobs.job_params(params['jobs'], shared)
        pruned = _backup_jobs.prune_names(params['state_dir'], params['prune'], wanted)
        jobs = [_backup_jobs.BackupJob(each, module, runner)
                for each in wanted + [_backup_jobs.absent_params(name, shared) for name in pruned]]
        _backup_jobs.run(jobs, module, runner, params['daemon_reload'])
    except (JobSpecError, JobFilesError, OSError) as exc:
        module.fail_json(msg=str(exc), changed=any(job.changed for job in jobs))
    module.exit_json(**result(jobs, pruned, module._diff))


if __name__ == '__main__':
    main()
