# shellcheck shell=bash
# Managed by Ansible (selfhost.backup): local changes will be overwritten.
#
# The job script of every provider instance, provider-neutral half: the restore script on PATH
# (/usr/local/bin/<provider>-restore-<instance>) and the steps its systemd units run.
#
# How it is put together (docs/source-code.md has the whole data flow):
# - /usr/local/bin/<provider>-restore-<instance> holds the instance's DATA only: readonly shell assignments written
#   by Python (plugins/module_utils/_job_data.py, every value shlex-quoted once, every restic and borg command line
#   as an array), then it sources this file. It holds no secret.
# - This file sources the provider's half, /usr/local/lib/selfhost-backup/<provider>.sh (roles/<provider>/files/),
#   and checks that it defines every function of the provider interface (PROVIDER_INTERFACE below).
# The data variables are checked here before anything runs (JOB_DATA); shellcheck cannot see them.
# shellcheck disable=SC2154
set -euo pipefail
umask 077

# What the data file must define (the names _job_data.py writes; a unit test keeps the two lists equal).
readonly JOB_DATA=(PROVIDER SCRIPT INSTANCE BACKUP_SERVICE JOB_NAME JOB_USER BACKUP_NAME BACKUP_CMD RESTORE_CMD
  STOP_UNITS ENV_SECRETS SECRET_FILES SNAPSHOT_PATTERN SNAPSHOT_WORD MAINTENANCE NOTES NOTIFY_CMD LATE_AFTER
  METRICS_FILE PING_URL_FILE PING_TIMEOUT PING_RETRIES LIBRARY DRILL_CMD DRILL_SERVICE LOCK_WAIT RESTORE_INTO_CMD
  RESTORE_DATABASE_CMD DRILL_SPACE_FACTOR DRILL_SPACE_BASE RESTORE_CHECKS_NAMES)
# What the provider's half must define. provider_<step> of every MAINTENANCE step (backup, check) too.
readonly PROVIDER_INTERFACE=(provider_snapshots provider_snapshots_json provider_has_snapshot provider_resolve
  provider_dump provider_dump_size provider_newest_json provider_snapshot_count provider_retention provider_exec)
# And the variables it must set: EXEC_EXAMPLE, the tool arguments --help shows for exec (e.g. stats).
readonly PROVIDER_VARIABLES=(EXEC_EXAMPLE)

fail() {
  printf '%s: %s\n' "${SCRIPT:-${0##*/}}" "$*" >&2
  exit 1
}

for name in "${JOB_DATA[@]}"; do
  declare -p "$name" >/dev/null 2>&1 || fail "the job data does not define $name: run the role again"
done
unset name

# The units' CacheDirectory= (owned by the job's user): the tool's cache, and the figures the backup step
# leaves for the finish hook. A restore run by hand uses it too when a unit has created it.
readonly JOB_CACHE="${CACHE_DIRECTORY:-/var/cache/$JOB_NAME}"
readonly STATS_FILE="$JOB_CACHE/last-backup"
# And the seconds the last drill in a unit took to restore and check once it held the instance lock (the restore
# time, RTO), for its finish hook: the unit's own span also counts the wait for a running backup.
readonly DRILL_STATS_FILE="$JOB_CACHE/last-drill"
# The tool's full statistics of the last good backup (its JSON), kept for whoever wants more than the journal's
# summary line.
readonly STATS_JSON="$JOB_CACHE/last-backup.json"

usage() {
  local note
  cat <<EOF
usage: $SCRIPT <subcommand> [arguments]
Run it as root; $PROVIDER and the restore and drill commands run as the user $JOB_USER.

  snapshots [--json]            list the ${SNAPSHOT_WORD}s of instance $INSTANCE; --json: a JSON list of objects
                                (id, time, host, and size where $PROVIDER tells it, else null)
                                e.g. $SCRIPT snapshots --json
  restore <latest|$SNAPSHOT_WORD>     stream the dump "$BACKUP_NAME" of that $SNAPSHOT_WORD into the request's restore
                                command
                                e.g. $SCRIPT restore latest
    --into <name>               restore into a new database (a file: its absolute path) of that name instead,
                                leaving the original untouched and the units running
                                e.g. $SCRIPT restore latest --into shop_copy
    --database <db>             of a whole-cluster dump, restore only the database <db> (others untouched);
                                with --into <name> into a new database <name>
                                e.g. $SCRIPT restore latest --database shop --into shop_copy
  dump <latest|$SNAPSHOT_WORD>        write the dump "$BACKUP_NAME" of that $SNAPSHOT_WORD to stdout, byte for byte
                                (never to a terminal)
                                e.g. $SCRIPT dump latest > $BACKUP_NAME
  drill <latest|$SNAPSHOT_WORD>       restore drill: stream the dump into the request's drill_cmd, which restores it
                                into a scratch copy the live database never sees and checks it
                                e.g. $SCRIPT drill latest
  exec -- <$PROVIDER arguments>    run $PROVIDER with this instance's repository, secrets and cache, as $JOB_USER
                                e.g. $SCRIPT exec -- $EXEC_EXAMPLE
  help, --help                  this text

A $SNAPSHOT_WORD is "latest" or one listed by "$SCRIPT snapshots". restore, dump and drill exit non-zero
when the dump (or the restore or drill command) fails. On a terminal, restore and dump show their progress
on stderr (bytes so far, elapsed time, rate). A backup, a restore and a drill of this instance
never run at the same time: each waits up to ${LOCK_WAIT}s for the one running, then fails naming it.
EOF
  [ -n "$RESTORE_INTO_CMD" ] || printf 'This request cannot restore into another target (it has no restore_into_cmd).\n'
  [ -n "$RESTORE_DATABASE_CMD" ] \
    || printf 'This request cannot restore one database alone (it has no restore_database_cmd).\n'
  if [ "${#STOP_UNITS[@]}" -gt 0 ]; then
    printf 'Before a restore (not one --into another target) it stops %s and starts them again afterwards, also on failure.\n' \
      "$(IFS=,; printf '%s' "${STOP_UNITS[*]}" | sed 's/,/, /g')"
  fi
  printf '\nBack up now: systemctl start --wait %s\n' "$BACKUP_SERVICE"
  printf '(%s are run by the systemd units only.)\n' "$(IFS=,; printf '%s' "${MAINTENANCE[*]}" | sed 's/,/, /g')"
  for note in "${NOTES[@]}"; do
    printf '%s\n' "$note"
  done
}

# A usage error: what was wrong, where to read more, exit status 2.
usage_error() {
  printf '%s: %s\n' "$SCRIPT" "$*" >&2
  printf "Run '%s --help' for the subcommands and examples.\n" "$SCRIPT" >&2
  exit 2
}

# The arguments of a subcommand ($1) that takes no more: the first one given is named.
no_arguments() {
  local subcommand="$1"
  shift
  [ "$#" -eq 0 ] || unexpected "$subcommand" "$1"
}

# A usage error for an argument ($2) the subcommand ($1) does not take: an unknown option or an extra argument.
unexpected() {
  case "$2" in
    -?*) usage_error "$1: unknown option '$2'" ;;
    *) usage_error "$1: extra argument '$2'" ;;
  esac
}

