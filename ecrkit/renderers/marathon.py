"""Marathon app definitions, validated against Marathon's own JSON schema (the 1.7 line's,
its last published one) before ecrkit prints them.

- `app`: a Docker-containerizer app that fetches `docker.tar.gz`, so the agent's `docker pull`
  runs with HOME in the sandbox and the helper there gets a token from the agent's IAM role;
- `installer`: one task on every agent (`hostname UNIQUE`) that installs a pinned helper,
  checked against its sha256, into a directory DC/OS upgrades keep.
"""

from __future__ import annotations

import json
import re
import shlex
from importlib import resources
from typing import Any

from ecrkit.constants import HELPER_BINARY
from ecrkit.errors import InputError
from ecrkit.helper import validate_sha256
from ecrkit.settings import validate_absolute_path, validate_positive_number, validate_url

DOCKER_TAR_URI = "file:///etc/docker.tar.gz"
# A Docker image reference: [registry[:port]/]path[:tag][@digest], lowercase path components.
IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?\Z",
    re.ASCII,
)


def schema() -> dict[str, Any]:
    text = resources.files("ecrkit").joinpath("data/marathon-app.schema.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


# The app fields `render marathon-app` sets from an option, so that errors name the option.
OPTIONS = {"id": "--id", "cmd": "--cmd", "instances": "--instances", "container/docker/image": "--image",
           "fetch/0/uri": "--uri"}  # fmt: skip
# What the Mesos fetcher downloads from; file:// and absolute paths are the agent's own files.
FETCHER_SCHEMES = ("https", "http", "ftp", "ftps", "hdfs", "s3", "s3a", "s3n")


def validate(definition: dict[str, Any], options: dict[str, str] | None = None) -> dict[str, Any]:
    """Raise InputError naming the field (or the option in `options` that set it) and Marathon's
    complaint, or return the definition."""
    import jsonschema  # noqa: PLC0415 - here: every command's parser reads this module's defaults

    errors = sorted(jsonschema.Draft4Validator(schema()).iter_errors(definition), key=lambda e: list(e.path))
    if errors:
        error = errors[0]
        where = "/".join(str(part) for part in error.path) or "app"
        where = (options or {}).get(where, where)
        raise InputError(where, error.instance, f"what Marathon's app schema accepts ({error.message})")
    return definition


def validate_fetch_uri(value: object, source: str) -> str:
    """A URI the Mesos fetcher can fetch: file:///PATH, /PATH, or a URL with a host."""
    if isinstance(value, str) and value.startswith(("/", "file:///")):
        validate_absolute_path(value.removeprefix("file://"), source)
        return value
    return validate_url(value, source, schemes=FETCHER_SCHEMES, example=DOCKER_TAR_URI)


def _resources(cpus: float, mem: float, instances: int) -> None:
    validate_positive_number(cpus, "--cpus")
    validate_positive_number(mem, "--mem")
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 0:
        raise InputError("--instances", instances, "a whole number, 0 or more")


def app(
    app_id: str,
    image: str,
    *,
    cpus: float = 0.1,
    mem: float = 128,
    instances: int = 1,
    force_pull: bool = False,
    uri: str = DOCKER_TAR_URI,
    cmd: str = "",
) -> dict[str, Any]:
    """A Docker app whose pull authenticates through the fetched docker.tar.gz."""
    if not IMAGE.match(image):
        raise InputError(
            "--image", image, "a Docker image reference such as 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1"
        )
    _resources(cpus, mem, instances)
    validate_fetch_uri(uri, "--uri")
    definition: dict[str, Any] = {
        "id": app_id,
        "instances": instances,
        "cpus": cpus,
        "mem": mem,
        "container": {"type": "DOCKER", "docker": {"image": image, "forcePullImage": force_pull}},
        "fetch": [{"uri": uri, "extract": True}],
    }
    if cmd:
        definition["cmd"] = cmd
    return validate(definition, OPTIONS)


def installer(
    url: str,
    sha256: str,
    *,
    app_id: str = "/ecrkit/ecr-credential-helper-installer",
    install_dir: str = "/usr/bin",
    instances: int = 1,
) -> dict[str, Any]:
    """One task per agent (scale `instances` to the agent count) that installs the pinned helper.

    The Mesos fetcher downloads the binary into the sandbox; the task installs it only if its
    sha256 matches, then stays up so Marathon does not start it again.
    """
    validate_url(url, "--url")
    digest = validate_sha256(sha256, "--sha256")
    target = f"{validate_absolute_path(install_dir, '--install-dir')}/{HELPER_BINARY}"
    cmd = (
        f"echo {shlex.quote(digest + '  helper')} | sha256sum -c - && "
        f"install -m 0755 helper {shlex.quote(target + '.ecrkit-new')} && "
        f"mv -f {shlex.quote(target + '.ecrkit-new')} {shlex.quote(target)} && exec sleep infinity"
    )
    _resources(0.01, 16, instances)
    return validate(
        {
            "id": app_id,
            "instances": instances,
            "cpus": 0.01,
            "mem": 16,
            "user": "root",
            "cmd": cmd,
            "constraints": [["hostname", "UNIQUE"]],
            "fetch": [{"uri": url, "executable": True, "destPath": "helper", "cache": False}],
        }
    )
