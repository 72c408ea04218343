# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""restic command lines, in one place, and the restic instance plan built from a validated contract instance.

Pure functions, no I/O. The version of the installed restic decides the command lines:
``--stdin-from-command`` from 0.17 (a failed dump creates no snapshot), the legacy pipe before it (the job
script forgets the snapshot a failed dump produced); ``--retry-lock`` from 0.16.
The passphrase never appears in a command line: the units use ``RESTIC_PASSWORD_FILE`` in
``$CREDENTIALS_DIRECTORY``; run interactively, restic reads it on stdin.
"""

from __future__ import annotations

import dataclasses
import re
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import (
    _instance_job, _job_data, _job_options, _job_script, _layout, _monitoring, _retention, _secrets)

PROVIDER = 'restic'
DEFAULT_BINARY = '/usr/bin/restic'
PINNED_BINARY = '/usr/local/bin/restic'
TAG_PREFIX = 'selfhost-backup:'
STDIN_FROM_COMMAND = (0, 17, 0)
RETRY_LOCK = (0, 16, 0)
KEEP_FLAGS = ('last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly')
# Secret environment variables the role sets itself; a user's environment_secrets must not override them.
RESERVED_ENV = ('RESTIC_REPOSITORY', 'RESTIC_REPOSITORY_FILE', 'RESTIC_PASSWORD', 'RESTIC_PASSWORD_FILE',
                'RESTIC_PASSWORD_COMMAND', 'RESTIC_CACHE_DIR')
_VERSION = re.compile(r'(?:^|restic )(\d+)\.(\d+)\.(\d+)')

Version = t.Tuple[int, int, int]


class ResticError(ValueError):
    """Input that cannot become a safe restic job, or a restic answer that cannot be understood."""


def parse_version(text: str) -> Version:
    """The version from ``restic version`` output, e.g. ``restic 0.14.0 compiled with go1.19.8 on linux/amd64``."""
    match = _VERSION.search(text or '')
    if not match:
        raise ResticError(f'cannot read a restic version from {text!r}')
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def supports_stdin_from_command(version: Version) -> bool:
    return version >= STDIN_FROM_COMMAND


def supports_retry_lock(version: Version) -> bool:
    return version >= RETRY_LOCK


def tag(instance: str) -> str:
    """The tag that makes listing, ``latest`` and retention per instance in a shared repository."""
    return f'{TAG_PREFIX}{instance}'


def scope_args(instance: str, host: str) -> list[str]:
    """Snapshots of this instance on this host only. Tag and host together: a repository may be shared by
    several instances and by several hosts running an instance of the same name (one offsite repository for a
    group of hosts), and latest, listing and retention must never pick another host's dump."""
    return ['--tag', tag(instance), '--host', host]


def stdin_path(backup_name: str) -> str:
    """Path of the dump inside a snapshot: restic stores stdin as /<--stdin-filename>."""
    return f'/{backup_name}'


def global_args(version: Version, lock_wait: int = 0, upload_kib: int | None = None,
                download_kib: int | None = None, cacert: str | None = None) -> list[str]:
    args = cacert_args(cacert)
    if lock_wait and supports_retry_lock(version):
        args += ['--retry-lock', f'{lock_wait}s']
    if upload_kib:
        args += ['--limit-upload', str(upload_kib)]
    if download_kib:
        args += ['--limit-download', str(download_kib)]
    return args


def cacert_args(cacert: str | None) -> list[str]:
    """The CA certificates restic trusts for an https repository instead of the system's (settings.cacert)."""
    return ['--cacert', cacert] if cacert else []


def backup_args(version: Version, instance: str, backup_name: str, host: str) -> list[str]:
    """``restic backup`` reading the dump: from the command itself (>= 0.17) or from stdin (legacy pipe)."""
    common = ['--stdin-filename', backup_name, '--tag', tag(instance), '--host', host]
    if supports_stdin_from_command(version):
        return ['backup', '--json', '--stdin-from-command'] + common + ['--']
    return ['backup', '--json', '--stdin'] + common


