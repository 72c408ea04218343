#!/usr/bin/env bash
# Managed by Ansible (selfhost.backup.postgresql): local changes will be overwritten.
#
# The PostgreSQL side of the database backup contract (selfhost.backup.postgresql): dumps go to stdout,
# restores read stdin. The backup tool's job runs it as the request's user, the database superuser.
#
#   dump    cluster | globals | database <name>
#   restore [--terminate-sessions] cluster | globals | database <name>
#   drill [--check <database> <query>]... cluster | globals | database <name>
#   restore-into database <name>          (the new database's name in $SELFHOST_BACKUP_INTO)
#   restore-database [--terminate-sessions] cluster
#                                         (the database in $SELFHOST_BACKUP_DATABASE, optionally into the new
#                                         database $SELFHOST_BACKUP_INTO)
#
# Why restores look like this:
# - cluster and globals are `pg_dumpall --clean --if-exists` replayed with psql ON_ERROR_STOP=1, so any
#   error stops the restore and the script fails; see guard_dumpall for the few statements changed.
# - database is `pg_dump --format=custom` restored with `pg_restore --exit-on-error --single-transaction`:
#   any error or a truncated dump changes nothing (see restore_database).
# - Other sessions on a database the restore drops (cluster) or cleans (database) would make it fail half way,
#   or wait for their locks without end: the restore looks for them before it changes anything and stops,
#   naming them; with --terminate-sessions it ends them instead (see SESSIONS_SQL).
# - A cluster restore that fails after it started dropping says "partially restored", and what it left.
# - Compression belongs to the backup tool (see databasebackup-lib.sh).
#
# restore-into and restore-database (the restore script's restore --into and --database) take their names from
# the environment only, check them, and never replace a database that exists: --into makes a new one (refused when
# it exists), restore-database without --into restores into a new database of its own and swaps it for the old
# one only when the restore succeeded. A failed restore drops what it made and leaves the rest as it was.
#
# The restore drill (see drill) restores the dump the same way into a scratch cluster of its own: made with
# initdb in a private temporary directory, run as the request's user on a unix socket in that directory (no
# TCP port), and checked to be that cluster before anything is restored. It never connects to the live cluster.
set -euo pipefail

# fail, --compression, dump_compressed, decompressed, dump_is_compressed and decompressor (installed beside this
# helper).
# shellcheck source=../../requester_common/files/databasebackup-lib.sh
source "$(dirname -- "$(readlink -f -- "$0")")/databasebackup-lib.sh"

readonly CLUSTER_TRAILER='-- PostgreSQL database cluster dump complete'
terminate_sessions=0
# 1 while a drill restores into its scratch cluster.
drilling=0
# What psql prints once the checks passed and the cluster restore starts changing the cluster.
readonly STARTED="selfhost-backup: restore started $$.$RANDOM"

# The other sessions on the databases in the setting selfhost_backup.databases (quoted identifiers, one a
# line), and what else keeps DROP DATABASE from working (prepared transactions, logical replication slots,
# subscriptions). Without selfhost_backup.terminate = on, any of them stops the restore before it changes
# anything, naming them; with it, the sessions are ended (pg_terminate_backend) and the rest still stops it.
# Run in the restoring session itself (a DO block needs no psql meta-command, which \restrict forbids).
# A client that has just quit (the helper's own question for its user name, an operator's psql) stays listed
# while its backend exits, which on a busy machine can take a moment: sessions are looked at again, every 0.1 s
# for up to 2 s (pg_stat_clear_snapshot: the view is otherwise read once a transaction), before they count.
# shellcheck disable=SC2016
readonly SESSIONS_SQL='DO $selfhost_backup$
DECLARE
  dbs text[] := ARRAY(SELECT (pg_catalog.parse_ident(i))[1] FROM pg_catalog.unnest(pg_catalog.string_to_array(
    pg_catalog.current_setting($$selfhost_backup.databases$$), pg_catalog.chr(10))) AS i WHERE i <> $$$$);
  terminate boolean := pg_catalog.current_setting($$selfhost_backup.terminate$$) = $$on$$;
  sessions text;
  blockers text;
  r record;
  looks integer := 0;
BEGIN
  LOOP
    PERFORM pg_catalog.pg_stat_clear_snapshot();
    SELECT pg_catalog.string_agg(pg_catalog.format($$%s (pid %s, user %s, application %s, client %s, %s)$$,
             a.datname, a.pid, a.usename, coalesce(nullif(a.application_name, $$$$), $$-$$),
             coalesce(pg_catalog.host(a.client_addr), $$local$$), coalesce(a.state, $$-$$)), $$; $$ ORDER BY a.datname, a.pid)
      INTO sessions
      FROM pg_catalog.pg_stat_activity a
     WHERE a.pid <> pg_catalog.pg_backend_pid() AND a.backend_type = $$client backend$$ AND a.datname::text = ANY (dbs);
    looks := looks + 1;
    EXIT WHEN sessions IS NULL OR terminate OR looks > 20;
    PERFORM pg_catalog.pg_sleep(0.1);
  END LOOP;
  SELECT pg_catalog.string_agg(b.what, $$; $$ ORDER BY b.what) INTO blockers FROM (
    SELECT pg_catalog.format($$%s (prepared transaction %s of %s)$$, p.database, p.gid, p.owner) AS what
      FROM pg_catalog.pg_prepared_xacts p WHERE p.database::text = ANY (dbs)
    UNION ALL
    SELECT pg_catalog.format($$%s (replication slot %s)$$, s.database, s.slot_name)
      FROM pg_catalog.pg_replication_slots s WHERE s.database::text = ANY (dbs)
    UNION ALL
    SELECT pg_catalog.format($$%s (subscription %s)$$, d.datname, s.subname)
      FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid = s.subdbid WHERE d.datname::text = ANY (dbs)
  ) AS b;
  IF blockers IS NOT NULL THEN
    RAISE EXCEPTION $$selfhost-backup: the restore stopped before it changed anything: databases it would replace are in use by what it cannot end: %$$, blockers;
  END IF;
  IF sessions IS NULL THEN
    RETURN;
  END IF;
  IF NOT terminate THEN
    RAISE EXCEPTION $$selfhost-backup: the restore stopped before it changed anything: other sessions use databases it would replace: %$$, sessions
      USING HINT = $$Stop the applications first (the provider setting restore.stop_units), or let the restore end the sessions (postgresql_databasebackup_terminate_sessions: true).$$;
  END IF;
  RAISE WARNING $$selfhost-backup: ending the other sessions on databases the restore replaces: %$$, sessions;
  FOR r IN SELECT a.pid FROM pg_catalog.pg_stat_activity a
            WHERE a.pid <> pg_catalog.pg_backend_pid() AND a.backend_type = $$client backend$$ AND a.datname::text = ANY (dbs) LOOP
    PERFORM pg_catalog.pg_terminate_backend(r.pid);
  END LOOP;
