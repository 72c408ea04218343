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
import shlex
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _provider

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
                download_kib: int | None = None) -> list[str]:
    args = []
    if lock_wait and supports_retry_lock(version):
        args += ['--retry-lock', f'{lock_wait}s']
    if upload_kib:
        args += ['--limit-upload', str(upload_kib)]
    if download_kib:
        args += ['--limit-download', str(download_kib)]
    return args


def backup_args(version: Version, instance: str, backup_name: str, host: str) -> list[str]:
    """``restic backup`` reading the dump: from the command itself (>= 0.17) or from stdin (legacy pipe)."""
    common = ['--stdin-filename', backup_name, '--tag', tag(instance), '--host', host]
    if supports_stdin_from_command(version):
        return ['backup', '--json', '--stdin-from-command'] + common + ['--']
    return ['backup', '--json', '--stdin'] + common


def forget_args(instance: str, host: str, retention: t.Mapping[str, t.Any]) -> list[str] | None:
    """``restic forget --prune`` for this instance's tag only; None without any keep rule (keep everything)."""
    args = _provider.retention_flags(retention, KEEP_FLAGS)
    if not args:
        return None
    return ['forget'] + scope_args(instance, host) + ['--group-by', 'host,tags'] + args + ['--prune']


def forget_snapshot_args(snapshot: str) -> list[str]:
    return ['forget', snapshot]


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


def dump_latest_args(instance: str, host: str, backup_name: str) -> list[str]:
    path = stdin_path(backup_name)
    return ['dump'] + scope_args(instance, host) + ['--path', path, 'latest', path]


def dump_args(snapshot: str, backup_name: str) -> list[str]:
    return ['dump', snapshot, stdin_path(backup_name)]


def init_args() -> list[str]:
    return ['init']


def probe_args() -> list[str]:
    return ['cat', 'config']


# restic < 0.17 exits 1 for a missing repository; 0.17+ exits 10. Both print one of these.
_MISSING = ('unable to open config file', 'Is there a repository at the following location?', 'repository does not exist')


def probe_state(rc: int, stderr: str) -> str:
    """``present`` or ``absent`` from the result of ``restic cat config``; anything else is an error."""
    if rc == 0:
        return 'present'
    if rc == 10 or any(text in (stderr or '') for text in _MISSING):
        return 'absent'
    raise ResticError(f'restic cannot open the repository (rc={rc}): {(stderr or "").strip()}')


def _sh(args: t.Sequence[str]) -> str:
    return ' '.join(shlex.quote(arg) for arg in args)


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


LEGACY_BACKUP = r'''# restic < 0.17: the dump is piped in and restic stores whatever arrived, so a failed dump is detected here
# (backup_cmd's own exit status); finish_backup then forgets the snapshot it produced.
provider_backup() {
  local out status restic_rc
  begin_run backup
  out="$(mktemp)" status="$(mktemp)"
  set +e
  "${RUN_BACKUP_CMD[@]}" "$status" "${BACKUP_CMD_HIDES[@]}" | restic_ @@BACKUP@@ >"$out"
  restic_rc="${PIPESTATUS[1]}"
  set -e
  finish_backup "$out" "$(backup_cmd_outcome "$status")" "$restic_rc"
  end_run backup
}
'''