# The arguments of restore and dump ($1): exactly one, latest or a snapshot.
one_snapshot() {
  local subcommand="$1"
  shift
  [ "$#" -gt 0 ] || usage_error "$subcommand: missing the $SNAPSHOT_WORD (latest, or one listed by '$SCRIPT snapshots')"
  case "$1" in
    -?*) unexpected "$subcommand" "$1" ;;
  esac
  [ "$#" -eq 1 ] || unexpected "$subcommand" "$2"
}

# The arguments of restore: the snapshot, then --into <name> and --database <db> in any order, each once. Sets
# RESTORE_SNAPSHOT, RESTORE_INTO and RESTORE_DATABASE. The names reach the request's command only in its
# environment, never in a command line; still only plain names pass here (the command checks them again):
# a database name of letters, digits, _ . -; for --into also an absolute path of those and /.
readonly INTO_PATTERN='^([A-Za-z0-9_][A-Za-z0-9_.-]{0,62}|/[A-Za-z0-9_./-]{1,254})$'
readonly DATABASE_PATTERN='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$'
RESTORE_SNAPSHOT='' RESTORE_INTO='' RESTORE_DATABASE=''
restore_arguments() {
  local seen_into='' seen_database=''
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --into | --database)
        if [ "$#" -lt 2 ] || [ -z "$2" ]; then usage_error "restore: $1 needs a name"; fi
        if [ "$1" = --into ]; then
          [ -z "$seen_into" ] || usage_error "restore: --into given twice"
          if ! [[ "$2" =~ $INTO_PATTERN ]] || [[ "/$2/" == */../* ]]; then
            usage_error "restore: --into '$2' is not a name it takes: a database name of letters, digits, _ . -" \
              "(at most 63), or the absolute path of a file"
          fi
          seen_into=yes RESTORE_INTO="$2"
        else
          [ -z "$seen_database" ] || usage_error "restore: --database given twice"
          [[ "$2" =~ $DATABASE_PATTERN ]] \
            || usage_error "restore: --database '$2' is not a database name it takes: letters, digits, _ . - (at most 63)"
          seen_database=yes RESTORE_DATABASE="$2"
        fi
        shift 2
        ;;
      -?*) unexpected restore "$1" ;;
      *)
        [ -z "$RESTORE_SNAPSHOT" ] || unexpected restore "$1"
        RESTORE_SNAPSHOT="$1"
        shift
        ;;
    esac
  done
  [ -n "$RESTORE_SNAPSHOT" ] \
    || usage_error "restore: missing the $SNAPSHOT_WORD (latest, or one listed by '$SCRIPT snapshots')"
}

# The names of --into and --database as env(1) arguments for the restore command: set when given, else unset (an
# inherited SELFHOST_BACKUP_INTO never reaches it).
TARGET_NAMES=()
target_names() {
  TARGET_NAMES=(-u SELFHOST_BACKUP_INTO -u SELFHOST_BACKUP_DATABASE -u SELFHOST_BACKUP_CHECK)
  [ -z "$RESTORE_INTO" ] || TARGET_NAMES+=("SELFHOST_BACKUP_INTO=$RESTORE_INTO")
  [ -z "$RESTORE_DATABASE" ] || TARGET_NAMES+=("SELFHOST_BACKUP_DATABASE=$RESTORE_DATABASE")
}

# A restore --into or --database asks the request's command ($1) first whether it takes the names, when the request
# says its commands know how (restore_checks_names, RESTORE_CHECKS_NAMES=1): run as the request's user with
# SELFHOST_BACKUP_CHECK=1 and no input, it checks them as its restore would (a name it does not take, a system
# database, the request's own database, a target that exists) and exits 0 without reading or changing anything, or
# refuses, naming why. This runs before the tool: a refusal takes no instance lock, lists no snapshot, reads no
# secret and opens no repository (a large remote one takes minutes to start a dump). A request without the key is
# never asked: a command written before the flag existed would restore for real, with no input, during the "check"
# (create the target, or drop the database it then restores); it checks the names at the restore itself.
check_restore_target() {
  local command="$1" what=''
  [ -n "$RESTORE_INTO$RESTORE_DATABASE" ] || return 0
  [ "$RESTORE_CHECKS_NAMES" = 1 ] || return 0
  # Once, before the lock: the run under the lock (with_instance_lock runs this script again) restores, and the
  # command checks the names again there.
  ! handed_over || return 0
  [ -z "$RESTORE_DATABASE" ] || what=" --database $RESTORE_DATABASE"
  [ -z "$RESTORE_INTO" ] || what="$what --into $RESTORE_INTO"
  target_names
  as_user env "${TARGET_NAMES[@]}" SELFHOST_BACKUP_CHECK=1 /bin/sh -c "$command" </dev/null \
    || fail "restore$what: refused by the request's restore command (the reason is above), before the repository" \
      "was opened: nothing was read, stopped or restored"
}

# The command a restore streams the dump into: restore_cmd, or the request's restore_into_cmd or
# restore_database_cmd for --into and --database. A request without the one needed is refused before anything
# is read, stopped or restored.
restore_command() {
  if [ -n "$RESTORE_DATABASE" ]; then
    [ -n "$RESTORE_DATABASE_CMD" ] || fail "restore --database: the request of instance $INSTANCE has no" \
      "restore_database_cmd: its dump holds one database only, or its requester cannot restore one database alone" \
      "(nothing was restored; use restore${RESTORE_INTO:+ --into}, or dump it to a file)"
    printf '%s\n' "$RESTORE_DATABASE_CMD"
  elif [ -n "$RESTORE_INTO" ]; then
    [ -n "$RESTORE_INTO_CMD" ] || fail "restore --into: the request of instance $INSTANCE has no restore_into_cmd:" \
      "its requester cannot restore into another target${RESTORE_DATABASE_CMD:+ (its dump holds several databases:" \
      "add --database <db>)} (nothing was restored; dump it to a file with '$SCRIPT dump')"
    printf '%s\n' "$RESTORE_INTO_CMD"
  else
    printf '%s\n' "$RESTORE_CMD"
  fi
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
  [ -n "${SECRET_FILES[$1]+set}" ] || fail "unknown secret $1"
  printf '%s\n' "${SECRET_FILES[$1]}"
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
# command failed, and a failed backup must name the part that failed), the path of a file for the count of the
# dump's bytes ('' for none: see backup_cmd_bytes), then the variables in BACKUP_CMD_HIDES.
# Both are used by the provider's half, which runs backup_cmd.
# The shell the tool starts execs at once into the one that waits for backup_cmd, through env -u: unset would
# hide the variables from backup_cmd only, and /proc/<pid>/environ of the waiting shell, which lives as long as
# the dump, would still show the tool's whole environment (the names are checked ones: no quoting needed).
# With a count file the dump passes through dd on its way to the tool (one pipe copy, ~0.1 s of CPU for 300 MB:
# far less than asking the repository afterwards), which writes the count there; the wrapper exits with
# backup_cmd's status, or dd's when backup_cmd succeeded but dd did not pass everything on.
# shellcheck disable=SC2016,SC2034 # the inner script is /bin/sh's, expanded there
readonly RUN_BACKUP_CMD=(/bin/sh -c 'cmd=$1 status=$2 count=$3 hide=; shift 3
for name in "$@" $(env | sed -n -e "s/^\(RESTIC_[A-Za-z0-9_]*\)=.*/\1/p" -e "s/^\(BORG_[A-Za-z0-9_]*\)=.*/\1/p"); do
  hide="$hide -u $name"
done
[ -n "$count" ] || exec /usr/bin/env $hide /bin/sh -c '\''/bin/sh -c "$1"; rc=$?; echo "$rc" >"$2"; exit "$rc"'\'' backup_cmd "$cmd" "$status"
exec /usr/bin/env $hide /bin/sh -c '\''{ /bin/sh -c "$1"; echo "$?" >"$2"; } | LC_ALL=C dd bs=65536 2>"$3"; copied=$?
rc="$(cat -- "$2" 2>/dev/null)" || rc=1; [ "$rc" != 0 ] || rc=$copied; exit "$rc"'\'' backup_cmd "$cmd" "$status" "$count"' \
  backup_cmd "$BACKUP_CMD")
# What backup_cmd must not see, besides every RESTIC_* and BORG_* variable: restic and borg hand their whole
# environment to the command they run, where the request's user could read it in /proc/<pid>/environ (a
# repository URL with credentials, a cloud key).
# shellcheck disable=SC2034
readonly BACKUP_CMD_HIDES=("${ENV_SECRETS[@]}" CREDENTIALS_DIRECTORY)

# What became of backup_cmd, from the file RUN_BACKUP_CMD wrote (removed here): "exit N", or no status when the
# tool failed before it started it (or its shell was killed).
backup_cmd_outcome() {
  local rc
  rc="$(cat -- "$1" 2>/dev/null)" || rc=''
  rm -f -- "$1"
  if [[ "$rc" =~ ^[0-9]+$ ]]; then echo "exit $rc"; else echo "left no exit status (it did not run, or its shell was killed)"; fi
}

# How many bytes backup_cmd wrote, from the count file RUN_BACKUP_CMD had dd write (removed here): dd's last
# line, "N bytes ... copied" ("1 byte"); nothing when there is no count (the tool did not start the wrapper).
backup_cmd_bytes() {
  local line
  line="$(tail -n 1 -- "$1" 2>/dev/null)" || line=''
  rm -f -- "$1"
  [[ "$line" =~ ^([0-9]+)\ bytes? ]] && echo "${BASH_REMATCH[1]}"
  return 0
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
    # The message may fail (a terminal that went away: EIO; a `| tee` a Ctrl-C ended: SIGPIPE, ignored from here on):
    # the unit is started all the same.
    trap '' PIPE
    printf '%s: starting %s\n' "$SCRIPT" "$unit" >&2 2>/dev/null || true
    systemctl start -- "$unit" || rc=1
  done
  exit "$rc"
}

# "latest", or the id of a snapshot as this instance's tool writes it (SNAPSHOT_PATTERN).
check_snapshot_arg() {
  if [ "$1" != latest ] && ! [[ "$1" =~ $SNAPSHOT_PATTERN ]]; then
    fail "not a valid $SNAPSHOT_WORD: '$1' (give latest or one listed by '$SCRIPT snapshots')"
  fi
}

# A snapshot given to restore or dump must be this instance's: "latest", or one of its snapshots. Checked before
# anything stops or the restore command starts: the tool would dump another instance's snapshot by its id, and a
# wrong id must leave the database untouched. "latest" needs no such listing: the tool selects this instance's
# newest snapshot itself, and nothing happens before its dump's first byte arrives.
check_snapshot() {
  local snapshot="$1"
  check_snapshot_arg "$snapshot"
  [ "$snapshot" != latest ] || return 0
  provider_has_snapshot "$snapshot" \
    || fail "no $SNAPSHOT_WORD '$snapshot' of instance $INSTANCE (see '$SCRIPT snapshots')"
}

restore() {
  local snapshot="$1" command what=''
  command="$(restore_command)"
  [ -z "$RESTORE_DATABASE" ] || what=" (database $RESTORE_DATABASE)"
  [ -z "$RESTORE_INTO" ] || what="$what into $RESTORE_INTO"
  check_snapshot "$snapshot"
  if show_progress; then
    provider_dump "$snapshot" | progress_meter | restore_arriving_dump "$snapshot" "$command"
  else
    provider_dump "$snapshot" | restore_arriving_dump "$snapshot" "$command"
  fi
  printf '%s: restored %s of instance %s%s\n' "$SCRIPT" "$snapshot" "$INSTANCE" "$what" >&2
}

# Progress on stderr for an operator at a terminal (restore, dump): never in a unit, nor when stderr goes to a pipe
# or a file. The progress meter passes its stdin to its stdout and prints the bytes so far, the elapsed time and
# the rate to stderr about once a second, and the totals at the end (dd's status=progress).
show_progress() {
  [ -t 2 ] && ! in_unit
}

progress_meter() {
  dd bs=1M status=progress
}

# The dump of a snapshot on stdout, byte for byte, as the tool reads it (e.g. "dump latest > shop.sql"). Never to a
# terminal: a binary dump would garble it, and a large one would scroll for hours. Checked before the repository
# is read.
dump() {
  local snapshot="$1"
  if [ -t 1 ]; then
    fail "refusing to write the dump to a terminal: redirect it to a file or a pipe (e.g. $SCRIPT dump $snapshot > $BACKUP_NAME)"
  fi
  check_snapshot "$snapshot"
  if show_progress; then
    provider_dump "$snapshot" | progress_meter
  else
    provider_dump "$snapshot"
  fi
}

# The tool's JSON listing of this instance's snapshots on stdin, printed as a JSON list of objects with the keys id
# (what restore and dump take), time (ISO 8601 with the UTC offset), host and size (null where the tool does not
# tell it). The arguments say where the tool keeps them (the provider's data, built in Python): the dotted path of
# the list in the document ("." for the document itself), then <key>=<dotted path> for each key.
snapshot_list() {
  python3 -I "$LIBRARY/snapshots_json.py" "$@"
}

# The restore's right-hand side: stops the stop_units and starts the restore command ($2) once the dump's first
# data has arrived. A dump that yields nothing (no snapshot of this instance, an unreachable repository, a
# wrong passphrase) leaves every unit running and the database untouched. dump_arrived.py waits for the data
# without reading it, so the command reads the dump from this stdin itself, from its first byte (no copy through
# another process). A restore --into another target stops nothing: the original and its applications go on. The
# names of --into and --database reach the command in its environment only (SELFHOST_BACKUP_INTO,
# SELFHOST_BACKUP_DATABASE; unset when not given).
restore_arriving_dump() {
  local names wait_status=0
  target_names
  names=("${TARGET_NAMES[@]}")
  # 1: the dump ended without data; anything else is the wait's own failure (its message is above), which must
  # not be told as a missing snapshot.
  python3 -I "$LIBRARY/dump_arrived.py" || wait_status=$?
  case "$wait_status" in
    0) ;;
    1) fail "no $SNAPSHOT_WORD '$1' of instance $INSTANCE could be read: nothing was stopped or restored (see '$SCRIPT snapshots')" ;;
    *) fail "cannot tell whether the dump of $SNAPSHOT_WORD '$1' arrived ($LIBRARY/dump_arrived.py exit $wait_status; the" \
         "error is above): nothing was stopped or restored" ;;
  esac
  trap start_units EXIT
  [ -n "$RESTORE_INTO" ] || stop_units
  as_user env "${names[@]}" /bin/sh -c "$2"
}

