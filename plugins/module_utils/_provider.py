# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The provider-neutral half of a backup provider (restic, borg): names, secrets layout, job script, job options.

A provider module (``_restic.py``, later ``_borg.py``) only adds what is specific to its tool: the shell functions
``provider_snapshots``, ``provider_has_snapshot <snapshot>``, ``provider_dump <snapshot>``,
``provider_newest_json``, ``provider_backup`` (and optional maintenance functions such as ``provider_check``), the
credentials it needs and the command line flags. Everything else is here, once: where secrets live on the host,
how they reach the job (``LoadCredential=``), how the tool runs as the request's user whoever calls the script,
``stop_units``, ``pipefail`` and the options of ``selfhost.backup.backup_timer``. Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import shlex
import typing as t

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


def job_name_of_manifest(provider: str, manifest_file: str) -> str | None:
    """The instance a backup_timer manifest (``<provider>-backup-<instance>.json``) belongs to, else None."""
    base = posixpath.basename(manifest_file)
    prefix = f'{provider}-backup-'
    if not base.startswith(prefix) or not base.endswith('.json'):
        return None
    instance = base[len(prefix):-len('.json')]
    return instance if INSTANCE_NAME.fullmatch(instance) else None


def local_repositories_shared_by_users(jobs: t.Mapping[str, t.Mapping[str, t.Any]]) -> list[str]:
    """Local repositories that enabled instances with different users share, one description each.

    ``jobs`` maps instance names to the provider's job facts (``enable``, ``local_path``, ``user``). A local
    repository belongs to the request's user, so it can serve one user only.
    """
    users_by_path: dict[str, dict[str, str]] = {}
    for name, job in sorted(jobs.items()):
        if job.get('enable', True) and job.get('local_path'):
            users_by_path.setdefault(job['local_path'], {})[name] = job['user']
    return [f'{path}: ' + ', '.join(f'{name} (user {user})' for name, user in instances.items())
            for path, instances in sorted(users_by_path.items()) if len(set(instances.values())) > 1]


