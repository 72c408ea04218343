#!/usr/bin/env bash
# The demo, start to end: `make demo` runs `demo.sh up`, `make demo-clean` runs `demo.sh down`.
#
#   up    prepare this machine (Debian packages, the virtualenv, the Docker engine, the Debian 13 systemd
#         image), start the container selfhost-backup-demo and run playbooks/demo.yml on it; re-runnable
#   down  remove the container and, with it, its database and repositories (the image stays cached)
set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly CONTAINER=selfhost-backup-demo

up() {
  IMAGE_SUITES=trixie "$top/tests/tools/setup-host.sh" venv docker images collections
  export PATH="$top/.venv/bin:$PATH"
  export ANSIBLE_COLLECTIONS_PATH="$top/.cache/collections"
  export ANSIBLE_CALLBACK_RESULT_FORMAT=yaml ANSIBLE_DISPLAY_SKIPPED_HOSTS=false
  cd "$top/playbooks"
  ansible-playbook -i demo/inventory.yml demo.yml
}

down() {
  local names
  names="$(docker ps --all --quiet --filter "name=^${CONTAINER}\$")" || {
    echo "cannot ask the Docker engine for $CONTAINER (is it running, may this user use it?)" >&2
    exit 1
  }
  if [ -n "$names" ]; then
    docker rm -f "$CONTAINER" >/dev/null
    echo "removed the container $CONTAINER with its database and repositories"
  else
    echo "no container $CONTAINER: nothing to remove"
  fi
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
