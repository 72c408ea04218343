# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""borg command lines, in one place, and the borg instance plan built from a validated contract instance.

Pure functions, no I/O. The job script is ``_provider.SCRIPT_TEMPLATE``; this module adds the borg half:
the shell functions ``provider_snapshots``, ``provider_has_snapshot``, ``provider_dump``, ``provider_backup`` and ``provider_check``.

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
import shlex
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _provider

PROVIDER = 'borg'
DEFAULT_BINARY = '/usr/bin/borg'
MIN_VERSION = (1, 2, 0)
MODERN_EXIT_CODES = (1, 4, 0)  # from here borg knows BORG_EXIT_CODES=modern (default legacy in 1.4)
DEFAULT_ENCRYPTION = 'repokey-blake2'
DEFAULT_COMPRESSION = 'zstd,3'
KEEP_FLAGS = ('last', 'secondly', 'minutely', 'hourly', 'daily', 'weekly', 'monthly', 'yearly')
# Where borg keeps its cache and its security database (BORG_BASE_DIR): the job's CacheDirectory=, so that
# the units and an interactive restore share it and it belongs to the request's user.
CACHE_ROOT = '/var/cache'
# Exit codes of borg in the legacy scheme.
RC_SUCCESS, RC_WARNING, RC_ERROR = 0, 1, 2
# Commands for which a warning (rc 1) still counts as success.
WARNING_OK = frozenset({'create', 'prune', 'compact'})
ARCHIVE_TIMESTAMP = '{utcnow:%Y-%m-%dT%H:%M:%S.%f}'
# The marker of an initialised repository, in the job's BORG_BASE_DIR (see provider_init in FUNCTIONS).
INIT_MARKER = 'selfhost-backup-initialised'
_TIMESTAMP_GLOB = '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].*'
_TIMESTAMP_RE = '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{6}'
_HOST = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$')
_VERSION = re.compile(r'(?:^|borg(?:-linux\S*)? )(\d+)\.(\d+)\.(\d+)')
_SSH_URL = re.compile(r'^ssh://(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?(?P<path>/\S*)$')

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
    _provider.Layout(PROVIDER, instance)
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


def create_args(version: Version, instance: str, host: str, backup_name: str,
                compression: str = DEFAULT_COMPRESSION) -> list[str]:
    """``borg create`` running the dump itself; the command (``/bin/sh -c "$BACKUP_CMD"``) follows ``--``."""
    require_supported(version)
    return ['create', '--json', '--compression', compression, '--content-from-command', '--stdin-name', backup_name,
            f'::{archive_template(instance, host)}', '--']


def init_args(encryption: str = DEFAULT_ENCRYPTION) -> list[str]:
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


def extract_args(archive: str, backup_name: str) -> list[str]:
    return ['extract', '--stdout', f'::{archive}', backup_name]


def prune_args(instance: str, host: str, retention: t.Mapping[str, t.Any]) -> list[str] | None:
    """``borg prune`` of this instance's archives on this host only; None without any keep rule (keep all)."""
    args = _provider.retention_flags(retention, KEEP_FLAGS)
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
class SshUrl:
    user: str
    host: str
    port: int | None
    path: str

    @property
    def known_hosts_name(self) -> str:
        """How ssh names this server in known_hosts: ``host`` on port 22, else ``[host]:port``."""
        return self.host if self.port in (None, 22) else f'[{self.host}]:{self.port}'

    @property
    def serve_path(self) -> str:
        """The path ``borg serve --restrict-to-path`` sees: absolute, or relative to the home (``/~/`` or ``/./``)."""
        for home in ('/~/', '/./'):
            if self.path.startswith(home):
                return self.path[len(home):]
        return self.path


def parse_ssh_url(url: str) -> SshUrl:
    match = _SSH_URL.fullmatch(url or '')
    if not match:
        raise BorgError(f'repository.url {url!r} is not ssh://user@host[:port]/path')
    port = int(match.group('port')) if match.group('port') else None
    if port is not None and not 0 < port < 65536:
        raise BorgError(f'repository.url {url!r}: port {port} is out of range')
    return SshUrl(match.group('user'), match.group('host'), port, match.group('path'))


def names_server(known_hosts: str, name: str) -> bool:
    """Whether a known_hosts text has a line for ``name``; hashed lines (``|1|...``) cannot be read, so they count."""
    for line in known_hosts.splitlines():
        fields = line.split()
        if fields and (fields[0].startswith('|1|') or name in fields[0].split(',')):
            return True
    return False


def authorized_keys_line(public_key: str, path: str, append_only: bool = True) -> str:
    """The server side of a remote repository: this job's key may only run borg serve on its path."""
    command = ['borg', 'serve', '--restrict-to-path', path] + (['--append-only'] if append_only else [])
    return f'command="{_sh(command)}",restrict {public_key.strip()}'


