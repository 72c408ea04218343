# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The provider-neutral half of a backup provider (restic, borg): names, secrets layout, job data, job options.

The job script itself is static shell (roles/provider_common/files/job.sh and the provider's half,
roles/<provider>/files/<provider>.sh). A provider module (``_restic.py``, ``_borg.py``) adds the data its half
reads (its command lines, as arrays) and the credentials it needs. Everything else is here, once: where
secrets live on the host, how they reach the job (``LoadCredential=``), the data job.sh reads (``script_data``)
and the options of ``selfhost.backup.backup_jobs``. Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _job_data

SECRETS_ROOT = '/etc/selfhost-backup'
SCRIPT_DIR = '/usr/local/bin'
STATE_DIR = '/var/lib/selfhost-backup'
INSTANCE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
ENV_NAME = re.compile(r'^[A-Z_][A-Z0-9_]*$')
# Credential names of secret environment variables: env.<NAME>; the script exports them inside the job only.
ENV_CREDENTIAL_PREFIX = 'env.'


class ProviderError(ValueError):
    """An instance cannot be turned into a safe job."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Names and paths of one instance of one provider on the host."""

    provider: str
    instance: str

    def __post_init__(self) -> None:
        if not INSTANCE_NAME.fullmatch(self.instance):
            raise ProviderError(f'instance name {self.instance!r} does not match {INSTANCE_NAME.pattern!r}')

    @property
    def job_name(self) -> str:
        return f'{self.provider}-backup-{self.instance}'

    @property
    def backup_service(self) -> str:
        return f'{self.job_name}.service'

    @property
    def restore_script(self) -> str:
        return f'{self.provider}-restore-{self.instance}'

    @property
    def script_path(self) -> str:
        return posixpath.join(SCRIPT_DIR, self.restore_script)

    @property
    def secrets_dir(self) -> str:
        """Root-only (0700) directory of this instance's secret files (each 0600)."""
        return posixpath.join(SECRETS_ROOT, self.provider, self.instance)

    def secret_path(self, credential: str) -> str:
        return posixpath.join(self.secrets_dir, credential)


@dataclasses.dataclass(frozen=True)
class InstanceJob:
    """What every provider plans for one instance: backup_jobs options (no secret), the secret files the role
    writes root-only, the credentials the units load, and the local repository to create (if any)."""

    layout: Layout
    timer: dict[str, t.Any]
    secret_files: tuple[tuple[str, str], ...]
    credentials: dict[str, str]
    local_path: str | None


# The ping URL identifies the check at the monitoring service: whoever knows it can report for the job, so it
# is a secret, kept in a root-only file that only the root hooks read (never a credential of the job's user).
PING_URL_SECRET = 'ping_url'


@dataclasses.dataclass(frozen=True)
class Monitoring:
    """settings.monitoring of one instance, as the job script and its units use it. No secret in it."""

    notify_cmd: str = ''  # on_failure: run by the units' OnFailure= with the failed unit's log
    late_after: int = 93600  # seconds without a new snapshot after which selfhost-backup status says late
    metrics_file: str = ''  # the instance's node-exporter textfile (<metrics_directory>/<job>.prom), '' for none
    ping_url_file: str = ''  # root-only file holding ping_url, '' for none
    ping_timeout: int = 10
    ping_retries: int = 3

    @property
    def has_hooks(self) -> bool:
        """Whether the backup service needs the root start and finish hooks (metrics, pings)."""
        return bool(self.metrics_file or self.ping_url_file)


def monitoring(layout: Layout, settings: t.Mapping[str, t.Any]) -> Monitoring:
    """settings.monitoring, validated by the provider's schema, with its defaults."""
    given = settings['monitoring']
    metrics_dir = given.get('metrics_directory')
    return Monitoring(
        notify_cmd=str(given.get('on_failure') or ''),
        late_after=int(given['late_after']),
        metrics_file=posixpath.join(metrics_dir, f'{layout.job_name}.prom') if metrics_dir else '',
        ping_url_file=layout.secret_path(PING_URL_SECRET) if given.get('ping_url') else '',
        ping_timeout=int(given['ping_timeout']),
        ping_retries=int(given['ping_retries']),
    )


def monitoring_secret_files(layout: Layout, settings: t.Mapping[str, t.Any]) -> list[tuple[str, str]]:
    """The root-only files of settings.monitoring (the ping URL), as (path, content) like Secrets.files."""
    url = settings['monitoring'].get('ping_url')
    return [(layout.secret_path(PING_URL_SECRET), str(url))] if url else []


