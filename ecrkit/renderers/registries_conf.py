"""A `registries.conf` drop-in that mirrors docker.io through an ECR pull-through cache, for
podman, buildah, skopeo and CRI-O (`/etc/containers/registries.conf.d/`). docker.io/alpine
normalises to docker.io/library/alpine, the path the cache expects; authentication comes from
credHelpers (`ecrkit render docker-config`)."""

from __future__ import annotations

import tomlkit

from ecrkit.errors import InputError
from ecrkit.images import DOCKER_HUB, PATH
from ecrkit.settings import validate_registry


def render(
    registry: str,
    cache_prefix: str,
    upstream: str = DOCKER_HUB,
    sources: tuple[str, str] = ("--registry", "--cache-prefix"),
) -> str:
    """`sources` name the registry and the prefix in errors (the options, or the role's variables)."""
    if not isinstance(cache_prefix, str) or not PATH.match(cache_prefix):
        raise InputError(sources[1], cache_prefix, "the pull-through rule's repository prefix, such as docker-hub")
    location = f"{validate_registry(registry, sources[0])}/{cache_prefix}"
    document = tomlkit.document()
    document.add(tomlkit.comment(f"Managed by ecrkit: pull {upstream} through the ECR pull-through cache {location}."))
    entry = tomlkit.table()
    entry.add("prefix", upstream)
    entry.add("location", upstream)
    mirror = tomlkit.table()
    mirror.add("location", location)
    mirrors = tomlkit.aot()
    mirrors.append(mirror)
    entry.add("mirror", mirrors)
    registries = tomlkit.aot()
    registries.append(entry)
    document.add("registry", registries)
    return tomlkit.dumps(document)
