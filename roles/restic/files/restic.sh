# shellcheck shell=bash
# Managed by Ansible (selfhost.backup): local changes will be overwritten.
#
# The restic half of the job script, sourced by job.sh (roles/provider_common/files/job.sh), which checks that
# it defines the provider interface. It sequences restic; every restic command line is an array of the
# instance's data file, built in Python (plugins/module_utils/_restic.py) and tested there as data:
#   RESTIC RESTIC_ARGS RESTIC_STDIN_FROM_COMMAND RESTIC_BACKUP RESTIC_SNAPSHOTS RESTIC_NEWEST RESTIC_OWNED
#   RESTIC_DUMP_LATEST RESTIC_DUMP_PATH RESTIC_LS_LATEST RESTIC_FORGET RESTIC_CHECK RESTIC_SNAPSHOT_FIELDS
# The passphrase never appears in a command line: the units use RESTIC_PASSWORD_FILE in
# $CREDENTIALS_DIRECTORY; run interactively, restic reads it on stdin.
# shellcheck disable=SC2154 # the data file and job.sh define the variables
readonly PROVIDER_DATA=(RESTIC RESTIC_ARGS RESTIC_STDIN_FROM_COMMAND RESTIC_BACKUP RESTIC_SNAPSHOTS RESTIC_NEWEST
  RESTIC_OWNED RESTIC_DUMP_LATEST RESTIC_DUMP_PATH RESTIC_LS_LATEST RESTIC_FORGET RESTIC_CHECK RESTIC_SNAPSHOT_FIELDS)
for name in "${PROVIDER_DATA[@]}"; do
  declare -p "$name" >/dev/null 2>&1 || fail "the job data does not define $name: run the role again"
done
unset name

readonly FORGET_RETRY_SECONDS="${SELFHOST_BACKUP_FORGET_RETRY_SECONDS:-30}"
# What --help shows as the example of "exec -- <restic arguments>" (job.sh reads it).
# shellcheck disable=SC2034
readonly EXEC_EXAMPLE=stats

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
  restic_ "${RESTIC_SNAPSHOTS[@]}"
}

# This instance's snapshots as a JSON list (job.sh's snapshot_list picks the fields RESTIC_SNAPSHOT_FIELDS names).
provider_snapshots_json() {
  restic_ --quiet "${RESTIC_OWNED[@]}" | snapshot_list "${RESTIC_SNAPSHOT_FIELDS[@]}"
}

# exec -- <arguments>: restic with this instance's repository, secrets and cache, as the request's user; the
# arguments unchanged, the passphrase on restic's stdin like every interactive run.
provider_exec() {
  restic_ "$@"
}

provider_newest_json() {
  restic_ --quiet "${RESTIC_NEWEST[@]}"
}

# The number of snapshots of this instance (for the metrics).
provider_snapshot_count() {
  local owned
  owned="$(restic_ --quiet "${RESTIC_OWNED[@]}")" || return 1
  grep -o '"short_id":' <<<"$owned" | wc -l
}

provider_dump() {
  if [ "$1" = latest ]; then
    restic_ --quiet "${RESTIC_DUMP_LATEST[@]}"
  else
    restic_ --quiet dump "$1" "$RESTIC_DUMP_PATH"
  fi
}

# The name under which the calls that follow find "latest" or the id $1: unchanged, restic selects this instance's
# latest itself in each run (its tag and host filters), with no run of its own here.
provider_resolve() {
  printf '%s\n' "$1"
}

# The size of the dump in "latest" or the snapshot $1, in bytes (for the drill's free space check): the size of
# the one file the snapshot holds, as restic ls --json lists it.
provider_dump_size() {
  local listed
  if [ "$1" = latest ]; then
    listed="$(restic_ --quiet "${RESTIC_LS_LATEST[@]}")" || return 1
  else
    listed="$(restic_ --quiet ls --json "$1")" || return 1
  fi
  grep -F "\"path\":\"$RESTIC_DUMP_PATH\"" <<<"$listed" | sed -n 's/.*"size":\([0-9]*\).*/\1/p' | head -n 1
}

# Whether "latest" or the id $1 (hex, checked by the caller) is a snapshot of THIS instance: in a shared
# repository an id may name another instance's snapshot.
provider_has_snapshot() {
  local owned
  owned="$(restic_ --quiet "${RESTIC_OWNED[@]}")" || fail "cannot list the snapshots of this instance"
  if [ "$1" = latest ]; then
    [[ "$owned" == *'"id":"'* ]]
  else
    [[ "$owned" == *"\"id\":\"$1"* ]]
  fi
}