def forget_args(instance: str, host: str, retention: t.Mapping[str, t.Any]) -> list[str] | None:
    """``restic forget --prune`` for this instance's tag only; None without any keep rule (keep everything)."""
    args = _retention.retention_flags(retention, KEEP_FLAGS)
    if not args:
        return None
    return ['forget'] + scope_args(instance, host) + ['--group-by', 'host,tags'] + args + ['--prune']


def check_args(read_data_subset: str | None = None) -> list[str]:
    return ['check'] + ([f'--read-data-subset={read_data_subset}'] if read_data_subset else [])


def snapshots_args(instance: str, host: str) -> list[str]:
    return ['snapshots'] + scope_args(instance, host)


def newest_args(instance: str, host: str) -> list[str]:
    """The newest snapshot of this instance on this host, as JSON (its "time" is RFC 3339)."""
    return ['snapshots', '--json', '--latest', '1'] + scope_args(instance, host)


def owned_snapshots_args(instance: str, host: str) -> list[str]:
    """This instance's snapshots as JSON: the full ids, to check that an id given to restore is one of them."""
    return ['snapshots', '--json'] + scope_args(instance, host)


# Where restic snapshots --json keeps what snapshots --json of the restore script shows (job.sh's snapshot_list):
# the list is the document itself; size is the dump's size, in the summary restic records from 0.17 on.
SNAPSHOT_FIELDS = ('.', 'id=id', 'time=time', 'host=hostname', 'size=summary.total_bytes_processed')


def dump_latest_args(instance: str, host: str, backup_name: str) -> list[str]:
    path = stdin_path(backup_name)
    return ['dump'] + scope_args(instance, host) + ['--path', path, 'latest', path]


def ls_latest_args(instance: str, host: str, backup_name: str) -> list[str]:
    """The newest snapshot of this instance as restic ls --json lists it: the dump's size, for the drill."""
    return ['ls', '--json'] + scope_args(instance, host) + ['--path', stdin_path(backup_name), 'latest']


def init_args() -> list[str]:
    return ['init']


def probe_args() -> list[str]:
    return ['cat', 'config']


# restic < 0.17 exits 1 for a missing repository; 0.17+ exits 10. Both print one of these.
_MISSING = ('unable to open config file', 'Is there a repository at the following location?', 'repository does not exist')


# A server that refuses the backend's credentials (S3: the key pair of environment_secrets; REST: the URL's user and
# password). restic < 0.17 then also prints "Is there a repository at the following location?": never read as missing.
_REFUSED = ('signature we calculated does not match', 'SignatureDoesNotMatch', 'InvalidAccessKeyId',
            'Access Key Id you provided does not exist', 'Access Denied', 'AccessDenied', '401 Unauthorized',
            '403 Forbidden')
# A TLS error (Go's crypto/tls and crypto/x509 messages). restic < 0.17 also prints "Is there a repository at the
# following location?": never read as missing, and named before a timeout. What to tell depends on the cause:
# - a certificate signed by a CA restic does not know: settings.cacert is the cure;
# - any other x509 verdict (expired or not yet valid, issued for another name): the certificate itself is wrong,
#   and another CA would not help;
# - no certificate verdict at all (the server does not speak TLS, or refused the handshake).
_TLS = ('x509: ', 'tls: failed to verify certificate', 'certificate signed by unknown authority',
        'tls: first record does not look like a TLS handshake', 'remote error: tls:')
_TLS_UNKNOWN_AUTHORITY = ('certificate signed by unknown authority', 'unknown authority')
_TLS_HINT = ('the TLS certificate of the repository\'s server is not trusted (give the CA that signed it in '
             'settings.cacert, a PEM file on the host)')
_TLS_REJECTED = 'the TLS certificate of the repository\'s server was rejected'
_TLS_FAILED = 'the TLS connection to the repository\'s server failed'
# coreutils' timeout ended restic: restic >= 0.17 retries a refusing or unreachable backend for up to 15 minutes and
# prints "Is there a repository ..." when it is stopped, which says nothing about the repository.
TIMED_OUT = 124