END
$selfhost_backup$;'

usage() {
  cat <<USAGE
usage: $SCRIPT [--compression none|gzip|zstd] dump cluster|globals|database NAME
       $SCRIPT [--compression none|gzip|zstd] restore [--terminate-sessions] cluster|globals|database NAME
       $SCRIPT [--compression none|gzip|zstd] drill [--check DATABASE QUERY]... cluster|globals|database NAME
       SELFHOST_BACKUP_INTO=NEW $SCRIPT [--compression none|gzip|zstd] restore-into database NAME
       SELFHOST_BACKUP_DATABASE=NAME [SELFHOST_BACKUP_INTO=NEW] $SCRIPT [--compression none|gzip|zstd] \\
           restore-database [--terminate-sessions] cluster
  dump     write the dump to stdout
  restore  read a dump of the same kind from stdin; exits non-zero on any error. Other sessions on the
           databases it replaces stop it before any change, or with --terminate-sessions are ended
  drill    restore a dump of that kind from stdin into a scratch cluster of its own, run each check (a query
           that must return true in that database), remove the scratch cluster; exits non-zero on any failure
  restore-into      restore a database dump into the new database NEW; the database NAME stays untouched
  restore-database  restore the one database NAME out of a cluster dump: into the new database NEW, or (without
                    SELFHOST_BACKUP_INTO) in place of NAME; the other databases stay untouched
USAGE
}

# A database name from the environment variable $1 (the restore script's --into or --database), for $2 (what for):
# letters, digits, _ . - and at most 63 bytes, as the restore script lets through; checked again here.
readonly NAME_PATTERN='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$'
name_from() {
  local value="${!1:-}"
  [ -n "$value" ] || fail "$2: the environment variable $1 names no database: nothing was restored"
  [[ "$value" =~ $NAME_PATTERN ]] \
    || fail "$2: '$value' is not a database name this takes (letters, digits, _ . -, at most 63); nothing was restored"
  printf '%s\n' "$value"
}

database_exists() {
  local count
  count="$(sql -v name="$1" <<<"SELECT count(*) FROM pg_database WHERE datname = :'name';")" \
    || fail "cannot ask PostgreSQL whether database $1 exists"
  [ "$count" = 1 ]
}

# The database restores of one database (restore --into, restore --database) work in a database of their own,
# WORK_COPY, and give it its name only at the end (ALTER DATABASE ... RENAME, which fails when the name exists:
# a database that exists is never replaced by --into, however late it appeared). In place, the original is
# renamed ASIDE first and dropped only once the copy has its name: the data always exists under a name the
# messages state. A failure or a signal (at_exit) drops the work copy and puts the original back.
readonly WORK_COPY="selfhost_backup_restore_$$"
readonly ASIDE="selfhost_backup_old_$$"
copy_made=0
aside_of=''

# The system databases are never restored alone: postgres is the helper's own connection, template0 takes no
# connection, and template1's dump makes its copy a template database (and a template cannot be dropped).
refuse_system_database() {
  case "$1" in
    postgres|template0|template1)
      fail "$2 $1: a system database is never restored alone (restore the whole cluster instead): nothing was restored" ;;
  esac
}

# Drop database $1, a template or not, whoever is on it: only for the work copy and the aside original.
drop_database() {
  sql -v name="$1" >/dev/null <<'SQL'
SET client_min_messages = warning;
UPDATE pg_catalog.pg_database SET datistemplate = false WHERE datname = :'name';
DROP DATABASE IF EXISTS :"name" WITH (FORCE);
SQL
}

# Rename database $1 to $2. With $3 = end, the other sessions on $1 are ended first (PostgreSQL refuses the
# rename while there are any): for the work copy, which is ours (a monitoring agent connects to every database),
# and for the original with --terminate-sessions. Ending is asynchronous and an agent may reconnect: a few tries.
rename_database() {
  local from="$1" to="$2" end="${3:-}" tries=0 error
  while :; do
    error="$(sql -v from="$from" -v to="$to" -v terminate="$([ "$end" = end ] && echo on || echo off)" 2>&1 >/dev/null <<'SQL'
SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity
 WHERE :'terminate' = 'on' AND datname = :'from' AND pid <> pg_catalog.pg_backend_pid();
ALTER DATABASE :"from" RENAME TO :"to";
SQL
)" && return 0
    tries=$((tries + 1))
    if [ "$end" != end ] || [ "$tries" -ge 25 ]; then
      printf '%s\n' "$error" >&2
      return 1
    fi
    sleep 0.2
  done
}