def _sh(args: t.Sequence[str]) -> str:
    return ' '.join(shlex.quote(str(arg)) for arg in args)


def rsh(directory: str) -> str:
    """``BORG_RSH``: the job's key and the pinned host key only; an unknown or changed host key fails."""
    return _sh(['ssh', '-F', 'none', '-i', f'{directory}/ssh_key', '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
                '-o', f'UserKnownHostsFile={directory}/known_hosts', '-o', 'GlobalKnownHostsFile=/dev/null',
                '-o', 'StrictHostKeyChecking=yes', '-o', 'UpdateHostKeys=no'])


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
    remote: bool = False
    encryption: str = DEFAULT_ENCRYPTION
    compression: str = DEFAULT_COMPRESSION
    global_args: tuple[str, ...] = ('--lock-wait', '0')
    retention: tuple[str, ...] | None = None
    check: tuple[str, ...] | None = None


FUNCTIONS = r'''readonly BORG=@@BINARY@@
readonly BORG_REPOSITORY=@@REPOSITORY@@
readonly BORG_ARGS=@@GLOBAL@@
readonly BORG_HOME=@@CACHE@@
readonly BORG_REMOTE=@@REMOTE@@
readonly BORG_STDIN_NAME=@@STDIN_NAME@@
readonly INIT_MARKER="$BORG_HOME"/@@MARKER@@

# borg as the request's user; its exit code unchanged. In a unit the secrets are in $CREDENTIALS_DIRECTORY.
# Interactively (root) they are copied into a private directory the request's user owns, removed on exit; the
# directory is named after the shell that made it, so that the next run removes what a killed one left.
# The secrets reach borg and ssh as file paths (BORG_PASSCOMMAND, BORG_RSH), never on a command line.
borg_() (
  if in_unit; then
    dir="$CREDENTIALS_DIRECTORY"
  else
    remove_orphaned_secrets
    dir="$(mktemp -d "/run/borg-restore.$BASHPID.XXXXXXXX")"
    trap 'rm -rf -- "$dir"' EXIT
    cp -- "$(secret passphrase)" "$dir/passphrase"
    if [ -n "$BORG_REMOTE" ]; then
      cp -- "$(secret ssh_key)" "$dir/ssh_key"
      cp -- "$(secret known_hosts)" "$dir/known_hosts"
    fi
    chown -R -- "$JOB_USER" "$dir"
    [ -d "$BORG_HOME" ] || install -d -m 0700 -o "$JOB_USER" -g "$(id -g "$JOB_USER")" -- "$BORG_HOME"
  fi
  export BORG_REPO="$BORG_REPOSITORY" BORG_BASE_DIR="$BORG_HOME" BORG_EXIT_CODES=legacy
  export BORG_PASSCOMMAND="cat $dir/passphrase"
  if [ -n "$BORG_REMOTE" ]; then
    export BORG_RSH=@@RSH@@
  fi
  as_user "$BORG" "${BORG_ARGS[@]}" "$@"
)

# The secrets directories of interactive runs that were killed (SIGKILL runs no EXIT trap): their shell is gone.
remove_orphaned_secrets() {
  local orphan pid
  for orphan in /run/borg-restore.*; do
    pid="${orphan#/run/borg-restore.}"
    pid="${pid%%.*}"
    [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null || continue
    rm -rf -- "$orphan"
  done
}

# Exit-code policy for the commands that write: a warning (1) is logged and counts as success;
# errors (2) and signals (128+N) fail. BORG_EXIT_CODES=legacy keeps borg 1.4 to these codes.
borg_warning_ok() {
  local rc=0
  borg_ "$@" || rc=$?
  if [ "$rc" -eq 1 ]; then
    printf '%s: borg %s finished with a warning (exit 1): counted as success\n' "$SCRIPT" "$1" >&2
    return 0
  fi
  return "$rc"
}

provider_snapshots() {
  borg_ @@LIST@@
}

# Before the first backup has created the repository there is no archive yet, which is no error (selfhost-backup
# status says pending). Once the marker names the repository, a repository that is not there fails: it vanished.
provider_newest_json() {
  local errors rc=0
  errors="$(mktemp)"
  borg_ @@NEWEST@@ 2>"$errors" || rc=$?
  if [ "$rc" -ne 0 ] && [ "$(cat -- "$INIT_MARKER" 2>/dev/null)" != "$BORG_REPOSITORY" ] \
      && grep -qE 'does not exist|is not a valid repository' "$errors"; then
    rc=0
  else
    cat -- "$errors" >&2
  fi
  rm -f -- "$errors"
  return "$rc"
}

# Whether this instance has that archive (latest: any archive); the restore checks it before anything stops.
provider_has_snapshot() {
  local names
  names="$(borg_ @@NAMES@@)" || fail "cannot list the archives of this instance"
  if [ "$1" = latest ]; then
    [ -n "$names" ]
  else
    grep -qxF -- "$1" <<<"$names"
  fi
}

# Every non-zero exit fails here: borg extract warns (1) when the dump is not in the archive.
provider_dump() {
  local archive="$1"
  if [ "$archive" = latest ]; then
    archive="$(borg_ @@LATEST@@)" || fail "cannot list the archives of this instance"
    [ -n "$archive" ] || fail "instance $INSTANCE has no archive yet"
  fi
  borg_ extract --stdout "::$archive" "$BORG_STDIN_NAME"
}

# Create the repository on the first backup only (a remote server knows the job's key only after the role
# ran). The marker records which repository this job has seen: once it names this repository, a vanished
# repository fails the backup ("does not exist") instead of silently starting again from an empty one.
provider_init() {
  local out rc=0
  if [ "$(cat -- "$INIT_MARKER" 2>/dev/null)" = "$BORG_REPOSITORY" ]; then
    return 0
  fi
  out="$(borg_ @@INIT@@ 2>&1)" || rc=$?
  if [ "$rc" -eq 0 ]; then
    printf '%s: initialised the repository (encryption %s)\n' "$SCRIPT" @@ENCRYPTION@@ >&2
  else
    case "$out" in
      *"already exists"*) ;;
      *) printf '%s\n' "$out" >&2
         fail "cannot initialise the repository (borg init exit $rc)" ;;
    esac
  fi
  printf '%s\n' "$BORG_REPOSITORY" > "$INIT_MARKER"
}

provider_retention() {
@@RETENTION@@
}
@@CHECK@@
# borg runs the dump itself: when it fails, borg creates no archive and exits 2, and the unit fails.
# --json: the archive's statistics on stdout, of which the deduplicated size is what the backup added. An empty
# dump (backup_cmd exits 0 having written nothing) makes an archive that would count as good and, pruned in,
# push the good ones out: it is deleted and the backup fails. Retention runs only after a good backup. Telling
# an empty dump costs one more repository read (list): borg's statistics count the archive's metadata too.
provider_backup() {
  local stats status borg_rc=0 archive size
  provider_init
  status="$(mktemp)"
  stats="$(borg_warning_ok @@CREATE@@ "${RUN_BACKUP_CMD[@]}" "$status" "${BACKUP_CMD_HIDES[@]}")" || borg_rc=$?
  printf '%s\n' "$stats"
  [ "$borg_rc" -eq 0 ] \
    || fail "backup failed (backup_cmd $(backup_cmd_outcome "$status"), borg exit $borg_rc): no archive created"
  rm -f -- "$status"
  # The archive's original_size counts its metadata too: the dump's own size is that of its one item.
  archive="$(sed -n 's/^ *"name": *"\([^"]*\)",\{0,1\}$/\1/p' <<<"$stats" | head -n 1)"
  [ -n "$archive" ] && size="$(borg_ list --format '{size}{NL}' "::$archive")" \
    || fail "cannot read the size of the dump in archive '$archive'"
  if [ "$size" = 0 ]; then
    borg_warning_ok delete "::$archive" \
      || fail "backup failed: backup_cmd wrote nothing, and the empty archive '$archive' could not be deleted: delete it by hand"
    fail "backup failed: backup_cmd exited 0 but wrote nothing (an empty dump is no backup): archive $archive deleted, nothing kept"
  fi
  provider_retention
  record_backup "$(json_number deduplicated_size <<<"$stats")"
}

# The first number called $1 in borg's indented --json output on stdin.
json_number() {
  sed -n "s/^ *\"$1\": *\([0-9]*\).*/\1/p" | head -n 1
}

# The number of archives of this instance (for the metrics).
provider_snapshot_count() {
  local names
  names="$(borg_ @@NAMES@@)" || return 1
  grep -c . <<<"$names" || true
}'''


