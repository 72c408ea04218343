#!/usr/bin/env bash
# The benchmarks, start to end: `make bench` runs `bench.sh run`, `make bench-clean` runs `bench.sh down`.
#
#   run   prepare this machine (like the demo: Debian packages, the virtualenv, the Docker engine, the Debian 13
#         systemd image, the collections) and bench/.venv (matplotlib); start the container
#         selfhost-backup-bench, install PostgreSQL, converge bench/playbooks/site.yml, then run the rounds
#         (python -m selfhost_bench). Results: bench/results/latest.{md,json,png}. Options: see bench/README.md;
#         VENV: the project's virtualenv elsewhere (as tests/tools/setup-host.sh takes it), BENCH_PYTHON: a Python
#         to run the rounds with instead of bench/.venv's (without matplotlib, latest.png is left as it was).
#   down  remove the container and, with it, its database and repositories (the image stays cached)
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
  local python="${BENCH_PYTHON:-$bench/.venv/bin/python}"
  IMAGE_SUITES=trixie "$top/tests/tools/setup-host.sh" venv docker images collections
  [ -n "${BENCH_PYTHON:-}" ] || bench_venv
  export PATH="${VENV:-$top/.venv}/bin:$PATH"
  export ANSIBLE_COLLECTIONS_PATH="$top/.cache/collections"
  ansible-playbook -i "$bench/inventory.yml" "$bench/playbooks/container.yml"
  ansible-playbook -i "$bench/inventory.yml" "$bench/playbooks/site.yml"
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
}

case "${1:-run}" in
  run) run ;;
  down) down ;;
  *) echo "usage: $0 run|down" >&2; exit 2 ;;
esac
