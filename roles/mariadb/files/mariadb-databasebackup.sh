#!/usr/bin/env bash
# Managed by Ansible (selfhost.backup.mariadb): local changes will be overwritten.
#
# The MariaDB/MySQL side of the database backup contract (selfhost.backup.mariadb): dumps go to stdout,
# restores read stdin. The backup tool's job runs it as the request's user.
#
#   dump             a consistent dump: --single-transaction (InnoDB), routines, events, triggers, binary
#                    columns in hex; every database (--all-databases) or the --databases given
#   restore          replay a dump with the client, which stops at the first error and exits non-zero; a
#                    dump without its closing "-- Dump completed" line (truncated) fails the restore too.
#                    The dump replaces each table in turn (DROP TABLE, CREATE TABLE, INSERT), which waits for
#                    any session holding the table (an open transaction that touched it): first the restore
#                    looks for other sessions on the databases it replaces (--databases, else every one) and
#                    stops before any change, naming them, or with --terminate-sessions ends them (KILL); a
#                    table still held makes it fail after --lock-wait-timeout (60) seconds, never wait without end.
#                    A restore that fails after it started says "partially restored" and where it stopped.
#   restore-into NAME
#                    restore --into of the restore script: a dump of the one database NAME restored into the new
#                    database named by the environment variable SELFHOST_BACKUP_INTO (letters, digits, _ . -); the
#                    dump's CREATE DATABASE and USE of NAME are aimed at it, CREATE DATABASE without IF NOT EXISTS,
#                    so a database that exists is never replaced, and NAME is never touched. A dump of another
#                    database is refused; a failed or cut restore drops the database it created.
#   restore-several  restore --into and --database of a request of several databases: refused, naming why (see
#                    refuse_several)
#   drill            the restore drill: the dump restored as restore does, into a scratch server of its own
#                    (mariadb-install-db and mariadbd in a private temporary directory, a unix socket there, no
#                    network, no option file read), each --check DATABASE QUERY run there (it must return true:
#                    1, t or true), the server stopped and the directory removed, also on failure or a signal.
#                    It never connects to the live server. Non-zero on a cut dump, a failed check (named), or
#                    any error.
#
# Authentication: the unix socket (the request's user is a database user of the same name, as root and
# mysql are on Debian) or --option-file, a client option file only the request's user can read. Never a
# password on a command line.
set -euo pipefail

# fail, --compression, dump_compressed and decompressed (installed beside this helper).
# shellcheck source=../../requester_common/files/databasebackup-lib.sh
source "$(dirname -- "$(readlink -f -- "$0")")/databasebackup-lib.sh"

readonly TRAILER='-- Dump completed'
# How long a statement of the restore waits for another session's lock on a table before the restore fails
# (seconds; --lock-wait-timeout).
lock_wait_timeout=60
# What the client prints once the checks passed and the restore starts changing databases, and (followed by
# the database's name) each time it moves on to the next database of the dump.
readonly STARTED="selfhost-backup: restore started $$.$RANDOM"
readonly REACHED="selfhost-backup: restoring $$.$RANDOM"
option_file=''
databases=()
terminate_sessions=0
# The drill's scratch server: its socket (every client of this helper then connects there and reads no option
# file), its pid, and the checks (database, query, database, query, ...).
scratch_socket=''
scratch_pid=''
checks=()

usage() {
  cat <<USAGE
usage: $SCRIPT [--option-file FILE] [--compression none|gzip|zstd] dump [--databases NAME...]
       $SCRIPT [--option-file FILE] [--compression none|gzip|zstd] restore [--terminate-sessions] [--lock-wait-timeout SECONDS]
                [--databases NAME...]
       SELFHOST_BACKUP_INTO=NEW $SCRIPT [--option-file FILE] [--compression none|gzip|zstd] restore-into NAME
       $SCRIPT restore-several   (refuses restore --into/--database of a dump of several databases, naming why)
       $SCRIPT [--compression none|gzip|zstd] drill [--check DATABASE QUERY]...
USAGE
}

# mariadb-dump and mariadb, or the MySQL names where only those exist.
tool() {
  if command -v "$1" >/dev/null; then
    printf '%s\n' "$1"
  else
    printf '%s\n' "$2"
  fi
}