# at_exit of the restores of one database: the original back under its name, the work copy dropped. Loud when
# either fails: then the messages say where the data is.
undo_one_database() {
  if [ -n "$aside_of" ]; then
    if rename_database "$ASIDE" "$aside_of"; then
      printf '%s: database %s was put back as it was\n' "$SCRIPT" "$aside_of" >&2
    else
      printf '%s: DATABASE %s IS NOW NAMED %s: rename it back (ALTER DATABASE %s RENAME TO %s) before it is used\n' \
        "$SCRIPT" "$aside_of" "$ASIDE" "$ASIDE" "$aside_of" >&2
    fi
  fi
  if [ "$copy_made" = 1 ] && ! drop_database "$WORK_COPY"; then
    printf '%s: the database %s this restore created could not be dropped (above): drop it by hand\n' \
      "$SCRIPT" "$WORK_COPY" >&2
  fi
}

# Start a restore into the work copy: cleanup first, then whatever makes the copy.
begin_work_copy() {
  at_exit undo_one_database
  copy_made=1
}

# The work copy, restored, gets the name $1 (a new database: it fails when $1 exists).
name_work_copy() {
  rename_database "$WORK_COPY" "$1" end \
    || fail "could not give the restored database the name $1 (the error is above): it was dropped again, nothing changed"
  copy_made=0
}

# In place: the original $1 renamed aside, the work copy renamed to $1, and only then the original dropped.
# Sessions on the original stop it before any change (or with --terminate-sessions are ended).
swap_in_work_copy() {
  local name="$1"
  check_sessions "$name" || fail "the restore of database $name stopped before it replaced it (the error is above): nothing changed"
  rename_database "$name" "$ASIDE" "$([ "$terminate_sessions" = 1 ] && echo end)" \
    || fail "could not rename database $name aside to put its restored copy in its place (the error is above): nothing changed"
  aside_of="$name"
  rename_database "$WORK_COPY" "$name" end \
    || fail "could not give the restored copy $WORK_COPY the name $name (the error is above)"
  copy_made=0
  aside_of=''
  drop_database "$ASIDE" || printf '%s: database %s was restored, but its old copy, now named %s, could not be dropped (above): drop it by hand\n' \
    "$SCRIPT" "$name" "$ASIDE" >&2
}

# restore --into: the dump of database $1 restored into the new database SELFHOST_BACKUP_INTO, through the work
# copy (created here from template0, restored without --clean, then named); the database $1 is never touched.
restore_into_database() {
  local source="$1" into
  into="$(name_from SELFHOST_BACKUP_INTO "restore into another database")"
  refuse_system_database "$into" "restore --into"
  [ "$into" != "$source" ] || fail "restore --into $into: that is the database of this request; give another name"
  ! database_exists "$into" || fail "restore --into: database $into exists; a restore --into makes a new database and" \
    "never replaces one (drop it first, or give another name): nothing was restored"
  names_checked
  open_archive
  begin_work_copy
  create_as_dumped "$WORK_COPY" "$SCRATCH/head" || fail "cannot create database $WORK_COPY: nothing was restored"
  restore_archive "$WORK_COPY" \
    || fail "restore into $into failed (the error is above); the database $WORK_COPY it had created was dropped again: nothing changed"
  name_work_copy "$into"
  printf '%s: database %s restored into the new database %s\n' "$SCRIPT" "$source" "$into" >&2
}

# The head of a custom-format archive (pg_dump --format=custom) from the file descriptor $1 into the file $2: at
# least its table of contents, which pg_dump writes before the table data. Read in doubling pieces until
# pg_restore can list it (or the dump ends: a small dump is read whole), at most ARCHIVE_HEAD_MAX bytes. The caller
# restores the head and then the rest of the descriptor.
readonly ARCHIVE_HEAD_MAX=$((256 * 1048576))
read_archive_head() {
  local from="$1" head="$2" piece=1048576 size
  : >"$head"
  while :; do
    size="$(stat -c %s -- "$head")"
    head -c "$piece" <&"$from" >>"$head" || fail "cannot read the dump: nothing was restored"
    pg_restore --list -- "$head" >/dev/null 2>&1 && return 0
    if [ "$(stat -c %s -- "$head")" -lt $((size + piece)) ]; then
      pg_restore --list -- "$head" >/dev/null || true
      fail "the dump is not a whole pg_dump archive (pg_restore cannot read its table of contents, above): nothing was restored"
    fi
    [ "$((size + piece))" -lt "$ARCHIVE_HEAD_MAX" ] \
      || fail "the dump's table of contents is larger than $ARCHIVE_HEAD_MAX bytes: nothing was restored"
    piece=$((piece * 2))
  done
}

# The dump on stdin, a custom-format archive, opened for a restore into a database this run creates: its head (with
# the table of contents) read into $SCRATCH/head for create_as_dumped, the rest left on the descriptor archive_fd
# (stdin itself when the dump is not compressed; else a decompressor's output, whose process is archive_reader).
archive_fd=''
archive_reader=''
open_archive() {
  scratch_directory
  if dump_is_compressed; then
    exec {archive_fd}< <(decompressor)
    archive_reader=$!
  else
    exec {archive_fd}<&0
  fi
  read_archive_head "$archive_fd" "$SCRATCH/head"
}

# The archive opened by open_archive restored into the database $1 in one transaction (head, then the rest): fails
# when pg_restore fails or the dump could not be read whole.
restore_archive() {
  { cat -- "$SCRATCH/head"; cat <&"$archive_fd"; } | pg_restore --exit-on-error --single-transaction --dbname="$1" \
    || return 1
  if [ -n "$archive_reader" ] && ! wait "$archive_reader"; then
    printf '%s: the dump could not be read whole (above)\n' "$SCRIPT" >&2
    return 1
  fi
  exec {archive_fd}<&-
}