# The restore drill (the drill unit, or root by hand: the same steps): the dump of a snapshot streamed into the
# request's drill_cmd as the request's user, which restores it into a scratch copy the live database never sees,
# checks it and removes it. Nothing is stopped and the live database is not touched. It runs under the instance
# lock (main), so no backup changes "latest" or prunes the snapshot meanwhile.
drill() {
  local snapshot="$1" resolved size tmp free need dump_rc drill_rc started
  started="$(date +%s)"
  ! in_unit || rm -f -- "$DRILL_STATS_FILE"
  [ -n "$DRILL_CMD" ] || fail "the request of instance $INSTANCE has no drill_cmd: nothing to drill with"
  check_snapshot_arg "$snapshot"
  # A snapshot by id must be this instance's (the tool would size and dump another's); "latest" is selected among
  # this instance's by the tool itself, so the listing is only asked for when its size cannot be read (one tool
  # run less before the drill starts: the drill's time is the restore time users expect).
  if [ "$snapshot" != latest ]; then
    provider_has_snapshot "$snapshot" \
      || fail "no $SNAPSHOT_WORD '$snapshot' of instance $INSTANCE (see '$SCRIPT snapshots'): nothing was drilled"
  fi
  # What the size and the dump both read: a tool that cannot name "latest" in each run (borg) resolves it once
  # here (its failure's message is its own, above); nothing when there is no such snapshot.
  resolved="$(provider_resolve "$snapshot")" || exit 1
  [ -n "$resolved" ] \
    || fail "no $SNAPSHOT_WORD '$snapshot' of instance $INSTANCE (see '$SCRIPT snapshots'): nothing was drilled"
  size="$(provider_dump_size "$resolved")" || size=''
  if ! [[ "$size" =~ ^[0-9]+$ ]]; then
    [ "$snapshot" != latest ] || provider_has_snapshot latest \
      || fail "no $SNAPSHOT_WORD 'latest' of instance $INSTANCE (see '$SCRIPT snapshots'): nothing was drilled"
    fail "cannot read the size of the dump in $SNAPSHOT_WORD '$snapshot' of instance $INSTANCE"
  fi
  # The scratch copy goes to the temporary directory (the unit's private /tmp). A restored database is bigger
  # than its dump: the request's drill_space says how much (factor x the dump's size + base bytes; without it
  # the dump's size alone).
  tmp="${TMPDIR:-/tmp}"
  need=$((size * DRILL_SPACE_FACTOR + DRILL_SPACE_BASE))
  free="$(df -P -B1 -- "$tmp" 2>/dev/null | awk 'NR == 2 { print $4 }')"
  [[ "$free" =~ ^[0-9]+$ ]] || fail "cannot read the free space of $tmp, where the drill's scratch copy goes"
  if [ "$free" -lt "$need" ]; then
    fail "not enough space for the drill's scratch copy in $tmp: $free bytes free, $need bytes needed (the dump" \
      "of $SNAPSHOT_WORD '$snapshot' is $size bytes; the request's drill_space counts $DRILL_SPACE_FACTOR times" \
      "that + $DRILL_SPACE_BASE bytes): free some space there, or give the drill another TMPDIR"
  fi
  printf '%s: drill of %s %s%s of instance %s: %s bytes into drill_cmd (%s bytes free in %s, %s needed)\n' \
    "$SCRIPT" "$SNAPSHOT_WORD" "$snapshot" "$([ "$resolved" = "$snapshot" ] || printf ' (%s)' "$resolved")" \
    "$INSTANCE" "$size" "$free" "$tmp" "$need" >&2
  set +e
  provider_dump "$resolved" | as_user /bin/sh -c "$DRILL_CMD"
  dump_rc="${PIPESTATUS[0]}" drill_rc="${PIPESTATUS[1]}"
  set -e
  # The tool's failure first (not its SIGPIPE, which drill_cmd's early exit causes): a snapshot removed or made
  # unreadable meanwhile cuts the stream, and drill_cmd then fails on what it got; the cause is the repository.
  if [ "$dump_rc" -ne 0 ] && [ "$dump_rc" -ne 141 ]; then
    if [ "$drill_rc" -ne 0 ]; then
      fail "drill failed: the dump of $SNAPSHOT_WORD '$snapshot' could not be read to its end ($PROVIDER exit" \
        "$dump_rc; its messages are above), and drill_cmd exited $drill_rc on what it got"
    fi
    fail "drill failed: the dump of $SNAPSHOT_WORD '$snapshot' could not be read to its end ($PROVIDER exit" \
      "$dump_rc), although drill_cmd accepted what it got"
  fi
  if [ "$drill_rc" -ne 0 ]; then
    fail "drill failed: drill_cmd exited $drill_rc (the restore into the scratch copy or a check failed; its" \
      "messages are above)"
  fi
  if [ "$dump_rc" -eq 141 ]; then
    fail "drill failed: drill_cmd exited 0 without reading the whole dump of $SNAPSHOT_WORD '$snapshot'"
  fi
  printf '%s: drill of %s %s of instance %s passed\n' "$SCRIPT" "$SNAPSHOT_WORD" "$snapshot" "$INSTANCE" >&2
  record_drill "$(($(date +%s) - started))"
}

