# shellcheck shell=bash
# Managed by Ansible (selfhost.backup): local changes will be overwritten.
#
# The borg half of the job script, sourced by job.sh (roles/provider_common/files/job.sh), which checks that it
# defines the provider interface. It sequences borg; every borg command line is an array of the instance's data
# file, built in Python (plugins/module_utils/_borg.py) and tested there as data:
#   BORG BORG_REPOSITORY BORG_ARGS BORG_HOME BORG_INIT_MARKER BORG_REMOTE BORG_SSH BORG_STDIN_NAME BORG_ENCRYPTION
#   BORG_LIST BORG_NEWEST BORG_NAMES BORG_LATEST BORG_INIT BORG_CREATE BORG_PRUNE BORG_COMPACT BORG_CHECK
#   BORG_LIST_JSON BORG_SNAPSHOT_FIELDS
# Exit codes: BORG_EXIT_CODES=legacy (borg 1.4 would otherwise return 3-99 for errors and 100-127 for warnings;
# borg 1.2 ignores it), so borg exits 0, 1 (warning), 2 (error) or 128+N (signal N). create, prune and compact
# count a warning as success; every other command fails on any non-zero exit (extract warns when the dump is not
# in the archive, check when it finds damage).
# shellcheck disable=SC2154 # the data file and job.sh define the variables
readonly PROVIDER_DATA=(BORG BORG_REPOSITORY BORG_ARGS BORG_HOME BORG_INIT_MARKER BORG_REMOTE BORG_SSH BORG_STDIN_NAME
  BORG_ENCRYPTION BORG_LIST BORG_NEWEST BORG_NAMES BORG_LATEST BORG_INIT BORG_CREATE BORG_PRUNE BORG_COMPACT BORG_CHECK
  BORG_LIST_JSON BORG_SNAPSHOT_FIELDS)
for name in "${PROVIDER_DATA[@]}"; do
  declare -p "$name" >/dev/null 2>&1 || fail "the job data does not define $name: run the role again"
done
unset name

# What --help shows as the example of "exec -- <borg arguments>" (job.sh reads it).
# shellcheck disable=SC2034
readonly EXEC_EXAMPLE=info

# borg as the request's user; its exit code unchanged. In a unit the secrets are in $CREDENTIALS_DIRECTORY.
# Interactively (root) they are copied into a private directory the request's user owns, removed on exit; the
# directory is named after the shell that made it, so that the next run removes what a killed one left.
# The secrets reach borg and ssh as file paths (BORG_PASSCOMMAND, BORG_RSH), never on a command line.
borg_() (
  local dir rsh owner
  if in_unit; then
    dir="$CREDENTIALS_DIRECTORY"
  else
    remove_orphaned_secrets
    # This subshell's PID, taken here: inside $(...) BASHPID is the command substitution's, gone at once, and
    # another run would take the directory for a killed run's and remove it under this one.
    owner="$BASHPID"
    dir="$(mktemp -d "/run/borg-restore.$owner.XXXXXXXX")"
    # shellcheck disable=SC2064 # $dir is fixed now
    trap "rm -rf -- '$dir'" EXIT
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
    # The job's key and the pinned host key only: an unknown or changed host key fails.
    # shellcheck disable=SC2153 # BORG_SSH is data, not a misspelt BORG_RSH
    printf -v rsh '%q ' "${BORG_SSH[@]}" -i "$dir/ssh_key" -o "UserKnownHostsFile=$dir/known_hosts"
    export BORG_RSH="${rsh% }"
  fi
  as_user "$BORG" "${BORG_ARGS[@]}" "$@"
)

# The secrets directories of interactive runs that were killed (SIGKILL runs no EXIT trap): their shell is gone.
remove_orphaned_secrets() {
  local orphan pid
  for orphan in /run/borg-restore.*; do
    pid="${orphan#/run/borg-restore.}"
    pid="${pid%%.*}"
    if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      rm -rf -- "$orphan"
    fi
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
  borg_ "${BORG_LIST[@]}"
}

# This instance's archives as a JSON list (job.sh's snapshot_list picks the fields BORG_SNAPSHOT_FIELDS names).
provider_snapshots_json() {
  borg_ "${BORG_LIST_JSON[@]}" | snapshot_list "${BORG_SNAPSHOT_FIELDS[@]}"
}

# exec -- <arguments>: borg with this instance's repository (BORG_REPO), secrets and cache, as the request's user;
# the arguments unchanged, borg's exit code too.
provider_exec() {
  borg_ "$@"
}

# Before the first backup has created the repository there is no archive yet, which is no error (selfhost-backup
# status says pending). Once the marker names the repository, a repository that is not there fails: it vanished.
provider_newest_json() {
  local errors rc=0
  errors="$(mktemp)"
  borg_ "${BORG_NEWEST[@]}" 2>"$errors" || rc=$?
  if [ "$rc" -ne 0 ] && [ "$(cat -- "$BORG_INIT_MARKER" 2>/dev/null)" != "$BORG_REPOSITORY" ] \
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
  names="$(borg_ "${BORG_NAMES[@]}")" || fail "cannot list the archives of this instance"
  if [ "$1" = latest ]; then
    [ -n "$names" ]
  else
    grep -qxF -- "$1" <<<"$names"
  fi
}