# The client options: the option file must come first.
client_args() {
  if [ -n "$scratch_socket" ]; then
    printf '%s\n' --no-defaults "--socket=$scratch_socket" --protocol=socket --user=root --default-character-set=utf8mb4
    return
  fi
  if [ -n "$option_file" ]; then
    printf '%s\n' "--defaults-extra-file=$option_file"
  fi
  printf '%s\n' --default-character-set=utf8mb4
}

dump() {
  local args
  mapfile -t args < <(client_args)
  args+=(--single-transaction --routines --events --triggers --hex-blob)
  if [ "${#databases[@]}" -gt 0 ]; then
    args+=(--databases "${databases[@]}")
  else
    args+=(--all-databases)
  fi
  dump_compressed "$(tool mariadb-dump mysqldump)" "${args[@]}"
}

# Pass the dump through, and fail at its end unless its last line is the closing comment (a routine's body may
# hold such a comment too, but never as the dump's last line). After each USE of a database (outside the
# DELIMITER blocks that hold routines and triggers) the client is asked to print REACHED and that database.
require_complete() {
  awk -v trailer="$TRAILER" -v script="$SCRIPT" -v reached="$REACHED" '
    { print }
    /^DELIMITER / { routines = ($2 != ";") }
    !routines && /^USE `.*`;$/ { print "SELECT CONCAT(\047" reached " \047, DATABASE());" }
    $0 != "" { last = $0 }
    END {
      if (index(last, trailer) != 1) {
        printf "%s: the dump is incomplete (it does not end with \"%s\"): the restore stopped short\n", script, trailer > "/dev/stderr"
        exit 3
      }
    }'
}

client() {
  local args
  mapfile -t args < <(client_args)
  "$(tool mariadb mysql)" "${args[@]}" "$@"
}

# An SQL string of $1 that any name is safe in.
sql_string() {
  printf "CONVERT(X'%s' USING utf8mb4)" "$(printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n')"
}

# The other sessions that hold, or may hold, tables the restore replaces, one a line: "id<TAB>what". Those whose
# database is one the restore replaces (--databases, else every one but the server's own schemas), and those in
# an open transaction without a database (it may have touched any table). Without the PROCESS privilege only
# this user's own sessions are visible: the first line says so then.
other_sessions() {
  local scope name
  if [ "${#databases[@]}" -gt 0 ]; then
    scope="p.DB IN ("
    for name in "${databases[@]}"; do scope+="$(sql_string "$name"),"; done
    scope="${scope%,}) OR (p.DB IS NULL AND t.trx_mysql_thread_id IS NOT NULL)"
  else
    scope="p.DB NOT IN ('information_schema', 'performance_schema', 'sys') OR t.trx_mysql_thread_id IS NOT NULL"
  fi
  client --batch --skip-column-names <<SQL
SELECT 'no-process-privilege' FROM information_schema.USER_PRIVILEGES
 WHERE PRIVILEGE_TYPE = 'PROCESS'
   AND GRANTEE = CONCAT(QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', 1)), '@', QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', -1)))
HAVING COUNT(*) = 0;
SELECT p.ID, CONCAT(IFNULL(p.DB, '(no database)'), ' (id ', p.ID, ', user ', p.USER, '@', p.HOST, ', ', p.COMMAND,
         IF(t.trx_mysql_thread_id IS NULL, '', CONCAT(', in a transaction since ', t.trx_started)),
         IF(IFNULL(p.STATE, '') = '', '', CONCAT(', ', p.STATE)), ')')
  FROM information_schema.PROCESSLIST p
  LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
 WHERE p.ID <> CONNECTION_ID()
   AND p.COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID', 'Slave_IO', 'Slave_SQL', 'Slave_worker')
   AND p.USER NOT IN ('system user', 'event_scheduler', 'unauthenticated user')
   AND (p.DB IS NOT NULL OR t.trx_mysql_thread_id IS NOT NULL)
   AND ($scope)
 ORDER BY p.DB, p.ID;
SQL
}

