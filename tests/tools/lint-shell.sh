#!/usr/bin/env bash
# Runs `shellcheck -S warning` on every shell file of the git checkout the current directory is in (lint stage).
#
# usage: tests/tools/lint-shell.sh [--list]
#   --list  print the files it would check, one a line, and check nothing
# The shell files are those git knows (tracked, or new and not ignored): every *.sh, and every file without an
# extension whose first line is a sh, bash or dash shebang (.ci/run, a command in a role's files/). New files
# are picked up without a change here. shellcheck follows what a script sources (-x), relative to the script,
# as its `# shellcheck source=` lines are written.
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"

readonly SHEBANG='^#![[:space:]]*(/[^[:space:]]*/)?(env[[:space:]]+)?(ba|da)?sh([[:space:]]|$)'

files=()
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue # deleted, not yet committed
  case "${f##*/}" in
    *.sh) files+=("$f") ;;
    *.*) ;;
    *) if head -n 1 -- "$f" | grep -qE "$SHEBANG"; then files+=("$f"); fi ;;
  esac
done < <(git ls-files -z --cached --others --exclude-standard)

if [ "${1:-}" = --list ]; then
  [ "${#files[@]}" -eq 0 ] || printf '%s\n' "${files[@]}"
  exit 0
fi
[ "$#" -eq 0 ] || { echo "usage: $0 [--list]" >&2; exit 2; }
[ "${#files[@]}" -gt 0 ] || { echo "no shell files found" >&2; exit 1; }
echo "shellcheck -S warning: ${#files[@]} files"
shellcheck -S warning -x -P SCRIPTDIR -- "${files[@]}"
