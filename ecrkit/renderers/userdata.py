"""Userdata for job hosts that docker-machine or an autoscaling group creates.

One shell script does the work; the `#cloud-config` form ships the same script and runs it, and
the `mime` form carries it as a `text/x-shellscript` part of a MIME multi-part message, the form
that combines with other parts (an EC2 launch template's own cloud-config, for instance; a
shell-script part cannot be overridden by another part's `runcmd`, as a second cloud-config
part's lists would replace the first's).

The script installs the helper (downloads retried with backoff, sha256 checked before the binary
is moved into place) and merges the helper into `/root/.docker/config.json`. Run again, it
changes nothing.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Literal

import yaml

from ecrkit.constants import HELPER_BINARY, INSTALL_DIR
from ecrkit.errors import InputError
from ecrkit.helper import validate_sha256
from ecrkit.renderers import docker_config
from ecrkit.settings import CredentialRule, option_name, validate_absolute_path, validate_url

Format = Literal["shell", "cloud-config", "mime"]
FORMATS: tuple[Format, ...] = ("shell", "cloud-config", "mime")
MIME_PART_NAME = "ecrkit-install-ecr-helper.sh"
# A part's MIME type from its first line, as cloud-init reads them.
PART_TYPES = {
    "#cloud-config": "cloud-config",
    "#!": "x-shellscript",
    "#cloud-boothook": "cloud-boothook",
    "#include": "x-include-url",
    "#part-handler": "part-handler",
}
DEFAULT_INSTALL_DIR = INSTALL_DIR
EC2_USERDATA_LIMIT = 16384  # bytes, before base64: EC2 refuses larger userdata
ARCH = "@ARCH@"  # replaced on the host by amd64 or arm64
SCRIPT_PATH = "/var/lib/ecrkit/install-ecr-helper.sh"  # where the cloud-config form puts the script

SCRIPT = r"""#!/bin/bash
# ecrkit userdata: install __HELPER__ and name it in /root/.docker/config.json.
# Rendered by `ecrkit render userdata`; running it again changes nothing.
set -euo pipefail

HELPER_URL=__URL__  # @ARCH@ becomes amd64 or arm64
HELPER_SHA256=__SHA256__  # empty: read from "$HELPER_URL.sha256"
INSTALL_DIR=__INSTALL_DIR__
OWNED_KEYS=__OWNED__  # the keys ecrkit owns in config.json
CONFIG=/root/.docker/config.json

log() { echo "ecrkit-userdata: $*" >&2; }

flush() {  # flush FILE... to disk before or after a rename (coreutils before 8.24 flush everything)
  sync "$@" 2> /dev/null || sync
}

