"""The ECR side of an account: lifecycle presets and their validation, the declaration's plan,
and playbooks/ecr.yml against moto running as a server over HTTP (with testbed.standin_ecr
answering the pull-through cache and creation-template APIs moto lacks)."""

from __future__ import annotations

import copy
import json
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from ecrkit import ecr_account, lifecycle
from ecrkit.errors import InputError
from ecrkit.renderers import iam_policy
from testbed.hosts import EC2_TRUST, ansible_playbook, recap
from tests.conftest import ROOT, readme_block, run_ecrkit

TOKEN = "dckr_pat_never-in-any-output"
ORG = "o-a1b2c3d4e5"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ROLE = "ci-job-host"  # an instance profile's role, made by whoever made the instances
DECLARATION: dict[str, Any] = {
    "ecr_account_region": "us-east-1",
    "ecr_account_organization_id": ORG,
    "ecr_account_repositories": [
        {
            "name": "team/app",
            "lifecycle": [
                {"expire_untagged": {"days": 14}},
                {"expire_tagged": {"prefixes": ["develop", "feature-"], "days": 180}},
                {"keep_last": {"count": 500}},
            ],
        },
        {"name": "team/tools", "scan_on_push": True, "tag_mutability": "IMMUTABLE"},
    ],
    "ecr_account_pull_through_rules": [
        {"prefix": "ecr-public", "upstream": "ecr-public"},
        {
            "prefix": "docker-hub",
            "upstream": "docker-hub",
            "credentials": {"username": "someone", "access_token": TOKEN},
        },
    ],
    "ecr_account_creation_templates": [
        {"prefix": "docker-hub", "lifecycle": [{"expire_untagged": {"days": 7}}, {"keep_last": {"count": 100}}]},
    ],
    "ecr_account_iam_policies": [
        {"role": ROLE, "for": "job-host", "registry": REGISTRY, "repositories": ["team/app", "docker-hub/*"]},
        {
            "role": ROLE,
            "for": "pull-through",
            "name": "ecrkit-cache",
            "registry": REGISTRY,
            "repositories": ["docker-hub/*"],
        },
    ],
}
EMPTY: dict[str, Any] = {"repositories": {}, "rules": {}, "templates": {}, "secrets": [], "role_policies": {}}


# -- lifecycle presets and validation ---------------------------------------------------------


def test_presets_become_ecr_rules_in_priority_order() -> None:
    text = lifecycle.policy(DECLARATION["ecr_account_repositories"][0]["lifecycle"], "lifecycle")
    assert text is not None
    assert json.loads(text) == {
        "rules": [
            {
                "rulePriority": 10,
                "description": "expire untagged images after 14 days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 14,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 20,
                "description": "expire tags develop, feature- after 180 days",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": ["develop", "feature-"],
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 180,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 30,
                "description": "keep the last 500 images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 500},
                "action": {"type": "expire"},
            },
        ]
    }
    assert lifecycle.policy([], "lifecycle") is None


RAW: dict[str, Any] = {
    "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5},
    "action": {"type": "expire"},
}


def raw(**selection: Any) -> dict[str, Any]:
    return {"rule": {**RAW, "selection": {**RAW["selection"], **selection}}}


@pytest.mark.parametrize(
    ("entries", "named", "accepted"),
    [
        ([raw(), {"rule": {**RAW, "rulePriority": 10}}], "lifecycle (priority 10)", "unique priorities"),
        ([{"keep_last": {"count": 5}}, {"expire_untagged": {"days": 1}}], "lifecycle (priority 10)", "put it last"),
        ([raw(tagStatus="tagged")], "lifecycle[0] (priority 10)", "tag prefixes or tag patterns"),
        (
            [raw(tagStatus="tagged", tagPrefixList=["a"], tagPatternList=["b*"])],
            "lifecycle[0] (priority 10)",
            "one of the two",
        ),
        ([raw(tagPrefixList=["a"])], "lifecycle[0] (priority 10)", "no tag prefixes or patterns"),
        ([raw(countUnit="days")], "lifecycle[0] (priority 10).countUnit", "no unit with imageCountMoreThan"),
        (
            [raw(countType="sinceImagePushed")],
            "lifecycle[0] (priority 10).countUnit",
            "days (needed by sinceImagePushed)",
        ),
        ([raw(countNumber=0)], "lifecycle[0] (priority 10).countNumber", "a positive integer"),
        ([raw(tagStatus="all")], "lifecycle[0] (priority 10).tagStatus", "one of tagged, untagged, any"),
        ([{"rule": {**RAW, "action": {"type": "delete"}}}], "lifecycle[0] (priority 10).action", "{type: expire}"),
        ([{"expire_tagged": {"days": 3}}], "lifecycle[0] (priority 10)", "tag prefixes or tag patterns"),
        ([{"expire_untagged": {"days": 3, "count": 2}}], "lifecycle[0].expire_untagged", "one of days"),
        ([{"keep_newest": {"count": 3}}], "lifecycle[0]", "one key, one of expire_untagged"),
        ([{"rule": {**RAW, "rulePriority": "1"}}], "lifecycle[0].rulePriority", "a positive integer"),
        ({"keep_last": 3}, "lifecycle", "a list of lifecycle entries"),
    ],
)
def test_bad_lifecycle_rules_are_refused_naming_the_rule(entries: Any, named: str, accepted: str) -> None:
    with pytest.raises(InputError) as error:
        lifecycle.policy(entries, "lifecycle")
    assert error.value.source == named
    assert accepted in error.value.accepted


def test_a_policy_over_ecrs_length_limit_is_refused() -> None:
    entries = [{"expire_tagged": {"prefixes": [f"p{i:04}" for i in range(4000)], "days": 1}}]
    with pytest.raises(InputError, match="at most 30720 characters"):
        lifecycle.policy(entries, "lifecycle")


# -- the declaration's plan ------------------------------------------------------------------


def declaration(**changes: Any) -> dict[str, Any]:
    plain = {key.removeprefix("ecr_account_"): value for key, value in copy.deepcopy(DECLARATION).items()}
    return {**plain, **changes}


