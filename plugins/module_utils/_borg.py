# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""borg command lines, in one place, and the borg instance plan built from a validated contract instance.

Pure functions, no I/O. The job script is static shell (roles/provider_common/files/job.sh and
roles/borg/files/borg.sh); this module builds the borg command lines borg.sh runs, as the instance's data
(``shell_data``).

- borg >= 1.2 is required: ``borg create --content-from-command`` (a failed dump creates no archive and the
  unit fails), ``--glob-archives``, ``borg compact`` and ``--upload-ratelimit`` all come with 1.2. Debian 12
  ships 1.2.4 and Debian 13 1.4.0; both get the same command lines.
- Archives are named ``<instance>@<host>-<UTC timestamp with microseconds>``. Neither an instance name nor a
  host name holds an ``@`` or a ``:``, and the glob that selects an instance's archives pins the timestamp's
  shape (``:`` at a fixed place), so instance ``app`` never matches ``app-2``'s archives, nor host ``db1``
  those of ``db1-old``: listing, ``latest`` and pruning stay per instance and per host in a repository that
  several instances or several hosts share.
- The job initialises the repository once: on the first backup (a remote server knows the job's key only
  after the role ran), recording the repository in a marker file in the job's cache directory. Once that
  marker names the repository, a vanished repository fails the backup instead of being created again empty.
- Exit codes: the script exports ``BORG_EXIT_CODES=legacy`` (borg 1.4 would otherwise return 3-99 for errors
  and 100-127 for warnings; borg 1.2 ignores the variable), so borg exits 0 (success), 1 (warning), 2 (error)
  or 128+N (killed by signal N). ``create``, ``prune`` and ``compact`` count a warning as success (it is
  logged); every other command (``extract``, ``list``, ``check``, ``init``) fails on any non-zero exit:
  ``extract`` warns when the dump is not in the archive and ``check`` warns when it finds damage.
- Secrets never appear in a command line: ``BORG_PASSCOMMAND`` reads the passphrase from
  ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``); the SSH key and the pinned host key come the same way and
  reach ssh through ``BORG_RSH``. Run interactively (root), the script copies them into a private temporary
  directory owned by the request's user, removed when borg exits.
