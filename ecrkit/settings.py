r"""The typed model of what the user asked for, and the validation of every input.

Every value the CLI, the roles' filters or a file hands to ecrkit is checked here, in one place,
and an error names the option or variable it came from. Patterns are ASCII-only (re.ASCII: `\d`
would match fullwidth digits the helper refuses) and anchored with `\Z` (`$` lets a trailing
newline through into the files written).

The registry pattern is the helper's own (amazon-ecr-credential-helper, ecr-login/api/client.go):
a hostname it does not accept makes every `get` fail with "credentials not found in native
keychain", so ecrkit refuses such names before anything is written.
"""

from __future__ import annotations

import difflib
import importlib.util
import ipaddress
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from ecrkit.constants import HELPER_NAME
from ecrkit.errors import InputError

SSO_PROFILE_FORMS = ("sso-session", "legacy")  # ~/.aws/config's forms of an SSO profile (renderers.aws_config)

ECR_PRIVATE_HOST = re.compile(
    r"^(\d{12})\.dkr[\.\-]ecr(\-fips)?\.([a-zA-Z0-9][a-zA-Z0-9-_]*)\."
    r"(amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)"
    r"|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)\Z",
    re.ASCII,
)
# The partitions each ECR domain serves (GovCloud shares amazonaws.com and on.aws with aws).
DOMAIN_PARTITIONS = {
    "amazonaws.com": ("aws", "aws-us-gov"), "on.aws": ("aws", "aws-us-gov"),
    "amazonaws.com.cn": ("aws-cn",), "on.amazonwebservices.com.cn": ("aws-cn",), "amazonaws.eu": ("aws-eusc",),
    "c2s.ic.gov": ("aws-iso",), "sc2s.sgov.gov": ("aws-iso-b",), "cloud.adc-e.uk": ("aws-iso-e",),
    "csp.hci.ic.gov": ("aws-iso-f",),
}  # fmt: skip
ECR_PUBLIC_HOSTS = ("public.ecr.aws", "ecr-public.aws.com")
PUBLIC_REGISTRY = ECR_PUBLIC_HOSTS[0]

# us-east-1, us-gov-west-1, cn-northwest-1, eusc-de-east-1, us-isob-east-1, ap-southeast-5
REGION = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-\d{1,2}\Z", re.ASCII)
ACCOUNT_ID = re.compile(r"^\d{12}\Z", re.ASCII)
HOSTNAME = re.compile(
    r"^(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z", re.ASCII
)
# botocore's PullThroughCacheRuleRepositoryPrefix: the ecr_account rules and registries.conf's location.
CACHE_PREFIX = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*\Z", re.ASCII
)
CACHE_PREFIX_LENGTH = (2, 30)
PORTS = (1, 65535)

REGISTRY_FORMS = (
    "an ECR registry hostname such as 123456789012.dkr.ecr.us-east-1.amazonaws.com "
    "(also .amazonaws.com.cn, dkr.ecr-fips, the dual-stack dkr-ecr.REGION.on.aws, "
    ".amazonaws.eu) or public.ecr.aws; no scheme, path, port or custom domain"
)
REGION_FORM = "an AWS region name such as us-east-1, eu-central-1 or us-gov-west-1"


def option_name(prefix: str, key: str) -> str:
    """What the user wrote for `key`: the option (`--` + key with dashes) or the variable (prefix + key)."""
    return "--" + key.replace("_", "-") if prefix == "--" else prefix + key


# Auto Scaling group names (CreateAutoScalingGroup): 1 to 255 characters; ':' belongs to the ARN.
AUTOSCALING_GROUP_NAME = re.compile(r"^[^\x00-\x1f:]{1,255}\Z", re.ASCII)


def validate_autoscaling_group(value: object, source: str) -> str:
    if not isinstance(value, str) or not AUTOSCALING_GROUP_NAME.match(value):
        raise InputError(source, value, "an Auto Scaling group name (1 to 255 characters, no ':' or control character)")
    return value


