"""A `registries.conf` drop-in that mirrors docker.io through an ECR pull-through cache, for
podman, buildah, skopeo and CRI-O (`/etc/containers/registries.conf.d/`). docker.io/alpine
normalises to docker.io/library/alpine, the path the cache expects; authentication comes from
credHelpers (`ecrkit render docker-config`)."""

from __future__ import annotations

import tomlkit

from ecrkit.images import DOCKER_HUB
from ecrkit.settings import validate_cache_prefix, validate_location, validate_registry


def render(
    registry: str,
    cache_prefix: str,
    upstream: str = DOCKER_HUB,
    sources: tuple[str, str, str] = ("--registry", "--cache-prefix", "--upstream"),
) -> str:
    """`sources` name the registry, the prefix and the upstream in errors (the options, or the role's variables)."""
    upstream = validate_location(upstream, sources[2])
    location = f"{validate_registry(registry, sources[0])}/{validate_cache_prefix(cache_prefix, sources[1])}"
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