# Tables of those databases in use (LOCK TABLES, or a statement running now), one "db.table" a line: a session
# that locked them from another database, without a transaction, is not among other_sessions.
tables_in_use() {
  local scope="" name
  if [ "${#databases[@]}" -gt 0 ]; then
    for name in "${databases[@]}"; do scope+="$(sql_string "$name"),"; done
    scope=" AND \`Database\` IN (${scope%,})"
  fi
  client --batch --skip-column-names --execute "SHOW OPEN TABLES WHERE In_use > 0$scope" | awk -F '\t' '{ print $1 "." $2 }'
}

# Stop before any change while other sessions hold the databases, naming them; with --terminate-sessions end
# them. Tables still in use by a session this cannot name stop the restore either way.
check_sessions() {
  local found ids=() what=() id line list tables tries=0
  found="$(other_sessions)" || fail "the restore stopped before it changed anything: cannot list the other sessions (the error is above)"
  while IFS= read -r line; do
    case "$line" in
      no-process-privilege)
        printf '%s: %s cannot see the sessions of other users (no PROCESS privilege): only its own are looked for\n' \
          "$SCRIPT" "$(id -un)" >&2 ;;
      ?*) ids+=("${line%%$'\t'*}"); what+=("${line#*$'\t'}") ;;
    esac
  done <<<"$found"
  list="$(printf '%s; ' "${what[@]}")"
  list="${list%; }"
  if [ "${#ids[@]}" -gt 0 ] && [ "$terminate_sessions" != 1 ]; then
    tables="$(tables_in_use 2>/dev/null | paste -sd, - | sed 's/,/, /g')" || tables=''
    fail "the restore stopped before it changed anything: other sessions use databases it would replace:" \
         "$list${tables:+ (tables in use: $tables)}. Stop the applications first (the provider setting restore.stop_units)," \
         "or let the restore end the sessions (mariadb_databasebackup_terminate_sessions: true)."
  fi
  if [ "${#ids[@]}" -gt 0 ]; then
    printf '%s: ending the other sessions on databases the restore replaces: %s\n' "$SCRIPT" "$list" >&2
    for id in "${ids[@]}"; do
      # One that ended meanwhile is no error.
      client --batch --execute "KILL CONNECTION $id" 2>/dev/null || true
    done
  fi
  # A killed session lets go of its tables once it has rolled back: give it a few seconds.
  tables="$(tables_in_use)" || fail "the restore stopped before it changed anything: cannot list the tables in use"
  while [ -n "$tables" ] && [ "${#ids[@]}" -gt 0 ] && [ "$tries" -lt 20 ]; do
    sleep 0.5
    tries=$((tries + 1))
    tables="$(tables_in_use)" || fail "the restore stopped before it changed anything: cannot list the tables in use"
  done
  [ -n "$tables" ] || return 0
  fail "the restore stopped before it changed anything: tables it would replace are in use by a session it cannot" \
       "name (LOCK TABLES, or a statement running now, from outside these databases): $(paste -sd, - <<<"$tables" | sed 's/,/, /g')." \
       "Stop the applications first (the provider setting restore.stop_units)."
}

# On an error the client prints the whole failing statement, table data included: only its error lines reach
# the caller (and so the journal); they may still quote a value near the error. The client prints STARTED and
# REACHED lines to the file restore_progress: a restore that fails before STARTED changed nothing; one that fails
# after it says "partially restored", where it stopped and which databases it restored before.
restore_errors=''
restore_progress=''
restore() {
  local rc=0 reached at before held
  # The drill's scratch server has no other sessions.
  [ -n "$scratch_socket" ] || check_sessions
  restore_errors="$(mktemp)"
  restore_progress="$(mktemp)"
  at_exit rm -f -- "$restore_errors" "$restore_progress"
  { printf 'SET SESSION lock_wait_timeout = %s;\nSELECT %s;\n' "$lock_wait_timeout" "$(sql_string "$STARTED")"
    decompressed require_complete; } \
    | client --batch --skip-column-names 2>"$restore_errors" >"$restore_progress" || rc=$?
  grep -E '^(ERROR|mariadb:|mysql:|Warning)' "$restore_errors" >&2 || true
  [ "$rc" -ne 0 ] || return 0
  [ -z "$scratch_socket" ] || fail "drill failed: the dump does not restore into the scratch server (the error is above)"
  grep -qxF -- "$STARTED" "$restore_progress" || fail "the restore stopped before it changed anything (the error is above)"
  reached="$(sed -n "s/^${REACHED} //p" "$restore_progress")"
  at="$(tail -n 1 <<<"$reached")"
  before="$(head -n -1 <<<"$reached" | paste -sd, - | sed 's/,/, /g')"
  held="$(other_sessions 2>/dev/null | grep -v '^no-process-privilege$' | cut -f2- | paste -sd';' - | sed 's/;/; /g')" || held=''
  local where="before it reached the first database of the dump (the error is above); at most that database was created"
  [ -z "$at" ] || where="while restoring database $at (the error is above); databases restored before it: ${before:-none}"
  fail "partially restored: the restore failed $where; the ones after it in the dump are as they were." \
       "${held:+Sessions on these databases now: $held. }Restore again (restore latest, or the snapshot you meant)" \
       "before the server is used."
}