fetch() {  # fetch URL FILE, retried with backoff
  local attempt
  for attempt in 1 2 3 4 5; do
    if curl -fsSL --connect-timeout 10 --max-time 120 -o "$2" "$1"; then
      return 0
    fi
    log "download of $1 failed (attempt $attempt of 5)"
    [ "$attempt" -lt 5 ] && sleep $((attempt * attempt))
  done
  return 1
}

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) log "unsupported architecture $(uname -m)"; exit 1 ;;
esac
url=${HELPER_URL//@ARCH@/$arch}
work=$(mktemp -d)
staged=/root/.docker/.config.json.ecrkit-new  # beside config.json: a rename, not a copy from /tmp
trap 'rm -rf "$work" "$staged"' EXIT

expected=$HELPER_SHA256
if [ -z "$expected" ]; then
  fetch "$url.sha256" "$work/sha256" || { log "cannot fetch $url.sha256; nothing installed"; exit 1; }
  expected=$(cut -d ' ' -f 1 "$work/sha256")
fi
target=$INSTALL_DIR/__HELPER__
if [ -f "$target" ] && [ "$(sha256sum "$target" | cut -d ' ' -f 1)" = "$expected" ]; then
  log "$target is already the expected binary"
else
  fetch "$url" "$work/helper" || { log "cannot fetch $url; nothing installed"; exit 1; }
  actual=$(sha256sum "$work/helper" | cut -d ' ' -f 1)
  if [ "$actual" != "$expected" ]; then
    log "$url has sha256 $actual, expected $expected; nothing installed"
    exit 1
  fi
  install -d -m 0755 "$INSTALL_DIR"
  install -m 0755 "$work/helper" "$target.ecrkit-new"
  flush "$target.ecrkit-new"
  mv -f "$target.ecrkit-new" "$target"
  flush "$INSTALL_DIR"
  log "installed $target"
fi

install -d -m 0700 /root/.docker
rm -f "$staged"  # a killed run's leftover is not this run's merge
if [ ! -s "$CONFIG" ]; then
  printf '%s\n' "$OWNED_KEYS" > "$staged"
elif command -v python3 > /dev/null; then
  # The same merge as ecrkit's: other keys, auths and helpers are kept.
  python3 - "$CONFIG" "$OWNED_KEYS" "$staged" << 'PY'
import json, sys
path, owned, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
with open(path) as handle:
    config = json.load(handle)
merged = dict(config)
for key, value in owned.items():
    merged[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
if merged != config:
    with open(out, "w") as handle:
        handle.write(json.dumps(merged, indent="\t") + "\n")
PY
else
  log "$CONFIG exists and python3 is missing to merge it; left as it is"
  exit 1
fi
if [ -f "$staged" ]; then
  chmod 0600 "$staged"
  flush "$staged"
  mv -f "$staged" "$CONFIG"
  flush /root/.docker
  log "wrote $CONFIG"
else
  log "$CONFIG already names the helper"
fi
"""


def render(
    rule: CredentialRule,
    *,
    url: str,
    sha256: str = "",
    install_dir: str = DEFAULT_INSTALL_DIR,
    form: Format = "shell",
    prefix: str = "--",
) -> str:
    """The userdata. Without `sha256`, the host checks the binary against `<url>.sha256`.
    `prefix` names the inputs in errors: `--` for the options, or the role's variable prefix."""
    example = "https://mirror.example.com/helper-@ARCH@ (@ARCH@ stands for amd64 or arm64)"
    values = {
        "__URL__": shlex.quote(validate_url(url, option_name(prefix, "url"), example=example)),
        "__SHA256__": shlex.quote(validate_sha256(sha256, option_name(prefix, "sha256")) if sha256 else ""),
        "__INSTALL_DIR__": shlex.quote(validate_absolute_path(install_dir, option_name(prefix, "install_dir"))),
        "__HELPER__": HELPER_BINARY,
        "__OWNED__": shlex.quote(docker_config.dumps_compact(docker_config.merge({}, rule))),
    }
    script = SCRIPT
    for marker, value in values.items():
        script = script.replace(marker, value)
    if form == "shell":
        return script
    if form == "mime":
        return mime([(MIME_PART_NAME, script)])
    document = {
        "write_files": [{"path": SCRIPT_PATH, "permissions": "0700", "owner": "root:root", "content": script}],
        "runcmd": [[SCRIPT_PATH]],
    }
    return "#cloud-config\n" + yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, width=1000)


def instance_ready_command(install_dir: str = DEFAULT_INSTALL_DIR) -> str:
    """docker-autoscaler's `instance_ready_command` for hosts booted with this userdata: wait
    until cloud-init has finished (it fails when the userdata failed), then run the helper."""
    helper = f"{validate_absolute_path(install_dir, 'install_dir').rstrip('/')}/{HELPER_BINARY}"
    return f"cloud-init status --wait > /dev/null && {shlex.quote(helper)} version"


def part_type(content: str, source: str = "part") -> str:
    """The MIME subtype cloud-init gives a part, from its first line."""
    first = content.split("\n", 1)[0]
    for prefix, subtype in PART_TYPES.items():
        if first.startswith(prefix):
            return subtype
    raise InputError(source, first, f"userdata starting with one of {', '.join(PART_TYPES)}")


def mime(parts: Sequence[tuple[str, str]]) -> str:
    """A MIME multi-part userdata of (filename, content) parts, in their order, each typed by its
    first line. The boundary comes from the contents, so the same parts give the same text."""
    if not parts:
        raise InputError("parts", parts, "at least one userdata part")
    digest = hashlib.sha256("\0".join(f"{name}\0{content}" for name, content in parts).encode()).hexdigest()
    message = MIMEMultipart("mixed", boundary=f"==ecrkit-{digest[:24]}==")
    for name, content in parts:
        part = MIMEText(content, part_type(content, name))  # 7bit, readable, when it is ASCII
        part.add_header("Content-Disposition", "attachment", filename=name)
        message.attach(part)
    return message.as_string()


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so the script stays readable inside the YAML."""


_LiteralDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)