def test_plan_carries_no_token_and_names_the_secret_to_write() -> None:
    result = ecr_account.plan(declaration())
    assert TOKEN not in json.dumps(result)
    assert result["secrets"] == [{"name": "ecr-pullthroughcache/docker-hub", "rule": 1}]
    assert result["pull_through_rules"] == [
        {
            "ecrRepositoryPrefix": "ecr-public",
            "upstreamRegistry": "ecr-public",
            "upstreamRegistryUrl": "public.ecr.aws",
        },
        {
            "ecrRepositoryPrefix": "docker-hub",
            "upstreamRegistry": "docker-hub",
            "upstreamRegistryUrl": "registry-1.docker.io",
            "credentialSecret": "ecr-pullthroughcache/docker-hub",
        },
    ]
    policy = json.loads(result["repositories"][0]["policy"])
    assert policy["Statement"][0]["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": ORG}}
    assert result["repositories"][1]["lifecycle_policy"] is None
    assert result["creation_templates"][0]["appliedFor"] == ["PULL_THROUGH_CACHE"]
    assert result["creation_templates"][0]["repositoryPolicy"] == result["repositories"][0]["policy"]


@pytest.mark.parametrize(
    ("changes", "source", "accepted"),
    [
        ({"region": "useast1"}, "region", "AWS region"),
        ({"organization_id": "123"}, "organization_id", "o-a1b2c3d4e5"),
        ({"endpoint_url": "127.0.0.1:4566"}, "endpoint_url", "http(s) URL"),
        ({"repositories": [{"name": "Team/App"}]}, "repositories[0].name", "lowercase"),
        ({"repositories": [{"name": "a/b"}, {"name": "a/b"}]}, "repositories", "each name declared once"),
        ({"repositories": [{"name": "a/b", "scan_on_push": "yes"}]}, "repositories[0].scan_on_push", "true or false"),
        (
            {"repositories": [{"name": "a/b", "lifecycle": [{"keep_last": {}}]}]},
            "repositories[0].lifecycle[0].keep_last.count",
            "positive",
        ),
        (
            {"pull_through_rules": [{"prefix": "hub", "upstream": "dockerhub"}]},
            "pull_through_rules[0].upstream",
            "docker-hub",
        ),
        (
            {"pull_through_rules": [{"prefix": "hub", "upstream": "docker-hub"}]},
            "pull_through_rules[0].credentials",
            "needs",
        ),
        (
            {
                "pull_through_rules": [
                    {
                        "prefix": "acr",
                        "upstream": "azure-container-registry",
                        "credential_secret": "ecr-pullthroughcache/acr",
                    }
                ]
            },
            "pull_through_rules[0].upstream_url",
            "hostname",
        ),
        ({"pull_through_rules": [{"prefix": "q", "upstream": "quay"}]}, "pull_through_rules[0].prefix", "2 to 30"),
        (
            {"pull_through_rules": [{"prefix": "hub", "upstream": "docker-hub", "credential_secret": "hub-token"}]},
            "pull_through_rules[0].credential_secret",
            "ecr-pullthroughcache/",
        ),
        (
            {"creation_templates": [{"prefix": "ROOT", "applied_for": ["PUSH"]}]},
            "creation_templates[0].applied_for",
            "CREATE_ON_PUSH",
        ),
        ({"creation_templates": [{"prefix": "x", "colour": "red"}]}, "creation_templates[0].colour", "a key among"),
        ({"iam_policies": [{"role": ROLE, "for": "builder"}]}, "iam_policies[0].for", "job-host"),
        ({"iam_policies": [{"role": "ci job host", "for": "agent"}]}, "iam_policies[0].role", "an IAM name"),
        (
            {"iam_policies": [{"role": ROLE, "for": "agent", "repositories": ["team/app"]}]},
            "iam_policies[0].registry",
            "iam_policies[0].repositories names live in",
        ),
        (
            {"iam_policies": [{"role": ROLE, "for": "agent", "registry": REGISTRY, "repositories": ["Team"]}]},
            "iam_policies[0].repositories",
            "a repository name",
        ),
        (
            {"iam_policies": [{"role": ROLE, "for": "agent"}, {"role": ROLE, "for": "agent"}]},
            "iam_policies",
            "each role/name declared once",
        ),
    ],
)
def test_bad_declarations_are_refused_naming_the_value(changes: dict[str, Any], source: str, accepted: str) -> None:
    with pytest.raises(InputError) as error:
        ecr_account.plan(declaration(**changes))
    assert error.value.source == source
    assert accepted in error.value.accepted


@pytest.mark.parametrize(
    "text",
    [
        readme_block("<!-- ecr-account-example -->", "docs/ecr-account.md"),
        (ROOT / "inventory/example/group_vars/ecr_accounts.yml").read_text(),
    ],
    ids=["README", "inventory-example"],
)
def test_the_documented_declarations_are_accepted(text: str) -> None:
    variables = yaml.safe_load(text.replace("{{ vault_docker_hub_token }}", TOKEN))
    result = ecr_account.plan(
        {"region": "us-east-1", **{k.removeprefix("ecr_account_"): v for k, v in variables.items()}}
    )
    assert [rule["ecrRepositoryPrefix"] for rule in result["pull_through_rules"]] == ["ecr-public", "docker-hub"]
    manager = iam_policy.render("runner-manager", REGISTRY, ("team/app",), autoscaling_group="gitlab-ci-jobs-asg")
    assert result["iam_policies"][0]["document"] == manager
    assert result["iam_policies"][1]["document"]["Statement"][1]["Resource"] == [
        "arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/*"
    ]


def test_bad_credentials_are_refused_without_echoing_the_token() -> None:
    rules = [{"prefix": "hub", "upstream": "docker-hub", "credentials": {"username": "", "access_token": TOKEN}}]
    with pytest.raises(InputError) as error:
        ecr_account.plan(declaration(pull_through_rules=rules))
    assert error.value.source == "pull_through_rules[0].credentials"
    assert TOKEN not in str(error.value)


# -- playbooks/ecr.yml against moto over HTTP -------------------------------------------------