# In the drill unit, with metrics: leave the seconds a passed drill took for its finish hook (drill_metrics).
record_drill() {
  [ -n "$METRICS_FILE" ] && in_unit || return 0
  { printf 'seconds=%s\n' "$1" >"$DRILL_STATS_FILE.tmp" && mv -f -- "$DRILL_STATS_FILE.tmp" "$DRILL_STATS_FILE"; } \
    || printf '%s: could not record the drill time in %s (its metric counts the whole unit)\n' "$SCRIPT" \
      "$DRILL_STATS_FILE" >&2
}

# The instance lock: a backup, a restore and a drill of this instance never run at the same time (a drill of
# "latest" must not see a backup or its retention change the repository under it, and a restore or a drill
# reading while a backup writes would race it). The lock is flock(1) on the instance's cache directory
# (JOB_CACHE: the units' shared CacheDirectory=, /var/cache/<job>), not on a file in it: the directory's own
# entry is in root's /var/cache, so no user can swap it for a link or a FIFO that root would open (a file inside
# belongs to the request's user), and the units make it 0700, so no other user can open it to hold the lock.
# The run starts itself again as the child of flock -o, which holds the lock for as long as that child runs and
# closes it for the child: nothing the run starts (a tool, a drill's scratch server) keeps it after the run.
# It waits LOCK_WAIT seconds for a lock another run holds, then fails naming the holder (from /proc/locks).
readonly LOCK_TIMEOUT_EXIT=75
with_instance_lock() {
  local marker holder rc=0
  if handed_over; then
    # By hand the restore script stops this run with one TERM to its whole session (run_locked_by_hand). Ended at
    # once, this shell would end flock, and so free the lock and return the script, while the commands it waits for
    # still run their EXIT traps (which start again the units a restore stopped). Trapped, the TERM waits for them.
    in_unit || trap 'exit 143' TERM
    return 0
  fi
  if [ ! -d "$JOB_CACHE" ]; then
    # By hand before any unit has run: as systemd would make it, the request's user's and private.
    install -d -m 0700 -o "$JOB_USER" -g "$(id -g "$JOB_USER")" -- "$JOB_CACHE"
  fi
  # Made by a systemd that left an older mode (0755) as it was: closed to other users from now on.
  chmod 0700 -- "$JOB_CACHE"
  holder="$(lock_holder)"
  if [ -n "$holder" ]; then
    printf '%s: instance %s is busy: %s holds its lock; waiting up to %ss\n' "$SCRIPT" "$INSTANCE" "$holder" \
      "$LOCK_WAIT" >&2
  fi
  marker="$(mktemp -p "$JOB_CACHE" "$LOCK_MARKER.XXXXXXXXXX")"
  # Gone also when this run is stopped while it waits: the cache directory holds only the user's files between runs.
  # shellcheck disable=SC2064 # the marker's name now
  trap "rm -f -- '$marker'" EXIT
  if in_unit; then
    SELFHOST_BACKUP_LOCKED="$marker" flock -o -E "$LOCK_TIMEOUT_EXIT" -w "$LOCK_WAIT" "$JOB_CACHE" /bin/bash "$0" "$@" \
      || rc=$?
  else
    SELFHOST_BACKUP_LOCKED="$marker" run_locked_by_hand "$marker" "$@" || rc=$?
  fi
  if [ "$rc" -eq "$LOCK_TIMEOUT_EXIT" ] && [ -e "$marker" ]; then
    rm -f -- "$marker"
    holder="$(lock_holder)"
    fail "gave up after waiting ${LOCK_WAIT}s for the lock of instance $INSTANCE ($JOB_CACHE), held by" \
      "${holder:-another run (gone by now, or it cannot be named)}: $1 not run; run it again when that has finished"
  fi
  rm -f -- "$marker"
  # Stopped by Ctrl-C: ended by SIGINT itself once all is done. A shell that ran this (a loop of restores, a script)
  # stops at a command that SIGINT ended; one that exited 143 it takes as handled, and goes on with the next restore.
  if [ "$LOCKED_RUN_STOPPED" = INT ]; then
    trap - EXIT INT
    kill -s INT "$$"
  fi
  exit "$rc"
}