# The options the dump's own CREATE DATABASE gives its database (encoding, locale provider, LC_COLLATE and LC_CTYPE
# or LOCALE, ICU locale, tablespace), from the archive head $1: what follows "WITH TEMPLATE = template0", which
# pg_dump always writes first. Only KEY = 'literal', KEY = identifier or KEY = "identifier" pass; nothing when the
# dump has no CREATE DATABASE (pg_dump --table and the like). The statement is read whole, up to its closing ";"
# outside quotes: a quoted value may hold a newline (an ICU locale, a LOCALE), and such a statement spans lines.
# A dump whose table of contents has the database but no statement this reads fails here, before anything is
# created (else the database would silently get the server's defaults: another encoding or collation).
readonly CREATE_OPTIONS_PATTERN="^( [A-Z_]+ = ('([^']|'')*'|[A-Za-z0-9_]+|\"([^\"]|\"\")*\"))*\$"
dumped_create_options() {
  local list create options
  list="$(pg_restore --list --create -- "$1" | awk '!found && $4 == "DATABASE" && $5 == "-" { print; found = 1 }')" || return 1
  [ -n "$list" ] || return 0
  create="$(pg_restore --create --schema-only --use-list=<(printf '%s\n' "$list") --file=- -- "$1" \
    | create_database_options)" || return 1
  if [[ "$create" != options:* ]]; then
    printf "%s: cannot read the dump's CREATE DATABASE (%s): nothing was created\n" "$SCRIPT" \
      "its table of contents lists the database, but no whole 'CREATE DATABASE ... WITH TEMPLATE = template0 ...;'" >&2
    return 1
  fi
  options="${create#options:}"
  if ! [[ "$options" =~ $CREATE_OPTIONS_PATTERN ]]; then
    printf "%s: the dump's CREATE DATABASE has options this does not take: %s\n" "$SCRIPT" "$options" >&2
    return 1
  fi
  printf '%s\n' "$options"
}

# The options of the first CREATE DATABASE statement on stdin: what follows " WITH TEMPLATE = template0" outside
# quotes, up to the closing ";" outside quotes, over as many lines as its quoted values take, printed after
# "options:". Nothing when there is no such whole statement. (A doubled quote inside a value closes and opens it.)
create_database_options() {
  awk '
    !started && /^CREATE DATABASE / { started = 1 }
    started { text = text (text == "" ? "" : "\n") $0 }
    END {
      with = " WITH TEMPLATE = template0"
      n = length(text); quote = ""; at = 0
      for (i = 1; i <= n; i++) {
        c = substr(text, i, 1)
        if (quote != "") { if (c == quote) quote = ""; continue }
        if (c == "\047" || c == "\"") { quote = c; continue }
        if (!at && substr(text, i, length(with)) == with) { at = i + length(with); i = at - 1; continue }
        if (c == ";") {
          if (at) printf "options:%s", substr(text, at, i - at)
          exit 0
        }
      }
    }'
}

# Create database $1 as the dump whose archive head is in $2 made it: from template0, with the dump's encoding,
# locale and tablespace (a new database from the cluster's defaults would change a LATIN1 database to UTF8, or its
# collation, and so its sort order, without a word).
create_as_dumped() {
  local options
  options="$(dumped_create_options "$2")" || return 1
  sql -v name="$1" -v options="$options" >/dev/null <<'SQL'
CREATE DATABASE :"name" WITH TEMPLATE = template0 :options;
SQL
}

# The one database $1 out of a pg_dumpall script on stdin, to be replayed with psql connected to postgres: the
# dump's own CREATE DATABASE for it (encoding, locale, tablespace are fixed at creation) aimed at the new database
# that the psql variable "target" names (template0 when the dump has none), a \connect to it, then its part of
# the script after its \connect (no DROP DATABASE, no other \connect), its database-level statements (owner,
# comment, settings, grants) aimed at :"target", all in one transaction that is committed only when the dump is
# complete (its section and the whole script end with their closing comments): a cut dump changes nothing. Table
# data (COPY ... FROM stdin; up to \.) is passed through unchanged and never taken for a statement.
one_database() {
  # shellcheck disable=SC2016 # the awk program's $ are awk's
  awk -v want="$1" -v trailer="$CLUSTER_TRAILER" -v script="$SCRIPT" '
    function ident_at(line, name,   q) {
      q = "\"" name "\""
      if (index(line, " DATABASE " q " ") || index(line, " DATABASE " q ";")) return " DATABASE " q
      if (index(line, " DATABASE " name " ") || index(line, " DATABASE " name ";")) return " DATABASE " name
      return ""
    }
    function retarget(line,   at, i) {
      at = ident_at(line, want)
      if (at == "") return line
      i = index(line, at)
      return substr(line, 1, i - 1) " DATABASE :\"target\"" substr(line, i + length(at))
    }
    # Whether the statement text ends with its ";" outside quotes (a quoted value may hold a newline).
    function whole(text,   i, c, quote) {
      quote = ""
      for (i = 1; i <= length(text); i++) {
        c = substr(text, i, 1)
        if (quote != "") { if (c == quote) quote = "" }
        else if (c == "\047" || c == "\"") quote = c
      }
      return quote == "" && substr(text, length(text)) == ";"
    }
    copy { if (state == "body") print; if ($0 == "\\.") copy = 0; next }
    /^COPY .* FROM stdin;$/ { copy = 1 }
    /^-- Database ".*" dump$/ {
      name = substr($0, 14, length($0) - 19)
      names = names (names == "" ? "" : ", ") name
      if (state == "body") state = "done"
      if (name == want && state == "") { state = "pre"; found = 1 }
      next
    }
    $0 == trailer { if (state == "body") state = "done" }
    state == "pre" && /^ALTER DATABASE .* OWNER TO .*;$/ { owner = retarget($0) }
    # The CREATE DATABASE read whole, over as many lines as its quoted values take.
    state == "pre" && creating {
      creating = creating "\n" $0
      if (whole(creating)) { create = retarget(creating); creating = "" }
      next
    }
    state == "pre" && /^CREATE DATABASE / { if (whole($0)) create = retarget($0); else creating = $0; next }
    state == "pre" && /^\\connect / {
      if (create == "") {
        # Made with the defaults of the server it would silently get another encoding or collation.
        printf "%s: cannot read the CREATE DATABASE of database %s in the cluster dump: nothing was created\n", script,
          want > "/dev/stderr"
        unreadable = 1
        exit 3
      }
      state = "body"
      print create
      print "\\connect :\"target\""
      print "BEGIN;"
      if (owner != "") print owner
      # The work copy exists from now on (a pipe is block-buffered): what it waits for is the data.
      fflush()
      next
    }
    state == "body" && /^\\connect / { next }
    state == "body" && $0 == "-- PostgreSQL database dump complete" { complete = 1 }
    state == "body" && /^(ALTER|COMMENT ON|GRANT|REVOKE|SECURITY LABEL) / { print retarget($0); next }
    state == "body" { print }
    $0 != "" && $0 != "--" && $0 !~ /^\\unrestrict / { last = $0 }
    END {
      if (unreadable) exit 3
      if (found && complete && last == trailer) {
        print "COMMIT;"
        exit 0
      }
      if (!found && last == trailer) {
        printf "%s: the cluster dump holds no database %s (it has: %s): nothing was restored\n", script, want, names > "/dev/stderr"
        exit 3
      }
      printf "%s: the dump is incomplete (it does not end with \"%s\"): nothing was restored\n", script, trailer > "/dev/stderr"
      exit 3
    }'
}