MODERN_BACKUP = r'''# restic >= 0.17 runs the dump itself and fails when it fails. It may still have saved a snapshot (an empty
# dump makes it exit 3 after saving one); finish_backup forgets it. restic's messages pass through
# stop_abandoned_backup, through a FIFO, so that restic's own exit status stays at hand.
provider_backup() {
  local out status restic_rc messages job
  begin_run backup
  out="$(mktemp)" status="$(mktemp)"
  messages="$(mktemp -d)"
  mkfifo -m 0600 -- "$messages/fifo"
  set +e
  restic_ @@BACKUP@@ "${RUN_BACKUP_CMD[@]}" "$status" "${BACKUP_CMD_HIDES[@]}" >"$out" 2>"$messages/fifo" &
  job=$!
  stop_abandoned_backup "$job" <"$messages/fifo"
  wait "$job"
  restic_rc=$?
  set -e
  rm -rf -- "$messages"
  finish_backup "$out" "$(backup_cmd_outcome "$status")" "$restic_rc"
  end_run backup
}

# restic's messages, passed on unchanged; $1 is the background job whose child is restic. Once the repository
# has refused data for good (a full disk: "Save(<data/...>) failed: ... no space left on device", a server that
# keeps failing) the backup cannot succeed, but restic 0.17 and 0.18 then wait for the dump to end while the
# dump waits for restic to read the rest of it (restic issue 5683): the run would hang until limits.timeout.
# restic is stopped at that message instead: on SIGTERM it ends the dump, removes its lock and exits non-zero
# with the repository's error.
stop_abandoned_backup() {
  local line stopped='' refused=$'^(\e\\[2K)?Save\\(<(data|index|snapshot)/[0-9a-f]+>\\) failed: '
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\n' "$line" >&2
    if [ -z "$stopped" ] && [[ "$line" =~ $refused ]]; then
      stopped=yes
      printf '%s: the repository refused the backup: stopping restic, which would wait for the dump for ever\n' \
        "$SCRIPT" >&2
      kill -TERM $(children_of "$1") 2>/dev/null
    fi
  done
}

# The processes whose parent is $1, read from /proc (procps is not always installed).
children_of() {
  local stat line ppid
  for stat in /proc/[0-9]*/stat; do
    IFS= read -r line <"$stat" 2>/dev/null || continue
    read -r _ ppid _ <<<"${line##*) }"
    [ "$ppid" != "$1" ] || printf '%s\n' "${line%% *}"
  done
}
'''

# Shared by both backup paths: a failed backup never leaves a snapshot that latest could pick, and retention
# runs only after a good one.
FINISH_BACKUP = r'''# $1: restic's --json output, $2: what became of backup_cmd ("exit N", or "left no exit status ..."), $3: restic's exit status.
# A dump that is empty although backup_cmd succeeded is no backup either (a requester that lost its database).
finish_backup() {
  local out="$1" dump="$2" restic_rc="$3" snapshot summary processed
  snapshot="$(sed -n 's/.*"snapshot_id":"\([0-9a-f]\{8,\}\)".*/\1/p' "$out" | tail -n 1)"
  summary="$(grep '"message_type":"summary"' "$out")" || true
  processed="$(sed -n 's/.*"total_bytes_processed":\([0-9]*\).*/\1/p' <<<"$summary")"
  printf '%s\n' "$summary"
  rm -f "$out"
  if [ "$dump" != "exit 0" ] || [ "$restic_rc" -ne 0 ] || [ "$processed" = 0 ]; then
    [ -z "$snapshot" ] || forget_failed_snapshot "$snapshot"
    if [ "$dump" = "exit 0" ] && [ "$processed" = 0 ]; then
      fail "backup failed: backup_cmd exited 0 but wrote nothing (an empty dump is no backup; restic exit $restic_rc): no snapshot kept"
    fi
    fail "backup failed (backup_cmd $dump, restic exit $restic_rc): no snapshot kept"
  fi
  provider_retention
  record_backup "$(sed -n 's/.*"data_added":\([0-9]*\).*/\1/p' <<<"$summary")"
}

# Another job (a check, a prune, another instance) may hold the repository's exclusive lock, and restic < 0.16
# cannot wait for it: retry for a while rather than leave the failed snapshot as latest.
forget_failed_snapshot() {
  local snapshot="$1" try
  printf '%s: forgetting snapshot %s of the failed backup\n' "$SCRIPT" "$snapshot" >&2
  for try in 1 2 3 4 5 6 7 8 9 10; do
    restic_ forget "$snapshot" >&2 && return 0
    printf '%s: forget failed (try %s); retrying\n' "$SCRIPT" "$try" >&2
    sleep "$FORGET_RETRY_SECONDS"
  done
  fail "could not forget snapshot $snapshot of a failed backup: forget it by hand (restic forget $snapshot)"
}
'''

