"""Where the credential helper comes from, and what its `version` verb says."""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
from collections.abc import Mapping
from typing import Any

from ecrkit import files
from ecrkit.constants import HELPER_BINARY, HELPER_VERSION, PACKAGE_DIR, RELEASE_BASE_URL
from ecrkit.errors import EcrkitError, InputError
from ecrkit.settings import option_name, validate_absolute_path, validate_url

log = logging.getLogger(__name__)  # `ecrkit --debug` shows what it calls

# `uname -m` (Ansible's ansible_architecture) to the release's directory name.
ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
VERSION = re.compile(r"^\d+\.\d+\.\d+\Z", re.ASCII)
SHA256 = re.compile(r"^[0-9a-f]{64}\Z", re.ASCII)
VERSION_IN_OUTPUT = re.compile(r"(\d+\.\d+\.\d+)", re.ASCII)
# `-v` prints the release's own version; the `version` verb of Debian's 0.6.0 and 0.7.1 builds
# prints a stale constant (0.6.4), so `-v`'s line wins when both are there.
RELEASE_VERSION_IN_OUTPUT = re.compile(r"^Version:\s*(\d+\.\d+\.\d+)", re.M | re.ASCII)
VERSION_ARGS = ("-v",)  # what to run to learn the version (every helper since 0.6.0 knows -v)
INSTALL_METHODS = ("package", "release", "url", "controller_file")
PACKAGE_PATH = f"{PACKAGE_DIR}/{HELPER_BINARY}"


def validate_version(value: object, source: str = "version") -> str:
    if not isinstance(value, str) or not VERSION.match(value):
        raise InputError(source, value, "a release version X.Y.Z such as 0.12.0, without a leading 'v'")
    return value


def validate_sha256(value: object, source: str = "sha256") -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not SHA256.match(text):
        raise InputError(source, value, "a sha256 digest of 64 hexadecimal characters")
    return text


def release(version: str, architecture: str, base_url: str = RELEASE_BASE_URL, *, prefix: str = "") -> dict[str, str]:
    """The official release binary's URL and its published checksum file for one host."""
    arch = ARCHITECTURES.get(architecture)
    if arch is None:
        raise InputError("architecture", architecture, f"one of {', '.join(sorted(ARCHITECTURES))}")
    url = release_url(version, arch, base_url, prefix=prefix)
    return {"url": url, "checksum": f"sha256:{url}.sha256"}


def release_url(version: str, arch: str, base_url: str = RELEASE_BASE_URL, *, prefix: str = "") -> str:
    """The official layout: BASE/X.Y.Z/linux-ARCH/docker-credential-ecr-login (ARCH amd64 or arm64).
    `prefix` names the inputs in errors: `--` for the options, or the role's variable prefix."""
    version = validate_version(version, option_name(prefix, "version"))
    base = validate_url(base_url, option_name(prefix, "release_base_url"), example=RELEASE_BASE_URL)
    return f"{base.rstrip('/')}/{version}/linux-{arch}/{HELPER_BINARY}"


def parse_version(output: str) -> str:
    """The version in what `docker-credential-ecr-login -v` (or `version`) printed.

    `-v` says `Version:    0.7.1`; `version` says `0.6.4` in Debian's 0.6.0 and 0.7.1 builds
    (a constant left behind upstream) and names the real one from 0.8 or so on.
    """
    match = RELEASE_VERSION_IN_OUTPUT.search(output) or VERSION_IN_OUTPUT.search(output)
    if match is None:
        raise ValueError(f"no version number in the helper's output {output.strip()!r}")
    return match.group(1)


def install_path(method: str, install_dir: str) -> str:
    """Where the install method puts the helper (validated; role variable names in errors)."""
    if method not in INSTALL_METHODS:
        raise InputError("ecr_credential_helper_install_method", method, f"one of {', '.join(INSTALL_METHODS)}")
    if method == "package":
        return PACKAGE_PATH
    directory = validate_absolute_path(install_dir, "ecr_credential_helper_install_dir").rstrip("/")
    return f"{directory}/{HELPER_BINARY}"


def install_plan(
    method: str,
    *,
    architecture: str,
    install_dir: str,
    version: str = HELPER_VERSION,
    release_base_url: str = RELEASE_BASE_URL,
    url: str = "",
    sha256: str = "",
    src: str = "",
) -> dict[str, object]:
    """Validate the install inputs (role variable names in errors) and plan the install.

    Returns the method, the binary's path and, by method: the release URL and checksum
    spec, the URL with its sha256 (and whether it is an s3:// object the controller
    fetches), or the controller file with its optional sha256.
    """
    plan: dict[str, object] = {"method": method, "path": install_path(method, install_dir)}
    if method == "release":
        plan.update(release(version, architecture, release_base_url, prefix="ecr_credential_helper_"))
    elif method == "url":
        validate_url(url, "ecr_credential_helper_url", schemes=("https", "http", "s3"), example="s3://BUCKET/KEY")
        if url.startswith("s3://") and not url[len("s3://") :].partition("/")[2]:
            raise InputError("ecr_credential_helper_url", url, "an s3://BUCKET/KEY URL naming an object")
        digest = validate_sha256(sha256, "ecr_credential_helper_sha256 (required by the url method)")
        plan.update(url=url, sha256=digest, checksum=f"sha256:{digest}", s3=url.startswith("s3://"))
    elif method == "controller_file":
        if not src:
            raise InputError("ecr_credential_helper_src", src, "the binary's path on the controller")
        plan.update(src=src, sha256=validate_sha256(sha256, "ecr_credential_helper_sha256") if sha256 else "")
    return plan


def expected_sha256(plan: Mapping[str, Any]) -> str | None:
    """The sha256 the installed binary must have, when it is known before installing.

    url and s3 carry it. A controller file is hashed here, on the controller, and refused
    if it does not match the sha256 given for it. A release's checksum is published beside
    it and read by the host; a package's is the package manager's business.
    """
    if plan["method"] == "url":
        return str(plan["sha256"])
    if plan["method"] != "controller_file":
        return None
    actual = hashlib.sha256(files.read_bytes(str(plan["src"]), "ecr_credential_helper_src") or b"").hexdigest()
    if plan.get("sha256") and actual != plan["sha256"]:
        raise EcrkitError(
            f"{plan['src']} has sha256 {actual}, expected {plan['sha256']}; {plan['path']} was left as it was"
        )
    return actual


def binary_version(path: str) -> str:
    """The version a helper binary reports about itself (`-v`)."""
    log.debug("%s", " ".join([path, *VERSION_ARGS]))
    done = subprocess.run([path, *VERSION_ARGS], capture_output=True, text=True, check=False, timeout=30)
    return parse_version(done.stdout + done.stderr)
