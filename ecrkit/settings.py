"""The typed model of what the user asked for, and the validation of every input.

The registry pattern is the helper's own (amazon-ecr-credential-helper, ecr-login/api/client.go):
a hostname it does not accept makes every `get` fail with "credentials not found in native
keychain", so ecrkit refuses such names before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ecrkit.errors import InputError

HELPER_NAME = "ecr-login"
HELPER_BINARY = "docker-credential-ecr-login"

ECR_PRIVATE_HOST = re.compile(
    r"^(\d{12})\.dkr[\.\-]ecr(\-fips)?\.([a-zA-Z0-9][a-zA-Z0-9-_]*)\."
    r"(amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)"
    r"|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$"
)
ECR_PUBLIC_HOSTS = ("public.ecr.aws", "ecr-public.aws.com")
PUBLIC_REGISTRY = ECR_PUBLIC_HOSTS[0]

# us-east-1, us-gov-west-1, cn-northwest-1, eusc-de-east-1, us-isob-east-1, ap-southeast-5
REGION = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-\d{1,2}$")
ACCOUNT_ID = re.compile(r"^\d{12}$")

REGISTRY_FORMS = (
    "an ECR registry hostname such as 123456789012.dkr.ecr.us-east-1.amazonaws.com "
    "(also .amazonaws.com.cn, dkr.ecr-fips, the dual-stack dkr-ecr.REGION.on.aws, "
    ".amazonaws.eu) or public.ecr.aws; no scheme, path, port or custom domain"
)
REGION_FORM = "an AWS region name such as us-east-1, eu-central-1 or us-gov-west-1"


def validate_region(value: object, source: str = "region") -> str:
    """Return the region, or raise naming the value and the accepted form."""
    if not isinstance(value, str) or not REGION.match(value):
        raise InputError(source, value, REGION_FORM)
    return value


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
    """Accept exactly the hostnames the credential helper accepts."""
    if not isinstance(value, str):
        raise InputError(source, value, REGISTRY_FORMS)
    host = value.strip().lower()
    if host in ECR_PUBLIC_HOSTS:
        return host
    match = ECR_PRIVATE_HOST.match(host)
    if match is None or not REGION.match(match.group(3)):
        raise InputError(source, value, REGISTRY_FORMS)
    return host


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
