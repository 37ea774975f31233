"""The ECR side of an account, declared: repositories, pull-through cache rules, creation templates,
and the IAM policies that let each context pull.

`plan` validates a whole declaration before any API call and turns it into what the API takes.
Repositories are then applied by community.aws.ecs_ecr, the Docker Hub secrets by
community.aws.secretsmanager_secret, the IAM policies by amazon.aws.iam_policy; `sync` makes the
registry-level settings no collection covers (pull-through cache rules, repository creation
templates) match the declaration.
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
from ecrkit.settings import validate_cache_prefix, validate_region

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
TAG_MUTABILITY = ("MUTABLE", "IMMUTABLE")
# IAM's names: inline policy names up to 128 characters, role names up to 64.
IAM_NAME = re.compile(r"^[\w+=,.@-]+\Z", re.ASCII)


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
    """Validate everything, then return {repositories, secrets, pull_through_rules, creation_templates}.

    `secrets` name the Secrets Manager secrets to write and the rule whose credentials they hold.
    """
    validate_region(declaration.get("region"), "region")
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
    }


def _repository(entry: object, source: str, read_policy: str | None) -> dict[str, Any]:
    options = _options(entry, source, {"name", "lifecycle", "policy", "scan_on_push", "tag_mutability"})
    name = options.get("name")
    if not isinstance(name, str) or not REPOSITORY.match(name) or name.endswith("/*") or not 2 <= len(name) <= 256:
        raise InputError(f"{source}.name", name, "a repository name such as team/app (lowercase, 2 to 256 characters)")
    return {
        "name": name,
        "lifecycle_policy": lifecycle.policy(options.get("lifecycle"), f"{source}.lifecycle"),
        "policy": _policy(options, source, read_policy),
        "scan_on_push": _boolean(options.get("scan_on_push", False), f"{source}.scan_on_push"),
        "image_tag_mutability": _choice(
            options.get("tag_mutability", "MUTABLE"), f"{source}.tag_mutability", TAG_MUTABILITY
        ),
    }


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
    for key, api_key in (
        ("upstream_repository_prefix", "upstreamRepositoryPrefix"),
        ("custom_role_arn", "customRoleArn"),
    ):
        if options.get(key):
            rule[api_key] = str(options[key])
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
    options = _options(entry, source, {"role", "for", "name", "registry", "repositories", "state"})
    state = _choice(options.get("state", "present"), f"{source}.state", ("present", "absent"))
    context = _choice(options.get("for"), f"{source}.for", tuple(iam_policy.CONTEXTS))
    role = _iam_name(options.get("role"), f"{source}.role", 64)
    name = _iam_name(options.get("name") or f"ecrkit-{context}", f"{source}.name", 128)
    repositories = options.get("repositories") or []
    if not isinstance(repositories, list):
        raise InputError(f"{source}.repositories", repositories, "a list of repository names")
    document = iam_policy.render(context, str(options.get("registry") or ""), tuple(repositories), source)
    return {"role": role, "name": name, "document": document, "state": state}


def _iam_name(value: object, source: str, longest: int) -> str:
    if not isinstance(value, str) or not IAM_NAME.match(value) or len(value) > longest:
        raise InputError(source, value, f"an IAM name: letters, digits and +=,.@_- (at most {longest} characters)")
    return value


def _template(entry: object, source: str, read_policy: str | None) -> dict[str, Any]:
    allowed = {"prefix", "applied_for", "description", "lifecycle", "policy", "tag_mutability", "resource_tags",
               "custom_role_arn"}  # fmt: skip
    options = _options(entry, source, allowed)
    prefix = options.get("prefix")
    if prefix != "ROOT":
        prefix = validate_cache_prefix(prefix, f"{source}.prefix")
    applied = options.get("applied_for", ["PULL_THROUGH_CACHE"])
    if not isinstance(applied, list) or not applied or any(item not in APPLIED_FOR for item in applied):
        raise InputError(f"{source}.applied_for", applied, f"a non-empty list of {', '.join(APPLIED_FOR)}")
    template: dict[str, Any] = {
        "prefix": prefix,
        "appliedFor": sorted(set(applied)),
        "description": str(options.get("description") or f"ecrkit: repositories created under {prefix}"),
        "imageTagMutability": _choice(
            options.get("tag_mutability", "MUTABLE"), f"{source}.tag_mutability", TAG_MUTABILITY
        ),
    }
    optional = {
        "lifecyclePolicy": lifecycle.policy(options.get("lifecycle"), f"{source}.lifecycle"),
        "repositoryPolicy": _policy(options, source, read_policy),
        "customRoleArn": options.get("custom_role_arn"),
        "resourceTags": [
            {"Key": str(k), "Value": str(v)} for k, v in _tags(options.get("resource_tags"), source).items()
        ],
    }
    template.update({key: value for key, value in optional.items() if value})
    return template


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


def sync(
    ecr: Any, secrets: Any, rules: list[dict[str, Any]], templates: list[dict[str, Any]], *, purge: bool, check: bool
) -> list[Change]:
    """Make the registry's rules and templates match; in check mode only say what would change."""
    resolved = [_with_credential_arn(secrets, rule) for rule in rules]
    return _sync(ecr, RULES, resolved, purge, check) + _sync(ecr, TEMPLATES, templates, purge, check)


def repository_names(ecr: Any) -> list[str]:
    return [repository["repositoryName"] for repository in _pages(ecr, "describe_repositories", "repositories")]


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