@pytest.fixture
def account(moto_endpoint: str, aws_env: dict[str, str]) -> dict[str, Any]:
    """A fresh moto account: clients for the test's own checks."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10)
    session = boto3.Session(
        aws_access_key_id=aws_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws_env["AWS_SECRET_ACCESS_KEY"],
        region_name=aws_env["AWS_REGION"],
    )
    clients = {name: session.client(name, endpoint_url=moto_endpoint) for name in ("ecr", "secretsmanager", "iam")}
    clients["iam"].create_role(RoleName=ROLE, AssumeRolePolicyDocument=EC2_TRUST)
    return clients


def run_ecr(tmp_path: Path, aws_env: dict[str, str], variables: dict[str, Any], *options: str) -> Any:
    """playbooks/ecr.yml, told the stand-in's endpoint by the role's variable (not the SDK's AWS_ENDPOINT_URL)."""
    inventory = tmp_path / "hosts.yml"
    endpoint = {"ecr_account_endpoint_url": aws_env["AWS_ENDPOINT_URL"]}
    inventory.write_text(yaml.safe_dump({"ecr_accounts": {"hosts": {"account": {**endpoint, **variables}}}}))
    env = {key: value for key, value in aws_env.items() if key != "AWS_ENDPOINT_URL"}
    result = ansible_playbook("-i", str(inventory), "playbooks/ecr.yml", "--diff", *options, env=env)
    assert TOKEN not in result.stdout + result.stderr
    return result


def registry_state(clients: dict[str, Any]) -> dict[str, Any]:
    ecr = clients["ecr"]
    repositories = {}
    for repository in ecr.describe_repositories()["repositories"]:
        name = repository["repositoryName"]
        entry = {
            "scan": repository["imageScanningConfiguration"]["scanOnPush"],
            "mutability": repository["imageTagMutability"],
        }
        for key, call in (("lifecycle", ecr.get_lifecycle_policy), ("policy", ecr.get_repository_policy)):
            try:
                entry[key] = json.loads(
                    call(repositoryName=name)["lifecyclePolicyText" if key == "lifecycle" else "policyText"]
                )
            except ecr.exceptions.ClientError:
                entry[key] = None
        repositories[name] = entry
    rules = {
        rule["ecrRepositoryPrefix"]: rule for rule in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    }
    templates = {t["prefix"]: t for t in ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]}
    secrets = [secret["Name"] for secret in clients["secretsmanager"].list_secrets()["SecretList"]]
    iam = clients["iam"]
    role_policies = {
        name: iam.get_role_policy(RoleName=ROLE, PolicyName=name)["PolicyDocument"]
        for name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]
    }
    return {
        "repositories": repositories,
        "rules": rules,
        "templates": templates,
        "secrets": secrets,
        "role_policies": role_policies,
    }


def test_check_mode_reports_changes_and_calls_no_writing_api(
    tmp_path: Path, aws_env: dict[str, str], account: Any
) -> None:
    result = run_ecr(tmp_path, aws_env, DECLARATION, "--check")
    assert result.returncode == 0, result.stdout[-3000:]
    assert recap(result.stdout)["account"]["changed"] > 0
    assert "create pull-through cache rule docker-hub" in result.stdout
    assert registry_state(account) == EMPTY


def test_applied_twice_the_second_run_changes_nothing(tmp_path: Path, aws_env: dict[str, str], account: Any) -> None:
    first = run_ecr(tmp_path, aws_env, DECLARATION)
    assert first.returncode == 0, first.stdout[-3000:]
    state = registry_state(account)
    planned = ecr_account.plan(declaration())
    app, tools = state["repositories"]["team/app"], state["repositories"]["team/tools"]
    assert app["lifecycle"] == json.loads(planned["repositories"][0]["lifecycle_policy"])
    assert app["policy"]["Statement"][0]["Condition"]["StringEquals"]["aws:PrincipalOrgID"] == ORG
    assert (tools["scan"], tools["mutability"], tools["lifecycle"]) == (True, "IMMUTABLE", None)
    secret = account["secretsmanager"].get_secret_value(SecretId="ecr-pullthroughcache/docker-hub")
    assert json.loads(secret["SecretString"]) == {"username": "someone", "accessToken": TOKEN}
    assert state["rules"]["docker-hub"]["credentialArn"] == secret["ARN"]
    assert state["rules"]["ecr-public"]["upstreamRegistryUrl"] == "public.ecr.aws"
    assert (
        json.loads(state["templates"]["docker-hub"]["lifecyclePolicy"])["rules"][1]["selection"]["tagStatus"] == "any"
    )
    assert state["role_policies"] == {
        "ecrkit-job-host": iam_policy.render("job-host", REGISTRY, ("team/app", "docker-hub/*")),
        "ecrkit-cache": iam_policy.render("pull-through", REGISTRY, ("docker-hub/*",)),
    }

    second = run_ecr(tmp_path, aws_env, DECLARATION)
    assert second.returncode == 0, second.stdout[-3000:]
    assert recap(second.stdout)["account"]["changed"] == 0
    assert registry_state(account) == state


def test_rules_and_templates_are_updated_replaced_and_deleted_to_match(
    tmp_path: Path, aws_env: dict[str, str], account: Any
) -> None:
    assert run_ecr(tmp_path, aws_env, DECLARATION).returncode == 0
    changed = copy.deepcopy(DECLARATION)
    changed["ecr_account_pull_through_rules"] = [
        {
            "prefix": "docker-hub",
            "upstream": "docker-hub",
            "credentials": {"username": "someone", "access_token": TOKEN},
        },
        {"prefix": "quay", "upstream": "quay"},
    ]
    changed["ecr_account_creation_templates"][0]["lifecycle"] = [{"expire_untagged": {"days": 3}}]
    result = run_ecr(tmp_path, aws_env, changed)
    assert result.returncode == 0, result.stdout[-3000:]
    for change in ("delete pull-through cache rule ecr-public", "create pull-through cache rule quay",
                   "update repository creation template docker-hub"):  # fmt: skip
        assert change in result.stdout
    state = registry_state(account)
    assert sorted(state["rules"]) == ["docker-hub", "quay"]
    assert json.loads(state["templates"]["docker-hub"]["lifecyclePolicy"])["rules"][0]["selection"]["countNumber"] == 3

    # A changed upstream cannot be updated in place: the rule is deleted and created again.
    changed["ecr_account_pull_through_rules"][1] = {"prefix": "quay", "upstream": "k8s"}
    result = run_ecr(tmp_path, aws_env, changed)
    assert "replace pull-through cache rule quay" in result.stdout
    assert registry_state(account)["rules"]["quay"]["upstreamRegistryUrl"] == "registry.k8s.io"

    # Without purge, what is not declared stays.
    kept = {
        **changed,
        "ecr_account_pull_through_rules": [],
        "ecr_account_creation_templates": [],
        "ecr_account_purge": False,
    }
    result = run_ecr(tmp_path, aws_env, kept)
    assert recap(result.stdout)["account"]["changed"] == 0
    assert sorted(registry_state(account)["rules"]) == ["docker-hub", "quay"]


