#!/usr/bin/env bash
# Managed by Ansible (selfhost.backup): local changes will be overwritten.
#
# selfhost-backup-server-maintenance: the only place that deletes in the clients' append-only repositories.
#
#   server-maintenance.sh run                 every client instance: retention (restic forget --prune / borg prune
#                                              and compact), then a check; exit 1 when one of them failed
#   server-maintenance.sh add-restic-key DATA  adds the server's own key to a restic repository; the client's
#                                              passphrase comes on stdin (never in argv); prints "added" or "present"
#   server-maintenance.sh prune-clients HTPASSWD AUTHORIZED_KEYS CLIENT...
#                                              every other client loses access: its htpasswd user, its borg keys'
#                                              lines, its maintenance data and credentials go (its repositories stay);
#                                              prints what went ("removed ..."), or "unchanged"; and a line
#                                              "not ours: ..." for each authorized_keys line selfhost.backup did not
#                                              write (kept, for the admin to review)
#
# Each client instance has a data file in $DATA_DIR (readonly assignments, written by the client's provider role:
# plugins/plugin_utils/_servers.py): TOOL, CLIENT, INSTANCE, REPOSITORY, OWNER (who owns the repository on this
# server), CREDENTIAL (the server's root-only key or passphrase of it), and the command lines RETENTION, COMPACT,
# CHECK (arrays, empty when there is nothing to run). The tools run as OWNER (setpriv), so every file they write
# stays readable by the rest-server or borg serve; the credential reaches them as a file only OWNER can read, in
# this service's private /tmp, removed at the end.
set -uo pipefail
umask 077

DATA_DIR=${SELFHOST_BACKUP_SERVER_DATA:-/etc/selfhost-backup-server/instances}
BORG_BASE=${SELFHOST_BACKUP_SERVER_BORG_BASE:-/var/lib/selfhost-backup-server/borg}
readonly DATA_DIR BORG_BASE

say() { printf '%s\n' "$*"; }
fail() { printf 'selfhost-backup-server-maintenance: %s\n' "$*" >&2; exit 1; }

as_owner() {
  setpriv --reuid="$OWNER" --regid="$(id -g -- "$OWNER")" --init-groups -- "$@"
}

# A copy of a root-only secret that only OWNER can read; its path on stdout.
owner_copy() {
  local copy
  copy=$(mktemp) || return 1
  if ! { cat -- "$1" >"$copy" && chown -- "$OWNER" "$copy" && chmod 0400 "$copy"; }; then
    rm -f -- "$copy"
    return 1
  fi
  printf '%s\n' "$copy"
}

load() {
  [ -f "$1" ] || fail "no data file $1"
  # shellcheck source=/dev/null
  source "$1"
  local name
  for name in TOOL CLIENT INSTANCE REPOSITORY OWNER CREDENTIAL RETENTION COMPACT CHECK; do
    declare -p "$name" >/dev/null 2>&1 || fail "$1 does not define $name"
  done
}

# How long the retention and the check wait for a lock that the client's check, drill or a late backup still holds,
# as long as borg's --lock-wait 600: restic learned --retry-lock in 0.16.
# Debian 12's restic 0.14 does not know it and refuses the flag, so there they run as before and fail at once on a
# held lock (that instance's maintenance fails, the others go on; the next run tries again). Set once by run_all.
RESTIC_LOCK_WAIT=()
restic_lock_wait() {
  local help
  # The help text, not the version: it says what this binary knows (also a restic from another source).
  help=$(restic --help 2>/dev/null) || return 0
  [[ $help != *--retry-lock* ]] || RESTIC_LOCK_WAIT=(--retry-lock 10m)
}

# One instance, in a subshell (its data's names are readonly).
maintain() {
  load "$1"
  local what="$TOOL $CLIENT/$INSTANCE" secret
  if [ ! -e "$REPOSITORY/config" ]; then
    say "$what: no repository at $REPOSITORY yet (the client's first backup creates it); skipped"
    return 0
  fi
  [ -f "$CREDENTIAL" ] || { say "$what: no credential $CREDENTIAL" >&2; return 1; }
  secret=$(owner_copy "$CREDENTIAL") || return 1
  # shellcheck disable=SC2064 # the path now, not at exit
  trap "rm -f -- '$secret'" EXIT
  case $TOOL in
    restic)
      export RESTIC_REPOSITORY=$REPOSITORY RESTIC_PASSWORD_FILE=$secret
      if [ "${#RETENTION[@]}" -gt 0 ]; then
        say "$what: restic ${RETENTION[*]}"
        as_owner restic --no-cache "${RESTIC_LOCK_WAIT[@]}" "${RETENTION[@]}" || return 1
      fi
      say "$what: restic ${CHECK[*]}"
      as_owner restic --no-cache "${RESTIC_LOCK_WAIT[@]}" "${CHECK[@]}" || return 1
      ;;
    borg)
      export BORG_REPO=$REPOSITORY BORG_PASSCOMMAND="cat $secret" BORG_BASE_DIR=$BORG_BASE
      export BORG_RELOCATED_REPO_ACCESS_IS_OK=no BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no
      local step
      for step in RETENTION COMPACT CHECK; do
        local -n args=$step
        [ "${#args[@]}" -gt 0 ] || continue
        say "$what: borg ${args[*]}"
        as_owner borg --lock-wait 600 "${args[@]}" || return 1
      done
      ;;
    *) say "$what: unknown tool $TOOL" >&2; return 1 ;;
  esac
}

