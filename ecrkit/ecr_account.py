"""The ECR side of an account, declared: repositories (encryption, tag mutability with exclusions,
lifecycle, policy), pull-through cache rules, creation templates, replication, registry scanning,
the registry policy replication into this account needs, and the IAM policies that let each
context pull.

`plan` validates a whole declaration before any API call and turns it into what the API takes.
The Docker Hub secrets are then applied by community.aws.secretsmanager_secret, the IAM policies
by amazon.aws.iam_policy; `sync` makes everything else match through boto3. Repositories are
synced here too, not by community.aws.ecs_ecr: that module knows only MUTABLE and IMMUTABLE (it
would reset the exclusion modes on every run) and cannot create a repository with the AWS-managed
KMS key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ecrkit import lifecycle
from ecrkit.errors import InputError
from ecrkit.renderers import iam_policy
from ecrkit.renderers.iam_policy import PULL, REPOSITORY
from ecrkit.settings import (
    region_partition,
    validate_account_id,
    validate_cache_prefix,
    validate_region,
    validate_service_region,
)

# Upstream registries a pull-through rule can name, with the URL ECR expects for each.
UPSTREAMS = {
    "ecr-public": "public.ecr.aws",
    "docker-hub": "registry-1.docker.io",
    "quay": "quay.io",
    "k8s": "registry.k8s.io",
    "github-container-registry": "ghcr.io",
    "gitlab-container-registry": "registry.gitlab.com",
    "chainguard": "cgr.dev",
    "azure-container-registry": "",  # <name>.azurecr.io: upstream_url is needed
    "ecr": "",  # <account>.dkr.ecr.<region>.amazonaws.com: upstream_url is needed
}
AUTHENTICATED = ("docker-hub", "github-container-registry", "gitlab-container-registry", "azure-container-registry")
SECRET_PREFIX = "ecr-pullthroughcache/"
ORGANIZATION_ID = re.compile(r"^o-[a-z0-9]{10,32}\Z", re.ASCII)
APPLIED_FOR = ("PULL_THROUGH_CACHE", "CREATE_ON_PUSH", "REPLICATION")
TAG_MUTABILITY = ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
WITH_EXCLUSION = ("IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
EXCLUSION_FILTER = re.compile(r"^[0-9a-zA-Z._*-]{1,128}\Z", re.ASCII)  # botocore's, WILDCARD
EXCLUSIONS = (1, 5)
ENCRYPTION_TYPES = ("AES256", "KMS", "KMS_DSSE")
KMS_KEY_ARN = re.compile(r"^arn:aws[a-z0-9-]*:kms:[a-z0-9-]+:\d{12}:key/[a-z0-9-]+\Z", re.ASCII)
KMS_ALIAS = re.compile(r"^(?:arn:aws[a-z0-9-]*:kms:[a-z0-9-]+:\d{12}:)?alias/[a-zA-Z0-9/_-]{1,250}\Z", re.ASCII)
AWS_MANAGED_KEY = "alias/aws/ecr"
# Replication (ECR user guide, "Private image replication"): rules, unique destinations, filters per rule.
REPLICATION_LIMITS = {"rules": 10, "destinations": 25, "filters": 100}
REPLICATION_FILTER = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*\Z", re.ASCII)
REPLICATION_FILTER_LENGTH = (2, 256)
REPLICATION_SID = "EcrkitReplication"
REPLICATION_ACTIONS = ("ecr:CreateRepository", "ecr:ReplicateImage")
SCAN_TYPES = ("BASIC", "ENHANCED")
SCAN_FREQUENCIES = {"BASIC": ("SCAN_ON_PUSH", "MANUAL"), "ENHANCED": ("SCAN_ON_PUSH", "CONTINUOUS_SCAN")}
SCAN_FILTER = re.compile(r"^[a-z0-9*](?:[._\-/a-z0-9*]?[a-z0-9*]+)*\Z", re.ASCII)
SCAN_LIMITS = {"rules": 2, "filters": 100}
# IAM's names: inline policy names up to 128 characters, role names up to 64.
IAM_NAME = re.compile(r"^[\w+=,.@-]+\Z", re.ASCII)
# A role ECR assumes (a pull-through rule's upstream ECR role, a creation template's repository role).
IAM_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}\Z", re.ASCII)


def organization_read_policy(organization_id: str) -> str:
    """A repository policy letting every principal of the organisation pull, and nothing else."""
    statement = {
        "Sid": "OrganizationRead",
        "Effect": "Allow",
        "Principal": "*",
        "Action": list(PULL),
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": organization_id}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, sort_keys=True)


def plan(declaration: Mapping[str, Any]) -> dict[str, Any]:
    """Validate everything, then return {repositories, secrets, pull_through_rules, creation_templates,
    iam_policies, replication, scanning, registry_policy_statement}.

    `secrets` name the Secrets Manager secrets to write and the rule whose credentials they hold.
    `replication_sources` are the accounts that replicate into this one (ecrkit_replication_sources).
    """
    region = validate_region(declaration.get("region"), "region")
    account = declaration.get("account_id") or ""
    if account:
        validate_account_id(account, "account_id")
    endpoint = declaration.get("endpoint_url") or ""
    if endpoint and not re.match(r"^https?://[^/\s]+/?$", str(endpoint)):
        raise InputError("endpoint_url", endpoint, "an http(s) URL of a host, such as https://127.0.0.1:4566, or empty")
    organization = declaration.get("organization_id") or ""
    if organization and not ORGANIZATION_ID.match(str(organization)):
        raise InputError("organization_id", organization, "an AWS Organizations ID such as o-a1b2c3d4e5")
    read_policy = organization_read_policy(organization) if organization else None
    repositories = [
        _repository(entry, f"repositories[{index}]", read_policy)
        for index, entry in enumerate(_list(declaration, "repositories"))
    ]
    rules = [_rule(entry, index) for index, entry in enumerate(_list(declaration, "pull_through_rules"))]
    templates = [
        _template(entry, f"creation_templates[{index}]", read_policy)
        for index, entry in enumerate(_list(declaration, "creation_templates"))
    ]
    policies = [
        _iam_policy(entry, f"iam_policies[{index}]") for index, entry in enumerate(_list(declaration, "iam_policies"))
    ]
    replication = replication_rules(declaration.get("replication"), "replication", region, account)
    scanning = _scanning(declaration.get("scanning"), "scanning")
    sources = declaration.get("replication_sources") or []
    statement = None
    if sources:
        if not account:
            raise InputError("account_id", None, "this account's 12-digit ID: other accounts replicate into it")
        statement = replication_statement(sources, region, account, "replication_sources")
    declared = {
        ("repositories", "name"): [item["name"] for item in repositories],
        ("pull_through_rules", "prefix"): [item["ecrRepositoryPrefix"] for item in rules],
        ("creation_templates", "prefix"): [item["prefix"] for item in templates],
        ("iam_policies", "role/name"): [f"{item['role']}/{item['name']}" for item in policies],
    }
    for (kind, key), names in declared.items():
        for name in names:
            if names.count(name) > 1:
                raise InputError(kind, name, f"each {key} declared once")
    secrets = [rule.pop("secret") for rule in rules if "secret" in rule]
    return {
        "repositories": repositories,
        "secrets": secrets,
        "pull_through_rules": rules,
        "creation_templates": templates,
        "iam_policies": policies,
        "replication": replication,
        "scanning": scanning,
        "registry_policy_statement": statement,
    }


def _repository(entry: object, source: str, read_policy: str | None) -> dict[str, Any]:
    allowed = {"name", "lifecycle", "policy", "scan_on_push", "tag_mutability", "exclusions", "encryption"}
    options = _options(entry, source, allowed)
    name = options.get("name")
    if not isinstance(name, str) or not REPOSITORY.match(name) or name.endswith("/*") or not 2 <= len(name) <= 256:
        raise InputError(f"{source}.name", name, "a repository name such as team/app (lowercase, 2 to 256 characters)")
    policy = _policy(options, source, read_policy)
    return {
        "name": name,
        "lifecycle_policy": lifecycle.policy(options.get("lifecycle"), f"{source}.lifecycle"),
        "policy": policy,
        "scan_on_push": _boolean(options.get("scan_on_push", False), f"{source}.scan_on_push"),
        **_mutability(options, source),
        "encryption": _encryption(options, source, shared=policy is not None and policy == read_policy),
    }


def _mutability(options: Mapping[str, Any], source: str) -> dict[str, Any]:
    """imageTagMutability, and its exclusion filters exactly when the mode has them."""
    mode = _choice(options.get("tag_mutability", "MUTABLE"), f"{source}.tag_mutability", TAG_MUTABILITY)
    exclusions = options.get("exclusions")
    if mode not in WITH_EXCLUSION:
        if exclusions:
            raise InputError(
                f"{source}.exclusions",
                exclusions,
                f"no exclusions with {mode}: they need one of {', '.join(WITH_EXCLUSION)}",
            )
        return {"image_tag_mutability": mode, "exclusions": []}
    low, high = EXCLUSIONS
    if (
        not isinstance(exclusions, list)
        or not low <= len(exclusions) <= high
        or not all(isinstance(item, str) and EXCLUSION_FILTER.match(item) for item in exclusions)
    ):
        raise InputError(
            f"{source}.exclusions",
            exclusions,
            f"{low} to {high} tag wildcard filters such as latest or dev-* "
            f"(letters, digits, ._-*, up to 128 characters), needed by {mode}",
        )
    return {
        "image_tag_mutability": mode,
        "exclusions": [{"filterType": "WILDCARD", "filter": item} for item in exclusions],
    }


def _encryption(options: Mapping[str, Any], source: str, *, shared: bool, template: bool = False) -> dict[str, Any]:
    """encryptionConfiguration as ECR takes it. The AWS-managed key (KMS without a key of its own) cannot be
    used by other accounts, so a repository the organisation read policy shares must not have it."""
    value = options.get("encryption")
    if value is None:
        return {"encryptionType": "AES256"}
    where = f"{source}.encryption"
    encryption = _options(value, where, {"type", "kms_key"})
    kind = _choice(encryption.get("type"), f"{where}.type", ENCRYPTION_TYPES)
    key = encryption.get("kms_key") or ""
    if kind == "AES256":
        if key:
            raise InputError(f"{where}.kms_key", key, "no kms_key with type AES256 (a KMS type takes one)")
        return {"encryptionType": kind}
    pattern = KMS_KEY_ARN if template else None
    if key and not (KMS_KEY_ARN.match(str(key)) or (pattern is None and KMS_ALIAS.match(str(key)))):
        forms = "a KMS key ARN" if template else "a KMS key ARN or an alias such as alias/ecr"
        raise InputError(f"{where}.kms_key", key, f"{forms} (or none: the AWS-managed key alias/aws/ecr)")
    if shared and key in ("", AWS_MANAGED_KEY):
        raise InputError(
            f"{where}.kms_key",
            key or None,
            f"a customer-managed KMS key whose key policy lets the organisation decrypt, or encryption type AES256: "
            f"{source} is shared by organization_id's read policy, and a repository encrypted with the AWS-managed "
            f"key ({AWS_MANAGED_KEY}) cannot be pulled from other accounts",
        )
    return {"encryptionType": kind, **({"kmsKey": str(key)} if key else {})}


def replication_rules(value: object, source: str, region: str, account: str = "") -> dict[str, Any]:
    """The registry's replication configuration: destinations real regions of this partition, within ECR's
    limits, prefix filters as ECR takes them; a destination may not be this registry itself."""
    if value is None:
        value = []
    if not isinstance(value, list) or len(value) > REPLICATION_LIMITS["rules"]:
        raise InputError(
            source,
            value,
            f"a list of at most {REPLICATION_LIMITS['rules']} rules "
            "{destinations: [{region, registry_id}], filters: [{prefix}]}",
        )
    partition = region_partition(region)
    rules, unique = [], set()
    for index, entry in enumerate(value):
        where = f"{source}[{index}]"
        rule = _options(entry, where, {"destinations", "filters"})
        destinations = rule.get("destinations")
        if not isinstance(destinations, list) or not destinations:
            raise InputError(f"{where}.destinations", destinations, "a non-empty list of {region, registry_id}")
        wanted = []
        for number, item in enumerate(destinations):
            place = f"{where}.destinations[{number}]"
            destination = _options(item, place, {"region", "registry_id"})
            target = {
                "region": validate_service_region(destination.get("region"), f"{place}.region", "ecr", partition),
                "registryId": validate_account_id(destination.get("registry_id"), f"{place}.registry_id"),
            }
            if (target["region"], target["registryId"]) == (region, account):
                raise InputError(place, destination, "a registry other than this one (account_id in region)")
            if target in wanted:
                raise InputError(place, destination, "each destination once in a rule")
            wanted.append(target)
            unique.add((target["region"], target["registryId"]))
        filters = rule.get("filters") or []
        if not isinstance(filters, list) or len(filters) > REPLICATION_LIMITS["filters"]:
            raise InputError(
                f"{where}.filters", filters, f"a list of at most {REPLICATION_LIMITS['filters']} {{prefix}}"
            )
        prefixes = []
        for number, item in enumerate(filters):
            prefix = _options(item, f"{where}.filters[{number}]", {"prefix"}).get("prefix")
            low, high = REPLICATION_FILTER_LENGTH
            if not isinstance(prefix, str) or not REPLICATION_FILTER.match(prefix) or not low <= len(prefix) <= high:
                raise InputError(
                    f"{where}.filters[{number}].prefix",
                    prefix,
                    f"a repository name prefix such as team/ or prod ({low} to {high} characters, lowercase)",
                )
            prefixes.append({"filter": prefix, "filterType": "PREFIX_MATCH"})
        rules.append({"destinations": wanted, **({"repositoryFilters": prefixes} if prefixes else {})})
    if len(unique) > REPLICATION_LIMITS["destinations"]:
        raise InputError(
            source,
            f"{len(unique)} destinations",
            f"at most {REPLICATION_LIMITS['destinations']} unique destinations across all rules",
        )
    return {"rules": rules}


def replication_statement(sources: object, region: str, account: str, source: str) -> dict[str, Any]:
    """The registry policy statement a destination needs so that `sources` (account IDs) can replicate into it."""
    if not isinstance(sources, list) or not sources:
        raise InputError(source, sources, "a non-empty list of 12-digit account IDs")
    accounts = sorted({validate_account_id(item, f"{source}[{index}]") for index, item in enumerate(sources)})
    partition = region_partition(region)
    return {
        "Sid": REPLICATION_SID,
        "Effect": "Allow",
        "Principal": {"AWS": [f"arn:{partition}:iam::{item}:root" for item in accounts]},
        "Action": list(REPLICATION_ACTIONS),
        "Resource": f"arn:{partition}:ecr:{region}:{account}:repository/*",
    }


def replication_policy(sources: object, region: str, account: str, source: str = "--source-account") -> dict[str, Any]:
    """The whole registry permissions policy of a destination (`ecrkit render replication-policy`)."""
    return {"Version": "2012-10-17", "Statement": [replication_statement(sources, region, account, source)]}


def replication_sources(peers: object, account: str, region: str) -> list[str]:
    """The accounts among `peers` ([{host, account_id, region, replication}], the inventory's ecr_accounts)
    whose replication names this account and region as a destination."""
    if not account or not isinstance(peers, list):
        return []
    found = set()
    for peer in peers:
        peer_account, peer_region = peer.get("account_id") or "", peer.get("region") or ""
        if not peer_account or peer_account == account:
            continue  # replication inside one account needs no registry policy
        source = f"{peer.get('host')}: ecr_account_replication"
        rules = replication_rules(peer.get("replication"), source, validate_region(peer_region, source), peer_account)
        if any(d == {"region": region, "registryId": account} for rule in rules["rules"] for d in rule["destinations"]):
            found.add(peer_account)
    return sorted(found)


def _scanning(value: object, source: str) -> dict[str, Any] | None:
    """The registry scanning configuration, or None to leave it as it is."""
    if value is None or value == {}:
        return None
    options = _options(value, source, {"type", "rules"})
    kind = _choice(options.get("type"), f"{source}.type", SCAN_TYPES)
    rules = options.get("rules") or []
    if not isinstance(rules, list) or len(rules) > SCAN_LIMITS["rules"]:
        raise InputError(f"{source}.rules", rules, f"a list of at most {SCAN_LIMITS['rules']} {{frequency, filters}}")
    wanted = []
    for index, entry in enumerate(rules):
        where = f"{source}.rules[{index}]"
        rule = _options(entry, where, {"frequency", "filters"})
        frequency = _choice(rule.get("frequency"), f"{where}.frequency", SCAN_FREQUENCIES[kind])
        filters = rule.get("filters")
        if (
            not isinstance(filters, list)
            or not 1 <= len(filters) <= SCAN_LIMITS["filters"]
            or not all(isinstance(item, str) and SCAN_FILTER.match(item) and len(item) <= 255 for item in filters)
        ):
            raise InputError(
                f"{where}.filters",
                filters,
                f"1 to {SCAN_LIMITS['filters']} repository wildcard filters such as "
                "team/* or * (lowercase, digits, ._-/*)",
            )
        wanted.append(
            {
                "scanFrequency": frequency,
                "repositoryFilters": [{"filter": f, "filterType": "WILDCARD"} for f in filters],
            }
        )
    return {"scanType": kind, "rules": wanted}


def _rule(entry: object, index: int) -> dict[str, Any]:
    source = f"pull_through_rules[{index}]"
    allowed = {"prefix", "upstream", "upstream_url", "upstream_repository_prefix", "credentials", "credential_secret",
               "custom_role_arn"}  # fmt: skip
    options = _options(entry, source, allowed)
    prefix = validate_cache_prefix(options.get("prefix"), f"{source}.prefix")
    upstream = _choice(options.get("upstream"), f"{source}.upstream", tuple(UPSTREAMS))
    url = options.get("upstream_url") or UPSTREAMS[upstream]
    if not isinstance(url, str) or not re.match(r"^[a-z0-9.-]+\.[a-z]{2,}$", url):
        raise InputError(f"{source}.upstream_url", url or None, f"the registry hostname (needed for {upstream})")
    rule: dict[str, Any] = {"ecrRepositoryPrefix": prefix, "upstreamRegistry": upstream, "upstreamRegistryUrl": url}
    if options.get("upstream_repository_prefix"):
        rule["upstreamRepositoryPrefix"] = str(options["upstream_repository_prefix"])
    if options.get("custom_role_arn") is not None:
        rule["customRoleArn"] = _role_arn(options["custom_role_arn"], f"{source}.custom_role_arn")
    secret_name = options.get("credential_secret") or f"{SECRET_PREFIX}{prefix}"
    if not isinstance(secret_name, str) or not secret_name.startswith(SECRET_PREFIX) or secret_name == SECRET_PREFIX:
        raise InputError(
            f"{source}.credential_secret", secret_name, f"a Secrets Manager name starting with {SECRET_PREFIX}"
        )
    credentials = options.get("credentials")
    if credentials is not None:
        credentials = _options(credentials, f"{source}.credentials", {"username", "access_token"})
        if not all(isinstance(credentials.get(key), str) and credentials[key] for key in ("username", "access_token")):
            # the token itself is never echoed
            raise InputError(f"{source}.credentials", sorted(credentials), "username and access_token, both non-empty")
        rule["secret"] = {"name": secret_name, "rule": index}  # the plan holds no token: the role reads it there
    if upstream in AUTHENTICATED and credentials is None and "credential_secret" not in options:
        raise InputError(f"{source}.credentials", None, f"credentials or credential_secret: {upstream} needs them")
    if credentials is not None or "credential_secret" in options:
        rule["credentialSecret"] = secret_name  # sync resolves the name to the secret's ARN
    return rule


def _iam_policy(entry: object, source: str) -> dict[str, Any]:
    """An inline policy for an IAM role (an instance profile's, a permission set's), least privilege for
    its context; the document is `ecrkit render iam-policy`'s."""
    options = _options(entry, source, {"role", "for", "name", "registry", "repositories", "autoscaling_group", "state"})
    state = _choice(options.get("state", "present"), f"{source}.state", ("present", "absent"))
    context = _choice(options.get("for"), f"{source}.for", tuple(iam_policy.CONTEXTS))
    role = _iam_name(options.get("role"), f"{source}.role", 64)
    name = _iam_name(options.get("name") or f"ecrkit-{context}", f"{source}.name", 128)
    repositories = options.get("repositories") or []
    if not isinstance(repositories, list):
        raise InputError(f"{source}.repositories", repositories, "a list of repository names")
    document = iam_policy.render(
        context, str(options.get("registry") or ""), tuple(repositories), source, options.get("autoscaling_group")
    )
    return {"role": role, "name": name, "document": document, "state": state}


def _iam_name(value: object, source: str, longest: int) -> str:
    if not isinstance(value, str) or not IAM_NAME.match(value) or len(value) > longest:
        raise InputError(source, value, f"an IAM name: letters, digits and +=,.@_- (at most {longest} characters)")
    return value


def _template(entry: object, source: str, read_policy: str | None) -> dict[str, Any]:
    allowed = {
        "prefix",
        "applied_for",
        "description",
        "lifecycle",
        "policy",
        "tag_mutability",
        "exclusions",
        "encryption",
        "resource_tags",
        "custom_role_arn",
    }
    options = _options(entry, source, allowed)
    role = options.get("custom_role_arn")
    if role is not None:
        role = _role_arn(role, f"{source}.custom_role_arn")
    prefix = options.get("prefix")
    if prefix != "ROOT":
        prefix = validate_cache_prefix(prefix, f"{source}.prefix")
    applied = options.get("applied_for", ["PULL_THROUGH_CACHE"])
    if not isinstance(applied, list) or not applied or any(item not in APPLIED_FOR for item in applied):
        raise InputError(f"{source}.applied_for", applied, f"a non-empty list of {', '.join(APPLIED_FOR)}")
    mutability = _mutability(options, source)
    policy = _policy(options, source, read_policy)
    template: dict[str, Any] = {
        "prefix": prefix,
        "appliedFor": sorted(set(applied)),
        "description": str(options.get("description") or f"ecrkit: repositories created under {prefix}"),
        "imageTagMutability": mutability["image_tag_mutability"],
        "encryptionConfiguration": _encryption(
            options, source, shared=policy is not None and policy == read_policy, template=True
        ),
    }
    optional = {
        "imageTagMutabilityExclusionFilters": mutability["exclusions"],
        "lifecyclePolicy": lifecycle.policy(options.get("lifecycle"), f"{source}.lifecycle"),
        "repositoryPolicy": policy,
        "customRoleArn": role,
        "resourceTags": [
            {"Key": str(k), "Value": str(v)} for k, v in _tags(options.get("resource_tags"), source).items()
        ],
    }
    template.update({key: value for key, value in optional.items() if value})
    # ECR creates the repository with the template's own role when it tags it or encrypts it with a
    # customer key (ECR user guide, "Creating a repository creation template"); without one, AWS refuses
    # the repository at the first pull or push, long after this run succeeded.
    needs_role = [what for what, present in (("resource_tags", template.get("resourceTags")),
                  ("encryption.kms_key", template["encryptionConfiguration"].get("kmsKey"))) if present]  # fmt: skip
    if needs_role and not role:
        raise InputError(
            f"{source}.custom_role_arn",
            None,
            f"the ARN of a role ECR assumes (trusting ecr.amazonaws.com, allowed ecr:CreateRepository, "
            f"ecr:ReplicateImage, ecr:TagResource and the key's kms:CreateGrant, kms:RetireGrant, kms:DescribeKey): "
            f"{source} sets {' and '.join(needs_role)}",
        )
    return template


def _role_arn(value: object, source: str) -> str:
    if not isinstance(value, str) or not IAM_ROLE_ARN.match(value):
        raise InputError(source, value, "an IAM role ARN such as arn:aws:iam::123456789012:role/ecr-templates")
    return value


def _policy(options: Mapping[str, Any], source: str, read_policy: str | None) -> str | None:
    """An explicit policy document wins; otherwise the organisation read policy, if any."""
    if options.get("policy") is None:
        return read_policy
    if not isinstance(options["policy"], Mapping) or "Statement" not in options["policy"]:
        raise InputError(f"{source}.policy", options["policy"], "a policy document with a Statement")
    return json.dumps(options["policy"], sort_keys=True)


def _tags(value: object, source: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{source}.resource_tags", value, "a mapping of tag names to values")
    return value


def _options(entry: object, source: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise InputError(source, entry, f"a mapping with keys among {', '.join(sorted(allowed))}")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise InputError(f"{source}.{unknown[0]}", entry[unknown[0]], f"a key among {', '.join(sorted(allowed))}")
    return dict(entry)


def _list(declaration: Mapping[str, Any], key: str) -> list[Any]:
    value = declaration.get(key) or []
    if not isinstance(value, list):
        raise InputError(key, value, "a list")
    return value


def _choice(value: object, source: str, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise InputError(source, value, f"one of {', '.join(accepted)}")
    return str(value)


def _boolean(value: object, source: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(source, value, "true or false")
    return value


# -- making the registry-level settings match ----------------------------------------------


@dataclass(frozen=True)
class Kind:
    """How one kind of registry setting is read, compared and written through the ECR API."""

    name: str
    key: str
    listing: Callable[[Any], list[dict[str, Any]]]
    immutable: tuple[str, ...]  # changing one of these means delete and create
    create: str
    update: str
    delete: str
    delete_key: str
    updatable: tuple[str, ...] = field(default=())


def _pages(client: Any, operation: str, key: str) -> list[dict[str, Any]]:
    return [item for page in client.get_paginator(operation).paginate() for item in page[key]]


RULES = Kind(
    name="pull-through cache rule",
    key="ecrRepositoryPrefix",
    listing=lambda client: _pages(client, "describe_pull_through_cache_rules", "pullThroughCacheRules"),
    immutable=("upstreamRegistryUrl", "upstreamRegistry", "upstreamRepositoryPrefix"),
    updatable=("credentialArn", "customRoleArn"),
    create="create_pull_through_cache_rule",
    update="update_pull_through_cache_rule",
    delete="delete_pull_through_cache_rule",
    delete_key="ecrRepositoryPrefix",
)
TEMPLATES = Kind(
    name="repository creation template",
    key="prefix",
    listing=lambda client: _pages(client, "describe_repository_creation_templates", "repositoryCreationTemplates"),
    immutable=(),
    updatable=(
        "appliedFor",
        "description",
        "imageTagMutability",
        "imageTagMutabilityExclusionFilters",
        "encryptionConfiguration",
        "lifecyclePolicy",
        "repositoryPolicy",
        "customRoleArn",
        "resourceTags",
    ),
    create="create_repository_creation_template",
    update="update_repository_creation_template",
    delete="delete_repository_creation_template",
    delete_key="prefix",
)


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: str  # create, update, replace or delete
    before: dict[str, Any]
    after: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.action} {self.kind} {self.name}"


def module_result(changes: list[Change], drift: list[str]) -> dict[str, Any]:
    """What a module that declares AWS resources returns (ecrkit.ecr.ecr_registry, autoscaling_group):
    each change, the drift it reports, and a diff of every change's before and after."""

    def text(side: str) -> str:
        return "".join(f"{change}: {json.dumps(getattr(change, side), sort_keys=True)}\n" for change in changes)

    return {
        "changed": bool(changes),
        "changes": [str(change) for change in changes],
        "drift": drift,
        "diff": {"before": text("before"), "after": text("after")},
    }


def sync(
    ecr: Any, secrets: Any, planned: Mapping[str, Any], *, purge: bool, check: bool
) -> tuple[list[Change], list[str]]:
    """Make the account match `planned` (plan's output); in check mode only say what would change.
    Returns the changes, and the drifts ECR cannot change in place (encryption), which are reported only."""
    resolved = [_with_credential_arn(secrets, rule) for rule in planned.get("pull_through_rules", [])]
    changes = _sync(ecr, RULES, resolved, purge, check)
    changes += _sync(ecr, TEMPLATES, planned.get("creation_templates", []), purge, check)
    repository_changes, drift = _sync_repositories(ecr, planned.get("repositories", []), purge, check)
    changes += repository_changes
    changes += _sync_replication(ecr, planned.get("replication") or {"rules": []}, purge, check)
    changes += _sync_scanning(ecr, planned.get("scanning"), check)
    changes += _sync_registry_policy(ecr, planned.get("registry_policy_statement"), check)
    return changes, drift


# -- repositories ------------------------------------------------------------------------------


def _repository_state(ecr: Any, repository: Mapping[str, Any]) -> dict[str, Any]:
    name = repository["repositoryName"]
    state: dict[str, Any] = {
        "image_tag_mutability": repository.get("imageTagMutability", "MUTABLE"),
        "exclusions": repository.get("imageTagMutabilityExclusionFilters") or [],
        "scan_on_push": repository.get("imageScanningConfiguration", {}).get("scanOnPush", False),
        "encryption": repository.get("encryptionConfiguration", {"encryptionType": "AES256"}),
    }
    try:
        state["lifecycle_policy"] = ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    except ecr.exceptions.LifecyclePolicyNotFoundException:
        state["lifecycle_policy"] = None
    try:
        state["policy"] = ecr.get_repository_policy(repositoryName=name)["policyText"]
    except ecr.exceptions.RepositoryPolicyNotFoundException:
        state["policy"] = None
    return state


def _described(ecr: Any, name: str) -> dict[str, Any] | None:
    """One declared repository, asked for by name: a policy narrowed to the declared repositories (such
    as `ecrkit render iam-policy --for admin --repository team/*`) grants DescribeRepositories on their
    ARNs, and AWS evaluates a call that names no repository against repository/*, which it denies."""
    try:
        return dict(ecr.describe_repositories(repositoryNames=[name])["repositories"][0])
    except ecr.exceptions.RepositoryNotFoundException:
        return None


def _encryption_drift(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a repository's encryption differs from the declared one. A key named by alias is compared by type
    alone (ECR records the key's ARN); the AWS-managed key is whatever ECR recorded."""
    if current.get("encryptionType") != wanted["encryptionType"]:
        return True
    key = wanted.get("kmsKey", "")
    return bool(KMS_KEY_ARN.match(key)) and current.get("kmsKey") != key


def _sync_repositories(
    ecr: Any, wanted: list[dict[str, Any]], purge: bool, check: bool
) -> tuple[list[Change], list[str]]:
    changes, drift = [], []
    for item in wanted:
        name = item["name"]
        after = {key: item[key] for key in REPOSITORY_FIELDS}
        existing = _described(ecr, name)
        if existing is None:
            changes.append(Change("repository", name, "create", {}, {**after, "encryption": item["encryption"]}))
            if not check:
                _create_repository(ecr, item)
            continue
        current = _repository_state(ecr, existing)
        if _encryption_drift(current["encryption"], item["encryption"]):
            drift.append(
                f"repository {name}: encrypted with {json.dumps(current['encryption'], sort_keys=True)}, declared "
                f"{json.dumps(item['encryption'], sort_keys=True)}; ECR sets encryption at creation only, so ecrkit "
                "leaves it (to change it, create a new repository and copy the images)"
            )
        differs = [
            key
            for key in REPOSITORY_FIELDS
            if not _same(current[key], after[key]) and (after[key] is not None or purge)
        ]
        if differs:
            before = {key: current[key] for key in differs}
            changes.append(Change("repository", name, "update", before, {key: after[key] for key in differs}))
            if not check:
                _update_repository(ecr, item, differs)
    return changes, drift


REPOSITORY_FIELDS = ("image_tag_mutability", "exclusions", "scan_on_push", "lifecycle_policy", "policy")


def _mutability_arguments(item: Mapping[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {"imageTagMutability": item["image_tag_mutability"]}
    if item["exclusions"]:
        arguments["imageTagMutabilityExclusionFilters"] = item["exclusions"]
    return arguments


def _create_repository(ecr: Any, item: Mapping[str, Any]) -> None:
    ecr.create_repository(
        repositoryName=item["name"],
        encryptionConfiguration=item["encryption"],
        imageScanningConfiguration={"scanOnPush": item["scan_on_push"]},
        **_mutability_arguments(item),
    )
    _update_repository(ecr, item, ["lifecycle_policy", "policy"])


def _update_repository(ecr: Any, item: Mapping[str, Any], fields: list[str]) -> None:
    name = item["name"]
    if "image_tag_mutability" in fields or "exclusions" in fields:
        ecr.put_image_tag_mutability(repositoryName=name, **_mutability_arguments(item))
    if "scan_on_push" in fields:
        ecr.put_image_scanning_configuration(
            repositoryName=name, imageScanningConfiguration={"scanOnPush": item["scan_on_push"]}
        )
    if "lifecycle_policy" in fields:
        if item["lifecycle_policy"]:
            ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=item["lifecycle_policy"])
        else:
            _ignore_missing(ecr, ecr.delete_lifecycle_policy, "LifecyclePolicyNotFoundException", repositoryName=name)
    if "policy" in fields:
        if item["policy"]:
            ecr.set_repository_policy(repositoryName=name, policyText=item["policy"])
        else:
            _ignore_missing(ecr, ecr.delete_repository_policy, "RepositoryPolicyNotFoundException", repositoryName=name)


def _ignore_missing(ecr: Any, call: Callable[..., Any], missing: str, **arguments: Any) -> None:
    try:
        call(**arguments)
    except getattr(ecr.exceptions, missing):
        pass


# -- registry-level settings: replication, scanning, the registry policy -------------------------


def _sync_replication(ecr: Any, wanted: dict[str, Any], purge: bool, check: bool) -> list[Change]:
    current = ecr.describe_registry().get("replicationConfiguration") or {"rules": []}
    current = {"rules": current.get("rules", [])}
    if _same_rules(current["rules"], wanted["rules"]) or (not wanted["rules"] and not purge):
        return []
    action = "update" if current["rules"] else "create"
    if not wanted["rules"]:
        action = "delete"
    if not check:
        ecr.put_replication_configuration(replicationConfiguration=wanted)
    return [Change("replication configuration", "registry", action, current, wanted)]


def _same_rules(current: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    """Replication rules compared as ECR keeps them: in order, destinations and filters as sets."""

    def normal(rules: list[dict[str, Any]]) -> list[Any]:
        return [
            (
                sorted(map(json.dumps, r.get("destinations", []))),
                sorted(map(json.dumps, r.get("repositoryFilters", []))),
            )
            for r in rules
        ]

    return normal(current) == normal(wanted)


def _sync_scanning(ecr: Any, wanted: dict[str, Any] | None, check: bool) -> list[Change]:
    if wanted is None:
        return []
    found = ecr.get_registry_scanning_configuration().get("scanningConfiguration") or {}
    current = {"scanType": found.get("scanType", "BASIC"), "rules": found.get("rules") or []}
    same_rules = sorted(map(_canonical, current["rules"])) == sorted(map(_canonical, wanted["rules"]))
    if current["scanType"] == wanted["scanType"] and same_rules:
        return []
    if not check:
        ecr.put_registry_scanning_configuration(**wanted)
    return [Change("registry scanning configuration", "registry", "update", current, wanted)]


def _canonical(rule: Mapping[str, Any]) -> str:
    filters = sorted(map(json.dumps, rule.get("repositoryFilters", [])))
    return json.dumps([rule.get("scanFrequency"), filters])


def _sync_registry_policy(ecr: Any, statement: dict[str, Any] | None, check: bool) -> list[Change]:
    """Put, update or remove ecrkit's own statement (Sid EcrkitReplication) in the registry policy; the
    policy's other statements stay."""
    try:
        current = json.loads(ecr.get_registry_policy()["policyText"])
    except ecr.exceptions.RegistryPolicyNotFoundException:
        current = None
    statements = list((current or {}).get("Statement", []))
    ours = next((item for item in statements if item.get("Sid") == REPLICATION_SID), None)
    if _same(json.dumps(ours), json.dumps(statement)) or (ours is None and statement is None):
        return []
    others = [item for item in statements if item.get("Sid") != REPLICATION_SID]
    wanted = {"Version": "2012-10-17", "Statement": others + ([statement] if statement else [])}
    action = "delete" if statement is None else ("update" if ours else "create")
    if not check:
        if wanted["Statement"]:
            ecr.put_registry_policy(policyText=json.dumps(wanted, sort_keys=True))
        else:
            ecr.delete_registry_policy()
    return [Change("registry policy statement", REPLICATION_SID, action, ours or {}, statement or {})]


def _with_credential_arn(secrets: Any, rule: dict[str, Any]) -> dict[str, Any]:
    rule = dict(rule)
    name = rule.pop("credentialSecret", None)
    if name:
        try:
            rule["credentialArn"] = secrets.describe_secret(SecretId=name)["ARN"]
        except secrets.exceptions.ResourceNotFoundException:
            rule["credentialArn"] = f"(the ARN of {name}, once created)"  # only reached in check mode
    return rule


def _sync(ecr: Any, kind: Kind, wanted: list[dict[str, Any]], purge: bool, check: bool) -> list[Change]:
    current = {item[kind.key]: item for item in kind.listing(ecr)}
    fields = (*kind.immutable, *kind.updatable)
    changes = []
    for item in wanted:
        name = item[kind.key]
        before = {key: current[name][key] for key in fields if key in current.get(name, {})}
        after = {key: item[key] for key in fields if key in item}
        differs = [key for key in after if not _same(before.get(key), after[key])]
        if name not in current:
            changes.append(Change(kind.name, name, "create", {}, after))
        elif any(key in kind.immutable for key in differs):
            changes.append(Change(kind.name, name, "replace", before, after))
        elif differs:
            changes.append(Change(kind.name, name, "update", before, after))
    if purge:
        declared = {item[kind.key] for item in wanted}
        changes += [Change(kind.name, name, "delete", {k: v for k, v in item.items() if k in fields}, {})
                    for name, item in sorted(current.items()) if name not in declared]  # fmt: skip
    if not check:
        by_name = {item[kind.key]: item for item in wanted}
        for change in changes:
            _apply(ecr, kind, change, by_name.get(change.name, {}))
    return changes


def _apply(ecr: Any, kind: Kind, change: Change, item: dict[str, Any]) -> None:
    if change.action in ("delete", "replace"):
        getattr(ecr, kind.delete)(**{kind.delete_key: change.name})
    if change.action in ("create", "replace"):
        getattr(ecr, kind.create)(**item)
    if change.action == "update":
        getattr(ecr, kind.update)(**{kind.key: change.name, **{k: item[k] for k in kind.updatable if k in item}})


def _same(current: object, wanted: object) -> bool:
    """Compare as AWS stores them: policies as parsed JSON, lists without order."""
    if isinstance(current, str) and isinstance(wanted, str) and wanted.startswith("{"):
        try:
            return bool(json.loads(current) == json.loads(wanted))
        except ValueError:
            return False
    if isinstance(current, list) and isinstance(wanted, list):
        return sorted(map(json.dumps, current)) == sorted(map(json.dumps, wanted))
    return current == wanted