# The name of the archive "latest" or $1 names, for the calls that follow (the drill sizes and extracts the one
# archive it resolved once): nothing when this instance has no archive yet; a failed listing fails.
provider_resolve() {
  if [ "$1" = latest ]; then
    borg_ "${BORG_LATEST[@]}" || fail "cannot list the archives of this instance"
  else
    printf '%s\n' "$1"
  fi
}

# The archive "latest" or $1 names.
archive_named() {
  local archive
  archive="$(provider_resolve "$1")" || exit 1
  [ -n "$archive" ] || fail "instance $INSTANCE has no archive yet"
  printf '%s\n' "$archive"
}

# Every non-zero exit fails here: borg extract warns (1) when the dump is not in the archive.
provider_dump() {
  local archive
  archive="$(archive_named "$1")"
  borg_ extract --stdout "::$archive" "$BORG_STDIN_NAME"
}

# The size of the dump in archive "latest" or $1, in bytes (for the drill's free space check).
provider_dump_size() {
  local archive
  archive="$(archive_named "$1")"
  dump_size "$archive"
}

# The size of the dump in the archive $1: the size of its one item (the archive's own size counts its metadata).
dump_size() {
  borg_ list --format '{size}{NL}' "::$1" "$BORG_STDIN_NAME"
}

# Create the repository on the first backup only (a remote server knows the job's key only after the role
# ran). The marker (BORG_INIT_MARKER, in the job's BORG_BASE_DIR) records which repository this job has seen:
# once it names this repository, a vanished repository fails the backup ("does not exist") instead of silently
# starting again from an empty one.
provider_init() {
  local out rc=0
  if [ "$(cat -- "$BORG_INIT_MARKER" 2>/dev/null)" = "$BORG_REPOSITORY" ]; then
    return 0
  fi
  out="$(borg_ "${BORG_INIT[@]}" 2>&1)" || rc=$?
  if [ "$rc" -eq 0 ]; then
    printf '%s: initialised the repository (encryption %s)\n' "$SCRIPT" "$BORG_ENCRYPTION" >&2
  else
    case "$out" in
      *"already exists"*) ;;
      *) printf '%s\n' "$out" >&2
         fail "cannot initialise the repository (borg init exit $rc)" ;;
    esac
  fi
  printf '%s\n' "$BORG_REPOSITORY" >"$BORG_INIT_MARKER"
}

# prune of this instance's archives, then compact; without any keep rule every archive is kept.
provider_retention() {
  [ "${#BORG_PRUNE[@]}" -gt 0 ] || return 0
  borg_warning_ok "${BORG_PRUNE[@]}" || fail "borg prune failed"
  borg_warning_ok "${BORG_COMPACT[@]}" || fail "borg compact failed"
}

# settings.check: borg check, on its own timer.
provider_check() {
  [ "${#BORG_CHECK[@]}" -gt 0 ] || fail "no check is configured for instance $INSTANCE"
  borg_ "${BORG_CHECK[@]}"
}

# borg runs the dump itself: when it fails, borg creates no archive and exits 2, and the unit fails.
# --json: the archive's statistics on stdout, of which the deduplicated size is what the backup added. An empty
# dump (backup_cmd exits 0 having written nothing) makes an archive that would count as good and, pruned in,
# push the good ones out: it is deleted and the backup fails. Retention runs only after a good backup. The dump's
# bytes are counted on their way to borg (RUN_BACKUP_CMD with a count file, job.sh): borg's statistics count the
# archive's metadata too, and asking the repository (list) cost a second repository open after every backup.
provider_backup() {
  local stats status count borg_rc=0 archive size started="$SECONDS"
  provider_init
  status="$(mktemp)" count="$(mktemp)"
  stats="$(borg_warning_ok "${BORG_CREATE[@]}" "${RUN_BACKUP_CMD[@]}" "$status" "$count" "${BACKUP_CMD_HIDES[@]}")" \
    || borg_rc=$?
  [ "$borg_rc" -eq 0 ] || printf '%s\n' "$stats"
  size="$(backup_cmd_bytes "$count")"
  [ "$borg_rc" -eq 0 ] \
    || fail "backup failed (backup_cmd $(backup_cmd_outcome "$status"), borg exit $borg_rc): no archive created"
  rm -f -- "$status"
  archive="$(sed -n 's/^ *"name": *"\([^"]*\)",\{0,1\}$/\1/p' <<<"$stats" | head -n 1)"
  [ -n "$archive" ] || fail "cannot read the name of the new archive in borg's statistics"
  # No count (the wrapper left none): the size of the dump in the archive, its one item, from the repository.
  if [ -z "$size" ] && ! size="$(dump_size "$archive")"; then
    fail "cannot read the size of the dump in archive '$archive'"
  fi
  if [ "$size" = 0 ]; then
    borg_warning_ok delete "::$archive" \
      || fail "backup failed: backup_cmd wrote nothing, and the empty archive '$archive' could not be deleted: delete it by hand"
    fail "backup failed: backup_cmd exited 0 but wrote nothing (an empty dump is no backup): archive $archive deleted, nothing kept"
  fi
  # The journal gets one readable line; borg's statistics (all its figures) go to the cache directory.
  backup_summary "$archive" "$size" "$(json_number deduplicated_size <<<"$stats")" "$((SECONDS - started))"
  keep_statistics <<<"$stats"
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
  names="$(borg_ "${BORG_NAMES[@]}")" || return 1
  grep -c . <<<"$names" || true
}
