"""Where the credential helper comes from, and what its `version` verb says."""

from __future__ import annotations

__all__ = ["HELPER_BINARY", "release", "parse_version", "validate_sha256", "validate_version"]

import re

from ecrkit.errors import InputError
from ecrkit.settings import HELPER_BINARY

DEFAULT_VERSION = "0.12.0"
RELEASE_BASE_URL = "https://amazon-ecr-credential-helper-releases.s3.us-east-2.amazonaws.com"
# `uname -m` (Ansible's ansible_architecture) to the release's directory name.
ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
VERSION = re.compile(r"^\d+\.\d+\.\d+$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
VERSION_IN_OUTPUT = re.compile(r"(\d+\.\d+\.\d+)")


def validate_version(value: object, source: str = "version") -> str:
    if not isinstance(value, str) or not VERSION.match(value):
        raise InputError(source, value, "a release version X.Y.Z such as 0.12.0, without a leading 'v'")
    return value


def validate_sha256(value: object, source: str = "sha256") -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not SHA256.match(text):
        raise InputError(source, value, "a sha256 digest of 64 hexadecimal characters")
    return text


def release(version: str, architecture: str, base_url: str = RELEASE_BASE_URL) -> dict[str, str]:
    """The official release binary's URL and its published checksum file for one host."""
    validate_version(version, "version")
    arch = ARCHITECTURES.get(architecture)
    if arch is None:
        raise InputError("architecture", architecture, f"one of {', '.join(sorted(ARCHITECTURES))}")
    url = f"{base_url.rstrip('/')}/{version}/linux-{arch}/{HELPER_BINARY}"
    return {"url": url, "checksum": f"sha256:{url}.sha256"}


def parse_version(output: str) -> str:
    """`docker-credential-ecr-login version` prints the version, older builds with a banner."""
    match = VERSION_IN_OUTPUT.search(output)
    if match is None:
        raise ValueError(f"no version number in the helper's output {output.strip()!r}")
    return match.group(1)
