#!/usr/bin/env bash
# Managed by Ansible (selfhost.backup.sqlite): local changes will be overwritten.
#
# The SQLite side of the database backup contract (selfhost.backup.sqlite): dumps go to stdout, restores read
# stdin. The backup tool's job runs it as the request's user, the owner of the database file.
#
#   dump PATH      `sqlite3 .dump`: one read transaction, so a consistent snapshot while writers go on; a dump
#                  that does not end with its COMMIT (sqlite3 ends with ROLLBACK on errors) fails. The header
#                  fields user_version and application_id, which .dump leaves out, come first.
#   restore PATH   builds a new database from the dump in a temporary file beside PATH, checks it, then
#                  renames it over PATH (atomic; the target of a symbolic link, keeping its mode and group): a
#                  failed or truncated restore leaves PATH untouched. Stop the application first (stop_units):
#                  a writer must not hold the old file open.
#   restore-into PATH
#                  restore --into of the restore script: builds a new database from the dump the same way into the
#                  new file named by the environment variable SELFHOST_BACKUP_INTO (an absolute path of letters,
#                  digits, _ . - and /, in an existing directory); a file that exists there is never replaced, and
#                  PATH (the request's database, whose mode and group the copy takes) is never touched.
#   drill [--check QUERY]...
#                  the restore drill: builds a database from the dump in a private temporary file (never beside
#                  the live one), which must pass PRAGMA integrity_check and each check (a query that returns
#                  true: 1, t or true, run read-only in sqlite3's safe mode), then removes it. Non-zero on a cut
#                  dump, a failed check (named) or any error.
set -euo pipefail

# fail, --compression, dump_compressed and decompressed (installed beside this helper).
# shellcheck source=../../requester_common/files/databasebackup-lib.sh
source "$(dirname -- "$(readlink -f -- "$0")")/databasebackup-lib.sh"

usage() {
  printf 'usage: %s [--compression none|gzip|zstd] dump|restore PATH\n' "$SCRIPT"
  printf '       SELFHOST_BACKUP_INTO=NEW_PATH %s [--compression none|gzip|zstd] restore-into PATH\n' "$SCRIPT"
  printf '       %s [--compression none|gzip|zstd] drill [--check QUERY]...\n' "$SCRIPT"
}

# Pass the SQL through, and fail at its end unless the last line is the dump's COMMIT.
require_commit() {
  awk -v script="$SCRIPT" '
    { print; last = $0 }
    END {
      if (last != "COMMIT;") {
        printf "%s: the dump is incomplete or failed (it does not end with COMMIT;)\n", script > "/dev/stderr"
        exit 3
      }
    }'
}

dump() {
  local path
  path="$(readlink -f -- "$1")"
  # sqlite3 would create a missing file, and dump it empty.
  [ -f "$path" ] || fail "no database file $1"
  dump_compressed dump_checked "$path"
}

# .dump leaves out the header fields user_version (applications count their schema migrations with it) and
# application_id: they go first, so the restored database has them too. Header and dump are read in one
# transaction, so they are one snapshot. A writer that holds a lock (or the last connection's checkpoint on
# close) is waited for up to BUSY_TIMEOUT_MS instead of failing the dump at once.
BUSY_TIMEOUT_MS=60000
dump_checked() {
  sqlite3 -bail -batch -cmd ".timeout $BUSY_TIMEOUT_MS" "$1" <<'SQL' | require_commit
BEGIN;
SELECT 'PRAGMA user_version=' || user_version || ';' FROM pragma_user_version;
SELECT 'PRAGMA application_id=' || application_id || ';' FROM pragma_application_id;
.dump
COMMIT;
SQL
}

# A new database in the file $1 (empty) from the dump on stdin; a cut dump fails (require_commit).
build() {
  decompressed require_commit | sqlite3 -bail -batch "$1"
}

restore() {
  local path restore_tmp
  path="$(readlink -f -- "$1")"
  restore_tmp="$(mktemp "$(dirname -- "$path")/.$(basename -- "$path").restore.XXXXXXXX")"
  at_exit rm -f -- "$restore_tmp" "$restore_tmp-journal"
  build "$restore_tmp"
  [ "$(sqlite3 -batch "$restore_tmp" 'PRAGMA quick_check;')" = ok ] || fail "the restored database fails PRAGMA quick_check"
  if [ -e "$path" ]; then
    chmod --reference="$path" -- "$restore_tmp"
    # The group too, where the request's user may set it (it is in that group).
    chgrp --reference="$path" -- "$restore_tmp" 2>/dev/null \
      || printf '%s: could not give the restored %s the group of the old file; it has %s\n' \
        "$SCRIPT" "$path" "$(id -gn)" >&2
  else
    chmod 0640 -- "$restore_tmp"
  fi
  # The old file's write-ahead log and journal belong to the old file: applied to the new one they corrupt it.
  rm -f -- "$path-wal" "$path-shm" "$path-journal"
  mv -f -- "$restore_tmp" "$path"
}