def test_role_policies_are_updated_and_removed_and_the_roles_other_policies_kept(
    tmp_path: Path, aws_env: dict[str, str], account: Any
) -> None:
    foreign = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}]}
    account["iam"].put_role_policy(RoleName=ROLE, PolicyName="site-s3", PolicyDocument=json.dumps(foreign))
    assert run_ecr(tmp_path, aws_env, DECLARATION).returncode == 0
    changed = copy.deepcopy(DECLARATION)
    changed["ecr_account_iam_policies"][0]["repositories"] = ["team/app"]
    changed["ecr_account_iam_policies"][1]["state"] = "absent"
    result = run_ecr(tmp_path, aws_env, changed)
    assert result.returncode == 0, result.stdout[-3000:]
    assert recap(result.stdout)["account"]["changed"] == 1  # the IAM task alone
    assert registry_state(account)["role_policies"] == {
        "ecrkit-job-host": iam_policy.render("job-host", REGISTRY, ("team/app",)),
        "site-s3": foreign,
    }


def test_the_admin_policy_allows_every_ecr_action_the_playbook_uses(
    tmp_path: Path, aws_env: dict[str, str], account: Any, moto_endpoint: str
) -> None:
    changed = copy.deepcopy(DECLARATION)
    changed["ecr_account_repositories"][1] = {"name": "team/tools"}  # mutability, scanning and policy change
    changed["ecr_account_pull_through_rules"][0]["upstream"] = "quay"  # replaced
    settings = copy.deepcopy(SETTINGS)
    settings["ecr_account_repositories"][0].update(tag_mutability="IMMUTABLE", exclusions=[], lifecycle=[])
    for variables, options in (
        (DECLARATION, ["--check"]),
        (DECLARATION, []),
        (changed, []),
        ({**changed, "ecr_account_pull_through_rules": []}, []),
        (SETTINGS, []),
        (settings, []),
        ({**settings, "ecr_account_replication": []}, []),
    ):
        assert run_ecr(tmp_path, aws_env, variables, *options).returncode == 0
    # The registry policy: put for an account of the inventory replicating here, then deleted when none does.
    inventory = tmp_path / "peers.yml"
    endpoint = {"ecr_account_endpoint_url": aws_env["AWS_ENDPOINT_URL"], "ecr_account_purge": False}
    source = {
        "ecr_account_region": "us-west-2",
        "ecr_account_id": OTHER,
        "ecr_account_replication": [{"destinations": [{"region": "us-east-1", "registry_id": "123456789012"}]}],
    }
    destination = {"ecr_account_region": "us-east-1", "ecr_account_id": "123456789012"}
    env = {key: value for key, value in aws_env.items() if key != "AWS_ENDPOINT_URL"}
    for hosts in ({"source": source, "destination": destination}, {"destination": destination}):
        inventory.write_text(yaml.safe_dump({"ecr_accounts": {"hosts": hosts, "vars": endpoint}}))
        assert ansible_playbook("-i", str(inventory), "playbooks/ecr.yml", env=env).returncode == 0
    called = operations(moto_endpoint)
    ecr_actions = {
        f"ecr:{target.split('.', 1)[1]}" for target in called if target.startswith("AmazonEC2ContainerRegistry")
    }
    assert {
        "ecr:CreatePullThroughCacheRule",
        "ecr:DeletePullThroughCacheRule",
        "ecr:PutLifecyclePolicy",
        "ecr:DeleteLifecyclePolicy",
        "ecr:PutImageTagMutability",
        "ecr:PutReplicationConfiguration",
        "ecr:DescribeRegistry",
        "ecr:PutRegistryScanningConfiguration",
        "ecr:PutRegistryPolicy",
        "ecr:DeleteRegistryPolicy",
        "ecr:CreateRepository",
    } <= ecr_actions
    admin = {action for statement in iam_policy.render("admin")["Statement"] for action in statement["Action"]}
    assert ecr_actions <= admin, ecr_actions - admin


def test_a_bad_rule_stops_the_run_before_any_api_call(tmp_path: Path, aws_env: dict[str, str], account: Any) -> None:
    bad = copy.deepcopy(DECLARATION)
    bad["ecr_account_repositories"][0]["lifecycle"].reverse()  # keep_last (tagStatus any) no longer last
    result = run_ecr(tmp_path, aws_env, bad)
    assert result.returncode != 0
    assert "repositories[0].lifecycle (priority 10)" in result.stdout
    assert "put it last" in result.stdout
    assert registry_state(account) == EMPTY


# -- ECR as it is in 2026: the archive storage class -----------------------------------------


def test_archive_presets_and_raw_transition_rules_mix_with_expire_rules() -> None:
    expire_archived = {
        "selection": {
            "tagStatus": "untagged",
            "storageClass": "archive",
            "countType": "sinceImageTransitioned",
            "countUnit": "days",
            "countNumber": 90,
        },
        "action": {"type": "expire"},
    }
    entries = [
        {"expire_untagged": {"days": 14}},
        {"archive_unpulled": {"days": 30, "patterns": ["v*"]}},
        {"rule": expire_archived},
        {"archive_unpulled": {"days": 180}},
    ]
    text = lifecycle.policy(entries, "lifecycle")
    assert text is not None
    rules = json.loads(text)["rules"]
    assert [rule["action"] for rule in rules] == [
        {"type": "expire"},
        {"type": "transition", "targetStorageClass": "archive"},
        {"type": "expire"},
        {"type": "transition", "targetStorageClass": "archive"},
    ]
    assert rules[1]["selection"] == {
        "tagStatus": "tagged",
        "tagPatternList": ["v*"],
        "countType": "sinceImagePulled",
        "countUnit": "days",
        "countNumber": 30,
    }
    assert rules[3]["selection"]["tagStatus"] == "any" and rules[3]["rulePriority"] == 40
    assert rules[3]["description"] == "archive all images not pulled for 180 days"