def retention_flags(retention: t.Mapping[str, t.Any], periods: t.Sequence[str]) -> list[str]:
    """``--keep-<period> N`` for each period rule given, then ``--keep-within``: the flags restic forget and
    borg prune share. Empty without any rule, which means keep everything."""
    args: list[str] = []
    for period in periods:
        value = retention.get(f'keep_{period}')
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ProviderError(f'retention.keep_{period} must be a positive integer, got {value!r}')
            args += [f'--keep-{period}', str(value)]
    if retention.get('keep_within'):
        args += ['--keep-within', str(retention['keep_within'])]
    return args


def env_credential(name: str) -> str:
    if not ENV_NAME.fullmatch(name):
        raise ProviderError(f'environment variable name {name!r} does not match {ENV_NAME.pattern!r}')
    return f'{ENV_CREDENTIAL_PREFIX}{name}'


@dataclasses.dataclass(frozen=True)
class Secrets:
    """Which secret files an instance has: credential name -> host path, and what the role must write there."""

    credentials: dict[str, str]
    env_names: tuple[str, ...]
    files: tuple[tuple[str, str], ...]  # (host path, content) written root-only by the role; holds secrets


# Variables of the shell, the dynamic loader and systemd that a secret must not replace: exported into the
# tool's environment they would change what runs (PATH, LD_PRELOAD, BASH_ENV) or where it reads and writes.
SHELL_VARIABLES = frozenset({
    'PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'IFS', 'PWD', 'OLDPWD', 'ENV', 'BASH_ENV', 'CDPATH', 'GLOBIGNORE',
    'SHELLOPTS', 'BASHOPTS', 'PS4', 'TMPDIR', 'CREDENTIALS_DIRECTORY', 'CACHE_DIRECTORY', 'RUNTIME_DIRECTORY',
    'STATE_DIRECTORY', 'INVOCATION_ID', 'JOURNAL_STREAM', 'NOTIFY_SOCKET',
    # bash's read-only and special variables: assigning one fails ("readonly variable") or changes the shell.
    'UID', 'EUID', 'PPID', 'GROUPS', 'FUNCNAME', 'RANDOM', 'SRANDOM', 'SECONDS', 'LINENO', 'EPOCHSECONDS',
    'EPOCHREALTIME', 'DIRSTACK', 'PIPESTATUS', 'HISTCMD', 'OPTIND', 'OPTARG', 'OPTERR', 'HOSTNAME', 'HOSTTYPE',
    'OSTYPE', 'MACHTYPE', 'PROMPT_COMMAND', 'POSIXLY_CORRECT', 'LANG', 'LANGUAGE', 'FUNCNEST', 'EXECIGNORE', 'TMOUT',
    'HISTFILE', 'HISTCONTROL', 'INPUTRC', 'TIMEFORMAT',
    # glibc's: they change what the tools' children load and how they convert text.
    'GCONV_PATH', 'LOCPATH', 'NLSPATH', 'MALLOC_CHECK_', 'HOSTALIASES', 'RES_OPTIONS', 'LOCALDOMAIN', 'TZDIR',
    # What systemd tells the hooks about the run (ExecStopPost=, OnFailure=).
    'SERVICE_RESULT', 'EXIT_CODE', 'EXIT_STATUS', 'MAINPID',
})
RESERVED_PREFIXES = ('BASH_', 'LD_', 'LC_', 'SELFHOST_BACKUP_', 'SYSTEMD_', 'MONITOR_', 'LISTEN_', 'WATCHDOG_')


# Variables the static job script sets itself (job.sh, restic.sh, borg.sh: a unit test keeps this list complete),
# and the data variables job.sh reads (JOB_DATA; script_data writes them): a secret of such a name would fail to
# export (they are readonly) or change what the job does.
SCRIPT_GLOBALS = frozenset({
    'JOB_DATA', 'PROVIDER_INTERFACE', 'PROVIDER_DATA', 'JOB_CACHE', 'STATS_FILE', 'RUN_BACKUP_CMD', 'BACKUP_CMD_HIDES',
    'STOPPED_UNITS', 'FORGET_RETRY_SECONDS', 'UNFINISHED_MARK',
})
JOB_DATA = (
    'PROVIDER', 'SCRIPT', 'INSTANCE', 'BACKUP_SERVICE', 'JOB_NAME', 'JOB_USER', 'BACKUP_NAME', 'BACKUP_CMD',
    'RESTORE_CMD', 'STOP_UNITS', 'ENV_SECRETS', 'SECRET_FILES', 'SNAPSHOT_PATTERN', 'SNAPSHOT_WORD', 'MAINTENANCE',
    'NOTES', 'NOTIFY_CMD', 'LATE_AFTER', 'METRICS_FILE', 'PING_URL_FILE', 'PING_TIMEOUT', 'PING_RETRIES', 'LIBRARY',
)