"""

from __future__ import annotations

import dataclasses
import re
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import (
    _instance_job, _job_data, _job_options, _job_script, _layout, _monitoring, _retention, _secrets)
from ansible_collections.selfhost.backup.plugins.module_utils._borg_ssh import SshError, SshUrl, names_server, parse_ssh_url, ssh_command

PROVIDER = 'borg'
DEFAULT_BINARY = '/usr/bin/borg'
MIN_VERSION = (1, 2, 0)
MODERN_EXIT_CODES = (1, 4, 0)  # from here borg knows BORG_EXIT_CODES=modern (default legacy in 1.4)
KEEP_FLAGS = ('last', 'secondly', 'minutely', 'hourly', 'daily', 'weekly', 'monthly', 'yearly')
# Where borg keeps its cache and its security database (BORG_BASE_DIR): the job's CacheDirectory=, so that
# the units and an interactive restore share it and it belongs to the request's user.
CACHE_ROOT = '/var/cache'
# Exit codes of borg in the legacy scheme.
RC_SUCCESS, RC_WARNING, RC_ERROR = 0, 1, 2
# Commands for which a warning (rc 1) still counts as success.
WARNING_OK = frozenset({'create', 'prune', 'compact'})
ARCHIVE_TIMESTAMP = '{utcnow:%Y-%m-%dT%H:%M:%S.%f}'
# The marker of an initialised repository, in the job's BORG_BASE_DIR (see provider_init in borg.sh).
INIT_MARKER = 'selfhost-backup-initialised'
_TIMESTAMP_GLOB = '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].*'
_TIMESTAMP_RE = '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{6}'
_HOST = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$')
_VERSION = re.compile(r'(?:^|borg(?:-linux\S*)? )(\d+)\.(\d+)\.(\d+)')

Version = t.Tuple[int, int, int]


class BorgError(ValueError):
    """Input that cannot become a safe borg job, or a borg answer that cannot be understood."""


def parse_version(text: str) -> Version:
    """The version from ``borg --version`` output, e.g. ``borg 1.2.4``."""
    match = _VERSION.search((text or '').strip())
    if not match:
        raise BorgError(f'cannot read a borg version from {text!r}')
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def require_supported(version: Version) -> None:
    if tuple(version) < MIN_VERSION:
        raise BorgError(f'borg {".".join(map(str, version))} is too old: the jobs need borg >= 1.2 '
                        '(create --content-from-command, --glob-archives, compact)')


def knows_modern_exit_codes(version: Version) -> bool:
    return tuple(version) >= MODERN_EXIT_CODES


def succeeded(command: str, rc: int) -> bool:
    """The exit-code policy of the job script (see the module docstring), in Python for the tests and docs."""
    return rc == RC_SUCCESS or (rc == RC_WARNING and command in WARNING_OK)


def archive_prefix(instance: str, host: str) -> str:
    """``<instance>@<host>-``; both names are checked, so neither holds an ``@``, a ``:`` or a glob character."""
    _layout.Layout(PROVIDER, instance)
    if not _HOST.fullmatch(host or ''):
        raise BorgError(f'host {host!r} is not a host name ([A-Za-z0-9._-], starting with a letter or digit); '
                        'set settings.host')
    return f'{instance}@{host}-'


def archive_template(instance: str, host: str) -> str:
    """``borg create``'s archive name: unique, sortable, and recognisably this instance's on this host."""
    return f'{archive_prefix(instance, host)}{ARCHIVE_TIMESTAMP}'


def archive_glob(instance: str, host: str) -> str:
    """``--glob-archives`` of this instance on this host only."""
    return f'{archive_prefix(instance, host)}{_TIMESTAMP_GLOB}'


def archive_pattern(instance: str, host: str) -> str:
    """POSIX ERE (bash ``=~``) of an archive name of this instance and host, to check ``restore <archive>``."""
    return '^' + archive_prefix(instance, host).replace('.', '[.]') + _TIMESTAMP_RE + '$'


def global_args(lock_wait: int = 0, upload_ratelimit: int | None = None) -> list[str]:
    args = ['--lock-wait', str(int(lock_wait))]
    if upload_ratelimit:
        args += ['--upload-ratelimit', str(int(upload_ratelimit))]
    return args


def chunker_params(params: str) -> str:
    """``settings.chunker_params`` checked as borg 1.2 and 1.4 check ``--chunker-params`` (the schema checks the
    form): ``default``, ``fixed,BLOCK[,HEADER]`` or ``[buzhash,]MIN_EXP,MAX_EXP,MASK_BITS,WINDOW``."""
    parts = params.split(',')
    if parts[0] == 'default' and len(parts) == 1:
        return params
    if parts[0] == 'fixed' and len(parts) in (2, 3):
        block, header = int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
        if block < 64 or block > MAX_DATA_SIZE or header > MAX_DATA_SIZE:
            raise BorgError(f'chunker_params {params}: the block size must be 64 bytes to {MAX_DATA_SIZE}, '
                            f'the header size at most {MAX_DATA_SIZE}')
        return params
    if (parts[0] == 'buzhash' and len(parts) == 5) or (len(parts) == 4 and all(part.isdigit() for part in parts)):
        minimum, maximum, mask, window = (int(part) for part in parts[-4:])
        if not minimum <= mask <= maximum:
            raise BorgError(f'chunker_params {params}: borg requires MIN_EXP <= MASK_BITS <= MAX_EXP')
        if minimum < 6 or maximum > 23:
            raise BorgError(f'chunker_params {params}: the chunk size exponents must be 6 (64 B) to 23 (8 MiB)')
        if window % 2 == 0:
            raise BorgError(f'chunker_params {params}: the hash window size must be odd')
        return params
    raise BorgError(f'chunker_params {params}: not default, fixed,BLOCK[,HEADER] or '
                    '[buzhash,]MIN_EXP,MAX_EXP,MASK_BITS,WINDOW')


# borg's MAX_DATA_SIZE: the largest chunk it stores.
MAX_DATA_SIZE = 20971478


def create_args(version: Version, instance: str, host: str, backup_name: str,
                compression: str, chunker: str | None = None) -> list[str]:
    """``borg create`` running the dump itself; the command (``/bin/sh -c "$BACKUP_CMD"``) follows ``--``."""
    require_supported(version)
    return ['create', '--json', '--compression', compression,
            *(['--chunker-params', chunker_params(chunker)] if chunker else []),
            '--content-from-command', '--stdin-name', backup_name, f'::{archive_template(instance, host)}', '--']


def init_args(encryption: str) -> list[str]:
    return ['init', '--encryption', encryption]


def list_args(instance: str, host: str) -> list[str]:
    return ['list', '--glob-archives', archive_glob(instance, host)]


def names_args(instance: str, host: str) -> list[str]:
    """The names of this instance's archives, one a line (checkpoints hidden)."""
    return ['list', '--short', '--glob-archives', archive_glob(instance, host)]


def latest_args(instance: str, host: str) -> list[str]:
    """The newest archive of this instance (checkpoints are hidden by ``borg list`` since 1.2)."""
    return ['list', '--short', '--last', '1', '--glob-archives', archive_glob(instance, host)]