# forget --prune of this instance's snapshots; without any keep rule every snapshot is kept.
provider_retention() {
  [ "${#RESTIC_FORGET[@]}" -eq 0 ] || restic_ "${RESTIC_FORGET[@]}"
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
        if [ "$step" = "$1" ] || ! systemctl is-active --quiet "$(step_unit "$step")"; then
          rm -f -- "$mark"
        fi
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

# settings.check: restic check, on its own timer.
provider_check() {
  [ "${#RESTIC_CHECK[@]}" -gt 0 ] || fail "no check is configured for instance $INSTANCE"
  begin_run check
  restic_ "${RESTIC_CHECK[@]}"
  end_run check
}

# restic >= 0.17 runs the dump itself (--stdin-from-command): a failed dump creates no snapshot. Before 0.17 the
# dump is piped in (RESTIC_STDIN_FROM_COMMAND empty).
# When the backup started ($SECONDS), for its summary line.
BACKUP_STARTED=0
provider_backup() {
  BACKUP_STARTED="$SECONDS"
  if [ -n "$RESTIC_STDIN_FROM_COMMAND" ]; then
    backup_from_command
  else
    backup_from_pipe
  fi
}

# restic < 0.17: the dump is piped in and restic stores whatever arrived, so a failed dump is detected here
# (backup_cmd's own exit status); finish_backup then forgets the snapshot it produced.
backup_from_pipe() {
  local out status restic_rc
  begin_run backup
  out="$(mktemp)" status="$(mktemp)"
  set +e
  "${RUN_BACKUP_CMD[@]}" "$status" '' "${BACKUP_CMD_HIDES[@]}" | restic_ "${RESTIC_BACKUP[@]}" >"$out"
  restic_rc="${PIPESTATUS[1]}"
  set -e
  finish_backup "$out" "$(backup_cmd_outcome "$status")" "$restic_rc"
  end_run backup
}

# restic >= 0.17 fails when the dump fails. It may still have saved a snapshot (an empty dump makes it exit 3
# after saving one); finish_backup forgets it. restic's messages pass through stop_abandoned_backup, through a
# FIFO, so that restic's own exit status stays at hand.
backup_from_command() {
  local out status restic_rc messages job
  begin_run backup
  out="$(mktemp)" status="$(mktemp)"
  messages="$(mktemp -d)"
  mkfifo -m 0600 -- "$messages/fifo"
  set +e
  restic_ "${RESTIC_BACKUP[@]}" "${RUN_BACKUP_CMD[@]}" "$status" '' "${BACKUP_CMD_HIDES[@]}" >"$out" 2>"$messages/fifo" &
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
      # shellcheck disable=SC2046 # one pid a word
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

# Shared by both backup paths: a failed backup never leaves a snapshot that latest could pick, and retention
# runs only after a good one.
# $1: restic's --json output, $2: what became of backup_cmd ("exit N", or "left no exit status ..."), $3: restic's
# exit status. A dump that is empty although backup_cmd succeeded is no backup either (a requester that lost its
# database).
finish_backup() {
  local out="$1" dump="$2" restic_rc="$3" snapshot summary processed added
  snapshot="$(sed -n 's/.*"snapshot_id":"\([0-9a-f]\{8,\}\)".*/\1/p' "$out" | tail -n 1)"
  summary="$(grep '"message_type":"summary"' "$out")" || true
  processed="$(sed -n 's/.*"total_bytes_processed":\([0-9]*\).*/\1/p' <<<"$summary")"
  added="$(sed -n 's/.*"data_added":\([0-9]*\).*/\1/p' <<<"$summary")"
  rm -f "$out"
  if [ "$dump" != "exit 0" ] || [ "$restic_rc" -ne 0 ] || [ "$processed" = 0 ]; then
    [ -z "$snapshot" ] || forget_failed_snapshot "$snapshot"
    if [ "$dump" = "exit 0" ] && [ "$processed" = 0 ]; then
      fail "backup failed: backup_cmd exited 0 but wrote nothing (an empty dump is no backup; restic exit $restic_rc): no snapshot kept"
    fi
    fail "backup failed (backup_cmd $dump, restic exit $restic_rc): no snapshot kept"
  fi
  # The journal gets one readable line; restic's summary (all its figures) goes to the cache directory.
  backup_summary "${snapshot:0:8}" "$processed" "$added" "$((SECONDS - BACKUP_STARTED))"
  keep_statistics <<<"$summary"
  provider_retention
  record_backup "$added"
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
