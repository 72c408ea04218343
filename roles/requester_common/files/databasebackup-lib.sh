# shellcheck shell=bash
# Managed by Ansible (selfhost.backup.requester_common): local changes will be overwritten.
#
# What the requesters' dump and restore helpers share; each helper sources this file. Compression belongs to
# the backup tool by default (a plain dump deduplicates); --compression gzip|zstd is the seed's form, for
# repositories that do not compress. The helpers run under `set -euo pipefail`, so a failing dump fails the
# pipeline behind it.

SCRIPT="${0##*/}"
compression=none

fail() {
  printf '%s: %s\n' "$SCRIPT" "$*" >&2
  exit 1
}

# Leading --compression, and --help through the helper's usage(); the remaining arguments are the
# helper's, in REST.
REST=()
parse_common_options() {
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --compression)
        [ "$#" -ge 2 ] || { usage >&2; exit 2; }
        compression="$2"
        shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) break ;;
    esac
  done
  case "$compression" in none|gzip|zstd) ;; *) fail "unknown compression '$compression'" ;; esac
  REST=("$@")
}

# Run a dump command, compressed as asked; with none the dump is not copied through another process.
dump_compressed() {
  case "$compression" in
    none) "$@" ;;
    gzip) "$@" | gzip --rsyncable ;;
    zstd) "$@" | zstd -q --rsyncable ;;
  esac
}

# Run a command on the dump on stdin, decompressed as asked: decompressed COMMAND [ARG...]. With none the command
# reads the helper's stdin itself: a plain dump is not copied through another process (a restore's time is mostly
# its stream's).
decompressed() {
  if dump_is_compressed; then
    decompressor | "$@"
  else
    "$@"
  fi
}

# Whether the dump is compressed, so that a decompressor must read it first.
dump_is_compressed() {
  [ "$compression" != none ]
}

# The decompressing filter (stdin to stdout) of a compressed dump; with none there is none to run.
decompressor() {
  case "$compression" in
    gzip) gzip -dc ;;
    zstd) zstd -qdc ;;
    *) fail "no decompressor for compression '$compression'" ;;
  esac
}

# Cleanup at exit, also when a signal ends the helper: at_exit COMMAND [ARG...] queues a command; they run last
# queued first, each whatever the others did. HUP, INT and TERM end the helper through exit, so they run too
# (a SIGKILL runs nothing: a provider's unit has its own private temporary directory for that).
AT_EXIT=()
at_exit() {
  AT_EXIT+=("$(printf '%q ' "$@")")
  trap run_at_exit EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

run_at_exit() {
  local i
  for ((i = ${#AT_EXIT[@]} - 1; i >= 0; i--)); do
    eval "${AT_EXIT[i]}" || true
  done
}

# SCRATCH, the private directory of a drill's scratch copy: made by the request's user, mode 0700, in $TMPDIR
# (a provider's unit gives the drill a private one), removed at exit. Not called in $(...): a subshell would
# remove it at its own exit. Its removal is queued before it is made: a TERM that comes as mktemp returns (a
# stopped drill unit) finds the trap set and the name assigned, so the directory never outlives the helper.
SCRATCH=''
scratch_directory() {
  at_exit remove_scratch
  SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/selfhost-backup-drill.XXXXXXXX")" || fail "drill: cannot make a scratch directory"
}

remove_scratch() {
  [ -z "$SCRATCH" ] || rm -rf -- "$SCRATCH"
}

# The verdict of a drill check: its query ($1, in database $2 when given) printed $3, which must be one value
# that reads as true.
check_verdict() {
  local query="$1" where="${2:+ in database $2}" got="$3"
  case "$got" in
    t|1|true|TRUE|True) printf '%s: drill check passed%s: %s\n' "$SCRIPT" "$where" "$query" >&2 ;;
    *) fail "drill failed: the check$where returned '${got//$'\n'/ }', not true: $query" ;;
  esac
}

# The restore script's restore --into and --database ask the helper first whether it takes the names: with
# SELFHOST_BACKUP_CHECK=1 (and no input) it checks them as for the restore, then stops here, at the point where
# it would read the dump or change anything: exit 0, nothing read, nothing made. A refusal fails before this.
names_checked() {
  [ "${SELFHOST_BACKUP_CHECK:-}" = 1 ] || return 0
  exit 0
}