TRANSITION: dict[str, Any] = {
    "selection": {"tagStatus": "untagged", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 30},
    "action": {"type": "transition", "targetStorageClass": "archive"},
}


def transition(action: dict[str, Any] | None = None, **selection: Any) -> dict[str, Any]:
    return {"rule": {"action": action or TRANSITION["action"], "selection": {**TRANSITION["selection"], **selection}}}


@pytest.mark.parametrize(
    ("entries", "named", "accepted"),
    [
        ([transition({"type": "transition"})], "lifecycle[0] (priority 10).action", "targetStorageClass: archive"),
        (
            [transition({"type": "transition", "targetStorageClass": "glacier"})],
            "lifecycle[0] (priority 10).action",
            "targetStorageClass: archive",
        ),
        (
            [transition({"type": "expire", "targetStorageClass": "archive"})],
            "lifecycle[0] (priority 10).action",
            "{type: expire}",
        ),
        (
            [transition(countType="sinceImageTransitioned", countNumber=120)],
            "lifecycle[0] (priority 10).countType",
            "for a transition of standard images",
        ),
        (
            [transition(storageClass="archive")],
            "lifecycle[0] (priority 10).countType",
            "archived images can only expire",
        ),
        (
            [
                transition(
                    {"type": "expire"}, storageClass="archive", countType="sinceImageTransitioned", countNumber=89
                )
            ],
            "lifecycle[0] (priority 10).countNumber",
            "at least 90 days",
        ),
        (
            [transition({"type": "expire"}, storageClass="archive")],
            "lifecycle[0] (priority 10).countType",
            "one of sinceImageTransitioned",
        ),
        ([transition(storageClass="cold")], "lifecycle[0] (priority 10).storageClass", "one of standard, archive"),
        ([transition(countUnit=None)], "lifecycle[0] (priority 10).countUnit", "days (needed by sinceImagePulled)"),
        (
            [{"archive_unpulled": {"days": 30}}, {"expire_untagged": {"days": 1}}],
            "lifecycle (priority 10)",
            "put it last",
        ),
        ([{"archive_unpulled": {"count": 3}}], "lifecycle[0].archive_unpulled", "one of days, patterns, prefixes"),
    ],
)
def test_bad_archive_rules_are_refused_naming_the_priority(entries: Any, named: str, accepted: str) -> None:
    with pytest.raises(InputError) as error:
        lifecycle.policy(entries, "lifecycle")
    assert error.value.source == named
    assert accepted in error.value.accepted


# -- encryption, immutability exclusions, replication, scanning: validation --------------------

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CREATION_ROLE = "arn:aws:iam::123456789012:role/ecr-repository-creation"
OTHER = "210987654321"


@pytest.mark.parametrize(
    ("changes", "source", "accepted"),
    [
        ({"repositories": [{"name": "a/b", "encryption": {"type": "SSE"}}]}, "repositories[0].encryption.type", "KMS"),
        (
            {"repositories": [{"name": "a/b", "encryption": {"type": "AES256", "kms_key": KEY}}]},
            "repositories[0].encryption.kms_key",
            "no kms_key with type AES256",
        ),
        (
            {"repositories": [{"name": "a/b", "encryption": {"type": "KMS", "kms_key": "my-key"}}]},
            "repositories[0].encryption.kms_key",
            "alias/ecr",
        ),
        (
            {"creation_templates": [{"prefix": "hub", "encryption": {"type": "KMS", "kms_key": "alias/ecr"}}]},
            "creation_templates[0].encryption.kms_key",
            "a KMS key ARN",
        ),
        (  # AWS refuses the repository at the first pull, unless ECR has a role to tag and encrypt it with
            {"creation_templates": [{"prefix": "hub", "encryption": {"type": "KMS", "kms_key": KEY}}]},
            "creation_templates[0].custom_role_arn",
            "sets encryption.kms_key",
        ),
        (
            {"creation_templates": [{"prefix": "hub", "resource_tags": {"team": "a"}}]},
            "creation_templates[0].custom_role_arn",
            "ecr:TagResource",
        ),
        (
            {"creation_templates": [{"prefix": "hub", "resource_tags": {"team": "a"}, "custom_role_arn": "ecr-role"}]},
            "creation_templates[0].custom_role_arn",
            "an IAM role ARN",
        ),
        (
            {
                "pull_through_rules": [
                    {
                        "prefix": "hub",
                        "upstream": "ecr",
                        "upstream_url": "x.example.com",
                        "custom_role_arn": "arn:aws:iam::123:role/x",
                    }
                ]
            },
            "pull_through_rules[0].custom_role_arn",
            "an IAM role ARN",
        ),
        (
            {"repositories": [{"name": "a/b", "tag_mutability": "IMMUTABLE_WITH_EXCLUSION"}]},
            "repositories[0].exclusions",
            "needed by IMMUTABLE_WITH_EXCLUSION",
        ),
        (
            {"repositories": [{"name": "a/b", "tag_mutability": "MUTABLE_WITH_EXCLUSION", "exclusions": ["a b"]}]},
            "repositories[0].exclusions",
            "tag wildcard filters",
        ),
        (
            {"repositories": [{"name": "a/b", "tag_mutability": "IMMUTABLE", "exclusions": ["latest"]}]},
            "repositories[0].exclusions",
            "no exclusions with IMMUTABLE",
        ),
        (
            {"repositories": [{"name": "a/b", "tag_mutability": "IMMUTABLE_WITH", "exclusions": ["latest"]}]},
            "repositories[0].tag_mutability",
            "MUTABLE_WITH_EXCLUSION",
        ),
        (
            {"replication": [{"destinations": [{"region": "eu-west-9", "registry_id": OTHER}]}]},
            "replication[0].destinations[0].region",
            "a region of the aws partition with ecr",
        ),
        (
            {"replication": [{"destinations": [{"region": "cn-north-1", "registry_id": OTHER}]}]},
            "replication[0].destinations[0].region",
            "a region of the aws partition",
        ),
        (
            {"replication": [{"destinations": [{"region": "eu-west-1", "registry_id": 210987654321}]}]},
            "replication[0].destinations[0].registry_id",
            "12 digits",
        ),
        ({"replication": [{"destinations": []}]}, "replication[0].destinations", "a non-empty list"),
        (
            {"replication": [{"destinations": [{"region": "eu-west-1", "registry_id": OTHER}]}] * 11},
            "replication",
            "at most 10 rules",
        ),
        (
            {
                "replication": [
                    {"destinations": [{"region": region, "registry_id": f"{n:012}"} for n in range(1, 14)]}
                    for region in ("eu-west-1", "eu-west-2")
                ]
            },
            "replication",
            "at most 25 unique destinations",
        ),
        (
            {
                "replication": [
                    {"destinations": [{"region": "eu-west-1", "registry_id": OTHER}], "filters": [{"prefix": "t"}]}
                ]
            },
            "replication[0].filters[0].prefix",
            "2 to 256 characters",
        ),
        (
            {
                "replication": [
                    {"destinations": [{"region": "eu-west-1", "registry_id": OTHER}], "filters": [{"prefix": "Team/"}]}
                ]
            },
            "replication[0].filters[0].prefix",
            "lowercase",
        ),
        (
            {
                "account_id": "123456789012",
                "replication": [{"destinations": [{"region": "us-east-1", "registry_id": "123456789012"}]}],
            },
            "replication[0].destinations[0]",
            "a registry other than this one",
        ),
        ({"replication_sources": [OTHER]}, "account_id", "other accounts replicate into it"),
        ({"scanning": {"type": "DEEP"}}, "scanning.type", "BASIC, ENHANCED"),
        (
            {"scanning": {"type": "BASIC", "rules": [{"frequency": "CONTINUOUS_SCAN", "filters": ["*"]}]}},
            "scanning.rules[0].frequency",
            "SCAN_ON_PUSH, MANUAL",
        ),
        (
            {"scanning": {"type": "ENHANCED", "rules": [{"frequency": "SCAN_ON_PUSH", "filters": ["Team/*"]}]}},
            "scanning.rules[0].filters",
            "repository wildcard filters",
        ),
        (
            {"scanning": {"type": "ENHANCED", "rules": [{"frequency": "SCAN_ON_PUSH", "filters": ["*"]}] * 3}},
            "scanning.rules",
            "at most 2",
        ),
    ],
)
def test_bad_2026_settings_are_refused_naming_the_value(changes: dict[str, Any], source: str, accepted: str) -> None:
    with pytest.raises(InputError) as error:
        ecr_account.plan(declaration(**changes))
    assert error.value.source == source
    assert accepted in error.value.accepted