# restore-database: the database SELFHOST_BACKUP_DATABASE out of a cluster dump, restored into the work copy
# (made from the dump's own CREATE DATABASE: encoding, locale, tablespace), then named SELFHOST_BACKUP_INTO, or
# put in place of the database (swap_in_work_copy), or given its name when no database has it (one dropped by
# mistake). The other databases and the roles are never touched.
restore_one_database() {
  local database into
  database="$(name_from SELFHOST_BACKUP_DATABASE "restore one database")"
  into="$database"
  [ -z "${SELFHOST_BACKUP_INTO:-}" ] || into="$(name_from SELFHOST_BACKUP_INTO "restore one database into another")"
  refuse_system_database "$database" "restore --database"
  refuse_system_database "$into" "restore --into"
  if [ -n "${SELFHOST_BACKUP_INTO:-}" ] && database_exists "$into"; then
    [ "$into" != "$database" ] || fail "restore --into $into: that is the database restored; leave --into out to" \
      "restore it in its place, or give another name"
    fail "restore --into: database $into exists; a restore --into makes a new database and never replaces one" \
      "(drop it first, or give another name): nothing was restored"
  fi
  names_checked
  begin_work_copy
  decompressed one_database "$database" | psql -X -q -v ON_ERROR_STOP=1 -v target="$WORK_COPY" -d postgres >/dev/null \
    || fail "restore of database $database out of the cluster dump failed (the error is above); the database $WORK_COPY" \
      "it had created was dropped again: nothing else changed"
  if [ "$into" = "$database" ] && database_exists "$database"; then
    swap_in_work_copy "$database"
    printf '%s: database %s of the cluster dump restored in its place\n' "$SCRIPT" "$database" >&2
  else
    name_work_copy "$into"
    printf '%s: database %s of the cluster dump restored as the new database %s\n' "$SCRIPT" "$database" "$into" >&2
  fi
}

sql() {
  psql -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"
}

# A pg_dumpall script made safe to replay, and a check that it is complete.
# - Only the roles section, before the first \connect, is changed: table data comes later, and a row that
#   reads like a statement stays untouched.
# - cluster: the restoring user's own DROP ROLE and CREATE ROLE are left out (it cannot drop itself, and it
#   exists); every database is dropped before the roles, so dropping the others works.
# - cluster: the roles section is held back until it is complete. Before its first change go SESSIONS_SQL,
#   for every database the dump drops (those the roles section drops, and postgres, which its own section
#   drops later), and then the line STARTED. The databases' quoted names go to the file $2 (one a line).
#   With --terminate-sessions every DROP DATABASE of the roles section, and postgres's own (the line after
#   pg_dump's preamble, which ends with "SET row_security = off;"), gets WITH (FORCE): a session that
#   connects after the check is ended too.
# - globals: the databases stay, and a role that owns one cannot be dropped. So no role is dropped: each
#   CREATE ROLE becomes "create unless it exists", and the ALTER ROLE that follows sets its attributes.
# - drill: a tablespace is created in place, inside the scratch cluster (LOCATION ''), never in the live one's
#   directory.
# - A complete dump ends with its closing comment (only blank lines, "--" and \unrestrict after it); a
#   dump cut anywhere else fails. Table data (COPY ... FROM stdin; up to \.) never counts, so a dump cut
#   right after a row that reads like that comment fails too. A cluster dump cut in its roles section is
#   never replayed at all.
# - The cost (issue 20): a cluster restore without --terminate-sessions runs the awk program only over the
#   roles section (up to the first \connect, read by `sed -u`, which reads no further); the rest, the table
#   data, passes through `tee`, and only its last DUMP_TAIL bytes are checked (dump_ends_complete). Globals
#   dumps are small, and --terminate-sessions must see every database's DROP: both go through awk whole.
# $1: cluster|globals, $2: the file for the databases' names, $3: a file for the dump's tail (cluster).
guard_dumpall() {
  local kind="$1" databases="${2:-/dev/null}" tail_file="${3:-}" me
  me="$(sql -c 'SELECT quote_ident(current_user)' </dev/null)" || fail "cannot connect to PostgreSQL"
  if [ "$kind" = globals ] || [ "$terminate_sessions" = 1 ] || [ -z "$tail_file" ]; then
    dumpall_filter "$kind" "$me" "$databases" whole
    return
  fi
  # Each step's failure ends the filter: a restore runs it after || (errexit does not apply there).
  sed -u '/^\\connect /q' | dumpall_filter "$kind" "$me" "$databases" head || exit
  tee -- >(tail -c "$DUMP_TAIL" >"$tail_file") || exit
  wait "$!" || exit
  dump_ends_complete "$tail_file"
}