# The dump of the database $1 aimed at the database $2: its CREATE DATABASE (IF NOT EXISTS left out: a database
# that exists fails the restore before anything changes) followed by the line CREATED (the client prints it once
# the database is made, so that only a database this restore made is dropped again), each USE of it. Outside the
# DELIMITER blocks that hold routines and triggers; the dump of any other database is refused.
retarget_dump() {
  awk -v from="$1" -v to="$2" -v created="$CREATED" -v script="$SCRIPT" '
    /^DELIMITER / { routines = ($2 != ";") }
    !routines && /^CREATE DATABASE / {
      if (index($0, "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `" from "`") == 1) {
        rest = substr($0, length("CREATE DATABASE /*!32312 IF NOT EXISTS*/ `" from "`") + 1)
        print "CREATE DATABASE `" to "`" rest
        print "SELECT \047" created "\047;"
        made = 1
        next
      }
      printf "%s: the dump holds another database than %s: a restore --into takes the dump of that one database\n", script, from > "/dev/stderr"
      exit 3
    }
    !routines && /^USE `.*`;$/ {
      if ($0 != "USE `" from "`;" || !made) {
        printf "%s: the dump holds another database than %s: a restore --into takes the dump of that one database\n", script, from > "/dev/stderr"
        exit 3
      }
      print "USE `" to "`;"
      next
    }
    { print }
    END {
      if (!made) {
        printf "%s: the dump creates no database %s: nothing was restored\n", script, from > "/dev/stderr"
        exit 3
      }
    }'
}

# restore --into: the dump of the database $1 into the new database SELFHOST_BACKUP_INTO, never one that exists.
readonly CREATED="selfhost-backup: created $$.$RANDOM"

# The database restore_into is making (into_pending) until it is complete, and the client's output file that says
# whether the client made it (CREATED): at exit, after a failure or a signal (Ctrl-C, a dropped ssh session), it
# is dropped again. MariaDB's DDL is not transactional: a killed restore would leave it half restored, and the
# retry would then refuse its name.
into_pending=''
into_progress=''
drop_unfinished_into() {
  local name="$into_pending"
  into_pending=''
  [ -n "$name" ] && grep -qxF -- "$CREATED" "$into_progress" 2>/dev/null || return 0
  if ! client --batch --execute "DROP DATABASE \`$name\`"; then
    printf '%s: dropping the half-restored database %s failed (above): drop it by hand\n' "$SCRIPT" "$name" >&2
    return 1
  fi
}

restore_into() {
  local source="$1" into errors progress rc=0
  into="${SELFHOST_BACKUP_INTO:-}"
  [ -n "$into" ] || fail "restore into another database: the environment variable SELFHOST_BACKUP_INTO names no database: nothing was restored"
  [[ "$into" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$ ]] \
    || fail "restore --into: '$into' is not a database name this takes (letters, digits, _ . -, at most 63): nothing was restored"
  [ "$into" != "$source" ] || fail "restore --into $into: that is the database of this request; give another name"
  if [ "$(client --batch --skip-column-names --execute \
      "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = $(sql_string "$into")")" != 0 ]; then
    fail "restore --into: database $into exists; a restore --into makes a new database and never replaces one" \
      "(drop it first, or give another name): nothing was restored"
  fi
  names_checked
  errors="$(mktemp)"
  progress="$(mktemp)"
  at_exit rm -f -- "$errors" "$progress"
  into_progress="$progress"
  into_pending="$into"
  at_exit drop_unfinished_into
  { printf 'SET SESSION lock_wait_timeout = %s;\n' "$lock_wait_timeout"
    decompressed retarget_dump "$source" "$into" | require_complete; } \
    | client --batch --skip-column-names 2>"$errors" >"$progress" || rc=$?
  grep -E '^(ERROR|mariadb:|mysql:|Warning)' "$errors" >&2 || true
  if [ "$rc" -eq 0 ]; then
    into_pending=''
    printf '%s: database %s restored into the new database %s\n' "$SCRIPT" "$source" "$into" >&2
    return 0
  fi
  if grep -qxF -- "$CREATED" "$progress"; then
    drop_unfinished_into \
      || fail "restore into $into failed (the errors are above)"
    fail "restore into $into failed (the error is above); the database $into it had created was dropped again"
  fi
  fail "restore into $into failed before it created the database (the error is above): nothing changed"
}

