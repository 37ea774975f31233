"""The ECR side: least-privilege IAM policies, the registries.conf redirect for podman and
CRI-O, and image references rewritten to a pull-through cache for Docker hosts."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import boto3
import pytest

from ecrkit.errors import InputError
from ecrkit.images import rewrite
from ecrkit.renderers import iam_policy
from tests.conftest import run_ecrkit

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
VIA = f"{REGISTRY}/docker-hub"
PULL = {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"}


def policy(*args: str) -> dict[str, Any]:
    done = run_ecrkit("render", "iam-policy", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("context", sorted(iam_policy.CONTEXTS))
def test_every_policy_is_valid_json_without_wildcard_actions(context: str) -> None:
    document = policy("--for", context)
    actions = [action for statement in document["Statement"] for action in statement["Action"]]
    assert all("*" not in action for action in actions)
    token = [s for s in document["Statement"] if "ecr:GetAuthorizationToken" in s["Action"]]
    assert [(s["Action"], s["Resource"]) for s in token] == [(["ecr:GetAuthorizationToken"], "*")]
    assert set(actions) >= PULL


def test_each_context_gets_its_own_actions() -> None:
    def actions(context: str) -> set[str]:
        return {a for s in policy("--for", context)["Statement"] for a in s["Action"]}

    for context in ("runner-manager", "job-host", "agent"):
        assert actions(context) == PULL | {"ecr:GetAuthorizationToken"}
    assert {"ecr:BatchImportUpstreamImage", "ecr:CreateRepository"} <= actions("pull-through")
    assert "ecr:CreateRepository" not in actions("agent")
    assert {"ecr:PutLifecyclePolicy", "ecr:CreatePullThroughCacheRule"} <= actions("admin")


def test_named_repositories_narrow_the_read_actions_in_every_partition() -> None:
    document = policy("--for", "agent", "--registry", REGISTRY, "--repository", "team/app", "--repository", "base/*")
    assert document["Statement"][1]["Resource"] == [
        "arn:aws:ecr:us-east-1:123456789012:repository/team/app",
        "arn:aws:ecr:us-east-1:123456789012:repository/base/*",
    ]
    assert iam_policy.repository_arn("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "a").startswith(
        "arn:aws-cn:ecr:cn-north-1:"
    )
    assert iam_policy.repository_arn("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com", "a").startswith(
        "arn:aws-us-gov:"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--for", "agent", "--repository", "team/app"), "the registry the --repository names live in"),
        (("--for", "agent", "--registry", "public.ecr.aws", "--repository", "a"), "a private ECR registry"),
        (("--for", "agent", "--registry", REGISTRY, "--repository", "Team/App"), "'Team/App' is not accepted"),
        (("--for", "everyone"), "invalid choice: 'everyone'"),
    ],
)
def test_bad_policy_input_exits_2_naming_it(args: tuple[str, ...], message: str) -> None:
    done = run_ecrkit("render", "iam-policy", *args)
    assert done.returncode == 2 and message in done.stderr


def test_iam_accepts_the_policies(aws_env: dict[str, str]) -> None:
    """moto running as a server validates policy documents as IAM does."""
    iam = boto3.client(
        "iam",
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for context in iam_policy.CONTEXTS:
        document = json.dumps(iam_policy.render(context, REGISTRY, ("team/app",)))
        created = iam.create_policy(PolicyName=f"ecrkit-{context}", PolicyDocument=document)
        assert created["Policy"]["Arn"].endswith(f"policy/ecrkit-{context}")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("alpine:3.20", f"{VIA}/library/alpine:3.20"),
        ("alpine", f"{VIA}/library/alpine"),
        ("docker.io/alpine:3.20", f"{VIA}/library/alpine:3.20"),
        ("index.docker.io/library/alpine", f"{VIA}/library/alpine"),
        ("org/name:tag", f"{VIA}/org/name:tag"),
        ("org/name@sha256:" + "a" * 64, f"{VIA}/org/name@sha256:" + "a" * 64),
        ("ghcr.io/org/name:1", "ghcr.io/org/name:1"),  # not Docker Hub: left alone
        ("localhost:5000/name", "localhost:5000/name"),
        (f"{REGISTRY}/team/app:1", f"{REGISTRY}/team/app:1"),
    ],
)
def test_docker_hub_references_are_rewritten_to_the_cache(image: str, expected: str) -> None:
    assert rewrite(image, VIA) == expected


def test_other_upstreams_are_rewritten_only_when_asked() -> None:
    done = run_ecrkit("rewrite-image", "ghcr.io/org/name:1", "--via", f"{REGISTRY}/ghcr", "--upstream", "ghcr.io")
    assert done.returncode == 0 and done.stdout.strip() == f"{REGISTRY}/ghcr/org/name:1"
    assert rewrite("alpine:3.20", f"{REGISTRY}/ghcr", upstream="ghcr.io") == "alpine:3.20"


@pytest.mark.parametrize(
    ("image", "via", "message"),
    [
        ("Alpine:3.20", VIA, "IMAGE: 'Alpine:3.20'"),
        ("alpine", "registry.example.com/x", "--via"),
        ("alpine", REGISTRY, "--via"),
    ],
)
def test_bad_references_are_refused(image: str, via: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        rewrite(image, via)


def test_registries_conf_mirrors_docker_io_through_the_cache() -> None:
    done = run_ecrkit("render", "registries-conf", "--registry", REGISTRY, "--cache-prefix", "docker-hub")
    assert done.returncode == 0, done.stderr
    assert tomllib.loads(done.stdout) == {
        "registry": [{"prefix": "docker.io", "location": "docker.io", "mirror": [{"location": VIA}]}]
    }
    bad = run_ecrkit("render", "registries-conf", "--registry", "registry.example.com", "--cache-prefix", "x")
    assert bad.returncode == 2 and "registry.example.com" in bad.stderr