@pytest.mark.parametrize(
    ("encryption", "kind"),
    [
        ({"type": "KMS"}, "repositories"),
        ({"type": "KMS_DSSE"}, "repositories"),
        ({"type": "KMS", "kms_key": "alias/aws/ecr"}, "repositories"),
        ({"type": "KMS"}, "creation_templates"),  # a template's key is an ARN: alias/aws/ecr is refused as such
    ],
)
def test_the_aws_managed_key_on_a_repository_the_organisation_reads_is_refused(
    encryption: dict[str, str], kind: str
) -> None:
    entry = {"name": "team/app"} if kind == "repositories" else {"prefix": "docker-hub"}
    with pytest.raises(InputError) as error:
        ecr_account.plan(declaration(**{kind: [{**entry, "encryption": encryption}]}))
    assert error.value.source == f"{kind}[0].encryption.kms_key"
    for words in ("organization_id", "AWS-managed key", "customer-managed KMS key", "AES256"):
        assert words in error.value.accepted
    # Negative controls: the same key without the organisation policy, and a key of one's own with it.
    assert ecr_account.plan(declaration(organization_id="", **{kind: [{**entry, "encryption": encryption}]}))
    own = {**entry, "encryption": {"type": "KMS", "kms_key": KEY}}
    if kind == "creation_templates":  # ECR creates a template's repositories with the key as this role
        own["custom_role_arn"] = CREATION_ROLE
    assert ecr_account.plan(declaration(**{kind: [own]}))[kind][0]


def test_replication_sources_are_the_inventory_accounts_that_replicate_here() -> None:
    here = {"region": "eu-west-1", "registry_id": "123456789012"}
    peers = [
        {"host": "a", "account_id": OTHER, "region": "us-east-1", "replication": [{"destinations": [here]}]},
        {
            "host": "b",
            "account_id": "111122223333",
            "region": "us-east-1",
            "replication": [{"destinations": [{**here, "region": "eu-west-2"}]}],
        },  # another region: not here
        {"host": "c", "account_id": "123456789012", "region": "us-east-1", "replication": [{"destinations": [here]}]},
        {"host": "d", "account_id": "", "region": "us-east-1", "replication": [{"destinations": [here]}]},
    ]
    assert ecr_account.replication_sources(peers, "123456789012", "eu-west-1") == [OTHER]
    with pytest.raises(InputError, match="a: ecr_account_replication"):
        ecr_account.replication_sources(
            [{**peers[0], "replication": [{"destinations": [{"region": "mars-1", "registry_id": OTHER}]}]}],
            "123456789012",
            "eu-west-1",
        )


def test_render_replication_policy_is_the_statement_the_role_applies() -> None:
    registry = f"{OTHER}.dkr.ecr.eu-west-1.amazonaws.com"
    done = run_ecrkit("render", "replication-policy", "--registry", registry, "--source-account", "123456789012")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["Statement"] == [ecr_account.replication_statement(["123456789012"], "eu-west-1", OTHER, "x")]
    assert document["Statement"][0]["Action"] == ["ecr:CreateRepository", "ecr:ReplicateImage"]
    assert document["Statement"][0]["Resource"] == f"arn:aws:ecr:eu-west-1:{OTHER}:repository/*"
    refused = run_ecrkit("render", "replication-policy", "--registry", registry, "--source-account", "12345")
    assert refused.returncode != 0 and "--source-account[0]" in refused.stderr