def validate_hop_limit(value: object, source: str) -> int:
    """IMDSv2's response hop limit, as EC2 takes it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise InputError(source, value, "an integer from 1 to 64 (1 keeps job containers from the instance role)")
    return value


def validate_region(value: object, source: str = "region") -> str:
    """Return the region, or raise naming the value and the accepted form: a region of botocore's
    partition table (eu-west-9 has a region's form, and is none)."""
    if not isinstance(value, str) or not REGION.match(value):
        raise InputError(source, value, REGION_FORM)
    known = known_regions()
    if value not in known:
        close = difflib.get_close_matches(value, known, n=1)
        raise InputError(
            source, value, f"a region in botocore's partition table{f' (did you mean {close[0]}?)' if close else ''}: "
            f"{', '.join(known)}; a region newer than this botocore needs a newer botocore"
        )  # fmt: skip
    return value


@cache
def known_regions() -> tuple[str, ...]:
    """Every region of every partition in botocore's table (not the partitions' -global endpoints)."""
    regions = (name for partition in _botocore_partitions()["partitions"] for name in partition.get("regions", {}))
    return tuple(sorted(name for name in regions if REGION.match(name)))


def validate_service_region(value: object, source: str, service: str, partition: str) -> str:
    """A region where `service` exists in `partition`, by botocore's endpoint table (a real region, not one
    that merely looks like one)."""
    regions = _service_regions(service, partition)
    if not isinstance(value, str) or value not in regions:
        raise InputError(source, value, f"a region of the {partition} partition with {service}: {', '.join(regions)}")
    return value


@cache
def _service_regions(service: str, partition: str) -> tuple[str, ...]:
    from botocore.session import Session  # noqa: PLC0415 - slow to import, and most commands never ask

    return tuple(Session().get_available_regions(service, partition_name=partition))


def validate_account_id(value: object, source: str = "account_id") -> str:
    """Accept 12 digits, as a string (a YAML integer would lose leading zeros)."""
    if not isinstance(value, str) or not ACCOUNT_ID.match(value):
        raise InputError(source, value, "an AWS account ID of exactly 12 digits, quoted as a string")
    return value


def validate_absolute_path(value: object, source: str = "path") -> str:
    """Accept an absolute POSIX path without parent references."""
    if not isinstance(value, str) or not value.startswith("/") or "/../" in f"{value}/" or "\0" in value:
        raise InputError(source, value, "an absolute path such as /usr/local/bin, without '..'")
    return value


def validate_registry(value: object, source: str = "registry") -> str:
    """Accept exactly the hostnames the credential helper accepts, as written: a capital or a space
    is refused rather than normalised (Docker looks up credHelpers by the exact name), and the
    region must belong to the domain's partition (cn-north-1 is not on .amazonaws.com)."""
    if not isinstance(value, str):
        raise InputError(source, value, REGISTRY_FORMS)
    if value in ECR_PUBLIC_HOSTS:
        return value
    match = ECR_PRIVATE_HOST.match(value)
    if match is None or not REGION.match(match.group(3)):
        hint = " (in lower case, without spaces)" if value.strip().lower() != value else ""
        raise InputError(source, value, REGISTRY_FORMS + hint)
    region, domain = match.group(3), match.group(4)
    if region not in known_regions():
        validate_region(region, f"{source} {value}: its region")  # names the region and the known ones
    if region_partition(region) not in DOMAIN_PARTITIONS[domain]:
        raise InputError(
            source, value, f"a region of the {'/'.join(DOMAIN_PARTITIONS[domain])} partition on .{domain} "
            f"({region} is in {region_partition(region)})"
        )  # fmt: skip
    return value


def private_registry(value: object, source: str = "registry") -> tuple[str, str, str]:
    """(account, region, domain) of a private ECR registry; ECR Public and anything else refused."""
    match = ECR_PRIVATE_HOST.match(validate_registry(value, source))
    if match is None:
        raise InputError(source, value, "a private ECR registry such as 123456789012.dkr.ecr.us-east-1.amazonaws.com")
    return match.group(1), match.group(3), match.group(4)


@cache
def _partition_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    data = _botocore_partitions()
    return tuple((p["id"], re.compile(p["regionRegex"], re.ASCII)) for p in data["partitions"])


@cache  # one read per process: the patterns and the regions both come from it
def _botocore_partitions() -> dict[str, Any]:
    """botocore's partitions table, read from its package's data directory: importing botocore.loaders
    would cost a mirror run that finds nothing to copy a tenth of its time and 5 MiB. Through botocore's
    Loader when a user's own data path (AWS_DATA_PATH, ~/.aws/models) may override it, or when the file
    is not there as plain JSON."""
    spec = importlib.util.find_spec("botocore")
    custom = os.environ.get("AWS_DATA_PATH") or os.path.isdir(os.path.expanduser("~/.aws/models"))
    if spec is not None and spec.submodule_search_locations and not custom:
        path = os.path.join(next(iter(spec.submodule_search_locations)), "data", "partitions.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as table:
                return dict(json.load(table))
    from botocore.loaders import Loader  # noqa: PLC0415 - slow to import, and most commands never ask

    return dict(Loader().load_data("partitions"))


def load_partitions() -> None:
    """Read botocore's partition table now rather than at the first registry validated: a process
    that forks workers loads it once for them all (the filter ecrkit.ecr.version)."""
    _partition_patterns()
    known_regions()


def region_partition(region: str) -> str:
    """The partition a region is in, by botocore's own table; an unknown region is `aws`, as for botocore."""
    return next((name for name, pattern in _partition_patterns() if pattern.match(region)), "aws")


def validate_positive_number(value: object, source: str) -> float:
    """A finite number above zero: NaN and infinity are not JSON, and would be printed as such."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InputError(source, value, "a finite number above 0")
    return value


SHARD = re.compile(r"([1-9][0-9]{0,5})/([1-9][0-9]{0,5})\Z", re.ASCII)


def validate_shard(value: object, source: str) -> tuple[int, int]:
    """`I/N`: this run's share of the work, the I-th of N (1 <= I <= N), as GitLab CI's
    CI_NODE_INDEX/CI_NODE_TOTAL count."""
    found = SHARD.match(value) if isinstance(value, str) else None
    if not found or int(found.group(1)) > int(found.group(2)):
        raise InputError(source, value, "I/N with whole numbers 1 <= I <= N, e.g. 2/4")
    return int(found.group(1)), int(found.group(2))


def is_port(text: str) -> bool:
    """ASCII digits naming a TCP port, 1 to 65535."""
    return text.isascii() and text.isdigit() and PORTS[0] <= int(text) <= PORTS[1]


def validate_port(value: object, source: str) -> int:
    """A TCP port number, or its digits as a command line gives them."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not is_port(text):
        raise InputError(source, value, f"a port number from {PORTS[0]} to {PORTS[1]}")
    return int(text)


def _host_ok(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(HOSTNAME.match(host))
    return True


def validate_url(value: object, source: str, *, schemes: tuple[str, ...] = ("https", "http"), example: str = "") -> str:
    """A URL parsed, not prefix-matched: one of `schemes`, a host, a valid port, no spaces."""
    accepted = f"an absolute {' or '.join(s + '://' for s in schemes)} URL with a host{example and ', e.g. ' + example}"
    if not isinstance(value, str) or not value.isascii() or not value.isprintable() or " " in value:
        raise InputError(source, value, accepted)
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or PORTS[0] <= parts.port
    except ValueError:  # a port that is not a number, or out of range
        port_ok = False
    if parts.scheme not in schemes or not parts.hostname or not _host_ok(parts.hostname) or not port_ok:
        raise InputError(source, value, accepted)
    return value


def validate_location(value: object, source: str) -> str:
    """A registry as containers/image names it: host[:port], no scheme or path (podman refuses a scheme)."""
    if isinstance(value, str):
        host, colon, port = value.partition(":")
        if HOSTNAME.match(host) and (not colon or is_port(port)):
            return value
    raise InputError(source, value, "a registry host[:port] such as docker.io or quay.io, without a scheme or path")


def validate_cache_prefix(value: object, source: str) -> str:
    """A pull-through cache rule's repository prefix, as ECR takes it."""
    low, high = CACHE_PREFIX_LENGTH
    if not isinstance(value, str) or not CACHE_PREFIX.match(value) or not low <= len(value) <= high:
        raise InputError(
            source, value, f"a repository prefix such as docker-hub or cache/quay ({low} to {high} characters)"
        )
    return value


def registry_region(host: str) -> str | None:
    """The region the helper takes from a hostname (ECR Public always uses us-east-1)."""
    if host in ECR_PUBLIC_HOSTS:
        return "us-east-1"
    match = ECR_PRIVATE_HOST.match(host)
    return match.group(3) if match else None


@dataclass(frozen=True)
class CredentialRule:
    """ecrkit's one rule for which key names the helper, used by every renderer.

    No registry named: `credsStore: ecr-login` (the classic recipe, which needs AWS_REGION
    wherever `list` is called). Registries named: a `credHelpers` entry for each instead, so
    the region comes from each hostname and `docker login` to other registries keeps working.
    `creds_store` may be forced on top of named registries.
    """

    registries: tuple[str, ...]
    creds_store: bool

    @classmethod
    def build(
        cls,
        registries: Iterable[object] = (),
        *,
        include_public: bool = False,
        force_creds_store: bool = False,
        source: str = "registries",
    ) -> CredentialRule:
        if isinstance(registries, str):
            raise InputError(source, registries, "a list of registry hostnames")
        named: list[str] = []
        for index, value in enumerate(registries):
            host = validate_registry(value, f"{source}[{index}]")
            if host not in named:
                named.append(host)
        if include_public and PUBLIC_REGISTRY not in named:
            named.append(PUBLIC_REGISTRY)
        return cls(registries=tuple(named), creds_store=force_creds_store or not named)

    def entries(self) -> dict[str, object]:
        """The keys this rule owns in a Docker config.json (or DOCKER_AUTH_CONFIG)."""
        owned: dict[str, object] = {}
        if self.creds_store:
            owned["credsStore"] = HELPER_NAME
        if self.registries:
            owned["credHelpers"] = {host: HELPER_NAME for host in self.registries}
        return owned

    @property
    def needs_region(self) -> bool:
        """credsStore makes callers use `list`, whose region comes from the environment."""
        return self.creds_store