def shell_functions(commands: Commands) -> str:
    """The borg half of the job script (see _provider.SCRIPT_TEMPLATE for the other half)."""
    if commands.retention:
        retention = (f'  borg_warning_ok {_sh(commands.retention)} || fail "borg prune failed"\n'
                     f'  borg_warning_ok {_sh(compact_args())} || fail "borg compact failed"')
    else:
        retention = '  : # no retention rule: every archive is kept'
    check = f'\nprovider_check() {{\n  borg_ {_sh(commands.check)}\n}}\n' if commands.check else ''
    replacements = {
        '@@BINARY@@': shlex.quote(commands.binary),
        '@@REPOSITORY@@': shlex.quote(commands.repository),
        '@@GLOBAL@@': '(' + _sh(commands.global_args) + ')',
        '@@CACHE@@': shlex.quote(commands.cache_dir),
        '@@REMOTE@@': 'yes' if commands.remote else "''",
        '@@STDIN_NAME@@': shlex.quote(commands.backup_name),
        '@@MARKER@@': shlex.quote(INIT_MARKER),
        '@@RSH@@': '"' + rsh('$dir') + '"',
        '@@LIST@@': _sh(list_args(commands.instance, commands.host)),
        '@@NEWEST@@': _sh(newest_args(commands.instance, commands.host)),
        '@@LATEST@@': _sh(latest_args(commands.instance, commands.host)),
        '@@NAMES@@': _sh(names_args(commands.instance, commands.host)),
        '@@INIT@@': _sh(init_args(commands.encryption)),
        '@@ENCRYPTION@@': shlex.quote(commands.encryption),
        '@@RETENTION@@': retention,
        '@@CHECK@@': check,
        '@@CREATE@@': _sh(create_args(commands.version, commands.instance, commands.host, commands.backup_name,
                                      commands.compression)),
    }
    return _provider.fill_template(FUNCTIONS, replacements)