run_all() {
  local data failed=()
  restic_lock_wait
  shopt -s nullglob
  for data in "$DATA_DIR"/*.sh; do
    if ! (maintain "$data"); then
      failed+=("$(basename -- "$data" .sh)")
    fi
  done
  if [ "${#failed[@]}" -gt 0 ]; then
    fail "failed: ${failed[*]}"
  fi
  say "every client instance is maintained"
}

# The server's own key of a restic repository: generated here when missing (it never leaves this host), added
# with the client's passphrase (stdin) unless it already opens the repository.
add_restic_key() {
  load "$1"
  local client_secret server_secret status
  if [ ! -s "$CREDENTIAL" ]; then
    if ! { head -c 48 /dev/urandom | base64 -w0 >"$CREDENTIAL.new" && mv -f -- "$CREDENTIAL.new" "$CREDENTIAL"; }; then
      fail "cannot write $CREDENTIAL"
    fi
  fi
  server_secret=$(owner_copy "$CREDENTIAL") || fail "cannot copy $CREDENTIAL"
  client_secret=$(mktemp) || fail "no temporary file"
  # shellcheck disable=SC2064 # the paths now, not at exit
  trap "rm -f -- '$server_secret' '$client_secret'" EXIT
  if ! { cat >"$client_secret" && chown -- "$OWNER" "$client_secret"; }; then
    fail "cannot read the client's passphrase"
  fi
  export RESTIC_REPOSITORY=$REPOSITORY
  if RESTIC_PASSWORD_FILE=$server_secret as_owner restic --no-cache --no-lock cat config >/dev/null 2>&1; then
    say present
    return 0
  fi
  RESTIC_PASSWORD_FILE=$client_secret as_owner restic --no-cache key add --new-password-file "$server_secret" \
    >/dev/null
  status=$?
  [ "$status" -eq 0 ] || fail "restic key add failed ($status) for $REPOSITORY"
  say added
}

# Rewrites a file in place (owner and mode stay) with the lines of stdin; true when it changed.
rewrite() {
  local file=$1 new
  new=$(mktemp) || fail "no temporary file"
  cat >"$new"
  if cmp -s -- "$new" "$file"; then
    rm -f -- "$new"
    return 1
  fi
  cat -- "$new" >"$file" || fail "cannot write $file"
  rm -f -- "$new"
}

# The authorized_keys line of a job as the borg role writes it (roles/borg/tasks/server_authorize.yml): the forced
# command restricted to one repository, restrict, one ed25519 key and the comment <job>@<client>.
readonly OUR_KEY_LINE='^command="borg serve --append-only --restrict-to-repository [^"]+",restrict ssh-ed25519 [A-Za-z0-9+/]+=* [A-Za-z0-9._-]+@([A-Za-z0-9._-]+)$'

prune_clients() {
  local htpasswd=$1 keys=$2 line user who data number removed=() foreign=()
  shift 2
  local -A keep=()
  for who in "$@"; do keep[$who]=1; done
  if [ -f "$htpasswd" ]; then
    local kept=()
    while IFS= read -r line || [ -n "$line" ]; do
      user=${line%%:*}
      if [ -z "$line" ] || [ "${line:0:1}" = '#' ] || [ -n "${keep[$user]:-}" ]; then
        kept+=("$line")
      else
        removed+=("htpasswd user $user")
      fi
    done <"$htpasswd"
    [ "${#kept[@]}" -eq 0 ] || printf '%s\n' "${kept[@]}" | rewrite "$htpasswd" || :
    [ "${#kept[@]}" -gt 0 ] || : | rewrite "$htpasswd" || :
  fi
  if [ -f "$keys" ]; then
    local kept=()
    number=0
    while IFS= read -r line || [ -n "$line" ]; do
      number=$((number + 1))
      if [ -z "$line" ] || [ "${line:0:1}" = '#' ]; then
        kept+=("$line")
      elif [[ $line =~ $OUR_KEY_LINE ]]; then
        # Ours: its client is the host of the comment.
        who=${BASH_REMATCH[1]}
        if [ -n "${keep[$who]:-}" ]; then
          kept+=("$line")
        else
          removed+=("borg key ${line##* }")
        fi
      else
        # Not written by selfhost.backup (the admin's own, or planted): kept, but said, never silently.
        kept+=("$line")
        [ "${#line}" -le 200 ] || line="${line:0:120}...${line: -60}"
        foreign+=("not ours: $keys line $number, kept (review it): $line")
      fi
    done <"$keys"
    [ "${#kept[@]}" -eq 0 ] || printf '%s\n' "${kept[@]}" | rewrite "$keys" || :
    [ "${#kept[@]}" -gt 0 ] || : | rewrite "$keys" || :
  fi
  shopt -s nullglob
  for data in "$DATA_DIR"/*.sh; do
    who=$(load "$data"; printf '%s' "$CLIENT") || fail "cannot read $data"
    [ -z "${keep[$who]:-}" ] || continue
    rm -f -- "$(load "$data"; printf '%s' "$CREDENTIAL")" "$data"
    removed+=("maintenance of $(basename -- "$data" .sh)")
  done
  if [ "${#removed[@]}" -eq 0 ]; then
    say unchanged
  else
    printf 'removed %s\n' "${removed[@]}"
  fi
  [ "${#foreign[@]}" -eq 0 ] || printf '%s\n' "${foreign[@]}"
}

case ${1:-} in
  run) run_all ;;
  prune-clients)
    [ "$#" -ge 4 ] || fail "usage: $0 prune-clients HTPASSWD AUTHORIZED_KEYS CLIENT..."
    shift
    prune_clients "$@"
    ;;
  add-restic-key) [ "$#" -eq 2 ] || fail "usage: $0 add-restic-key DATA_FILE"; add_restic_key "$2" ;;
  *) fail "usage: $0 run | add-restic-key DATA_FILE | prune-clients HTPASSWD AUTHORIZED_KEYS CLIENT..." ;;
esac