# A run by hand (restore, drill): a signal sent to this process alone (kill PID, sudo relaying it, timeout(1), a
# closed terminal) must stop the locked run it waits for, and all that run started, as a unit's stop does; otherwise
# that run goes on after its caller gave up, and a restore stops the units and restores. (systemd signals every
# process of a unit itself: a unit's run needs none of this.) So:
# - flock ignores the signals: it holds the lock until the run is over, EXIT traps included, and exits with the
#   run's status. The run gets them back at their defaults (env --default-signal) in a session of its own (setsid),
#   whose processes only this process signals: a signal to this process's group (Ctrl-C) does not reach them too.
# - HUP, INT, QUIT or TERM here stops the run with one TERM to its session, what a unit's stop sends: exactly one,
#   however many signals come, as a second TERM would kill the run inside its EXIT trap, which starts again the
#   units a restore stopped. The signals after the first are ignored (stop_locked_run). A run that has not taken
#   the lock marker yet never will (handed_over): the marker is removed, and flock, which may still be waiting, is
#   killed. The script then exits 143; after INT it ends by SIGINT (with_instance_lock), as a calling shell expects.
# - TSTP (Ctrl-Z) is ignored: a restore is not paused. (Stopping the run's session with this process took a CONT
#   trap, which made bash drop a TERM that came with a CONT, as timeout(1) sends them, and a paused run whose script
#   was then killed stayed paused, the units stopped and the lock held.)
# - The run's standard input stays this one (an asynchronous command's would be /dev/null).
# SIGKILL cannot be passed on: the run goes on under the lock.
readonly STOP_SIGNALS=(HUP INT QUIT TERM)
LOCKED_RUN=''
LOCKED_RUN_MARKER=''
STOP_PENDING=''
WAIT_CUT=''
LOCKED_RUN_STOPPED=''
LOCKED_RUN_KILLED=''
run_locked_by_hand() {
  local rc=0 sig
  LOCKED_RUN_MARKER="$1"
  shift
  for sig in "${STOP_SIGNALS[@]}"; do
    # shellcheck disable=SC2064 # the signal's name now
    trap "stop_locked_run $sig" "$sig"
  done
  # Ctrl-Z cannot pause the run, which is in another session: ignored here too rather than leave it going on alone.
  trap '' TSTP
  (
    trap '' "${STOP_SIGNALS[@]}" TSTP
    exec flock -o -E "$LOCK_TIMEOUT_EXIT" -w "$LOCK_WAIT" "$JOB_CACHE" \
      setsid env --default-signal="$(IFS=,; echo "${STOP_SIGNALS[*]},TSTP")" /bin/bash "$0" "$@"
  ) <&0 &
  LOCKED_RUN=$!
  # A signal that came before the line above knew the pid: pass it on now.
  [ -z "$STOP_PENDING" ] || stop_locked_run "$STOP_PENDING"
  # The waits' messages to /dev/null: bash's "<pid> Killed  ( trap ...; exec flock ... )" about a flock that
  # stop_locked_run killed is no news to the operator.
  wait "$LOCKED_RUN" 2>/dev/null || rc=$?
  # A trapped signal cuts the wait short: wait again until flock, and so the run, has ended; its status is theirs.
  while [ -n "$WAIT_CUT" ]; do
    WAIT_CUT=''
    rc=0
    wait "$LOCKED_RUN" 2>/dev/null || rc=$?
  done
  trap - "${STOP_SIGNALS[@]}" TSTP
  # flock killed before the run began: stopped by a signal all the same (128 + TERM's 15, not KILL's 9).
  [ -z "$LOCKED_RUN_KILLED" ] || rc=143
  return "$rc"
}

stop_locked_run() {
  # The first stop signal is the only one: the next ones are ignored, here and by what this starts (rm). Trapped, a
  # second one (Ctrl-C twice, a key held down, TERM to this process then to its group) ran this again inside itself,
  # and killed rm or the search for the run's session on its way: the run went on and this script returned at once.
  trap '' "${STOP_SIGNALS[@]}"
  STOP_PENDING="$1"
  WAIT_CUT=yes
  [ -n "$LOCKED_RUN" ] && [ -z "$LOCKED_RUN_STOPPED" ] || return 0
  LOCKED_RUN_STOPPED="$1"
  # Whoever removes the marker first decides: this process (the run has not started and never will) or the run.
  if rm -- "$LOCKED_RUN_MARKER" 2>/dev/null; then
    kill -s KILL -- "$LOCKED_RUN" 2>/dev/null || true
    LOCKED_RUN_KILLED=yes
  else
    locked_run_session
    [ -z "$LOCKED_RUN_SESSION" ] || kill -s TERM -- "-$LOCKED_RUN_SESSION" 2>/dev/null || true
  fi
  # The message after the signal, and allowed to fail: the signal is often a terminal that went away (HUP: the write
  # fails with EIO, which set -e would end this script on) or a Ctrl-C that also ended a `| tee` (SIGPIPE).
  trap '' PIPE
  printf '%s: got SIG%s: stopping the run it started and all that run started\n' "$SCRIPT" "$1" >&2 2>/dev/null \
    || true
}

