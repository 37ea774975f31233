#!/usr/bin/env bash
# Builds the systemd base image for disposable test hosts once; reuses it while the tag exists.
# debootstrap needs only Debian's mirror, which these machines reach (no Docker Hub here).
set -euo pipefail

image=${ECRKIT_BASE_IMAGE:-localhost/debian-systemd:bookworm}

if podman image exists "$image"; then
  echo "base image $image: present, reused"
  exit 0
fi

rootfs=$(mktemp -d /var/tmp/ecrkit-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,openssh-server,sudo,ca-certificates,curl,iproute2,logrotate,python3-apt \
  bookworm "$rootfs" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
# An empty machine-id: systemd makes a fresh one in each container.
: >"$rootfs/etc/machine-id"
tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/sbin/init"]' - "$image" >/dev/null
echo "base image $image: built"