def newest_args(instance: str, host: str) -> list[str]:
    """The newest archive of this instance, as JSON (its "time" is local time, ISO 8601)."""
    return ['list', '--json', '--last', '1', '--glob-archives', archive_glob(instance, host)]


def list_json_args(instance: str, host: str) -> list[str]:
    """This instance's archives as JSON, for ``snapshots --json``; the keys of ``--format`` are added to each."""
    return ['list', '--json', '--format', '{hostname}', '--glob-archives', archive_glob(instance, host)]


# Where borg list --json keeps what snapshots --json of the restore script shows (job.sh's snapshot_list): the
# archive's name is what restore and dump take; borg lists no size of an archive (null).
SNAPSHOT_FIELDS = ('archives', 'id=name', 'time=time', 'host=hostname', 'size=size')


def prune_args(instance: str, host: str, retention: t.Mapping[str, t.Any]) -> list[str] | None:
    """``borg prune`` of this instance's archives on this host only; None without any keep rule (keep all)."""
    args = _retention.retention_flags(retention, KEEP_FLAGS)
    if not args:
        return None
    return ['prune', '--glob-archives', archive_glob(instance, host)] + args


def compact_args() -> list[str]:
    return ['compact']


def check_args(verify_data: bool = False, max_duration: int | None = None) -> list[str]:
    """``borg check``; ``--max-duration`` is a partial repository-only check, exclusive with ``--verify-data``."""
    if verify_data and max_duration:
        raise BorgError('check.verify_data and check.max_duration exclude each other (borg check)')
    if max_duration:
        return ['check', '--repository-only', '--max-duration', str(int(max_duration))]
    return ['check'] + (['--verify-data'] if verify_data else [])


@dataclasses.dataclass(frozen=True)
class Commands:
    """Everything the job script needs to know about borg for one instance."""

    binary: str
    version: Version
    instance: str
    host: str
    backup_name: str
    repository: str
    cache_dir: str
    encryption: str  # settings.encryption and settings.compression, defaults from the schema
    compression: str
    chunker_params: str | None = None  # settings.chunker_params; None: borg's own default
    remote: bool = False
    global_args: tuple[str, ...] = ('--lock-wait', '0')
    retention: tuple[str, ...] | None = None
    check: tuple[str, ...] | None = None


# The data borg.sh reads (its PROVIDER_DATA; a unit test keeps the two lists equal).
DATA_NAMES = ('BORG', 'BORG_REPOSITORY', 'BORG_ARGS', 'BORG_HOME', 'BORG_INIT_MARKER', 'BORG_REMOTE', 'BORG_SSH', 'BORG_STDIN_NAME',
              'BORG_ENCRYPTION', 'BORG_LIST', 'BORG_NEWEST', 'BORG_NAMES', 'BORG_LATEST', 'BORG_INIT', 'BORG_CREATE',
              'BORG_PRUNE', 'BORG_COMPACT', 'BORG_CHECK', 'BORG_LIST_JSON', 'BORG_SNAPSHOT_FIELDS')


def shell_data(commands: Commands) -> tuple[tuple[str, _job_data.Value], ...]:
    """The borg half of the job script's data: every borg command line borg.sh runs, as an array.

    An empty BORG_PRUNE means no retention rule (every archive is kept), an empty BORG_CHECK no check.
    Refuses borg < 1.2.
    """
    return (
        ('BORG', commands.binary),
        ('BORG_REPOSITORY', commands.repository),
        ('BORG_ARGS', list(commands.global_args)),
        ('BORG_HOME', commands.cache_dir),
        ('BORG_INIT_MARKER', f'{commands.cache_dir}/{INIT_MARKER}'),
        ('BORG_REMOTE', 'yes' if commands.remote else ''),
        ('BORG_SSH', ssh_command()),
        ('BORG_STDIN_NAME', commands.backup_name),
        ('BORG_ENCRYPTION', commands.encryption),
        ('BORG_LIST', list_args(commands.instance, commands.host)),
        ('BORG_NEWEST', newest_args(commands.instance, commands.host)),
        ('BORG_NAMES', names_args(commands.instance, commands.host)),
        ('BORG_LATEST', latest_args(commands.instance, commands.host)),
        ('BORG_INIT', init_args(commands.encryption)),
        ('BORG_CREATE', create_args(commands.version, commands.instance, commands.host, commands.backup_name,
                                    commands.compression, commands.chunker_params)),
        ('BORG_PRUNE', list(commands.retention or ())),
        ('BORG_COMPACT', compact_args()),
        ('BORG_CHECK', list(commands.check or ())),
        ('BORG_LIST_JSON', list_json_args(commands.instance, commands.host)),
        ('BORG_SNAPSHOT_FIELDS', list(SNAPSHOT_FIELDS)),
    )