# The run's session in LOCKED_RUN_SESSION ('' while there is none): the child of flock (LOCKED_RUN), which setsid
# made the leader of a session with its own id; nothing before flock has started it. From /proc/<pid>/stat: "pid
# (comm) state ppid pgrp session ...". In this process, no subshell: a signal to this process group (Ctrl-C, Ctrl-Z)
# would reach a subshell too, and kill or stop it before it told.
LOCKED_RUN_SESSION=''
locked_run_session() {
  local stat fields ppid session
  LOCKED_RUN_SESSION=''
  [ -n "$LOCKED_RUN" ] || return 0
  for stat in /proc/[0-9]*/stat; do
    read -r fields 2>/dev/null <"$stat" || continue
    read -r _ ppid _ session _ <<<"${fields##*) }" || continue
    if [ "$ppid" = "$LOCKED_RUN" ] && [ "$session" = "${fields%% *}" ]; then
      LOCKED_RUN_SESSION="$session"
      return 0
    fi
  done
  return 0
}

# Whether this run is the child of flock that with_instance_lock started, which holds the instance lock: the parent
# hands it the marker it made (SELFHOST_BACKUP_LOCKED), and the child removes it, which tells the waiting parent that
# the run started. The variable alone proves nothing (an environment can hold anything, and this runs as root): it
# is trusted only when it names a marker as the parent makes them, a file of this run's user directly in the
# instance's cache directory (JOB_CACHE, which only that user can write) named $LOCK_MARKER.<10 characters>, a plain
# file with one link, not a symbolic link. Any other value ends the run before it reads, locks or removes anything:
# taken on trust it would skip the lock and the check of restore --into, and remove the file it names.
# Decided once a run (LOCK_HANDED_OVER: yes or no), and the variable is not passed on.
readonly LOCK_MARKER=.selfhost-backup-lock-started
LOCK_HANDED_OVER=''
handed_over() {
  local marker="${SELFHOST_BACKUP_LOCKED:-}"
  if [ -z "$LOCK_HANDED_OVER" ]; then
    LOCK_HANDED_OVER=no
    if [ -n "$marker" ]; then
      if [ "${marker%/*}" = "$JOB_CACHE" ] && [[ "${marker##*/}" =~ ^"$LOCK_MARKER."[A-Za-z0-9]{10}$ ]] \
        && ! [ -e "$marker" ] && ! [ -L "$marker" ]; then
        fail "the lock marker $marker is gone: the restore script that made it was stopped before this run began" \
          "(or SELFHOST_BACKUP_LOCKED is stray): nothing was run"
      fi
      if [ "${marker%/*}" != "$JOB_CACHE" ] || ! [[ "${marker##*/}" =~ ^"$LOCK_MARKER."[A-Za-z0-9]{10}$ ]] \
        || [ -L "$marker" ] || ! [ -f "$marker" ] || ! [ -O "$marker" ] \
        || [ "$(stat -c %h -- "$marker" 2>/dev/null)" != 1 ]; then
        fail "SELFHOST_BACKUP_LOCKED=$marker is not a lock marker of instance $INSTANCE (the restore script sets it" \
          "for itself, under the instance lock): nothing was run; unset it and run the command again"
      fi
      # Whoever removes it first decides (run_locked_by_hand's stop_locked_run): this run, or a stop before it began.
      rm -- "$marker" 2>/dev/null \
        || fail "the restore script that made the lock marker $marker was stopped as this run began: nothing was run"
      LOCK_HANDED_OVER=yes
    fi
    unset SELFHOST_BACKUP_LOCKED
  fi
  [ "$LOCK_HANDED_OVER" = yes ]
}

# Who holds the instance lock: "<command> (pid N, <unit> or run by hand)", empty when nobody does. /proc/locks
# names the flock process that holds it by the device and inode of JOB_CACHE.
lock_holder() {
  local dev inode id pid command unit
  read -r dev inode < <(stat -c '%d %i' -- "$JOB_CACHE" 2>/dev/null) || return 0
  id="$(printf '%02x:%02x:%s' $(((dev >> 8) & 0xfff)) $(((dev & 0xff) | ((dev >> 12) & 0xfff00))) "$inode")"
  pid="$(awk -v id="$id" '$2 == "FLOCK" && $6 == id { print $5; exit }' /proc/locks 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  command="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || command=''
  if [ -z "$command" ]; then
    printf 'pid %s, which is gone (a process it started still holds the lock)\n' "$pid"
    return 0
  fi
  # flock -o -E 75 -w N <directory> /bin/bash <script> <subcommand> ... (by hand: <directory> setsid env
  # --default-signal=... /bin/bash <script> ...): the script and what it runs.
  command="${command#*" $JOB_CACHE "}"
  command="${command#*"/bin/bash "}"
  unit="$(sed -n 's|^0::.*/\([^/]*\.service\)$|\1|p' "/proc/$pid/cgroup" 2>/dev/null)" || unit=''
  printf '%s (pid %s, %s)\n' "${command% }" "$pid" "${unit:-run by hand}"
}

# OnFailure= of the units (<backup service>-notify.service, as root): the administrator's command gets the
# failed unit's last log lines on stdin and what failed in SELFHOST_BACKUP_* variables. systemd names the
# failed unit in MONITOR_UNIT (the backup or the check service).
notify_failure() {
  local unit="${MONITOR_UNIT:-$BACKUP_SERVICE}"
  [ -n "$NOTIFY_CMD" ] || return 0
  journalctl --no-pager -o short-iso -n 50 -u "$unit" \
    | SELFHOST_BACKUP_PROVIDER="$PROVIDER" SELFHOST_BACKUP_INSTANCE="$INSTANCE" SELFHOST_BACKUP_UNIT="$unit" \
      SELFHOST_BACKUP_RESULT="${MONITOR_SERVICE_RESULT:-failed}" SELFHOST_BACKUP_HOST="$(uname -n)" \
      /bin/sh -c "$NOTIFY_CMD"
}

