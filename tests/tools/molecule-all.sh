#!/usr/bin/env bash
# Every molecule scenario, MOLECULE_JOBS (default 3: much of a scenario waits on systemd and the network, so
# three fill 2 cores better than two) at a time: the longest first, the next one as soon as a lane is free.
# Scenarios share nothing but the images: each has its own containers, docker network and apt archive
# directories, named after it. A scenario's output goes to its log file and is
# printed whole when it ends, so that two scenarios' lines never interleave. Unlike `molecule test --all`,
# every scenario runs even when an earlier one failed; the exit status is non-zero when any failed.
#
# usage: tests/tools/molecule-all.sh [SCENARIO...]   (default: every scenario, longest first)
set -uo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$top" || exit 1
jobs="${MOLECULE_JOBS:-3}"
logs="$top/.cache/molecule-logs"
# Longest first (minutes on this 2-core machine with other scenarios beside them, wave 2 session 5): contract ~50
# (five requesters on both releases), fleet ~43 (8 clients and a TLS server), borg ~44, restic ~40, platform ~10,
# contract_core ~3, toolchain ~1. A scenario not in this list runs last.
order=(contract fleet borg restic platform contract_core toolchain)

scenarios=("$@")
if [ "${#scenarios[@]}" -eq 0 ]; then
  mapfile -t found < <(find extensions/molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' \
    | xargs -n1 basename | sort)
  for name in "${order[@]}"; do
    [[ " ${found[*]} " == *" $name "* ]] && scenarios+=("$name")
  done
  for name in "${found[@]}"; do
    [[ " ${order[*]} " == *" $name "* ]] || scenarios+=("$name")
  done
fi

mkdir -p "$logs"
declare -A started=() pid_of=()
results=()
failed=0
failed_names=()

# Runs one scenario in the background, its output to its log.
launch() {
  local name="$1"
  started[$name]=$SECONDS
  molecule test --scenario-name "$name" >"$logs/$name.log" 2>&1 &
  pid_of[$!]="$name"
  printf '==> molecule %s started (log: %s)\n' "$name" "$logs/$name.log"
}

# Waits for any running scenario, prints its log and records its result.
reap() {
  local pid rc=0 name status
  wait -n -p pid || rc=$?
  name="${pid_of[$pid]}"
  unset "pid_of[$pid]"
  if [ "$rc" -eq 0 ]; then
    status=passed
  else
    status=FAILED
    failed=$((failed + 1))
    failed_names+=("$name")
  fi
  printf '\n===== molecule %s: %s (exit %s) =====\n' "$name" "$status" "$rc"
  cat -- "$logs/$name.log"
  results+=("$(printf '%-14s %-7s %5ss' "$name" "$status" $((SECONDS - started[$name])))")
}

for name in "${scenarios[@]}"; do
  while [ "${#pid_of[@]}" -ge "$jobs" ]; do reap; done
  launch "$name"
done
while [ "${#pid_of[@]}" -gt 0 ]; do reap; done

# A CI page may keep only the end of a long output: repeat the lines that name why a scenario failed, so the
# cause is there next to the summary and not only in the middle of that scenario's log.
cause_lines() {
  grep -n -E '^(fatal|failed): |^FAILED |^ERROR |^E   |CRITICAL|Error: |Traceback' -- "$1" | tail -n 40
}
for name in "${failed_names[@]}"; do
  printf '\n===== why molecule %s failed (lines of %s) =====\n' "$name" "$logs/$name.log"
  cause_lines "$logs/$name.log"
done

printf '\n===== molecule scenarios (%s at a time) =====\n' "$jobs"
printf '%s\n' "${results[@]}"
if [ "${#results[@]}" -ne "${#scenarios[@]}" ]; then
  echo "molecule-all: ${#scenarios[@]} scenarios to run, ${#results[@]} ran" >&2
  exit 1
fi
[ "$failed" -eq 0 ]
