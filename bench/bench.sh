#!/usr/bin/env bash
# The benchmarks, start to end: `make bench` runs `bench.sh run`, `make bench-clean` runs `bench.sh down`.
#
#   run   prepare this machine (like the demo: Debian packages, the virtualenv, the Docker engine, the Debian 13
#         systemd image, the collections) and bench/.venv (matplotlib); start the container
#         selfhost-backup-bench, install PostgreSQL, converge bench/playbooks/site.yml, then run the rounds
#         (python -m selfhost_bench). Results: bench/results/latest.{md,json,png}. Options: see bench/README.md;
#         VENV: the project's virtualenv elsewhere (as tests/tools/setup-host.sh takes it), BENCH_PYTHON: a Python
#         to run the rounds with instead of bench/.venv's (without matplotlib, latest.png is left as it was).
#         BENCH_PHASES=fleet alone starts no selfhost-backup-bench: the fleet phase makes and removes containers
#         bench-fleet-* of its own (results: bench/results/fleet.{md,json}).
#   down  remove the container and, with it, its database and repositories (the image stays cached), and any
#         bench-fleet-* containers a stopped fleet phase left
set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench="$top/bench"
readonly CONTAINER=selfhost-backup-bench

bench_venv() {
  local stamp="$bench/.venv/.requirements"
  [ -x "$bench/.venv/bin/python" ] || python3 -m venv "$bench/.venv"
  if ! cmp -s "$bench/requirements.txt" "$stamp"; then
    "$bench/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$bench/requirements.txt"
    cp "$bench/requirements.txt" "$stamp"
  fi
}

run() {
  local python="${BENCH_PYTHON:-$bench/.venv/bin/python}" phases suites=trixie
  read -r -a phases <<<"${BENCH_PHASES:-}"
  # The fleet phase runs Debian 12 clients too, in containers of its own.
  case " ${phases[*]} " in *" fleet "*) suites="bookworm trixie" ;; esac
  IMAGE_SUITES=$suites "$top/tests/tools/setup-host.sh" venv docker images collections
  [ -n "${BENCH_PYTHON:-}" ] || bench_venv
  export PATH="${VENV:-$top/.venv}/bin:$PATH"
  export ANSIBLE_COLLECTIONS_PATH="$top/.cache/collections"
  if [ "${phases[*]}" != fleet ]; then
    ansible-playbook -i "$bench/inventory.yml" "$bench/playbooks/container.yml"
    ansible-playbook -i "$bench/inventory.yml" "$bench/playbooks/site.yml"
  fi
  cd "$bench"
  "$python" -m selfhost_bench
}

down() {
  if [ -n "$(docker ps --all --quiet --filter "name=^${CONTAINER}\$")" ]; then
    docker rm -f "$CONTAINER" >/dev/null
    echo "removed the container $CONTAINER with its database and repositories"
  else
    echo "no container $CONTAINER: nothing to remove"
  fi
  local fleet
  fleet=$(docker ps --all --quiet --filter "name=^bench-fleet-")
  if [ -n "$fleet" ]; then
    # shellcheck disable=SC2086 # one id a word
    docker rm -f $fleet >/dev/null
    echo "removed the fleet containers bench-fleet-*"
  fi
  docker network rm bench-fleet-net >/dev/null 2>&1 || true
}

case "${1:-run}" in
  run) run ;;
  down) down ;;
  *) echo "usage: $0 run|down" >&2; exit 2 ;;
esac