# -- the 2026 settings through playbooks/ecr.yml, against moto over HTTP ---------------------

SETTINGS: dict[str, Any] = {
    "ecr_account_region": "us-east-1",
    "ecr_account_id": "123456789012",
    "ecr_account_organization_id": ORG,
    "ecr_account_repositories": [
        {
            "name": "team/app",
            "encryption": {"type": "KMS", "kms_key": KEY},
            "tag_mutability": "IMMUTABLE_WITH_EXCLUSION",
            "exclusions": ["latest", "dev-*"],
            "lifecycle": [{"expire_untagged": {"days": 14}}, {"archive_unpulled": {"days": 90}}],
        },
        {
            "name": "team/cache",
            "encryption": {"type": "KMS"},
            "policy": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                        "Action": ["ecr:BatchGetImage"],
                    }
                ],
            },
        },
    ],
    "ecr_account_creation_templates": [
        {
            "prefix": "team",
            "applied_for": ["REPLICATION"],
            "encryption": {"type": "KMS", "kms_key": KEY},
            "custom_role_arn": CREATION_ROLE,
            "tag_mutability": "MUTABLE_WITH_EXCLUSION",
            "exclusions": ["release-*"],
        },
    ],
    "ecr_account_replication": [
        {
            "destinations": [
                {"region": "eu-west-1", "registry_id": "123456789012"},
                {"region": "us-west-2", "registry_id": OTHER},
            ],
            "filters": [{"prefix": "team/"}],
        }
    ],
    "ecr_account_scanning": {
        "type": "ENHANCED",
        "rules": [
            {"frequency": "CONTINUOUS_SCAN", "filters": ["team/*"]},
            {"frequency": "SCAN_ON_PUSH", "filters": ["*"]},
        ],
    },
}


def settings_state(ecr: Any) -> dict[str, Any]:
    repositories = {
        repository["repositoryName"]: {
            "encryption": repository["encryptionConfiguration"],
            "mutability": repository["imageTagMutability"],
            "exclusions": [item["filter"] for item in repository.get("imageTagMutabilityExclusionFilters", [])],
        }
        for repository in ecr.describe_repositories()["repositories"]
    }
    for name, entry in repositories.items():
        try:
            entry["lifecycle"] = json.loads(ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"])
        except ecr.exceptions.LifecyclePolicyNotFoundException:
            entry["lifecycle"] = None
    templates = {t["prefix"]: t for t in ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]}
    return {
        "repositories": repositories,
        "templates": {
            p: {
                k: t.get(k)
                for k in ("encryptionConfiguration", "imageTagMutability", "imageTagMutabilityExclusionFilters")
            }
            for p, t in templates.items()
        },
        "replication": ecr.describe_registry()["replicationConfiguration"],
        "scanning": ecr.get_registry_scanning_configuration()["scanningConfiguration"],
    }


def operations(moto_endpoint: str) -> list[str]:
    with urllib.request.urlopen(f"{moto_endpoint}/ecrkit/operations", timeout=10) as response:
        return list(json.load(response))


def test_2026_settings_created_then_left_alone_and_check_mode_changes_nothing(
    tmp_path: Path, aws_env: dict[str, str], account: Any
) -> None:
    ecr = account["ecr"]
    empty = settings_state(ecr)
    checked = run_ecr(tmp_path, aws_env, SETTINGS, "--check")
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert recap(checked.stdout)["account"]["changed"] > 0
    for change in (
        "create repository team/app",
        "create replication configuration registry",
        "update registry scanning configuration registry",
    ):
        assert change in checked.stdout
    assert settings_state(ecr) == empty

    first = run_ecr(tmp_path, aws_env, SETTINGS)
    assert first.returncode == 0, first.stdout[-3000:]
    state = settings_state(ecr)
    app, cache = state["repositories"]["team/app"], state["repositories"]["team/cache"]
    assert app["encryption"] == {"encryptionType": "KMS", "kmsKey": KEY}
    assert (app["mutability"], app["exclusions"]) == ("IMMUTABLE_WITH_EXCLUSION", ["latest", "dev-*"])
    assert app["lifecycle"]["rules"][1]["action"] == {"type": "transition", "targetStorageClass": "archive"}
    assert cache["encryption"]["encryptionType"] == "KMS"  # the AWS-managed key: its policy shares it with no one
    assert state["templates"]["team"] == {
        "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": KEY},
        "imageTagMutability": "MUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "release-*"}],
    }
    assert state["replication"] == {
        "rules": [
            {
                "destinations": [
                    {"region": "eu-west-1", "registryId": "123456789012"},
                    {"region": "us-west-2", "registryId": OTHER},
                ],
                "repositoryFilters": [{"filter": "team/", "filterType": "PREFIX_MATCH"}],
            }
        ]
    }
    assert state["scanning"]["scanType"] == "ENHANCED"
    assert sorted(rule["scanFrequency"] for rule in state["scanning"]["rules"]) == ["CONTINUOUS_SCAN", "SCAN_ON_PUSH"]

    second = run_ecr(tmp_path, aws_env, SETTINGS)
    assert second.returncode == 0, second.stdout[-3000:]
    assert recap(second.stdout)["account"]["changed"] == 0
    assert settings_state(ecr) == state