# The last DUMP_TAIL bytes of a dump are enough to see that it is complete: PostgreSQL writes \connect at the
# start of every database and \unrestrict at its end (17.6, 15.14 and later), and a COPY data row never starts
# with a backslash and a letter other than b, f, n, r, t, v (COPY escapes its own backslashes), so after either
# line (or after \., which only ends table data) the tail is known to be outside table data. The closing
# comment counts only there: a tail without such a line before it (table data of unknown start) fails.
readonly DUMP_TAIL=1048576
dump_ends_complete() {
  local partial=0
  [ "$(stat -c %s -- "$1")" -lt "$DUMP_TAIL" ] || partial=1
  awk -v trailer="$CLUSTER_TRAILER" -v script="$SCRIPT" -v partial="$partial" '
    NR == 1 && partial { next }
    $0 == "\\." { known = 1; copy = 0; next }
    /^\\(connect|unrestrict) / { known = 1; copy = 0 }
    known && copy { next }
    known && /^COPY .* FROM stdin;$/ { copy = 1 }
    $0 != "" && $0 != "--" && $0 !~ /^\\unrestrict / { last = $0; sure = known }
    END {
      if (last != trailer || !sure) {
        printf "%s: the dump is incomplete (it does not end with \"%s\"): the restore stopped short\n", script, trailer > "/dev/stderr"
        exit 3
      }
    }' "$1"
}

# The awk filter of guard_dumpall: $1 kind, $2 the restoring user, $3 the databases' file, $4 whole (the dump)
# or head (the dump up to its first \connect: the rest is checked by the caller).
dumpall_filter() {
  local kind="$1" me="$2" databases="$3" part="$4"
  # The awk program is single-quoted on purpose: every $ in it is awk's.
  # shellcheck disable=SC2016
  env SESSIONS_SQL="$SESSIONS_SQL" awk -v kind="$kind" -v me="$me" -v trailer="$CLUSTER_TRAILER" -v script="$SCRIPT" \
    -v started="$STARTED" -v terminate="$terminate_sessions" -v databases="$databases" -v drill="$drilling" \
    -v part="$part" '
    function literal(text) { gsub(/\047/, "\047\047", text); return "\047" text "\047" }
    function force(line) { return terminate ? substr(line, 1, length(line) - 1) " WITH (FORCE);" : line }
    function out(line) { if (held) head[++n] = line; else print line }
    # The roles section, its check first: the databases, the choice, the check, the line that says it passed.
    function release(   i, list) {
      list = ""
      for (i = 1; i <= ndb; i++) list = list db[i] "\n"
      list = list "postgres"
      print "postgres" > databases
      for (i = 1; i <= n; i++) {
        if (i == first) check(list)
        print head[i]
      }
      if (!first) check(list)
      close(databases)
      held = 0
    }
    function check(list) {
      print "SELECT pg_catalog.set_config(\047selfhost_backup.databases\047, " literal(list) ", false) IS NULL;"
      print "SELECT pg_catalog.set_config(\047selfhost_backup.terminate\047, \047" (terminate ? "on" : "off") "\047, false) IS NULL;"
      print ENVIRON["SESSIONS_SQL"]
      print "SELECT " literal(started) ";"
    }
    BEGIN { held = (kind == "cluster") }
    copy { out($0); if ($0 == "\\.") copy = 0; next }
    /^COPY .* FROM stdin;$/ { copy = 1 }
    roles == 0 && /^\\connect / { roles = 1; if (held) release() }
    roles == 0 && kind == "cluster" && ($0 == "DROP ROLE IF EXISTS " me ";" || $0 == "CREATE ROLE " me ";") { next }
    roles == 0 && kind == "cluster" && /^DROP DATABASE (IF EXISTS )?[^ ].*;$/ {
      name = $0; sub(/^DROP DATABASE (IF EXISTS )?/, "", name); sub(/;$/, "", name)
      db[++ndb] = name
      print name > databases
      $0 = force($0)
    }
    roles == 1 && kind == "cluster" && previous == "SET row_security = off;" && /^DROP DATABASE (IF EXISTS )?[^ ].*;$/ {
      $0 = force($0)
    }
    roles == 0 && kind == "cluster" && !first && $0 != "" && !/^--/ && !/^SET / && !/^\\(un)?restrict / { first = n + 1 }
    roles == 0 && drill && /^CREATE TABLESPACE .* LOCATION \047.*\047;$/ { sub(/ LOCATION \047.*\047;$/, " LOCATION \047\047;") }
    roles == 0 && kind == "globals" && /^DROP ROLE IF EXISTS / { next }
    roles == 0 && kind == "globals" && /^CREATE ROLE .*;$/ {
      role = substr($0, 13, length($0) - 13)
      out("DO $selfhost_backup$ BEGIN CREATE ROLE " role "; EXCEPTION WHEN duplicate_object THEN NULL; END $selfhost_backup$;")
      next
    }
    { out($0) }
    $0 != "" { previous = $0 }
    $0 != "" && $0 != "--" && $0 !~ /^\\unrestrict / { last = $0 }
    END {
      if (part == "head" && roles) exit 0
      if (last != trailer) {
        printf "%s: the dump is incomplete (it does not end with \"%s\"): the restore stopped short\n", script, trailer > "/dev/stderr"
        exit 3
      }
    }'
}