# restore --database and --into of a request of several databases (--databases with more than one, or every
# database): refused, naming why, before anything is read (the restore script asks in its check, before it opens the
# repository). One database is not cut out of such a dump: MariaDB has no transactional DDL and no RENAME DATABASE,
# so a restore in place cannot be made in a copy and swapped in as PostgreSQL's is (a failed or cut one would leave
# that database half replaced), and views, triggers, routines and foreign keys of one database may name the
# tables of the others (`other`.`t`): restored alone, above all --into a copy, they would read and write the live
# databases. A request of one database (mariadb_databasebackup_databases: [NAME]) restores --into.
refuse_several() {
  local refused="restore --into ${SELFHOST_BACKUP_INTO:-}"
  [ -z "${SELFHOST_BACKUP_DATABASE:-}" ] || refused="restore --database ${SELFHOST_BACKUP_DATABASE}${SELFHOST_BACKUP_INTO:+ --into $SELFHOST_BACKUP_INTO}"
  fail "$refused: this request's dump holds several MariaDB databases, and one is not restored out of it alone:" \
    "MariaDB cannot restore a database in a copy and swap it in (no transactional DDL, no RENAME DATABASE), and its" \
    "views, triggers and routines may name the other databases' tables. Nothing was restored. Give the database a" \
    "request of its own (mariadb_databasebackup_databases: [NAME]) to restore it alone or --into another name, or" \
    "take the whole dump to a file (the restore script's dump subcommand)"
}

# The first of the programs $@ found on PATH or in the server's directories (not on a user's PATH on Debian).
server_tool() {
  local name dir
  for name in "$@"; do
    for dir in "" /usr/sbin/ /usr/libexec/ /usr/local/sbin/; do
      if [ -z "$dir" ]; then
        command -v "$name" && return 0
      elif [ -x "$dir$name" ]; then
        printf '%s\n' "$dir$name"
        return 0
      fi
    done
  done
  return 1
}

# The scratch server in $SCRATCH: a data directory from mariadb-install-db, mariadbd as the request's user on a
# unix socket in $SCRATCH (mode 0700) with no network and no grant tables (no account of the live server is
# needed to restore or check its dump, and nobody else can reach the socket), stopped at exit. Checked to be
# that server before anything is restored.
start_scratch_server() {
  local install server tries=0 as_root=() datadir
  install="$(server_tool mariadb-install-db mysql_install_db)" \
    || fail "drill: mariadb-install-db is not installed on this host (the package mariadb-server)"
  server="$(server_tool mariadbd mysqld)" || fail "drill: mariadbd is not installed on this host (the package mariadb-server)"
  # The server refuses to run as root unless told to.
  [ "$(id -u)" != 0 ] || as_root=(--user=root)
  "$install" --no-defaults "${as_root[@]}" --datadir="$SCRATCH/data" --skip-test-db >"$SCRATCH/install.log" 2>&1 \
    || { cat -- "$SCRATCH/install.log" >&2; fail "drill: $install of the scratch server failed (above)"; }
  at_exit stop_scratch_server
  "$server" --no-defaults "${as_root[@]}" --datadir="$SCRATCH/data" --socket="$SCRATCH/server.sock" --skip-networking \
    --skip-grant-tables --pid-file="$SCRATCH/server.pid" --log-error="$SCRATCH/error.log" --tmpdir="$SCRATCH" \
    --max-allowed-packet=1G --innodb-flush-log-at-trx-commit=0 --innodb-fast-shutdown=2 \
    </dev/null >/dev/null 2>&1 &
  scratch_pid=$!
  scratch_socket="$SCRATCH/server.sock"
  until client --batch --skip-column-names --execute 'SELECT 1' >/dev/null 2>&1; do
    if ! kill -0 "$scratch_pid" 2>/dev/null || [ "$tries" -ge 600 ]; then
      tail -n 20 -- "$SCRATCH/error.log" >&2 || true
      fail "drill: the scratch server did not start (its log is above)"
    fi
    sleep 0.1
    tries=$((tries + 1))
  done
  datadir="$(client --batch --skip-column-names --execute 'SELECT @@datadir')"
  [ "${datadir%/}" = "$SCRATCH/data" ] || fail "drill: the server on $scratch_socket is not the scratch server; nothing was restored"
}

