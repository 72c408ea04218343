#!/usr/bin/env bash
# Prepare this machine for the tests and the demo: Debian packages, the Python
# virtualenv, a running Docker engine and the systemd test images.
#
# usage: tests/tools/setup-host.sh [venv] [docker] [images] [collections]   (default: all four)
# IMAGE_SUITES="trixie" limits the images step to those Debian suites (default: bookworm trixie).
# Run as root (or with passwordless sudo) on Debian 12 or newer.
set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${VENV:-$top/.venv}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

log() { printf '==> %s\n' "$*"; }

# Wait for another apt (unattended-upgrades on a fresh machine, a second checkout's setup) instead of failing.
readonly APT_LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
apt_updated=false
apt_install() {
  if ! $apt_updated; then
    $sudo apt-get "${APT_LOCK_WAIT[@]}" update -q >/dev/null
    apt_updated=true
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get "${APT_LOCK_WAIT[@]}" install -y -q --no-install-recommends "$@" >/dev/null
}

setup_venv() {
  local python="${PYTHON3:-python3}" stamp="$venv/.requirements.sha256" want
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
  fi
  command -v git >/dev/null || apt_install git
  # ansible-test sanity skips its shellcheck test without it.
  command -v shellcheck >/dev/null || apt_install shellcheck
  [ -x "$venv/bin/python" ] || { log "creating $venv"; "$python" -m venv "$venv"; }
  want=$(cat "$top/requirements.txt" "$top/requirements-test.txt" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python requirements into $venv"
    "$venv/bin/pip" install -q -r "$top/requirements-test.txt" 2>&1 | grep -v '^WARNING: Location' || true
    "$venv/bin/pip" check >/dev/null
    echo "$want" >"$stamp"
  fi
}

docker_running() { docker info >/dev/null 2>&1; }

setup_docker() {
  command -v dockerd >/dev/null || apt_install docker.io
  command -v debootstrap >/dev/null || apt_install debootstrap
  docker_running && return 0
  if [ -d /run/systemd/system ]; then
    log "starting docker.service"
    $sudo systemctl start docker.service
  else
    # No systemd on this machine (a container or a CI sandbox): run the daemon directly, in a session of its
    # own (setsid), so that it outlives the shell or job that started it: nohup alone dies with the job's
    # process group, taking the containers of whatever runs next with it.
    log "starting dockerd in the background (log: /var/log/selfhost-backup-dockerd.log)"
    $sudo setsid -f dockerd >/var/log/selfhost-backup-dockerd.log 2>&1 </dev/null
  fi
  local _
  for _ in $(seq 1 60); do
    docker_running && return 0
    sleep 1
  done
  echo "the Docker engine did not start; see /var/log/selfhost-backup-dockerd.log" >&2
  return 1
}

setup_images() {
  "$top/tests/images/build-images.sh" "${IMAGE_SUITES[@]}"
}

# ansible finds this checkout as selfhost.backup through a symlink tree in .cache/collections (export
# ANSIBLE_COLLECTIONS_PATH to it); community.docker and the other PyPI collections are in the venv.
setup_collections() {
  mkdir -p "$top/.cache/collections/ansible_collections/selfhost"
  ln -sfn "$top" "$top/.cache/collections/ansible_collections/selfhost/backup"
}

steps=("$@")
[ "${#steps[@]}" -gt 0 ] || steps=(venv docker images collections)
read -r -a IMAGE_SUITES <<<"${IMAGE_SUITES:-bookworm trixie}"
for step in "${steps[@]}"; do
  case "$step" in
    venv) setup_venv ;;
    docker) setup_docker ;;
    images) setup_docker; setup_images ;;
    collections) setup_collections ;;
    *) echo "unknown step: $step" >&2; exit 2 ;;
  esac
done