restore_globals() {
  decompressed guard_dumpall globals | psql -X -q -v ON_ERROR_STOP=1 -d postgres >/dev/null
}

# psql prints what it reached to the file progress: the line STARTED once the checks passed, and "You are now
# connected to database" (not -q, messages in English) at each database. A restore that fails before STARTED
# changed nothing; one that fails after it says "partially restored", where it stopped and what it left.
restore_cluster() {
  local work rc=0
  work="$(mktemp -d)"
  at_exit rm -rf -- "$work"
  decompressed guard_dumpall cluster "$work/databases" "$work/tail" \
    | env -u LC_ALL LC_MESSAGES=C LANGUAGE= psql -X -At -v ON_ERROR_STOP=1 -d postgres >"$work/progress" || rc=$?
  [ "$rc" -ne 0 ] || return 0
  [ "$drilling" = 0 ] || fail "drill failed: the dump does not restore into the scratch cluster (the error is above)"
  grep -qxF -- "$STARTED" "$work/progress" || fail "the restore stopped before it changed anything (the error is above)"
  local at where left
  at="$(sed -n 's/^You are now connected to database "\(.*\)" as user ".*"\.$/\1/p' "$work/progress" | tail -n 1)"
  where="before it reached the first database (dropping databases, replaying roles)"
  [ -z "$at" ] || where="while restoring database $at"
  # Which of the dump's databases are missing now. Asked in template1 when postgres is the one missing.
  left="$(database_state "$work/databases" postgres || database_state "$work/databases" template1)" || left=''
  fail "partially restored: the restore failed $where (the error is above), after it had started dropping" \
       "the databases of the dump${left:+; $left}. Restore again (restore latest, or the snapshot you meant)" \
       "before the cluster is used."
}

# "missing now: a, b; present (restored, half restored or not reached): c, d" for the quoted names in file $1.
database_state() {
  psql -X -q -At -v ON_ERROR_STOP=1 -d "$2" -v names="$(cat -- "$1")" <<'SQL' 2>/dev/null
SELECT 'missing now: ' || coalesce(pg_catalog.string_agg(n, ', ' ORDER BY n) FILTER (WHERE NOT e), 'none')
       || '; present (restored, half restored or not reached): ' || coalesce(pg_catalog.string_agg(n, ', ' ORDER BY n) FILTER (WHERE e), 'none')
  FROM (SELECT n, EXISTS (SELECT 1 FROM pg_catalog.pg_database d WHERE d.datname = n) AS e
          FROM (SELECT DISTINCT (pg_catalog.parse_ident(i))[1] AS n
                  FROM pg_catalog.unnest(pg_catalog.string_to_array(:'names', pg_catalog.chr(10))) AS i WHERE i <> '') AS q) AS s;
SQL
}

# Other sessions on database $1: stop before any change, naming them, or end them (--terminate-sessions).
check_sessions() {
  sql -v name="$(sql -v name="$1" <<<"SELECT quote_ident(:'name');")" -v terminate="$([ "$terminate_sessions" = 1 ] && echo on || echo off)" \
    >/dev/null <<SQL
SELECT pg_catalog.set_config('selfhost_backup.databases', :'name', false) IS NULL;
SELECT pg_catalog.set_config('selfhost_backup.terminate', :'terminate', false) IS NULL;
$SESSIONS_SQL
SQL
}

# A database that exists is restored in one transaction: an error or a truncated dump changes nothing. One
# that does not is created (owned by the restoring user, from template0, with the dump's encoding and locale) and
# dropped again if the restore fails: only a database this run made is ever dropped. Other sessions on an existing database are looked
# for first: pg_restore --clean would wait for their locks without end (its lock_timeout is 0).
restore_database() {
  local name="$1" count
  count="$(sql -v name="$name" <<<"SELECT count(*) FROM pg_database WHERE datname = :'name';")" \
    || fail "cannot ask PostgreSQL whether database $name exists"
  if [ "$count" = 1 ]; then
    check_sessions "$name" || fail "the restore of database $name stopped before it changed anything (the error is above)"
    decompressed pg_restore --exit-on-error --single-transaction --clean --if-exists --dbname="$name"
    return
  fi
  # Made as the dump made it (encoding, locale), not with the server's defaults.
  open_archive
  create_as_dumped "$name" "$SCRATCH/head" || fail "cannot create database $name"
  if ! restore_archive "$name"; then
    dropdb -- "$name" || true
    fail "restore of database $name failed; the database this restore created was dropped again"
  fi
}

# The server tools: those of the newest PostgreSQL installed the Debian way (/usr/lib/postgresql/<major>/bin),
# else initdb's directory on PATH. Their client tools (psql, pg_restore) come first on PATH in a drill.
server_bindir() {
  local dir
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4nr); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  dir="$(command -v initdb)" || return 1
  dir="$(dirname -- "$(readlink -f -- "$dir")")"
  [ -x "$dir/postgres" ] || return 1
  printf '%s\n' "$dir"
}

# A conninfo value: quoted, so a database name with spaces, = or quotes stays one database name.
conninfo_value() {
  local value="${1//\\/\\\\}"
  printf "'%s'" "${value//\'/\\\'}"
}