FUNCTIONS = r'''readonly RESTIC=@@BINARY@@
readonly RESTIC_ARGS=@@GLOBAL@@
readonly FORGET_RETRY_SECONDS="${SELFHOST_BACKUP_FORGET_RETRY_SECONDS:-30}"

# restic as the request's user. In a unit: RESTIC_PASSWORD_FILE in $CREDENTIALS_DIRECTORY and the unit's cache.
# Interactively (root): the passphrase on restic's stdin, opened by root, never on a command line; the units'
# cache once they have made it (a restore then reads the index from there, not from the repository).
restic_() (
  export_secrets
  if in_unit; then
    export RESTIC_PASSWORD_FILE="$CREDENTIALS_DIRECTORY/passphrase"
    exec "$RESTIC" "${RESTIC_ARGS[@]}" --cache-dir "${CACHE_DIRECTORY:?}" "$@"
  fi
  local cache=(--no-cache)
  [ ! -d "$JOB_CACHE" ] || cache=(--cache-dir "$JOB_CACHE")
  as_user "$RESTIC" "${RESTIC_ARGS[@]}" "${cache[@]}" "$@" <"$(secret passphrase)"
)

provider_snapshots() {
  restic_ @@SNAPSHOTS@@
}

provider_newest_json() {
  restic_ --quiet @@NEWEST@@
}

# The number of snapshots of this instance (for the metrics).
provider_snapshot_count() {
  local owned
  owned="$(restic_ --quiet @@OWNED@@)" || return 1
  grep -o '"short_id":' <<<"$owned" | wc -l
}

provider_dump() {
  if [ "$1" = latest ]; then
    restic_ --quiet @@DUMP_LATEST@@
  else
    restic_ --quiet dump "$1" @@DUMP_PATH@@
  fi
}

# Whether "latest" or the id $1 (hex, checked by the caller) is a snapshot of THIS instance: in a shared
# repository an id may name another instance's snapshot.
provider_has_snapshot() {
  local owned
  owned="$(restic_ --quiet @@OWNED@@)" || fail "cannot list the snapshots of this instance"
  if [ "$1" = latest ]; then
    [[ "$owned" == *'"id":"'* ]]
  else
    [[ "$owned" == *"\"id\":\"$1"* ]]
  fi
}

provider_retention() {
@@RETENTION@@
}

# A restic killed hard (kill -9, OOM, power loss, a timeout) leaves its lock, and the next exclusive step
# (forget --prune, check) would fail on it for ever. Each unit step (backup, check) leaves a mark in the cache
# directory that only its success removes; a mark found at the start (a run that failed, was killed or still
# runs) makes the step run restic unlock first. unlock removes stale locks only: made on this host by a process
# that is gone, or not refreshed for 30 minutes; a live run's lock (refreshed every 5 minutes) stays. After a
# good run nothing is left to clear, and the next run does not open the repository once more for it.
readonly UNFINISHED_MARK="$JOB_CACHE/restic-unfinished"

begin_run() {
  local mark step
  if compgen -G "$UNFINISHED_MARK.*" >/dev/null; then
    if restic_ unlock; then
      # The marks of runs that are over are cleared; a step running beside this one keeps its own, so that
      # its own failure still makes the next run unlock.
      for mark in "$UNFINISHED_MARK".*; do
        step="${mark##*.}"
        [ "$step" != "$1" ] && systemctl is-active --quiet "$(step_unit "$step")" || rm -f -- "$mark"
      done
    else
      printf '%s: could not remove stale locks (restic unlock failed)\n' "$SCRIPT" >&2
    fi
  fi
  : >"$UNFINISHED_MARK.$1"
}

# The unit a step runs in: the backup service, or its extra job <service name>-<step>.service.
step_unit() {
  if [ "$1" = backup ]; then
    printf '%s\n' "$BACKUP_SERVICE"
  else
    printf '%s-%s.service\n' "${BACKUP_SERVICE%.service}" "$1"
  fi
}

end_run() {
  rm -f -- "$UNFINISHED_MARK.$1"
}
@@CHECK@@
@@BACKUP_FUNCTION@@
@@FINISH_BACKUP@@'''


def shell_functions(commands: Commands) -> str:
    """The restic half of the job script (see _provider.SCRIPT_TEMPLATE for the other half)."""
    backup = _sh(backup_args(commands.version, commands.instance, commands.backup_name, commands.host))
    template = MODERN_BACKUP if supports_stdin_from_command(commands.version) else LEGACY_BACKUP
    retention = (
        f'  restic_ {_sh(commands.retention)}' if commands.retention
        else '  : # no retention rule: every snapshot is kept'
    )
    check = (f'\nprovider_check() {{\n  begin_run check\n  restic_ {_sh(commands.check)}\n  end_run check\n}}\n'
             if commands.check else '')
    replacements = {
        '@@BINARY@@': shlex.quote(commands.binary),
        '@@GLOBAL@@': '(' + _sh(commands.global_args) + ')',
        '@@SNAPSHOTS@@': _sh(snapshots_args(commands.instance, commands.host)),
        '@@NEWEST@@': _sh(newest_args(commands.instance, commands.host)),
        '@@DUMP_LATEST@@': _sh(dump_latest_args(commands.instance, commands.host, commands.backup_name)),
        '@@DUMP_PATH@@': shlex.quote(stdin_path(commands.backup_name)),
        '@@OWNED@@': _sh(owned_snapshots_args(commands.instance, commands.host)),
        '@@RETENTION@@': retention,
        '@@CHECK@@': check,
        '@@BACKUP_FUNCTION@@': template.replace('@@BACKUP@@', backup),
        '@@FINISH_BACKUP@@': FINISH_BACKUP,
    }
    return _provider.fill_template(FUNCTIONS, replacements)


