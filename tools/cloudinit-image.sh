#!/usr/bin/env bash
# Builds the cloud-init job-host image once, DERIVED from the systemd base image (tools/base-image.sh):
# the base plus Debian 12's cloud-init, told to read a NoCloud seed. Reused while the tag exists.
set -euo pipefail

base=${ECRKIT_BASE_IMAGE:-localhost/debian-systemd:bookworm}
image=${ECRKIT_CLOUDINIT_IMAGE:-localhost/debian-systemd-cloudinit:bookworm}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(dirname "$0")/../molecule/containers.conf}

if podman image exists "$image"; then
  echo "cloud-init image $image: present, reused"
  exit 0
fi
podman image exists "$base" || { echo "cloud-init image: base image $base is missing (make image)" >&2; exit 1; }

builder=ecrkit-cloudinit-build-$$
trap 'podman rm -f -t 0 "$builder" >/dev/null 2>&1 || true' EXIT
# Its own config, schema-valid: the seed's datasource only (no probing of cloud metadata services),
# the container's hostname kept, and the default config modules but locale (minbase has no locales).
# ssh is masked: the job hosts share the machine's network, whose port 22 is taken.
podman run --name "$builder" --network=host "$base" sh -euc '
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends cloud-init >/dev/null
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/lib/cloud/*
  systemctl mask ssh.service
  python3 - <<PY
import yaml
with open("/etc/cloud/cloud.cfg") as handle:
    modules = [m for m in yaml.safe_load(handle)["cloud_config_modules"] if m != "locale"]
config = {"datasource_list": ["NoCloud", "None"], "preserve_hostname": True, "cloud_config_modules": modules}
with open("/etc/cloud/cloud.cfg.d/90-ecrkit-nocloud.cfg", "w") as handle:
    handle.write("#cloud-config\n" + yaml.safe_dump(config, sort_keys=False))
PY
  cloud-init schema --config-file /etc/cloud/cloud.cfg.d/90-ecrkit-nocloud.cfg
  cloud-init --version
' >&2
podman commit --quiet --change 'CMD ["/sbin/init"]' "$builder" "$image" > /dev/null
echo "cloud-init image $image: built"
