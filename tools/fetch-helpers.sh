#!/bin/bash
# Fetch the credential helpers the tests run: Debian's amazon-ecr-credential-helper from
# bookworm (0.6.0), trixie (0.7.1) and sid (whatever it has, at least 0.12.0), into
# DEST/<suite>/docker-credential-ecr-login, with the version it reports in DEST/<suite>/version
# (DEST defaults to .cache/helpers).
#
# apt does the fetching with a private configuration (its own sources file, lists and cache):
# the machine's sources never see trixie or sid. apt checks the Release files against Debian's
# archive keyring and each .deb against the signed index. A suite already fetched is kept, so a
# newer sid upload changes nothing until the cache is removed; sid must still be 0.12.0 or later.
set -euo pipefail

DEST=${1:-.cache/helpers}
SUITES=(bookworm trixie sid)
PACKAGE=amazon-ecr-credential-helper
BINARY=docker-credential-ecr-login
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SID_MINIMUM=0.12.0

log() { echo "fetch-helpers: $*" >&2; }

# The Debian mirror the machine already uses (one-line or deb822 sources), unless MIRROR is set.
mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local found
  found=$(cat "${files[@]}" 2> /dev/null \
    | grep -oE '(^deb(\s+\[[^]]*\])?\s+|^URIs:\s*)[a-z]+://\S+/debian/?(\s|$)' \
    | grep -oE '[a-z]+://\S+/debian/?' | head -n 1 || true)
  echo "${MIRROR:-${found:-http://deb.debian.org/debian}}"
}

missing=()
for suite in "${SUITES[@]}"; do
  [ -x "$DEST/$suite/$BINARY" ] && [ -s "$DEST/$suite/version" ] || missing+=("$suite")
done
if [ "${#missing[@]}" -eq 0 ]; then
  log "all helpers present in $DEST"
  exit 0
fi

url=$(mirror)
apt_dir=$(realpath -m "$DEST/.apt")
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/work"
{
  for suite in "${missing[@]}"; do
    echo "deb [signed-by=$KEYRING] $url $suite main"
  done
} > "$apt_dir/sources.list"
apt_options=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o Dir::Etc::Preferences=/dev/null
  -o Dir::Etc::PreferencesParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o Acquire::Languages=none
  -o APT::Sandbox::User=root
)
log "reading ${missing[*]} from $url (private apt configuration in $apt_dir)"
apt-get "${apt_options[@]}" -qq update

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

for suite in "${missing[@]}"; do
  work="$apt_dir/work/$suite"
  rm -rf "$work" && mkdir -p "$work/root"
  (cd "$work" && apt-get "${apt_options[@]}" -qq download "$PACKAGE/$suite")
  deb=$(find "$work" -maxdepth 1 -name "${PACKAGE}_*.deb" -print -quit)
  [ -n "$deb" ] || { log "apt downloaded no $PACKAGE from $suite"; exit 1; }
  dpkg-deb -x "$deb" "$work/root"
  # -v, not the version verb: Debian's 0.6.0 and 0.7.1 builds answer that with 0.6.4.
  version=$("$work/root/usr/bin/$BINARY" -v | sed -n 's/^Version:[[:space:]]*\([0-9.]*\).*/\1/p')
  if [ "$suite" = sid ] && ! version_ge "$version" "$SID_MINIMUM"; then
    log "sid has $PACKAGE $version, older than $SID_MINIMUM"
    exit 1
  fi
  mkdir -p "$DEST/$suite"
  install -m 0755 "$work/root/usr/bin/$BINARY" "$DEST/$suite/$BINARY.new"
  echo "$version" > "$DEST/$suite/version"  # for playbooks on the controller (molecule/install_methods)
  mv -f "$DEST/$suite/$BINARY.new" "$DEST/$suite/$BINARY"
  log "$suite: $(basename "$deb") -> $DEST/$suite/$BINARY (reports $version)"
  rm -rf "$work"
done