def test_2026_settings_are_updated_and_an_encryption_drift_is_reported_not_fixed(
    tmp_path: Path, aws_env: dict[str, str], account: Any
) -> None:
    ecr = account["ecr"]
    assert run_ecr(tmp_path, aws_env, SETTINGS).returncode == 0
    changed = copy.deepcopy(SETTINGS)
    app = changed["ecr_account_repositories"][0]
    app.update(tag_mutability="MUTABLE_WITH_EXCLUSION", exclusions=["release-*"])
    app["encryption"] = {"type": "AES256"}  # ECR cannot change it
    changed["ecr_account_replication"][0]["filters"] = [{"prefix": "prod"}]
    changed["ecr_account_scanning"] = {"type": "BASIC", "rules": [{"frequency": "SCAN_ON_PUSH", "filters": ["*"]}]}
    result = run_ecr(tmp_path, aws_env, changed)
    assert result.returncode == 0, result.stdout[-3000:]
    for change in (
        "update repository team/app",
        "update replication configuration registry",
        "update registry scanning configuration registry",
    ):
        assert change in result.stdout
    assert "ECR sets encryption at creation only" in result.stderr  # the drift, as a warning
    state = settings_state(ecr)["repositories"]["team/app"]
    assert state["encryption"] == {"encryptionType": "KMS", "kmsKey": KEY}  # untouched: no repository deleted
    assert (state["mutability"], state["exclusions"]) == ("MUTABLE_WITH_EXCLUSION", ["release-*"])
    assert settings_state(ecr)["replication"]["rules"][0]["repositoryFilters"] == [
        {"filter": "prod", "filterType": "PREFIX_MATCH"}
    ]
    assert settings_state(ecr)["scanning"]["scanType"] == "BASIC"
    # The drift stays reported, and is no change: a second run changes nothing.
    again = run_ecr(tmp_path, aws_env, changed)
    assert recap(again.stdout)["account"]["changed"] == 0 and "ECR sets encryption at creation only" in again.stderr

    # Without purge, an undeclared replication stays; with it, it goes.
    kept = run_ecr(tmp_path, aws_env, {**changed, "ecr_account_replication": [], "ecr_account_purge": False})
    assert recap(kept.stdout)["account"]["changed"] == 0
    gone = run_ecr(tmp_path, aws_env, {**changed, "ecr_account_replication": []})
    assert "delete replication configuration registry" in gone.stdout
    assert settings_state(ecr)["replication"] == {"rules": []}


def test_an_account_of_the_inventory_gets_the_registry_policy_replication_into_it_needs(
    tmp_path: Path, aws_env: dict[str, str], account: Any
) -> None:
    # Two accounts of one inventory (moto serves both from one endpoint: the destination is its eu-west-1).
    destination = {"region": "eu-west-1", "registry_id": "123456789012"}
    foreign = {
        "Sid": "SomeoneElsesReplication",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
        "Action": ["ecr:ReplicateImage"],
        "Resource": "arn:aws:ecr:eu-west-1:123456789012:repository/*",
    }
    eu = boto3.client(
        "ecr",
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    eu.put_registry_policy(policyText=json.dumps({"Version": "2012-10-17", "Statement": [foreign]}))
    endpoint = aws_env["AWS_ENDPOINT_URL"]
    hosts = {
        "source": {
            "ecr_account_region": "us-east-1",
            "ecr_account_id": OTHER,
            "ecr_account_replication": [{"destinations": [destination]}],
        },
        "destination": {
            "ecr_account_region": "eu-west-1",
            "ecr_account_id": "123456789012",
            "ecr_account_purge": False,
        },
    }
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump({"ecr_accounts": {"hosts": hosts, "vars": {"ecr_account_endpoint_url": endpoint}}})
    )
    env = {key: value for key, value in aws_env.items() if key != "AWS_ENDPOINT_URL"}
    for run in range(2):
        result = ansible_playbook("-i", str(inventory), "playbooks/ecr.yml", "--diff", env=env)
        assert result.returncode == 0, result.stdout[-3000:]
        assert recap(result.stdout)["destination"]["changed"] == (1 - run)
    statements = json.loads(eu.get_registry_policy()["policyText"])["Statement"]
    assert foreign in statements  # the registry policy's other statements stay
    assert [item for item in statements if item != foreign] == [
        ecr_account.replication_statement([OTHER], "eu-west-1", "123456789012", "x")
    ]


def test_a_bad_2026_setting_stops_the_run_before_any_ecr_api_call(
    tmp_path: Path, aws_env: dict[str, str], account: Any, moto_endpoint: str
) -> None:
    for bad in (
        {**SETTINGS, "ecr_account_replication": [{"destinations": [{"region": "eu-west-9", "registry_id": OTHER}]}]},
        {
            **SETTINGS,
            "ecr_account_organization_id": ORG,
            "ecr_account_repositories": [{"name": "team/app", "encryption": {"type": "KMS"}}],
        },
    ):
        result = run_ecr(tmp_path, aws_env, bad)
        assert result.returncode != 0
        assert "is not accepted" in result.stdout
        assert [op for op in operations(moto_endpoint) if op.startswith("AmazonEC2ContainerRegistry")] == []
    # Negative control: the good declaration does call ECR.
    assert run_ecr(tmp_path, aws_env, SETTINGS).returncode == 0
    assert operations(moto_endpoint)


def test_the_readmes_2026_example_is_accepted_and_planned_as_documented() -> None:
    variables = yaml.safe_load(readme_block("<!-- ecr-account-2026-example -->", "docs/ecr-account.md"))
    result = ecr_account.plan(
        {"region": "us-east-1", **{k.removeprefix("ecr_account_"): v for k, v in variables.items()}}
    )
    app = result["repositories"][0]
    assert app["encryption"] == {"encryptionType": "KMS", "kmsKey": "alias/ecr-shared"}
    assert app["image_tag_mutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert [item["filter"] for item in app["exclusions"]] == ["latest", "dev-*"]
    rules = json.loads(app["lifecycle_policy"])["rules"]
    assert [(rule["action"]["type"], rule["selection"]["countType"]) for rule in rules] == [
        ("expire", "sinceImagePushed"),
        ("transition", "sinceImagePulled"),
        ("expire", "sinceImageTransitioned"),
    ]
    assert result["creation_templates"][0]["encryptionConfiguration"]["encryptionType"] == "KMS"
    destinations = result["replication"]["rules"][0]["destinations"]
    assert {d["registryId"] for d in destinations} == {"123456789012", OTHER}
    assert result["scanning"]["scanType"] == "ENHANCED" and len(result["scanning"]["rules"]) == 2
    # The documented trap: the same repository with the AWS-managed key is refused.
    variables["ecr_account_repositories"][0]["encryption"] = {"type": "KMS"}
    with pytest.raises(InputError, match="organization_id's read policy"):
        ecr_account.plan({"region": "us-east-1", **{k.removeprefix("ecr_account_"): v for k, v in variables.items()}})