def check_environment_names(names: t.Iterable[str], provider_data: t.Iterable[str] = ()) -> None:
    """Refuse secret environment variables that the shell, the loader or the job script own; ``provider_data``
    names the provider's data variables."""
    taken = SHELL_VARIABLES | SCRIPT_GLOBALS | frozenset(JOB_DATA) | frozenset(provider_data)
    odd = [repr(name) for name in names if not isinstance(name, str)]
    if odd:
        raise ProviderError(f'environment_secrets: names must be strings, got {", ".join(odd)}')
    refused = [name for name in sorted(names) if name in taken or name.startswith(RESERVED_PREFIXES)]
    if refused:
        raise ProviderError(', '.join(f'environment_secrets.{name}' for name in refused)
                            + (': the name is' if len(refused) == 1 else ': these names are')
                            + ' taken by the shell, systemd or the job script; a secret cannot use '
                            + ('it' if len(refused) == 1 else 'them'))


def secrets(layout: Layout, passphrase: str | None, passphrase_file: str | None,
            environment_secrets: t.Mapping[str, str], provider_data: t.Iterable[str] = ()) -> Secrets:
    """The passphrase (inline value or an existing file) and secret environment variables of one instance.

    ``provider_data`` names the provider's data variables (readonly in the job script), which are taken too.
    """
    if (passphrase is None) == (passphrase_file is None):
        raise ProviderError('give exactly one of passphrase and passphrase_file')
    check_environment_names(environment_secrets, provider_data)
    credentials: dict[str, str] = {}
    files: list[tuple[str, str]] = []
    if passphrase is not None:
        credentials['passphrase'] = layout.secret_path('passphrase')
        files.append((credentials['passphrase'], passphrase))
    else:
        credentials['passphrase'] = t.cast(str, passphrase_file)
    names = tuple(sorted(environment_secrets))
    for name in names:
        credential = env_credential(name)
        credentials[credential] = layout.secret_path(credential)
        files.append((credentials[credential], str(environment_secrets[name])))
    return Secrets(credentials=credentials, env_names=names, files=tuple(files))


@dataclasses.dataclass(frozen=True)
class ScriptSpec:
    """One instance's job script: the restore script on PATH, whose internal subcommands the units run."""

    layout: Layout
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
    monitoring: Monitoring = Monitoring()
    library: str = _job_data.LIBRARY


RESERVED_SUBCOMMANDS = ('snapshots', 'restore', 'help', 'notify', 'newest', 'started', 'finished')


def script_data(spec: ScriptSpec) -> list[tuple[str, _job_data.Value]]:
    """The data of one instance's job script: the variables job.sh reads (its JOB_DATA), then the provider's."""
    layout = spec.layout
    for name in spec.maintenance:
        if not re.fullmatch(r'[a-z][a-z0-9_]*', name) or name in RESERVED_SUBCOMMANDS:
            raise ProviderError(f'maintenance subcommand {name!r} is not a plain name of its own')
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


@dataclasses.dataclass(frozen=True)
class Schedule:
    on_calendar: str = 'daily'
    randomized_delay_sec: int = 0
    persistent: bool = True


def tuple_or_none(args: t.Sequence[str] | None) -> tuple[str, ...] | None:
    """A command line for a frozen dataclass; None (no such step, e.g. no retention rule) stays None."""
    return tuple(args) if args is not None else None


def stop_units(settings: t.Mapping[str, t.Any]) -> tuple[str, ...]:
    """The units a restore stops first (``settings.restore.stop_units``), as the script spec wants them."""
    return tuple(settings['restore']['stop_units'])


def job_options_from_settings(spec: ScriptSpec, settings: t.Mapping[str, t.Any], local_path: str | None,
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


def job_options(spec: ScriptSpec, schedule: Schedule, *, read_write_paths: t.Sequence[str] = (),
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
        'restore_script': {'name': layout.restore_script, 'content': render_script(spec)},
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
