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

decompress() {
  case "$compression" in
    none) cat ;;
    gzip) gzip -dc ;;
    zstd) zstd -qdc ;;
  esac
}