def probe_state(rc: int, stderr: str, timeout: int | None = None) -> str:
    """``present`` or ``absent`` from the result of ``restic cat config`` (run under coreutils' ``timeout``
    seconds); anything else is an error, which names the cause restic printed."""
    if rc == 0:
        return 'present'
    text = stderr or ''
    if any(marker in text for marker in _TLS):
        _raise_tls(text)
    if rc == TIMED_OUT:
        within = f'within {timeout} s' if timeout else 'in time'
        raise ResticError(f'restic did not answer {within} (rc={rc}): the repository is out of reach or refuses '
                          f'the credentials; restic said: {_last_error(text)}')
    if any(marker in text for marker in _REFUSED):
        raise ResticError('the repository\'s server refused the credentials (environment_secrets, or the user and '
                          f'password in repository.url): {_last_error(text)}')
    if rc == 10 or any(marker in text for marker in _MISSING):
        return 'absent'
    raise ResticError(f'restic cannot open the repository (rc={rc}): {text.strip()}')


def _raise_tls(stderr: str) -> t.NoReturn:
    """Name the TLS error restic printed: the hint that fits its cause, then restic's own line."""
    lines = [line.strip() for line in stderr.splitlines()]
    for markers, words in ((_TLS_UNKNOWN_AUTHORITY, _TLS_HINT), (('x509: ',), _TLS_REJECTED), (_TLS, _TLS_FAILED)):
        found = [line for line in lines if any(marker in line for marker in markers)]
        if found:
            raise ResticError(f'{words}; restic said: {found[-1]}')
    raise ResticError(f'{_TLS_FAILED}; restic said: {_last_error(stderr)}')


def _last_error(stderr: str) -> str:
    """The line of restic's output that names the cause: its last retry message, else its Fatal line, else all."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for marker in ('returned error', 'Fatal:'):
        found = [line for line in lines if marker in line]
        if found:
            return found[-1]
    return ' '.join(lines) or '(no output)'


@dataclasses.dataclass(frozen=True)
class Commands:
    """Everything the job script needs to know about restic for one instance."""

    binary: str
    version: Version
    instance: str
    backup_name: str
    host: str
    global_args: tuple[str, ...] = ()
    retention: tuple[str, ...] | None = None
    check: tuple[str, ...] | None = None


# The data restic.sh reads (its PROVIDER_DATA; a unit test keeps the two lists equal).
DATA_NAMES = ('RESTIC', 'RESTIC_ARGS', 'RESTIC_STDIN_FROM_COMMAND', 'RESTIC_BACKUP', 'RESTIC_SNAPSHOTS',
              'RESTIC_NEWEST', 'RESTIC_OWNED', 'RESTIC_DUMP_LATEST', 'RESTIC_DUMP_PATH', 'RESTIC_LS_LATEST', 'RESTIC_FORGET',
              'RESTIC_CHECK', 'RESTIC_SNAPSHOT_FIELDS')


def shell_data(commands: Commands) -> tuple[tuple[str, _job_data.Value], ...]:
    """The restic half of the job script's data: every restic command line restic.sh runs, as an array.

    An empty RESTIC_FORGET means no retention rule (every snapshot is kept), an empty RESTIC_CHECK no check.
    """
    return (
        ('RESTIC', commands.binary),
        ('RESTIC_ARGS', list(commands.global_args)),
        ('RESTIC_STDIN_FROM_COMMAND', 'yes' if supports_stdin_from_command(commands.version) else ''),
        ('RESTIC_BACKUP', backup_args(commands.version, commands.instance, commands.backup_name, commands.host)),
        ('RESTIC_SNAPSHOTS', snapshots_args(commands.instance, commands.host)),
        ('RESTIC_NEWEST', newest_args(commands.instance, commands.host)),
        ('RESTIC_OWNED', owned_snapshots_args(commands.instance, commands.host)),
        ('RESTIC_DUMP_LATEST', dump_latest_args(commands.instance, commands.host, commands.backup_name)),
        ('RESTIC_DUMP_PATH', stdin_path(commands.backup_name)),
        ('RESTIC_LS_LATEST', ls_latest_args(commands.instance, commands.host, commands.backup_name)),
        ('RESTIC_FORGET', list(commands.retention or ())),
        ('RESTIC_CHECK', list(commands.check or ())),
        ('RESTIC_SNAPSHOT_FIELDS', list(SNAPSHOT_FIELDS)),
    )


@dataclasses.dataclass(frozen=True)
class ResticJob(_instance_job.InstanceJob):
    """One restic instance; ``env_files`` maps backend variables to their secret files, for restic_repository."""

    env_files: dict[str, str]


def _instance_secrets(layout: _layout.Layout, settings: t.Mapping[str, t.Any]) -> _secrets.Secrets:
    """The passphrase and the backend's secret variables, RESTIC_REPOSITORY among them."""
    repository = settings['repository']
    environment_secrets = dict(settings['environment_secrets'])
    for name in sorted(environment_secrets):
        if name in RESERVED_ENV:
            raise ResticError(f'environment_secrets.{name} is set by the role itself; use repository/passphrase')
    # The repository goes through the secrets too: a URL may hold credentials (rest:https://user:pass@host/).
    environment_secrets['RESTIC_REPOSITORY'] = repository.get('path') or repository['url']
    return _secrets.secrets(layout, settings.get('passphrase'), settings.get('passphrase_file'), environment_secrets,
                            DATA_NAMES)