# The live database $1 and the names SQLite keeps beside it (its rollback journal, WAL and shared-memory index):
# a new file $2 (resolved; $3 as given) there would be taken for the live database's own journal or WAL.
refuse_live_names() {
  case "$2" in
    "$1") fail "restore --into: $3 is the database of this request" ;;
    "$1-journal"|"$1-wal"|"$1-shm")
      fail "restore --into: $3 is where SQLite keeps the journal or WAL of the database of this request; give" \
        "another path: nothing was restored" ;;
  esac
}

# restore --into: a new file SELFHOST_BACKUP_INTO from the dump, built beside it and checked, then linked into
# place with ln, which never replaces a file that exists (also one made meanwhile). The database $1 is only read
# for its mode and group.
restore_into() {
  local original into tmp
  original="$(readlink -f -- "$1")"
  into="${SELFHOST_BACKUP_INTO:-}"
  [ -n "$into" ] || fail "restore into another file: the environment variable SELFHOST_BACKUP_INTO names no file: nothing was restored"
  if ! [[ "$into" =~ ^/[A-Za-z0-9_./-]{1,254}$ ]] || [[ "/$into/" == */../* || "/$into/" == */./* ]] \
      || [ "${into%/}" != "$into" ]; then
    fail "restore --into: '$into' is not a file path this takes (absolute, of letters, digits, _ . - and /):" \
      "nothing was restored"
  fi
  if [ -e "$into" ] || [ -L "$into" ]; then
    fail "restore --into: $into exists; a restore --into makes a new file and never replaces one (remove it" \
      "first, or give another path): nothing was restored"
  fi
  [ -d "$(dirname -- "$into")" ] || fail "restore --into: no directory $(dirname -- "$into") for $into: nothing was restored"
  refuse_live_names "$original" "$(readlink -f -- "$into")" "$into"
  # The temporary file's name (.<name>.restore.XXXXXXXX) must fit a file name (255 bytes).
  local base="${into##*/}"
  [ "${#base}" -le 230 ] || fail "restore --into: the file name of $into is too long (at most 230): nothing was restored"
  if [ "${SELFHOST_BACKUP_CHECK:-}" = 1 ]; then
    if ! [ -w "$(dirname -- "$into")" ] || ! [ -x "$(dirname -- "$into")" ]; then
      fail "restore --into: cannot write in $(dirname -- "$into") as $(id -un): nothing was restored"
    fi
  fi
  names_checked
  tmp="$(mktemp "$(dirname -- "$into")/.$(basename -- "$into").restore.XXXXXXXX")" \
    || fail "restore --into: cannot write in $(dirname -- "$into") as $(id -un): nothing was restored"
  at_exit rm -f -- "$tmp" "$tmp-journal"
  build "$tmp"
  [ "$(sqlite3 -batch "$tmp" 'PRAGMA quick_check;')" = ok ] || fail "the restored database fails PRAGMA quick_check"
  if [ -e "$original" ]; then
    chmod --reference="$original" -- "$tmp"
    chgrp --reference="$original" -- "$tmp" 2>/dev/null || true
  else
    chmod 0640 -- "$tmp"
  fi
  ln -- "$tmp" "$into" || fail "restore --into: could not create $into (made meanwhile?): nothing was restored"
  printf '%s: restored into the new file %s; %s is untouched\n' "$SCRIPT" "$into" "$1" >&2
}

# The restore drill: the live database is never opened; the copy lives in the scratch directory alone.
drill() {
  local copy result query
  scratch_directory
  copy="$SCRATCH/drill.db"
  build "$copy" || fail "drill failed: the dump does not restore (the error is above)"
  result="$(sqlite3 -batch -readonly "$copy" 'PRAGMA integrity_check;')" \
    || fail "drill failed: PRAGMA integrity_check could not run (the error is above)"
  [ "$result" = ok ] || fail "drill failed: PRAGMA integrity_check says: ${result//$'\n'/; }"
  for query in "${checks[@]}"; do
    # Read-only, and -safe: no ATTACH of another file, no dot-command that reads or writes files.
    result="$(sqlite3 -bail -batch -readonly -safe "$copy" <<<"$query")" \
      || fail "drill failed: the check could not run (the error is above): $query"
    check_verdict "$query" '' "$result"
  done
  printf '%s: drill passed: the dump restores, PRAGMA integrity_check ok, %s checks passed\n' "$SCRIPT" "${#checks[@]}" >&2
}

checks=()

main() {
  parse_common_options "$@"
  set -- "${REST[@]}"
  if [ "${1:-}" = drill ]; then
    shift
    while [ "$#" -gt 0 ]; do
      case "$1" in
        --check) if [ "$#" -lt 2 ] || [ -z "$2" ]; then usage >&2; exit 2; fi; checks+=("$2"); shift 2 ;;
        *) usage >&2; exit 2 ;;
      esac
    done
    drill
    return
  fi
  if [ "$#" -ne 2 ] || [ "${2#/}" = "$2" ]; then
    usage >&2
    exit 2
  fi
  case "$1" in
    dump) dump "$2" ;;
    restore) restore "$2" ;;
    restore-into) restore_into "$2" ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