def remote_server(settings: t.Mapping[str, t.Any]) -> tuple[SshUrl, str]:
    """The SSH URL of a remote repository and the pinned host key lines of its server (ending in a newline)."""
    try:
        url = parse_ssh_url(settings['repository'].get('url', ''))
    except SshError as exc:
        raise BorgError(str(exc)) from exc
    known_hosts = (settings.get('ssh') or {}).get('known_hosts')
    if not known_hosts:
        raise BorgError('a remote repository needs ssh.known_hosts, the server\'s host key line(s)')
    if not names_server(known_hosts, url.known_hosts_name):
        raise BorgError(f'ssh.known_hosts does not name the server {url.known_hosts_name} of repository.url '
                        '(on another port than 22 a line starts with [host]:port)')
    return url, known_hosts.rstrip('\n') + '\n'


def precheck(instance: str, request: t.Mapping[str, t.Any], settings: t.Mapping[str, t.Any], host: str) -> None:
    """The rules of a validated instance that its schema cannot express and no borg version changes: run on the
    controller before any host is touched (``plan`` runs them again). Raises BorgError or ProviderError."""
    dummy = request
    _secrets.secrets(_layout.Layout(PROVIDER, instance), settings.get('passphrase'), settings.get('passphrase_file'), {},
                     DATA_NAMES)
    if not settings['repository'].get('path'):
        remote_server(settings)
    job_host = settings.get('host') or host
    prune_args(instance, job_host, settings['retention'])
    archive_prefix(instance, job_host)
    if settings.get('chunker_params'):
        chunker_params(settings['chunker_params'])
    check = settings['check']
    if check['enabled']:
        check_args(check['verify_data'], check.get('max_duration'))


@dataclasses.dataclass(frozen=True)
class BorgJob(_instance_job.InstanceJob):
    """One borg instance, with the SSH details of a remote repository (all None for a local one)."""

    ssh_key: str | None
    known_hosts: str | None
    serve_path: str | None


def plan(instance: str, request: t.Mapping[str, t.Any], settings: t.Mapping[str, t.Any], version: str | Version,
         host: str, binary: str = DEFAULT_BINARY) -> BorgJob:
    """Turn a validated instance (request and settings with the schema's defaults) into a borg job."""
    the_version = t.cast(Version, parse_version(version) if isinstance(version, str) else tuple(version))
    layout = _layout.Layout(PROVIDER, instance)
    repository = settings['repository']
    local_path = repository.get('path')
    secrets = _secrets.secrets(layout, settings.get('passphrase'), settings.get('passphrase_file'), {}, DATA_NAMES)
    credentials = dict(secrets.credentials)
    ssh_key = known_hosts = serve_path = None
    if not local_path:
        url, known_hosts = remote_server(settings)
        ssh_key = layout.secret_path('ssh_key')
        credentials['ssh_key'] = ssh_key
        credentials['known_hosts'] = layout.secret_path('known_hosts')
        serve_path = url.serve_path
    limits, check, retention = settings['limits'], settings['check'], settings['retention']
    job_host = settings.get('host') or host
    commands = Commands(
        binary=binary,
        version=the_version,
        instance=instance,
        host=job_host,
        backup_name=request['backup_name'],
        repository=local_path or repository['url'],
        cache_dir=f'{CACHE_ROOT}/{layout.job_name}',
        remote=not local_path,
        encryption=settings['encryption'],
        compression=settings['compression'],
        chunker_params=settings.get('chunker_params'),
        global_args=tuple(global_args(settings['lock_wait'], limits.get('upload_ratelimit'))),
        retention=_retention.tuple_or_none(prune_args(instance, job_host, retention)),
        check=tuple(check_args(check['verify_data'], check.get('max_duration'))) if check['enabled'] else None,
    )
    shell = shell_data(commands)  # refuses borg < 1.2
    spec = _job_script.instance_spec(
        layout, request, settings, credentials, shell,
        env_names=(),
        maintenance=('backup', 'check') if commands.check else ('backup',),
        snapshot_pattern=archive_pattern(instance, job_host),
        snapshot_word='archive',
        notes=(f'Archives are named {archive_prefix(instance, job_host)}<UTC time>; borg {".".join(map(str, the_version))}, '
               'BORG_EXIT_CODES=legacy: a warning (exit 1) of create/prune/compact counts as success.',),
    )
    timer = _job_options.job_options_from_settings(spec, settings, local_path, commands.check is not None)
    drill = _job_options.drill_job_options(spec, settings, local_path)
    secret_files = secrets.files + tuple(_monitoring.monitoring_secret_files(layout, settings))
    return BorgJob(layout=layout, timer=timer, drill=drill, secret_files=secret_files, credentials=credentials,
                   local_path=local_path, ssh_key=ssh_key, known_hosts=known_hosts, serve_path=serve_path)
