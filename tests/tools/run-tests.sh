#!/usr/bin/env bash
# The test suite: set up what each stage needs, run the stages, print a summary.
#
# usage: tests/tools/run-tests.sh [STAGE...]
#   stages: lint sanity unit molecule   (default: all, in that order)
#   MOLECULE_SCENARIO=<name> limits the molecule stage to one scenario; otherwise every scenario runs,
#   MOLECULE_JOBS (default 3) at a time (tests/tools/molecule-all.sh).
# Every stage runs even when an earlier one failed; the exit status is non-zero
# when any stage failed.
set -uo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$top" || exit 1
export VENV="${VENV:-$top/.venv}"
export PATH="$VENV/bin:$PATH"
# The collection under test, found by ansible through a symlink tree so that
# FQCNs (selfhost.backup.*) resolve to this checkout. community.docker and the
# other PyPI collections are found in the venv's site-packages.
"$top/tests/tools/setup-host.sh" collections
export ANSIBLE_COLLECTIONS_PATH="$top/.cache/collections"
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}"
export PY_COLORS=0

stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=(lint sanity unit molecule)

stage_lint() {
  tests/tools/lint-shell.sh || return 1
  mypy -p ansible_collections.selfhost.backup.plugins || return 1
  python tests/tools/settings_docs.py --check || return 1
  ansible-lint --offline --profile production && antsibull-changelog lint
}

stage_sanity() {
  "$top/tests/tools/run-sanity.sh"
}

stage_unit() {
  local rc=0
  pytest tests/unit --cov=plugins --cov-report=term-missing:skip-covered -q || rc=$?
  # pytest's 5 means "no tests collected": a suite that tests nothing fails.
  [ "$rc" -ne 5 ] || echo "pytest collected no unit tests" >&2
  return "$rc"
}

# Every systemd container takes inotify instances (6 each), and the kernel's default limit (128) is shared by all
# containers of the machine: past about 20 of them (the fleet scenario beside another) new ones fail to boot.
raise_inotify_instances() {
  local wanted=1024 now
  now=$(sysctl -n fs.inotify.max_user_instances 2>/dev/null) || return 0
  [ "$now" -lt "$wanted" ] || return 0
  sysctl -q -w fs.inotify.max_user_instances="$wanted" \
    || echo "warning: cannot raise fs.inotify.max_user_instances from $now (run as root)" >&2
}

stage_molecule() {
  raise_inotify_instances
  # One apt archive directory per container below it (docker makes them): see extensions/molecule/config.yml.
  mkdir -p "${SELFHOST_BACKUP_APT_CACHE:-/var/cache/selfhost-backup/apt}"
  if [ -n "${MOLECULE_SCENARIO:-}" ]; then
    molecule test --scenario-name "$MOLECULE_SCENARIO"
  else
    tests/tools/molecule-all.sh
  fi
}

needs_setup() {
  local steps=(venv)
  case " ${stages[*]} " in *" molecule "*) steps+=(docker images) ;; esac
  "$top/tests/tools/setup-host.sh" "${steps[@]}"
}

results=()
failed=0
suite_start=$SECONDS
if ! needs_setup; then
  echo "setting up the test host failed" >&2
  exit 1
fi
for stage in "${stages[@]}"; do
  if ! declare -F "stage_$stage" >/dev/null; then
    echo "unknown stage: $stage (lint sanity unit molecule)" >&2
    exit 2
  fi
  printf '\n===== %s =====\n' "$stage"
  start=$SECONDS
  if "stage_$stage"; then status=passed; else status=FAILED; failed=$((failed + 1)); fi
  results+=("$(printf '%-10s %-7s %5ss' "$stage" "$status" $((SECONDS - start)))")
done

printf '\n===== summary =====\n'
printf '%s\n' "${results[@]}"
printf 'total %ss\n' $((SECONDS - suite_start))
printf 'stages: %d passed, %d failed\n' $((${#stages[@]} - failed)) "$failed"
[ "$failed" -eq 0 ]