def remote_server(settings: t.Mapping[str, t.Any]) -> tuple[SshUrl, str]:
    """The SSH URL of a remote repository and the pinned host key lines of its server (ending in a newline)."""
    url = parse_ssh_url(settings['repository'].get('url', ''))
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
    _provider.secrets(_provider.Layout(PROVIDER, instance), settings.get('passphrase'), settings.get('passphrase_file'), {})
    if not settings['repository'].get('path'):
        remote_server(settings)
    job_host = settings.get('host') or host
    prune_args(instance, job_host, settings.get('retention') or {})
    archive_prefix(instance, job_host)
    check = settings.get('check') or {}
    if check.get('enabled'):
        check_args(bool(check.get('verify_data')), check.get('max_duration'))


@dataclasses.dataclass(frozen=True)
class Plan(_provider.Plan):
    """One borg instance, with the SSH details of a remote repository (all None for a local one)."""

    ssh_key: str | None
    known_hosts: str | None
    serve_path: str | None


def plan(instance: str, request: t.Mapping[str, t.Any], settings: t.Mapping[str, t.Any], version: str | Version,
         host: str, binary: str = DEFAULT_BINARY) -> Plan:
    """Turn a validated instance (request and settings with the schema's defaults) into a borg job."""
    the_version = t.cast(Version, parse_version(version) if isinstance(version, str) else tuple(version))
    layout = _provider.Layout(PROVIDER, instance)
    repository = settings['repository']
    local_path = repository.get('path')
    secrets = _provider.secrets(layout, settings.get('passphrase'), settings.get('passphrase_file'), {})
    credentials = dict(secrets.credentials)
    ssh_key = known_hosts = serve_path = None
    if not local_path:
        url, known_hosts = remote_server(settings)
        ssh_key = layout.secret_path('ssh_key')
        credentials['ssh_key'] = ssh_key
        credentials['known_hosts'] = layout.secret_path('known_hosts')
        serve_path = url.serve_path
    limits = settings.get('limits') or {}
    check = settings.get('check') or {}
    retention = settings.get('retention') or {}
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
        encryption=settings.get('encryption', DEFAULT_ENCRYPTION),
        compression=settings.get('compression', DEFAULT_COMPRESSION),
        global_args=tuple(global_args(settings.get('lock_wait', 0), limits.get('upload_ratelimit'))),
        retention=_provider.tuple_or_none(prune_args(instance, job_host, retention)),
        check=tuple(check_args(bool(check.get('verify_data')), check.get('max_duration'))) if check.get('enabled') else None,
    )
    shell = shell_functions(commands)  # refuses borg < 1.2
    spec = _provider.ScriptSpec(
        layout=layout,
        user=request['user'],
        backup_name=request['backup_name'],
        backup_cmd=request['backup_cmd'],
        restore_cmd=request['restore_cmd'],
        credentials=credentials,
        env_names=(),
        stop_units=_provider.stop_units(settings),
        monitoring=_provider.monitoring(layout, settings),
        functions=shell,
        maintenance=('backup', 'check') if commands.check else ('backup',),
        snapshot_pattern=archive_pattern(instance, job_host),
        snapshot_word='archive',
        notes=(f'Archives are named {archive_prefix(instance, job_host)}<UTC time>; borg {".".join(map(str, the_version))}, '
               'BORG_EXIT_CODES=legacy: a warning (exit 1) of create/prune/compact counts as success.',),
    )
    timer = _provider.job_options_from_settings(spec, settings, local_path, commands.check is not None)
    secret_files = secrets.files + tuple(_provider.monitoring_secret_files(layout, settings))
    return Plan(layout=layout, timer=timer, secret_files=secret_files, credentials=credentials,
                local_path=local_path, ssh_key=ssh_key, known_hosts=known_hosts, serve_path=serve_path)