# For selfhost-backup status: when the newest snapshot of this instance was made (seconds since the epoch,
# empty without one), and how old it may get before the instance counts as late.
# provider_newest_json lists the newest snapshot as JSON; restic and borg both call its time "time".
newest() {
  local listed time
  listed="$(provider_newest_json)" || fail "cannot list the ${SNAPSHOT_WORD}s of this instance"
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

# The backup's line in the journal, short and readable: the snapshot it made, the bytes of the dump it read, the
# bytes it added to the repository and how long it took. $1: the snapshot, $2 and $3: bytes (empty when the tool
# did not tell), $4: seconds. The tool's JSON goes to STATS_JSON (keep_statistics), not to the journal.
backup_summary() {
  printf '%s: backup of instance %s: %s %s, %s read, %s added, %s\n' "$SCRIPT" "$INSTANCE" "$SNAPSHOT_WORD" \
    "${1:-(unknown)}" "$(human_bytes "$2")" "$(human_bytes "$3")" "$(human_seconds "$4")"
}

human_bytes() {
  if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    if [ "$1" -lt 1024 ]; then printf '%s B\n' "$1"; else numfmt --to=iec-i --suffix=B --format='%.1f' -- "$1"; fi
  else
    echo "? bytes"
  fi
}

human_seconds() {
  local seconds="${1:-0}"
  if [ "$seconds" -ge 3600 ]; then
    printf '%dh%02dm%02ds\n' $((seconds / 3600)) $((seconds % 3600 / 60)) $((seconds % 60))
  elif [ "$seconds" -ge 60 ]; then
    printf '%dm%02ds\n' $((seconds / 60)) $((seconds % 60))
  else
    printf '%ss\n' "$seconds"
  fi
}

# The tool's statistics on stdin into STATS_JSON, replaced atomically. Losing them never fails the backup.
keep_statistics() {
  if ! { cat >"$STATS_JSON.tmp" && mv -f -- "$STATS_JSON.tmp" "$STATS_JSON"; } 2>/dev/null; then
    rm -f -- "$STATS_JSON.tmp"
    printf '%s: could not keep the statistics in %s\n' "$SCRIPT" "$STATS_JSON" >&2
  fi
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
  [ -z "$METRICS_FILE" ] || write_metrics backup "$status" || printf '%s: could not write %s\n' "$SCRIPT" "$METRICS_FILE" >&2
  if [ "$status" -eq 0 ]; then ping_monitor ''; else ping_monitor /fail; fi
}

# ExecStopPost= hook of the drill service (root, after every drill, also a killed one): the drill's metrics, and
# the monitor's fail for a failed drill. No /start and no success ping: the monitor's check follows the backups,
# and a drill's success must not stand in for a backup that did not happen.
drill_finished() {
  local status
  status="$(exit_status_of_run)"
  [ -z "$METRICS_FILE" ] || write_metrics drill "$status" || printf '%s: could not write %s\n' "$SCRIPT" "$METRICS_FILE" >&2
  [ "$status" -eq 0 ] || ping_monitor /fail
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

# The node-exporter textfile of this instance, replaced atomically (the exporter never reads half a file). The
# backup's and the drill's metrics share it: $1 (backup or drill) says whose run ended with exit status $2; the
# other's metrics are carried over from the file as it is. Hooks of two runs that end together take turns (a lock
# on the metrics directory), so that neither loses the other's update.
write_metrics() {
  local kind="$1" status="$2" labels dir lock
  labels="provider=\"$PROVIDER\",name=\"$INSTANCE\""
  dir="$(dirname -- "$METRICS_FILE")"
  # Called in an || list, where set -e is off: each step checks for itself.
  metrics_links_are_root_s || return 1
  # 0755, not the script's umask 077: the exporter (another user) must reach the file.
  (umask 022 && mkdir -p -- "$dir") || return 1
  exec {lock}<"$dir" || return 1
  flock -w 30 "$lock" || printf '%s: %s stays locked: writing the metrics anyway\n' "$SCRIPT" "$dir" >&2
  {
    if [ "$kind" = backup ]; then backup_metrics "$status"; else backup_metrics ''; fi
    if [ "$kind" = drill ]; then drill_metrics "$status"; else drill_metrics ''; fi
  } | write_file_as "$(metrics_writer)" "$METRICS_FILE"
}

# When the run of unit $1 that is ending started (seconds since the epoch), else now.
run_started() {
  local started
  started="$(systemctl show --timestamp=unix -P InactiveExitTimestamp "$1" 2>/dev/null)"
  started="${started#@}"
  [[ "$started" =~ ^[0-9]+$ ]] || started="$(date +%s)"
  echo "$started"
}

# The backup's metrics after a backup run that ended with exit status $1; with no status, as they were.
backup_metrics() {
  local status="$1" started='' duration='' now added snapshots success
  added="$(previous_metric selfhost_backup_last_added_bytes)"
  snapshots="$(previous_metric selfhost_backup_snapshots)"
  success="$(previous_metric selfhost_backup_last_success_timestamp_seconds)"
  if [ -z "$status" ]; then
    started="$(previous_metric selfhost_backup_last_attempt_timestamp_seconds)"
    duration="$(previous_metric selfhost_backup_last_duration_seconds)"
    status="$(previous_metric selfhost_backup_last_exit_status)"
  else
    now="$(date +%s)"
    started="$(run_started "$BACKUP_SERVICE")"
    duration="$((now - started))"
    if [ "$status" -eq 0 ]; then
      success="$now"
      added="$(sed -n 's/^added_bytes=\([0-9]*\)$/\1/p' "$STATS_FILE" 2>/dev/null)"
    fi
    local counted
    counted="$(sed -n 's/^snapshots=\([0-9]*\)$/\1/p' "$STATS_FILE" 2>/dev/null)"
    [ -z "$counted" ] || snapshots="$counted"
  fi
  metric selfhost_backup_last_attempt_timestamp_seconds "When the last backup run started." "$started"
  metric selfhost_backup_last_duration_seconds "How long the last backup run took." "$duration"
  metric selfhost_backup_last_exit_status "Exit status of the last backup run: 0 success, 128+N killed by signal N." "$status"
  metric selfhost_backup_last_success_timestamp_seconds "When the last successful backup run ended." "$success"
  metric selfhost_backup_last_added_bytes "Bytes the last successful backup added to the repository." "$added"
  metric selfhost_backup_snapshots "Snapshots of this instance in the repository after its last successful backup." "$snapshots"
}

# The drill's metrics after a drill that ended with exit status $1; with no status, as they were.
drill_metrics() {
  local status="$1" duration now success measured
  success="$(previous_metric selfhost_backup_last_drill_success_timestamp_seconds)"
  if [ -z "$status" ]; then
    duration="$(previous_metric selfhost_backup_last_drill_duration_seconds)"
    status="$(previous_metric selfhost_backup_last_drill_exit_status)"
  else
    now="$(date +%s)"
    duration="$((now - $(run_started "$DRILL_SERVICE")))"
    if [ "$status" -eq 0 ]; then
      success="$now"
      # The restore time the drill measured once it held the lock, when it left one (a regular file of the
      # request's user's directory: root reads no link or FIFO there).
      if [ -f "$DRILL_STATS_FILE" ] && [ ! -L "$DRILL_STATS_FILE" ]; then
        measured="$(sed -n 's/^seconds=\([0-9]\{1,9\}\)$/\1/p' "$DRILL_STATS_FILE" 2>/dev/null)" || measured=''
        [ -z "$measured" ] || [ "$measured" -gt "$duration" ] || duration="$measured"
      fi
    fi
  fi
  metric selfhost_backup_last_drill_success_timestamp_seconds "When the last successful restore drill ended." "$success"
  metric selfhost_backup_last_drill_duration_seconds "How long the last restore drill took to restore and check the whole dump (without waiting for the instance lock when it passed)." "$duration"
  metric selfhost_backup_last_drill_exit_status "Exit status of the last restore drill: 0 success, 128+N killed by signal N." "$status"
}

# The way to the metrics directory is resolved again by mkdir, realpath and the writer: a component that another
# user can replace between those steps (in a directory of that user, or one others can change) could swap a
# checked directory for a link and have root write or create directories elsewhere. So every directory on the way
# must be root's and closed to others; in a sticky one (/tmp) a component may be another user's only as the
# metrics directory itself, which that user then writes. A link is followed only where root alone can have put it.
metrics_links_are_root_s() {
  local part='' parent component owner mode components last
  last="$(dirname -- "$METRICS_FILE")"
  IFS=/ read -ra components <<<"$last"
  for component in "${components[@]}"; do
    [ -n "$component" ] || continue
    parent="${part:-/}"
    part="$part/$component"
    # What does not exist yet, root's mkdir makes below directories found root's alone so far.
    [ -e "$parent" ] || return 0
    read -r owner mode < <(stat -L -c '%u %a' -- "$parent") || return 1
    if [ "$owner" = 0 ] && ! (( 8#$mode & 8#022 )); then
      continue  # only root can change this directory
    fi
    if [ "$owner" = 0 ] && (( 8#$mode & 8#1000 )) && [ "$(stat -c %u -- "$part" 2>/dev/null)" = 0 ]; then
      continue  # a sticky directory of root's: only root can replace root's entry
    fi
    if [ -L "$part" ]; then
      printf '%s: %s is a symbolic link in a directory that a user other than root can change: no metrics written\n' \
        "$SCRIPT" "$part" >&2
      return 1
    fi
    if [ "$owner" != 0 ]; then
      printf '%s: %s belongs to a user other than root: no metrics written below it\n' "$SCRIPT" "$parent" >&2
      return 1
    fi
    if ! (( 8#$mode & 8#1000 )) || [ "$part" != "$last" ]; then
      printf '%s: %s can be changed by a group or by other users: no metrics written\n' "$SCRIPT" "$parent" >&2
      return 1
    fi
  done
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
  # shellcheck disable=SC2016 # the inner script is /bin/sh's, expanded there
  local writer=(/bin/sh -c 'tmp="$(mktemp "$1.XXXXXX.tmp")" && cat >"$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$1" \
    || { rm -f "$tmp"; exit 1; }' write_file)
  case "$1" in
    root) "${writer[@]}" "$2" ;;
    *:*) setpriv --reuid="${1%:*}" --regid="${1#*:}" --clear-groups -- "${writer[@]}" "$2" ;;
    *) cat >/dev/null; return 1 ;;
  esac
}

# One gauge with HELP and TYPE lines; left out while it has no value yet (no success so far).
# $labels is write_metrics' local.
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

# Whether $1 is a maintenance step of this instance (backup, check, ...): run by its units only.
is_maintenance() {
  local step
  for step in "${MAINTENANCE[@]}"; do
    [ "$step" != "$1" ] || return 0
  done
  return 1
}

require_root() {
  [ "$(id -u)" -eq 0 ] || fail "run this as root"
}

# The provider's half, then the check that it implements the interface: a missing function fails here, at
# once, not in the middle of a restore.
[[ "$PROVIDER" =~ ^[a-z][a-z0-9_]*$ ]] || fail "not a provider name: '$PROVIDER'"
# shellcheck source=/dev/null # roles/restic/files/restic.sh or roles/borg/files/borg.sh
source "$LIBRARY/$PROVIDER.sh"
for required in "${PROVIDER_INTERFACE[@]}" "${MAINTENANCE[@]/#/provider_}"; do
  declare -F "$required" >/dev/null || fail "$LIBRARY/$PROVIDER.sh does not define $required (the provider interface)"
done
for required in "${PROVIDER_VARIABLES[@]}"; do
  declare -p "$required" >/dev/null 2>&1 || fail "$LIBRARY/$PROVIDER.sh does not set $required (the provider interface)"
done
unset required

# exec -- <tool arguments>: everything after "--" goes to the tool unchanged.
exec_tool() {
  [ "$#" -gt 0 ] || usage_error "exec: missing '--' and the $PROVIDER arguments (e.g. $SCRIPT exec -- $EXEC_EXAMPLE)"
  [ "$1" = -- ] \
    || usage_error "exec: expected '--' before the $PROVIDER arguments, got '$1' (e.g. $SCRIPT exec -- $EXEC_EXAMPLE)"
  shift
  [ "$#" -gt 0 ] || usage_error "exec: missing the $PROVIDER arguments after '--' (e.g. $SCRIPT exec -- $EXEC_EXAMPLE)"
  in_unit || require_root
  provider_exec "$@"
}

main() {
  local subcommand command
  [ "$#" -gt 0 ] || usage_error "missing the subcommand (snapshots, restore, dump, drill, exec or help)"
  subcommand="$1"
  shift
  # "<subcommand> --help" of an operator's subcommand shows the usage too (exec -- --help is the tool's own).
  case "$subcommand:${1:-}" in
    snapshots:-h | snapshots:--help | restore:-h | restore:--help | dump:-h | dump:--help | drill:-h | drill:--help \
      | exec:-h | exec:--help)
      usage
      return
      ;;
  esac
  case "$subcommand" in
    -h | --help | help)
      no_arguments "$subcommand" "$@"
      usage
      ;;
    snapshots)
      if [ "${1:-}" = --json ]; then
        shift
        no_arguments "snapshots --json" "$@"
        in_unit || require_root
        provider_snapshots_json
      else
        no_arguments snapshots "$@"
        in_unit || require_root
        provider_snapshots
      fi
      ;;
    restore)
      restore_arguments "$@"
      in_unit || require_root
      check_snapshot_arg "$RESTORE_SNAPSHOT"
      command="$(restore_command)" || exit
      check_restore_target "$command"
      with_instance_lock "$subcommand" "$@"
      restore "$RESTORE_SNAPSHOT"
      ;;
    dump)
      one_snapshot "$subcommand" "$@"
      in_unit || require_root
      dump "$1"
      ;;
    drill)
      one_snapshot "$subcommand" "$@"
      in_unit || require_root
      check_snapshot_arg "$1"
      with_instance_lock "$subcommand" "$@"
      drill "$1"
      ;;
    exec)
      exec_tool "$@"
      ;;
    notify)
      no_arguments "$subcommand" "$@"
      require_root
      notify_failure
      ;;
    newest)
      no_arguments "$subcommand" "$@"
      require_root
      newest
      ;;
    started | finished)
      no_arguments "$subcommand" "$@"
      require_root
      "job_$subcommand"
      ;;
    -?*)
      usage_error "unknown option '$subcommand'"
      ;;
    drill-finished)
      no_arguments "$subcommand" "$@"
      require_root
      drill_finished
      ;;
    *)
      is_maintenance "$subcommand" || usage_error "unknown subcommand '$subcommand'"
      no_arguments "$subcommand" "$@"
      in_unit || fail "$subcommand runs inside the units: systemctl start --wait $BACKUP_SERVICE"
      [ "$subcommand" != backup ] || with_instance_lock "$subcommand"
      "provider_$subcommand"
      ;;
  esac
}

main "$@"