# KILL, not TERM: the scratch copy goes with its directory, so there is no shutdown to wait for, and a TERM that
# reaches mariadbd while it is still starting is lost (seen with 11.8: the drill, stopped then, waited for the
# server for ever and left its directory behind).
stop_scratch_server() {
  [ -n "$scratch_pid" ] || return 0
  kill -KILL "$scratch_pid" 2>/dev/null || true
  wait "$scratch_pid" 2>/dev/null || true
  scratch_pid=''
}

drill() {
  local i database query result
  scratch_directory
  start_scratch_server
  restore
  for ((i = 0; i < ${#checks[@]}; i += 2)); do
    database="${checks[i]}"
    query="${checks[i + 1]}"
    result="$(client --batch --skip-column-names --database="$database" <<<"$query")" \
      || fail "drill failed: the check in database $database could not run (the error is above): $query"
    check_verdict "$query" "$database" "$result"
  done
  printf '%s: drill passed: the dump restores into a scratch server, %s checks passed\n' "$SCRIPT" "$(( ${#checks[@]} / 2 ))" >&2
}

main() {
  # --option-file and --compression, in either order (compression is read by databasebackup-lib.sh).
  # shellcheck disable=SC2034
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --option-file) [ "$#" -ge 2 ] || { usage >&2; exit 2; }; option_file="$2"; shift 2 ;;
      --compression) [ "$#" -ge 2 ] || { usage >&2; exit 2; }; compression="$2"; shift 2 ;;
      *) break ;;
    esac
  done
  parse_common_options "$@"
  set -- "${REST[@]}"
  if [ -n "$option_file" ] && [ ! -r "$option_file" ]; then
    fail "cannot read the option file $option_file as $(id -un)"
  fi
  case "${1:-}" in
    dump)
      shift
      if [ "${1:-}" = --databases ]; then
        shift
        databases=("$@")
        [ "${#databases[@]}" -gt 0 ] || { usage >&2; exit 2; }
      elif [ "$#" -gt 0 ]; then
        usage >&2; exit 2
      fi
      dump ;;
    restore)
      shift
      while [ "$#" -gt 0 ]; do
        case "$1" in
          --terminate-sessions) terminate_sessions=1; shift ;;
          --lock-wait-timeout)
            if [ "$#" -lt 2 ] || ! [[ "$2" =~ ^[1-9][0-9]{0,6}$ ]]; then usage >&2; exit 2; fi
            lock_wait_timeout="$2"; shift 2 ;;
          *) break ;;
        esac
      done
      if [ "${1:-}" = --databases ]; then
        shift
        databases=("$@")
        [ "${#databases[@]}" -gt 0 ] || { usage >&2; exit 2; }
      elif [ "$#" -gt 0 ]; then
        usage >&2; exit 2
      fi
      restore ;;
    restore-into)
      if [ "$#" -ne 2 ] || [ -z "$2" ]; then usage >&2; exit 2; fi
      restore_into "$2" ;;
    restore-several)
      [ "$#" -eq 1 ] || { usage >&2; exit 2; }
      refuse_several ;;
    drill)
      shift
      while [ "${1:-}" = --check ]; do
        if [ "$#" -lt 3 ] || [ -z "$2" ] || [ -z "$3" ]; then usage >&2; exit 2; fi
        checks+=("$2" "$3")
        shift 3
      done
      [ "$#" -eq 0 ] || { usage >&2; exit 2; }
      drill ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