def precheck(instance: str, request: t.Mapping[str, t.Any], settings: t.Mapping[str, t.Any], host: str) -> None:
    """The rules of a validated instance that its schema cannot express and no tool version changes: run on the
    controller before any host is touched (``plan`` runs them again). Raises ResticError or ProviderError."""
    dummy = request
    _instance_secrets(_layout.Layout(PROVIDER, instance), settings)
    forget_args(instance, settings.get('host') or host, settings['retention'])


def plan(instance: str, request: t.Mapping[str, t.Any], settings: t.Mapping[str, t.Any], version: str | Version,
         host: str, binary: str = DEFAULT_BINARY) -> ResticJob:
    """Turn a validated instance (request and settings with the schema's defaults) into a restic job."""
    the_version = parse_version(version) if isinstance(version, str) else tuple(version)
    layout = _layout.Layout(PROVIDER, instance)
    local_path = settings['repository'].get('path')
    secrets = _instance_secrets(layout, settings)
    limits, check = settings['limits'], settings['check']
    job_host = settings.get('host') or host
    commands = Commands(
        binary=binary,
        version=t.cast(Version, the_version),
        instance=instance,
        backup_name=request['backup_name'],
        host=job_host,
        global_args=tuple(global_args(t.cast(Version, the_version), settings['lock_wait'],
                                      limits.get('upload_kib'), limits.get('download_kib'),
                                      settings.get('cacert'))),
        retention=_retention.tuple_or_none(forget_args(instance, job_host, settings['retention'])),
        check=tuple(check_args(check.get('read_data_subset'))) if check['enabled'] else None,
    )
    maintenance = ('backup', 'check') if commands.check else ('backup',)
    spec = _job_script.instance_spec(
        layout, request, settings, secrets.credentials, shell_data(commands),
        env_names=secrets.env_names,
        maintenance=maintenance,
        notes=(f'Snapshots carry the tag {tag(instance)}; restic {".".join(map(str, the_version))}, '
               f'{"--stdin-from-command" if supports_stdin_from_command(commands.version) else "legacy pipe"}.',),
    )
    timer = _job_options.job_options_from_settings(spec, settings, local_path, commands.check is not None)
    drill = _job_options.drill_job_options(spec, settings, local_path)
    env_files = {name: secrets.credentials[_secrets.env_credential(name)] for name in secrets.env_names}
    secret_files = secrets.files + tuple(_monitoring.monitoring_secret_files(layout, settings))
    return ResticJob(layout=layout, timer=timer, drill=drill, secret_files=secret_files, credentials=secrets.credentials,
                     env_files=env_files, local_path=local_path)
