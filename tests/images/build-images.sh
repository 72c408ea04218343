#!/usr/bin/env bash
# Build the Debian systemd base images the molecule scenarios run on.
#
# No container registry is reachable here, so images are bootstrapped with
# debootstrap from the apt mirror this machine already uses and imported with
# `docker import`. An image that exists is kept while it was built by this recipe (its label
# selfhost-backup.recipe holds the SHA-256 of this script and make-rshared.service); one built by another
# recipe is built again, and --rebuild builds every image again.
#
# usage: tests/images/build-images.sh [--rebuild] [SUITE...]   (default: bookworm trixie)
set -euo pipefail

IMAGE_REPO="${SELFHOST_BACKUP_IMAGE_REPO:-selfhost-backup/debian-systemd}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rebuild=false
suites=()
for arg in "$@"; do
  case "$arg" in
    --rebuild) rebuild=true ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    -*) echo "unknown option: $arg" >&2; exit 2 ;;
    *) suites+=("$arg") ;;
  esac
done
[ "${#suites[@]}" -gt 0 ] || suites=(bookworm trixie)

# The main Debian archive from this machine's apt sources (deb822 or one-line
# format), skipping security and update archives. Never hard-coded: the
# repository must not name a mirror host.
debian_mirror() {
  local uri="" files=()
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] && files+=("$f")
  done
  [ "${#files[@]}" -gt 0 ] && uri=$(awk '
    /^[[:space:]]*#/ { next }
    /^URIs:/ { for (i = 2; i <= NF; i++) print $i }
    /^deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }
  ' "${files[@]}" \
    | grep -E '/debian/?$' | grep -v -- '-security' | head -n 1)
  if [ -z "$uri" ]; then
    echo "no Debian archive found in /etc/apt/sources.list*; cannot bootstrap images" >&2
    return 1
  fi
  printf '%s\n' "${uri%/}"
}

# What the images are made from: a change of it (e.g. the machine ID handling) must reach images built before.
recipe_hash() {
  cat "$HERE/build-images.sh" "$HERE/make-rshared.service" | sha256sum | cut -d' ' -f1
}

build_one() {
  local suite="$1" mirror="$2" tag="$IMAGE_REPO:$1" recipe root built
  recipe=$(recipe_hash)
  if ! $rebuild && built=$(docker image inspect --format '{{ index .Config.Labels "selfhost-backup.recipe" }}' "$tag" 2>/dev/null); then
    if [ "$built" = "$recipe" ]; then
      echo "image $tag exists, built by this recipe; skipping (use --rebuild to force)"
      return 0
    fi
    echo "image $tag was built by another recipe (${built:-none}); building it again"
  fi
  root=$(mktemp -d "/var/tmp/selfhost-backup-$suite.XXXXXX")
  build_root="$root"
  echo "bootstrapping $suite from $mirror into $root"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,python3,python3-apt,dbus,sudo,ca-certificates \
    "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 40 "$root.log" >&2; rm -f "$root.log"; return 1; }
  rm -f "$root.log"
  customise_root "$root" "$suite" "$mirror"
  tar -C "$root" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' \
    -c 'ENV container=docker' \
    -c "LABEL selfhost-backup.recipe=$recipe" \
    - "$tag"
  rm -rf "$root"
  build_root=""
  echo "built $tag"
}

customise_root() {
  local root="$1" suite="$2" mirror="$3"
  printf 'deb %s %s main\n' "$mirror" "$suite" >"$root/etc/apt/sources.list"
  # Keep downloaded .debs: the scenarios mount a host directory on the archive
  # cache so that re-runs install packages without downloading them again.
  printf 'APT::Keep-Downloaded-Packages "true";\nBinary::apt::APT::Keep-Downloaded-Packages "true";\n' \
    >"$root/etc/apt/apt.conf.d/90selfhost-keep-debs"
  printf 'APT::Install-Recommends "false";\n' >"$root/etc/apt/apt.conf.d/90selfhost-no-recommends"
  # Containers start with private mounts, which keeps systemd from handing
  # LoadCredential= files to services; make / shared before anything runs.
  install -m 0644 "$HERE/make-rshared.service" "$root/etc/systemd/system/make-rshared.service"
  mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
  ln -sf ../make-rshared.service "$root/etc/systemd/system/sysinit.target.wants/make-rshared.service"
  # Units that cannot work in a container only slow down or fail boot.
  local unit
  for unit in systemd-remount-fs.service getty.target console-getty.service \
              systemd-firstboot.service systemd-udevd.service systemd-udev-trigger.service \
              systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  # Every container its own machine ID (timers' FixedRandomDelay= hashes it): an empty /etc/machine-id, and no
  # /var/lib/dbus/machine-id, which systemd would copy at boot, giving every container of the image one ID.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/lib/apt/periodic/update-success-stamp
  # ansible.builtin.apt's cache_valid_time reads the age of the lists from this directory's mtime: emptied just
  # now it would look fresh, and an image younger than cache_valid_time would never fetch any list.
  touch -d @0 "$root/var/lib/apt/lists"
}

build_root=""
trap '[ -z "$build_root" ] || rm -rf "$build_root" "$build_root.log"' EXIT
command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "the Docker engine is not running" >&2; exit 1; }
mirror=$(debian_mirror)
for suite in "${suites[@]}"; do
  build_one "$suite" "$mirror"
done