def fill_template(template: str, replacements: t.Mapping[str, str]) -> str:
    """Replace every ``@@NAME@@`` marker in one pass, so that a value containing a marker is never replaced
    again; a marker without a replacement is a bug and raises KeyError."""
    return re.sub(r'@@[A-Z_]+@@', lambda match: replacements[match.group(0)], template)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every provider plans for one instance: backup_timer options (no secret), the secret files the role
    writes root-only, the credentials the units load, and the local repository to create (if any)."""

    layout: Layout
    timer: dict[str, t.Any]
    secret_files: tuple[tuple[str, str], ...]
    credentials: dict[str, str]
    local_path: str | None


# The ping URL identifies the check at the monitoring service: whoever knows it can report for the job, so it
# is a secret, kept in a root-only file that only the root hooks read (never a credential of the job's user).
PING_URL_SECRET = 'ping_url'
# What the backup step tells the finish hook about a good backup, in the unit's cache directory.
BACKUP_STATS_FILE = 'last-backup'


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
    given = settings.get('monitoring') or {}
    metrics_dir = given.get('metrics_directory')
    return Monitoring(
        notify_cmd=str(given.get('on_failure') or ''),
        late_after=int(given.get('late_after') or 93600),
        metrics_file=posixpath.join(metrics_dir, f'{layout.job_name}.prom') if metrics_dir else '',
        ping_url_file=layout.secret_path(PING_URL_SECRET) if given.get('ping_url') else '',
        ping_timeout=int(given.get('ping_timeout') or 10),
        ping_retries=int(given.get('ping_retries', 3)),
    )


def monitoring_secret_files(layout: Layout, settings: t.Mapping[str, t.Any]) -> list[tuple[str, str]]:
    """The root-only files of settings.monitoring (the ping URL), as (path, content) like Secrets.files."""
    url = (settings.get('monitoring') or {}).get('ping_url')
    return [(layout.secret_path(PING_URL_SECRET), str(url))] if url else []


def job_facts(layout: Layout, contract: t.Mapping[str, t.Any], timer: t.Mapping[str, t.Any],
              credentials: t.Mapping[str, str], local_path: str | None) -> dict[str, t.Any]:
    """What the shared role steps (roles/provider_common) need of one instance on the host; no secret in it."""
    watch = monitoring(layout, contract['settings'])
    return {
        'enable': bool(contract['settings'].get('enable', True)),
        'timer': dict(timer),
        'credentials': dict(credentials),
        # Root-only secret files besides the credentials; the role keeps them when it prunes the secrets.
        'root_secrets': [watch.ping_url_file] if watch.ping_url_file else [],
        'pings': bool(watch.ping_url_file),
        'local_path': local_path,
        'secrets_dir': layout.secrets_dir,
        'user': contract['request']['user'],
        'result': {'backup_service': layout.backup_service, 'restore_script': layout.restore_script},
    }


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


def script_variables(script: str) -> frozenset[str]:
    """The variables a job script sets readonly (``readonly NAME=``): a secret of that name would break it."""
    return frozenset(re.findall(r'^readonly ([A-Za-z_][A-Za-z0-9_]*)=', script, re.M))


def check_environment_names(names: t.Iterable[str], provider_functions: str = '') -> None:
    """Refuse secret environment variables that the shell, the loader or the job script own."""
    taken = SHELL_VARIABLES | script_variables(SCRIPT_TEMPLATE) | script_variables(provider_functions)
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
            environment_secrets: t.Mapping[str, str], provider_functions: str = '') -> Secrets:
    """The passphrase (inline value or an existing file) and secret environment variables of one instance.

    ``provider_functions`` is the provider's half of the job script, whose readonly variables are taken too.
    """
    if (passphrase is None) == (passphrase_file is None):
        raise ProviderError('give exactly one of passphrase and passphrase_file')
    check_environment_names(environment_secrets, provider_functions)
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
    functions: str  # the provider's shell functions (provider_snapshots, provider_has_snapshot, provider_dump, provider_backup, ...)
    maintenance: tuple[str, ...] = ('backup',)  # subcommands only the units run: provider_<name>
    snapshot_pattern: str = '^[0-9a-f]{8,64}$'
    snapshot_word: str = 'snapshot'
    notes: tuple[str, ...] = ()
    monitoring: Monitoring = Monitoring()


def _bash_array(values: t.Iterable[str]) -> str:
    return '(' + ' '.join(shlex.quote(value) for value in values) + ')'


def _secret_cases(credentials: t.Mapping[str, str]) -> str:
    return '\n'.join(
        f'    {shlex.quote(name)}) printf \'%s\\n\' {shlex.quote(path)} ;;' for name, path in sorted(credentials.items())
    )


SCRIPT_TEMPLATE = r'''#!/bin/bash
# Managed by Ansible (selfhost.backup): local changes will be overwritten.
# @@SCRIPT@@: restore script of @@PROVIDER@@ instance @@INSTANCE@@. It holds no secret; see --help.
set -euo pipefail
umask 077

readonly SCRIPT=@@Q_SCRIPT@@
readonly INSTANCE=@@Q_INSTANCE@@
readonly BACKUP_SERVICE=@@Q_SERVICE@@
readonly JOB_USER=@@Q_USER@@
readonly BACKUP_CMD=@@Q_BACKUP_CMD@@
readonly RESTORE_CMD=@@Q_RESTORE_CMD@@
readonly STOP_UNITS=@@STOP_UNITS@@
readonly ENV_SECRETS=@@ENV_SECRETS@@
readonly SNAPSHOT_PATTERN=@@Q_PATTERN@@
readonly NOTIFY_CMD=@@Q_NOTIFY_CMD@@
readonly LATE_AFTER=@@LATE_AFTER@@
readonly METRICS_FILE=@@Q_METRICS_FILE@@
readonly PING_URL_FILE=@@Q_PING_URL_FILE@@
readonly PING_TIMEOUT=@@PING_TIMEOUT@@
readonly PING_RETRIES=@@PING_RETRIES@@
# The units' CacheDirectory= (owned by the job's user): the tool's cache, and the figures the backup step
# leaves for the finish hook. A restore run by hand uses it too when a unit has created it.
readonly JOB_CACHE="${CACHE_DIRECTORY:-/var/cache/@@JOB@@}"
readonly STATS_FILE="$JOB_CACHE/@@STATS_NAME@@"

usage() {
  cat <<'EOF'
usage: @@SCRIPT@@ snapshots          list the @@WORD@@s of instance @@INSTANCE@@
       @@SCRIPT@@ restore latest     restore the newest @@WORD@@ of this instance
       @@SCRIPT@@ restore <@@WORD@@>   restore one @@WORD@@ (as listed by "snapshots")
       @@SCRIPT@@ --help

Run it as root. The backup tool and the restore command run as the user @@USER@@.
A restore streams the dump "@@BACKUP_NAME@@" into the request's restore command and exits non-zero
when either fails.@@STOP_HELP@@

Back up now: systemctl start --wait @@SERVICE@@
(@@MAINTENANCE@@ are run by the systemd units only.)@@NOTES@@
EOF
}

fail() {
  printf '%s: %s\n' "$SCRIPT" "$*" >&2
  exit 1
}

usage_error() {
  usage >&2
  exit 2
}

# Inside the units systemd hands the secrets over in $CREDENTIALS_DIRECTORY (LoadCredential=).
in_unit() {
  [ -n "${CREDENTIALS_DIRECTORY:-}" ]
}

# Path of a secret: the unit's credential, or (root, interactively) the root-only file it is loaded from.
secret() {
  if in_unit; then
    printf '%s/%s\n' "$CREDENTIALS_DIRECTORY" "$1"
    return
  fi
  case "$1" in
@@SECRET_CASES@@
    *) fail "unknown secret $1" ;;
  esac
}

# Export the secret environment variables; call it in a subshell so that they reach only the tool.
export_secrets() {
  local name value
  for name in "${ENV_SECRETS[@]}"; do
    value="$(cat "$(secret "env.$name")")"
    export "$name=$value"
  done
}

# Run a program as the request's user whoever calls the script: no root-owned files in the repository.
as_user() {
  if [ "$(id -un)" = "$JOB_USER" ]; then
    "$@"
    return
  fi
  [ "$(id -u)" -eq 0 ] || fail "run this as root"
  # The user's own HOME, USER and LOGNAME: tools such as psql read their dotfiles from there, not root's.
  HOME="$(getent passwd "$JOB_USER" | cut -d: -f6)" USER="$JOB_USER" LOGNAME="$JOB_USER" \
    setpriv --reuid="$JOB_USER" --regid="$(id -g "$JOB_USER")" --init-groups -- "$@"
}

# backup_cmd as the tools run it (restic's stdin-from-command or legacy pipe, borg's content-from-command),
# followed by the path of a file where /bin/sh leaves backup_cmd's exit status (the tool only says that its
# command failed, and a failed backup must name the part that failed), then the variables in BACKUP_CMD_HIDES.
readonly RUN_BACKUP_CMD=(/bin/sh -c 'cmd=$1 status=$2; shift 2
unset "$@" $(env | sed -n -e "s/^\(RESTIC_[A-Za-z0-9_]*\)=.*/\1/p" -e "s/^\(BORG_[A-Za-z0-9_]*\)=.*/\1/p")
/bin/sh -c "$cmd"; rc=$?; echo "$rc" >"$status"; exit "$rc"' backup_cmd "$BACKUP_CMD")
# What backup_cmd must not see, besides every RESTIC_* and BORG_* variable: restic and borg hand their whole
# environment to the command they run, where the request's user could read it in /proc/<pid>/environ (a
# repository URL with credentials, a cloud key).
readonly BACKUP_CMD_HIDES=("${ENV_SECRETS[@]}" CREDENTIALS_DIRECTORY)

# What became of backup_cmd, from the file RUN_BACKUP_CMD wrote (removed here): "exit N", or no status when the
# tool failed before it started it (or its shell was killed).
backup_cmd_outcome() {
  local rc
  rc="$(cat -- "$1" 2>/dev/null)" || rc=''
  rm -f -- "$1"
  if [[ "$rc" =~ ^[0-9]+$ ]]; then echo "exit $rc"; else echo "left no exit status (it did not run, or its shell was killed)"; fi
}

# Only the units that were running are stopped, and so started again afterwards: a restore never starts a
# service the administrator had stopped.
STOPPED_UNITS=()
stop_units() {
  local unit
  for unit in "${STOP_UNITS[@]}"; do
    systemctl is-active --quiet -- "$unit" || continue
    printf '%s: stopping %s\n' "$SCRIPT" "$unit" >&2
    STOPPED_UNITS+=("$unit")
    systemctl stop -- "$unit"
  done
}

# EXIT trap of a restore: start the stopped units again, also when the restore failed; keep a failure.
start_units() {
  local rc=$? unit
  for unit in "${STOPPED_UNITS[@]}"; do
    printf '%s: starting %s\n' "$SCRIPT" "$unit" >&2
    systemctl start -- "$unit" || rc=1
  done
  exit "$rc"
}

restore() {
  local snapshot="$1"
  if [ "$snapshot" != latest ] && ! [[ "$snapshot" =~ $SNAPSHOT_PATTERN ]]; then
    fail "not a valid @@WORD@@: '$snapshot' (give latest or one listed by '$SCRIPT snapshots')"
  fi
  # Before anything stops or the restore command starts: the tool would dump another instance's @@WORD@@ by
  # its id, and a wrong id must leave the database untouched. "latest" needs no such listing: the tool
  # selects this instance's newest @@WORD@@ itself, and nothing happens before its dump's first byte arrives.
  if [ "$snapshot" != latest ]; then
    provider_has_snapshot "$snapshot" \
      || fail "no @@WORD@@ '$snapshot' of instance $INSTANCE (see '$SCRIPT snapshots')"
  fi
  provider_dump "$snapshot" | restore_arriving_dump "$snapshot"
  printf '%s: restored %s of instance %s\n' "$SCRIPT" "$snapshot" "$INSTANCE" >&2
}

# The restore's right-hand side: stops the stop_units and starts the restore command once the dump's first
# byte has arrived. A dump that yields nothing (no @@WORD@@ of this instance, an unreachable repository, a
# wrong passphrase) leaves every unit running and the database untouched.
restore_arriving_dump() {
  local first
  first="$(mktemp)"
  dd bs=1 count=1 of="$first" status=none
  if ! [ -s "$first" ]; then
    rm -f -- "$first"
    fail "no @@WORD@@ '$1' of instance $INSTANCE could be read: nothing was stopped or restored (see '$SCRIPT snapshots')"
  fi
  trap start_units EXIT
  stop_units
  { cat -- "$first"; rm -f -- "$first"; cat; } | as_user /bin/sh -c "$RESTORE_CMD"
}

# OnFailure= of the units (<backup service>-notify.service, as root): the administrator's command gets the
# failed unit's last log lines on stdin and what failed in SELFHOST_BACKUP_* variables. systemd names the
# failed unit in MONITOR_UNIT (the backup or the check service).
notify_failure() {
  local unit="${MONITOR_UNIT:-$BACKUP_SERVICE}"
  [ -n "$NOTIFY_CMD" ] || return 0
  journalctl --no-pager -o short-iso -n 50 -u "$unit" \
    | SELFHOST_BACKUP_PROVIDER=@@Q_PROVIDER@@ SELFHOST_BACKUP_INSTANCE="$INSTANCE" SELFHOST_BACKUP_UNIT="$unit" \
      SELFHOST_BACKUP_RESULT="${MONITOR_SERVICE_RESULT:-failed}" SELFHOST_BACKUP_HOST="$(uname -n)" \
      /bin/sh -c "$NOTIFY_CMD"
}

# For selfhost-backup status: when the newest @@WORD@@ of this instance was made (seconds since the epoch,
# empty without one), and how old it may get before the instance counts as late.
# provider_newest_json lists the newest @@WORD@@ as JSON; restic and borg both call its time "time".
newest() {
  local listed time
  listed="$(provider_newest_json)" || fail "cannot list the @@WORD@@s of this instance"
  time="$(sed -n 's/.*"time": *"\([^"]*\)".*/\1/p' <<<"$listed" | tail -n 1)"
  printf 'newest=%s late_after=%s\n' "${time:+$(date -d "$time" +%s)}" "$LATE_AFTER"
}

# The backup step (in the unit, after a good backup and its retention) leaves the bytes it added and the
# instance's snapshot count for the finish hook; $1: the bytes, as the tool reported them.
record_backup() {
  local count
  [ -n "$METRICS_FILE" ] || return 0
  count="$(provider_snapshot_count)" || count=''
  printf 'added_bytes=%s\nsnapshots=%s\n' "${1:-}" "$count" >"$STATS_FILE.tmp"
  mv -f -- "$STATS_FILE.tmp" "$STATS_FILE"
}

# ExecStartPre= hook of the backup service (root; its failure is ignored): forget the last run's figures and
# tell the monitor the run starts.
job_started() {
  rm -f -- "$STATS_FILE"
  ping_monitor /start
}

# ExecStopPost= hook (root, after every run, also a killed one): metrics and the monitor's success or fail.
job_finished() {
  local status
  status="$(exit_status_of_run)"
  [ -z "$METRICS_FILE" ] || write_metrics "$status" || printf '%s: could not write %s\n' "$SCRIPT" "$METRICS_FILE" >&2
  if [ "$status" -eq 0 ]; then ping_monitor ''; else ping_monitor /fail; fi
}

# systemd describes the run in SERVICE_RESULT, EXIT_CODE (exited, killed, dumped) and EXIT_STATUS (a number,
# or a signal name): one number as a shell gives it, 128+N for a signal.
exit_status_of_run() {
  if [ "${SERVICE_RESULT:-}" = success ]; then
    echo 0
  elif [ "${EXIT_CODE:-}" = exited ] && [[ "${EXIT_STATUS:-}" =~ ^[0-9]+$ ]] && [ "$EXIT_STATUS" -ne 0 ]; then
    echo "$EXIT_STATUS"
  elif [ "${EXIT_CODE:-}" = killed ] || [ "${EXIT_CODE:-}" = dumped ]; then
    echo $((128 + $(kill -l "${EXIT_STATUS:-KILL}" 2>/dev/null || echo 0)))
  else
    echo 1  # failed before the command ran (e.g. a missing credential), or a timeout
  fi
}

# A previous value of a metric of this instance, to carry it over a failed run; empty when there is none.
previous_metric() {
  sed -n "s/^$1{[^}]*} \([0-9.e+]*\)\$/\1/p" "$METRICS_FILE" 2>/dev/null | tail -n 1
}

# The node-exporter textfile of this instance, replaced atomically (the exporter never reads half a file).
write_metrics() {
  local status="$1" started now added snapshots success labels
  labels="provider=\"@@PROVIDER@@\",name=\"$INSTANCE\""
  now="$(date +%s)"
  started="$(systemctl show --timestamp=unix -P InactiveExitTimestamp "$BACKUP_SERVICE" 2>/dev/null)"
  started="${started#@}"
  [[ "$started" =~ ^[0-9]+$ ]] || started="$now"
  added="$(sed -n 's/^added_bytes=\([0-9]*\)$/\1/p' "$STATS_FILE" 2>/dev/null)"
  snapshots="$(sed -n 's/^snapshots=\([0-9]*\)$/\1/p' "$STATS_FILE" 2>/dev/null)"
  success="$(previous_metric selfhost_backup_last_success_timestamp_seconds)"
  if [ "$status" -eq 0 ]; then
    success="$now"
  else
    added="$(previous_metric selfhost_backup_last_added_bytes)"
  fi
  [ -n "$snapshots" ] || snapshots="$(previous_metric selfhost_backup_snapshots)"
  # Called in an || list, where set -e is off: each step checks for itself.
  mkdir -p -- "$(dirname -- "$METRICS_FILE")" || return 1
  {
    metric selfhost_backup_last_attempt_timestamp_seconds "When the last backup run started." "$started"
    metric selfhost_backup_last_duration_seconds "How long the last backup run took." "$((now - started))"
    metric selfhost_backup_last_exit_status "Exit status of the last backup run: 0 success, 128+N killed by signal N." "$status"
    metric selfhost_backup_last_success_timestamp_seconds "When the last successful backup run ended." "$success"
    metric selfhost_backup_last_added_bytes "Bytes the last successful backup added to the repository." "$added"
    metric selfhost_backup_snapshots "Snapshots of this instance in the repository after its last successful backup." "$snapshots"
  } | write_file_as "$(metrics_writer)" "$METRICS_FILE"
}

# Who writes the metrics file: "root" when only root can change its directory and every directory above it,
# else the directory's owner as uid:gid (Debian's prometheus owns /var/lib/prometheus): a user who can change a
# directory root writes in could swap the temporary file for a link and have root overwrite or chmod any file.
# A directory others can write is fine only with the sticky bit (/tmp). Anything else: no metrics, a message.
metrics_writer() {
  local dir part owner group mode writer=root
  dir="$(realpath -e -- "$(dirname -- "$METRICS_FILE")")" || return 1
  part="$dir"
  while :; do
    read -r owner group mode < <(stat -c '%u %g %a' -- "$part") || return 1
    if (( 8#$mode & 8#022 )) && ! (( 8#$mode & 8#1000 )); then
      printf '%s: %s can be changed by a group or by other users: no metrics written\n' "$SCRIPT" "$part" >&2
      return 1
    fi
    if [ "$owner" != 0 ]; then
      if [ "$part" != "$dir" ]; then
        printf '%s: %s belongs to a user other than root: no metrics written below it\n' "$SCRIPT" "$part" >&2
        return 1
      fi
      writer="$owner:$group"
    fi
    [ "$part" != / ] || break
    part="$(dirname -- "$part")"
  done
  echo "$writer"
}

# Replace the file $2 atomically with stdin (mode 0644: the exporter reads it), as $1: root, or uid:gid.
write_file_as() {
  local writer=(/bin/sh -c 'tmp="$(mktemp "$1.XXXXXX.tmp")" && cat >"$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$1" \
    || { rm -f "$tmp"; exit 1; }' write_file)
  case "$1" in
    root) "${writer[@]}" "$2" ;;
    *:*) setpriv --reuid="${1%:*}" --regid="${1#*:}" --clear-groups -- "${writer[@]}" "$2" ;;
    *) cat >/dev/null; return 1 ;;
  esac
}

# One gauge with HELP and TYPE lines; left out while it has no value yet (no success so far).
metric() {
  [ -n "$3" ] || return 0
  printf '# HELP %s %s\n# TYPE %s gauge\n%s{%s} %s\n' "$1" "$2" "$1" "$1" "$labels" "$3"
}

# A healthchecks-style ping: $1 is the suffix (/start, /fail or nothing for success). The URL is read from its
# root-only file and handed to curl on stdin (--config -), never on a command line. A monitor that is down
# never fails the backup: the hooks' failures are ignored and this one only logs.
ping_monitor() {
  local url
  [ -n "$PING_URL_FILE" ] || return 0
  url="$(cat -- "$PING_URL_FILE")" || { printf '%s: cannot read the ping URL\n' "$SCRIPT" >&2; return 0; }
  curl --silent --show-error --fail --output /dev/null --max-time "$PING_TIMEOUT" --retry "$PING_RETRIES" \
      --retry-connrefused --retry-delay 2 --config - <<<"url = \"$url$1\"" \
    || printf '%s: the monitoring ping%s failed (ignored: the backup result stands)\n' "$SCRIPT" "${1:+ $1}" >&2
}

# ---- @@PROVIDER@@ ----
@@FUNCTIONS@@
# ---- main ----
case "${1:-}" in
  -h | --help | help)
    usage
    ;;
  snapshots)
    [ "$#" -eq 1 ] || usage_error
    in_unit || [ "$(id -u)" -eq 0 ] || fail "run this as root"
    provider_snapshots
    ;;
  restore)
    [ "$#" -eq 2 ] || usage_error
    in_unit || [ "$(id -u)" -eq 0 ] || fail "run this as root"
    restore "$2"
    ;;
@@MAINTENANCE_CASES@@
  notify)
    [ "$#" -eq 1 ] || usage_error
    [ "$(id -u)" -eq 0 ] || fail "run this as root"
    notify_failure
    ;;
  newest)
    [ "$#" -eq 1 ] || usage_error
    [ "$(id -u)" -eq 0 ] || fail "run this as root"
    newest
    ;;
  started | finished)
    [ "$#" -eq 1 ] || usage_error
    [ "$(id -u)" -eq 0 ] || fail "run this as root"
    "job_$1"
    ;;
  *)
    usage_error
    ;;
esac
'''


RESERVED_SUBCOMMANDS = ('snapshots', 'restore', 'help', 'notify', 'newest', 'started', 'finished')


def render_script(spec: ScriptSpec) -> str:
    """The job script of one instance: restore script on PATH, backup and maintenance steps of its units."""
    layout = spec.layout
    for name in spec.maintenance:
        if not re.fullmatch(r'[a-z][a-z0-9_]*', name) or name in RESERVED_SUBCOMMANDS:
            raise ProviderError(f'maintenance subcommand {name!r} is not a plain name of its own')
    maintenance_cases = '\n'.join(
        f'  {name})\n'
        f'    [ "$#" -eq 1 ] || usage_error\n'
        f'    in_unit || fail "{name} runs inside the units: systemctl start --wait $BACKUP_SERVICE"\n'
        f'    provider_{name}\n'
        f'    ;;'
        for name in spec.maintenance
    )
    stop_help = (
        f'\nBefore a restore it stops {", ".join(spec.stop_units)} and starts them again afterwards, also on failure.'
        if spec.stop_units else ''
    )
    notes = ''.join(f'\n{note}' for note in spec.notes)
    replacements = {
        '@@Q_SCRIPT@@': shlex.quote(layout.restore_script),
        '@@Q_INSTANCE@@': shlex.quote(layout.instance),
        '@@Q_SERVICE@@': shlex.quote(layout.backup_service),
        '@@Q_USER@@': shlex.quote(spec.user),
        '@@Q_BACKUP_CMD@@': shlex.quote(spec.backup_cmd),
        '@@Q_RESTORE_CMD@@': shlex.quote(spec.restore_cmd),
        '@@Q_PATTERN@@': shlex.quote(spec.snapshot_pattern),
        '@@Q_NOTIFY_CMD@@': shlex.quote(spec.monitoring.notify_cmd),
        '@@LATE_AFTER@@': str(int(spec.monitoring.late_after)),
        '@@Q_METRICS_FILE@@': shlex.quote(spec.monitoring.metrics_file),
        '@@Q_PING_URL_FILE@@': shlex.quote(spec.monitoring.ping_url_file),
        '@@PING_TIMEOUT@@': str(int(spec.monitoring.ping_timeout)),
        '@@PING_RETRIES@@': str(int(spec.monitoring.ping_retries)),
        '@@JOB@@': layout.job_name,  # letters, digits, _ . - only (INSTANCE_NAME): safe in double quotes
        '@@STATS_NAME@@': BACKUP_STATS_FILE,
        '@@Q_PROVIDER@@': shlex.quote(layout.provider),
        '@@STOP_UNITS@@': _bash_array(spec.stop_units),
        '@@ENV_SECRETS@@': _bash_array(spec.env_names),
        '@@SECRET_CASES@@': _secret_cases(spec.credentials),
        '@@MAINTENANCE_CASES@@': maintenance_cases,
        '@@FUNCTIONS@@': spec.functions.rstrip('\n'),
        '@@MAINTENANCE@@': ', '.join(spec.maintenance),
        '@@STOP_HELP@@': stop_help,
        '@@NOTES@@': notes,
        '@@SCRIPT@@': layout.restore_script,
        '@@PROVIDER@@': layout.provider,
        '@@INSTANCE@@': layout.instance,
        '@@SERVICE@@': layout.backup_service,
        '@@USER@@': spec.user,
        '@@BACKUP_NAME@@': spec.backup_name,
        '@@WORD@@': spec.snapshot_word,
    }
    # One pass: a value that happens to contain a marker is never substituted again.
    return fill_template(SCRIPT_TEMPLATE, replacements)


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
    return tuple((settings.get('restore') or {}).get('stop_units') or ())


def job_options_from_settings(spec: ScriptSpec, settings: t.Mapping[str, t.Any], local_path: str | None,
                              check_enabled: bool) -> dict[str, t.Any]:
    """job_options from the settings every provider shares: schedule, limits, check calendar, repository kind."""
    schedule = settings.get('schedule') or {}
    limits = settings.get('limits') or {}
    check = settings.get('check') or {}
    return job_options(
        spec,
        Schedule(on_calendar=schedule.get('on_calendar', 'daily'),
                 randomized_delay_sec=schedule.get('randomized_delay_sec', 3600),
                 persistent=schedule.get('persistent', True)),
        read_write_paths=([local_path] if local_path else []) + list(settings.get('writable_paths') or []),
        extra_jobs=[('check', check.get('on_calendar', 'Sun *-*-* 04:00:00'))] if check_enabled else [],
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
    """Options of selfhost.backup.backup_timer for one instance; they hold paths, never secrets.

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
