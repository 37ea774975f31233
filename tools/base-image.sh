#!/usr/bin/env bash
# Builds the systemd base image for disposable test hosts once; reuses it while the tag exists.
# debootstrap needs only Debian's mirror, which these machines reach (no Docker Hub here).
# Usage: tools/base-image.sh [SUITE]   SUITE: bookworm (Debian 12, the default) or trixie (Debian 13);
# the image is localhost/debian-systemd:SUITE unless ECRKIT_BASE_IMAGE names another.
set -euo pipefail

suite=${1:-bookworm}
image=${ECRKIT_BASE_IMAGE:-localhost/debian-systemd:$suite}

if podman image exists "$image"; then
  echo "base image $image: present, reused"
  exit 0
fi

rootfs=$(mktemp -d /var/tmp/ecrkit-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,openssh-server,sudo,ca-certificates,curl,iproute2,logrotate,python3-apt \
  "$suite" "$rootfs" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
# An empty machine-id: systemd makes a fresh one in each container.
: >"$rootfs/etc/machine-id"
tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/sbin/init"]' - "$image" >/dev/null
echo "base image $image: built"