# The scratch cluster in $SCRATCH: initdb as the request's user (the superuser of the same name, peer
# authentication, no TCP at all), a server listening only on a unix socket in $SCRATCH (mode 0700), and every
# connection of this helper pointed at it (PGHOST, every other PG* variable unset). Stopped at exit.
scratch_pid=''
start_scratch_cluster() {
  local bindir major tries=0
  bindir="$(server_bindir)" || fail "drill: the PostgreSQL server tools (initdb, postgres) are not installed on this host"
  PATH="$bindir:$PATH"
  major="$("$bindir/postgres" --version | sed -n 's/^[^0-9]*\([0-9][0-9]*\).*/\1/p')"
  initdb --pgdata="$SCRATCH/data" --username="$(id -un)" --auth-local=peer --auth-host=reject --no-locale \
    --encoding=UTF8 --no-sync >"$SCRATCH/initdb.log" 2>&1 \
    || { cat -- "$SCRATCH/initdb.log" >&2; fail "drill: initdb of the scratch cluster failed (above)"; }
  # The drill's copy needs no durability: it is removed at the end.
  {
    printf "listen_addresses = ''\nunix_socket_directories = %s\nunix_socket_permissions = 0700\nport = 5432\n" \
      "$(conninfo_value "$SCRATCH")"
    printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nautovacuum = off\n'
    printf "logging_collector = off\nlog_min_messages = warning\nmax_connections = 20\n"
    [ "${major:-0}" -lt 15 ] || printf 'allow_in_place_tablespaces = on\n'
  } >>"$SCRATCH/data/postgresql.conf"
  # Unset before the server starts: it reads none of them, the clients of this helper all of them.
  local name
  for name in $(compgen -e); do
    case "$name" in PG*) unset "$name" ;; esac
  done
  export PGHOST="$SCRATCH" PGPORT=5432
  at_exit stop_scratch_cluster
  postgres -D "$SCRATCH/data" >"$SCRATCH/server.log" 2>&1 </dev/null &
  scratch_pid=$!
  until pg_isready -q -d postgres 2>/dev/null; do
    if ! kill -0 "$scratch_pid" 2>/dev/null || [ "$tries" -ge 600 ]; then
      tail -n 20 -- "$SCRATCH/server.log" >&2 || true
      fail "drill: the scratch cluster did not start (its log is above)"
    fi
    sleep 0.1
    tries=$((tries + 1))
  done
  # The server answering is the scratch one, or nothing is restored.
  [ "$(sql -c 'SHOW data_directory' </dev/null)" = "$SCRATCH/data" ] \
    || fail "drill: the server on $SCRATCH is not the scratch cluster; nothing was restored"
}

stop_scratch_cluster() {
  [ -n "$scratch_pid" ] || return 0
  # Immediate shutdown: nothing of the copy needs to be kept. The postmaster ends its backends first.
  kill -QUIT "$scratch_pid" 2>/dev/null || true
  wait "$scratch_pid" 2>/dev/null || true
  scratch_pid=''
}

# The drill: the dump on stdin restored into a scratch cluster as restore would restore it, then each check.
# One database: created in the scratch cluster and restored without owners, grants and tablespaces (the roles
# belong to the globals request; the scratch cluster has none of them).
drill() {
  local kind="$1" name="$2" i database query result
  scratch_directory
  start_scratch_cluster
  case "$kind" in
    cluster) restore_cluster ;;
    globals) restore_globals || fail "drill failed: the dump does not restore into the scratch cluster (the error is above)" ;;
    database)
      createdb --template=template0 -- "$name" || fail "drill: cannot create database $name in the scratch cluster"
      decompressed pg_restore --exit-on-error --single-transaction --no-owner --no-privileges --no-tablespaces \
        --no-subscriptions --dbname="$name" \
        || fail "drill failed: the dump of database $name does not restore into the scratch cluster (the error is above)" ;;
  esac
  for ((i = 0; i < ${#checks[@]}; i += 2)); do
    database="${checks[i]}"
    query="${checks[i + 1]}"
    result="$(psql -X -q -At -v ON_ERROR_STOP=1 -d "dbname=$(conninfo_value "$database")" -c "$query" </dev/null)" \
      || fail "drill failed: the check in database $database could not run (the error is above): $query"
    check_verdict "$query" "$database" "$result"
  done
  printf '%s: drill passed: the %s dump restores into a scratch cluster, %s checks passed\n' \
    "$SCRIPT" "$kind" "$(( ${#checks[@]} / 2 ))" >&2
}

checks=()

main() {
  parse_common_options "$@"
  set -- "${REST[@]}"
  if { [ "${1:-}" = restore ] || [ "${1:-}" = restore-database ]; } && [ "${2:-}" = --terminate-sessions ]; then
    terminate_sessions=1
    set -- "$1" "${@:3}"
  fi
  if [ "${1:-}" = drill ]; then
    drilling=1
    shift
    while [ "${1:-}" = --check ]; do
      if [ "$#" -lt 3 ] || [ -z "$2" ] || [ -z "$3" ]; then usage >&2; exit 2; fi
      checks+=("$2" "$3")
      shift 3
    done
    case "${1:-} ${2:-}" in
      "cluster "|"globals ") [ "$#" -eq 1 ] || { usage >&2; exit 2; } ;;
      "database "?*) [ "$#" -eq 2 ] || { usage >&2; exit 2; } ;;
      *) usage >&2; exit 2 ;;
    esac
    drill "$1" "${2:-}"
    return
  fi
  local action="${1:-}" kind="${2:-}" name="${3:-}"
  case "$action $kind" in
    "dump cluster") dump_compressed pg_dumpall --clean --if-exists ;;
    "dump globals") dump_compressed pg_dumpall --globals-only --clean --if-exists ;;
    "restore cluster") restore_cluster ;;
    "restore-database cluster") [ -z "$name" ] || { usage >&2; exit 2; }; restore_one_database ;;
    "restore-into database")
      if [ -z "$name" ] || [ "$#" -ne 3 ]; then usage >&2; exit 2; fi
      restore_into_database "$name" ;;
    "restore globals") restore_globals ;;
    "dump database"|"restore database")
      [ -n "$name" ] || { usage >&2; exit 2; }
      if [ "$action" = dump ]; then
        dump_compressed pg_dump --format=custom --compress=0 --dbname="$name"
      else
        restore_database "$name"
      fi ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
