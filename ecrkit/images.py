"""Image references, and rewriting them to a pull-through cache path for Docker hosts.

Docker Engine cannot redirect docker.io to a pull-through cache (its `registry-mirrors` take
no path and send no credentials), so the reference itself must name the cache:
`alpine:3.20` becomes `<registry>/<prefix>/library/alpine:3.20`.
"""

from __future__ import annotations

import re

from ecrkit.errors import InputError
from ecrkit.settings import validate_location, validate_registry

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")
PATH = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*\Z", re.ASCII)
SUFFIX = re.compile(r"^(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?\Z", re.ASCII)


def split(image: str, source: str = "IMAGE") -> tuple[str, str, str]:
    """(domain, path, suffix) as Docker normalises a reference: `alpine:3.20` is
    ("docker.io", "library/alpine", ":3.20")."""
    name, suffix = image, ""
    if "@" in name:
        name, digest = name.split("@", 1)
        suffix = "@" + digest
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        suffix = f":{tag}{suffix}"
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, name
    if domain in DOCKER_HUB_ALIASES:
        domain = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not PATH.match(path) or not SUFFIX.match(suffix):
        raise InputError(source, image, "an image reference such as alpine:3.20, org/name:tag or host/path@sha256:...")
    return domain, path, suffix


def validate_via(via: str) -> str:
    """REGISTRY/PREFIX: the pull-through cache's registry and its repository prefix."""
    registry, _, prefix = via.partition("/")
    if not prefix or not PATH.match(prefix):
        raise InputError(
            "--via", via, "REGISTRY/PREFIX such as 123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub"
        )
    return f"{validate_registry(registry, '--via')}/{prefix}"


def rewrite(image: str, via: str, upstream: str = DOCKER_HUB) -> str:
    """The cache path for references from `upstream`; any other reference is returned as it is."""
    cache = validate_via(via)
    upstream = validate_location(upstream, "--upstream")
    domain, path, suffix = split(image)
    if domain != (DOCKER_HUB if upstream in DOCKER_HUB_ALIASES else upstream):
        return image
    return f"{cache}/{path}{suffix}"