@dataclasses.dataclass(frozen=True)
class Plan(_provider.Plan):
    """One restic instance; ``env_files`` maps backend variables to their secret files, for restic_repository."""

    env_files: dict[str, str]


def _secrets(layout: _provider.Layout, settings: t.Mapping[str, t.Any]) -> _provider.Secrets:
    """The passphrase and the backend's secret variables, RESTIC_REPOSITORY among them."""
    repository = settings['repository']
    environment_secrets = dict(settings.get('environment_secrets') or {})
    for name in sorted(environment_secrets):
        if name in RESERVED_ENV:
            raise ResticError(f'environment_secrets.{name} is set by the role itself; use repository/passphrase')
    # The repository goes through the secrets too: a URL may hold credentials (rest:https://user:pass@host/).
    environment_secrets['RESTIC_REPOSITORY'] = repository.get('path') or repository['url']
    return _provider.secrets(layout, settings.get('passphrase'), settings.get('passphrase_file'), environment_secrets,
                             FUNCTIONS)


def precheck(instance: str, request: t.Mapping[str, t.Any], settings: t.Mapping[str, t.Any], host: str) -> None:
    """The rules of a validated instance that its schema cannot express and no tool version changes: run on the
    controller before any host is touched (``plan`` runs them again). Raises ResticError or ProviderError."""
    dummy = request
    _secrets(_provider.Layout(PROVIDER, instance), settings)
    forget_args(instance, settings.get('host') or host, settings.get('retention') or {})


def plan(instance: str, request: t.Mapping[str, t.Any], settings: t.Mapping[str, t.Any], version: str | Version,
         host: str, binary: str = DEFAULT_BINARY) -> Plan:
    """Turn a validated instance (request and settings with the schema's defaults) into a restic job."""
    the_version = parse_version(version) if isinstance(version, str) else tuple(version)
    layout = _provider.Layout(PROVIDER, instance)
    local_path = settings['repository'].get('path')
    secrets = _secrets(layout, settings)
    limits = settings.get('limits') or {}
    check = settings.get('check') or {}
    job_host = settings.get('host') or host
    commands = Commands(
        binary=binary,
        version=t.cast(Version, the_version),
        instance=instance,
        backup_name=request['backup_name'],
        host=job_host,
        global_args=tuple(global_args(t.cast(Version, the_version), settings.get('lock_wait') or 0,
                                      limits.get('upload_kib'), limits.get('download_kib'))),
        retention=_provider.tuple_or_none(forget_args(instance, job_host, settings.get('retention') or {})),
        check=tuple(check_args(check.get('read_data_subset'))) if check.get('enabled') else None,
    )
    maintenance = ('backup', 'check') if commands.check else ('backup',)
    spec = _provider.ScriptSpec(
        layout=layout,
        user=request['user'],
        backup_name=request['backup_name'],
        backup_cmd=request['backup_cmd'],
        restore_cmd=request['restore_cmd'],
        credentials=secrets.credentials,
        env_names=secrets.env_names,
        stop_units=_provider.stop_units(settings),
        monitoring=_provider.monitoring(layout, settings),
        functions=shell_functions(commands),
        maintenance=maintenance,
        notes=(f'Snapshots carry the tag {tag(instance)}; restic {".".join(map(str, the_version))}, '
               f'{"--stdin-from-command" if supports_stdin_from_command(commands.version) else "legacy pipe"}.',),
    )
    timer = _provider.job_options_from_settings(spec, settings, local_path, commands.check is not None)
    env_files = {name: secrets.credentials[_provider.env_credential(name)] for name in secrets.env_names}
    secret_files = secrets.files + tuple(_provider.monitoring_secret_files(layout, settings))
    return Plan(layout=layout, timer=timer, secret_files=secret_files, credentials=secrets.credentials,
                env_files=env_files, local_path=local_path)
