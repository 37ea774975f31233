"""The docker-autoscaler job hosts' launch template and Auto Scaling group (ecrkit.job_hosts), against
moto as a server over HTTP: created as declared, idempotent, check mode changing nothing, drift
reported and corrected, bad input named before any call."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from email import message_from_string
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from ecrkit import job_hosts
from ecrkit.errors import InputError
from testbed.hosts import ansible_playbook, recap
from tests.conftest import run_ecrkit

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
counter = iter(range(1000))


@pytest.fixture
def clients(aws_env: dict[str, str]) -> tuple[Any, Any]:
    options = {
        "endpoint_url": aws_env["AWS_ENDPOINT_URL"],
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return boto3.client("ec2", **options), boto3.client("autoscaling", **options)


@pytest.fixture
def declaration() -> Iterator[dict[str, Any]]:
    """A group of its own per test: the moto server is shared by the session."""
    yield {
        "region": "us-east-1",
        "name": f"gitlab-jobs-{next(counter)}",
        "instance_profile": "gitlab-job-hosts",
        "image_id": "ami-12c6146b",
        "instance_type": "t3.small",
        "availability_zones": ["us-east-1a", "us-east-1b"],
        "max_size": 10,
        "registries": [ECR],
    }


def sync(clients: tuple[Any, Any], declaration: dict[str, Any], check: bool = False) -> tuple[list[str], list[str]]:
    changes, drift = job_hosts.sync(*clients, job_hosts.plan(declaration), check=check)
    return [str(change) for change in changes], drift


def default_data(ec2: Any, name: str) -> dict[str, Any]:
    versions = ec2.describe_launch_template_versions(LaunchTemplateName=name, Versions=["$Default"])
    return dict(versions["LaunchTemplateVersions"][0]["LaunchTemplateData"])


def group(autoscaling: Any, name: str) -> dict[str, Any]:
    return dict(autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0])


def test_the_template_and_group_are_made_as_declared_and_a_second_run_changes_nothing(
    clients: tuple[Any, Any], declaration: dict[str, Any]
) -> None:
    ec2, autoscaling = clients
    name = declaration["name"]
    changes, drift = sync(clients, declaration)
    assert changes == [f"create launch template {name}", f"create auto scaling group {name}"] and drift == []
    data = default_data(ec2, name)
    assert data["MetadataOptions"] == {
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
        "HttpEndpoint": "enabled",
    }
    assert data["IamInstanceProfile"] == {"Name": "gitlab-job-hosts"} and data["ImageId"] == "ami-12c6146b"
    mime = message_from_string(base64.b64decode(data["UserData"]).decode())
    [part] = [part for part in mime.walk() if not part.is_multipart()]
    assert mime.is_multipart() and part.get_content_type() == "text/x-shellscript"
    assert f'{{"credHelpers":{{"{ECR}":"ecr-login"}}}}' in str(part.get_payload())
    made = group(autoscaling, name)
    assert made["LaunchTemplate"]["LaunchTemplateName"] == name and made["LaunchTemplate"]["Version"] == "$Default"
    assert (made["MinSize"], made["MaxSize"], made["DesiredCapacity"]) == (0, 10, 0)
    assert made["NewInstancesProtectedFromScaleIn"] is True
    assert [p["ProcessName"] for p in made["SuspendedProcesses"]] == ["AZRebalance"]
    assert autoscaling.describe_policies(AutoScalingGroupName=name)["ScalingPolicies"] == []
    assert sync(clients, declaration) == ([], [])
    versions = ec2.describe_launch_template_versions(LaunchTemplateName=name)["LaunchTemplateVersions"]
    assert len(versions) == 1


def test_check_mode_says_what_it_would_do_and_changes_nothing(
    clients: tuple[Any, Any], declaration: dict[str, Any]
) -> None:
    ec2, autoscaling = clients
    name = declaration["name"]
    assert sync(clients, declaration, check=True)[0] == [f"create launch template {name}",
                                                         f"create auto scaling group {name}"]  # fmt: skip
    assert (
        ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [name]}])["LaunchTemplates"]
        == []
    )
    assert autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"] == []
    sync(clients, declaration)
    changed = {**declaration, "hop_limit": 2, "max_size": 4}
    assert sync(clients, changed, check=True) == (
        [f"update launch template {name}", f"update auto scaling group {name}"],
        [],
    )
    assert default_data(ec2, name)["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert group(autoscaling, name)["MaxSize"] == 10


def test_a_changed_declaration_makes_one_new_default_version_and_is_not_drift(
    clients: tuple[Any, Any], declaration: dict[str, Any]
) -> None:
    ec2, autoscaling = clients
    name = declaration["name"]
    sync(clients, declaration)
    changed = {**declaration, "hop_limit": 2, "max_size": 4}
    assert sync(clients, changed) == ([f"update launch template {name}", f"update auto scaling group {name}"], [])
    assert default_data(ec2, name)["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    assert ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"][0]["DefaultVersionNumber"] == 2
    assert group(autoscaling, name)["MaxSize"] == 4
    assert sync(clients, changed) == ([], [])


def test_a_hop_limit_changed_by_hand_is_drift_reported_and_restored(
    clients: tuple[Any, Any], declaration: dict[str, Any]
) -> None:
    ec2, _ = clients
    name = declaration["name"]
    sync(clients, declaration)
    by_hand = default_data(ec2, name)
    by_hand["MetadataOptions"] = {**by_hand["MetadataOptions"], "HttpPutResponseHopLimit": 2}
    made = ec2.create_launch_template_version(LaunchTemplateName=name, LaunchTemplateData=by_hand)
    ec2.modify_launch_template(
        LaunchTemplateName=name, DefaultVersion=str(made["LaunchTemplateVersion"]["VersionNumber"])
    )
    changes, drift = sync(clients, declaration, check=True)
    assert changes == [f"update launch template {name}"]
    assert len(drift) == 1 and "default version 2 was not written by ecrkit" in drift[0]
    assert "MetadataOptions.HttpPutResponseHopLimit 2, declared 1" in drift[0]
    assert default_data(ec2, name)["MetadataOptions"]["HttpPutResponseHopLimit"] == 2  # check mode: unchanged
    assert sync(clients, declaration)[1] == drift
    assert default_data(ec2, name)["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert sync(clients, declaration) == ([], [])


def test_a_scaling_policy_scale_in_protection_and_azrebalance_changed_by_hand_are_drift(
    clients: tuple[Any, Any], declaration: dict[str, Any]
) -> None:
    _, autoscaling = clients
    name = declaration["name"]
    sync(clients, declaration)
    autoscaling.put_scaling_policy(AutoScalingGroupName=name, PolicyName="cpu", PolicyType="SimpleScaling",
                                   AdjustmentType="ChangeInCapacity", ScalingAdjustment=1)  # fmt: skip
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, NewInstancesProtectedFromScaleIn=False)
    autoscaling.resume_processes(AutoScalingGroupName=name, ScalingProcesses=["AZRebalance"])
    changes, drift = sync(clients, declaration)
    assert changes == [f"update auto scaling group {name}", f"update suspended processes {name}",
                       f"delete scaling policy {name}/cpu"]  # fmt: skip
    assert [line.split(": ", 1)[1].split(" ")[0] for line in drift] == ["scale-in", "AZRebalance", "scaling"]
    made = group(autoscaling, name)
    assert made["NewInstancesProtectedFromScaleIn"] is True
    assert [p["ProcessName"] for p in made["SuspendedProcesses"]] == ["AZRebalance"]
    assert autoscaling.describe_policies(AutoScalingGroupName=name)["ScalingPolicies"] == []
    assert sync(clients, declaration) == ([], [])


def test_the_desired_capacity_is_the_runners_after_creation(
    clients: tuple[Any, Any], declaration: dict[str, Any]
) -> None:
    _, autoscaling = clients
    name = declaration["name"]
    sync(clients, declaration)
    autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=3)  # as the runner scales
    assert sync(clients, declaration) == ([], [])
    assert group(autoscaling, name)["DesiredCapacity"] == 3


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"hop_limit": 0}, "hop_limit: 0 is not accepted; expected an integer from 1 to 64"),
        ({"hop_limit": True}, "hop_limit: True"),
        ({"instance_profile": "role/with space"}, "instance_profile: 'role/with space'"),
        ({"image_id": "ubuntu"}, "image_id: 'ubuntu'"),
        ({"security_group_ids": ["default"]}, "security_group_ids: ['default']"),
        ({"subnets": ["subnet-0123456789abcdef0"]}, "subnets, availability_zones"),
        ({"availability_zones": []}, "subnets, availability_zones: None"),
        ({"max_size": 0}, "max_size: 0 is not accepted; expected an integer from 1"),
        ({"min_size": 3, "max_size": 2}, "max_size: 2 is not accepted; expected an integer from 3"),
        ({"desired_capacity": 11}, "desired_capacity: 11"),
        ({"registries": ["example.com"]}, "registries"),
        ({"helper_version": "latest"}, "helper_version"),
        ({"hop_limt": 1}, "hop_limt: 1 is not accepted; expected one of"),
        ({"region": "eu-west-9"}, "region: 'eu-west-9'"),
    ],
)
def test_bad_input_is_named_before_any_call(
    clients: tuple[Any, Any], declaration: dict[str, Any], change: dict[str, Any], named: str
) -> None:
    ec2, _ = clients
    with pytest.raises(InputError, match=None) as raised:
        sync(clients, {**declaration, **change})
    assert named in str(raised.value)
    name = declaration["name"]
    assert (
        ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [name]}])["LaunchTemplates"]
        == []
    )


def test_render_launch_template_prints_what_the_declaration_writes() -> None:
    done = run_ecrkit("render", "launch-template", "--registry", ECR, "--instance-profile", "gitlab-job-hosts",
                      "--image-id", "ami-12c6146b", "--security-group", "sg-0123456789abcdef0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    planned = job_hosts.plan(
        {"region": "us-east-1", "name": "g", "launch_template_name": "lt-x", "max_size": 1, "registries": [ECR],
         "availability_zones": ["us-east-1a"], "instance_profile": "gitlab-job-hosts", "image_id": "ami-12c6146b",
         "security_group_ids": ["sg-0123456789abcdef0"]}
    )  # fmt: skip
    assert printed == planned["launch_template"]["data"]
    assert printed["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    bad = run_ecrkit("render", "launch-template", "--hop-limit", "65")
    assert bad.returncode == 2 and "--hop-limit: 65 is not accepted" in bad.stderr and bad.stdout == ""


# -- playbooks/autoscaling_groups.yml (the role and its module) against moto over HTTP ---------------


def run_playbook(tmp_path: Path, aws_env: dict[str, str], variables: dict[str, Any], *options: str) -> Any:
    """The playbook, told the stand-in's endpoint by the role's variable (not the SDK's AWS_ENDPOINT_URL)."""
    inventory = tmp_path / "hosts.yml"
    host = {"autoscaling_group_endpoint_url": aws_env["AWS_ENDPOINT_URL"], **variables}
    inventory.write_text(yaml.safe_dump({"autoscaling_groups": {"hosts": {"group": host}}}))
    env = {key: value for key, value in aws_env.items() if key != "AWS_ENDPOINT_URL"}
    return ansible_playbook("-i", str(inventory), "playbooks/autoscaling_groups.yml", "--diff", *options, env=env)


def role_variables(declaration: dict[str, Any]) -> dict[str, Any]:
    return {f"autoscaling_group_{key}": value for key, value in declaration.items()}


def test_the_role_in_check_mode_then_applied_then_idempotent_then_drift_warned(
    tmp_path: Path, aws_env: dict[str, str], clients: tuple[Any, Any], declaration: dict[str, Any]
) -> None:
    ec2, autoscaling = clients
    name, variables = declaration["name"], role_variables(declaration)
    checked = run_playbook(tmp_path, aws_env, variables, "--check")
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert recap(checked.stdout)["group"]["changed"] == 1 and f"create auto scaling group {name}" in checked.stdout
    assert autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"] == []
    first = run_playbook(tmp_path, aws_env, variables)
    assert first.returncode == 0 and recap(first.stdout)["group"]["changed"] == 1, first.stdout[-3000:]
    assert default_data(ec2, name)["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert group(autoscaling, name)["NewInstancesProtectedFromScaleIn"] is True
    second = run_playbook(tmp_path, aws_env, variables)
    assert second.returncode == 0 and recap(second.stdout)["group"]["changed"] == 0, second.stdout[-3000:]
    autoscaling.put_scaling_policy(AutoScalingGroupName=name, PolicyName="cpu", PolicyType="SimpleScaling",
                                   AdjustmentType="ChangeInCapacity", ScalingAdjustment=1)  # fmt: skip
    drifted = run_playbook(tmp_path, aws_env, variables, "--check")
    assert recap(drifted.stdout)["group"]["changed"] == 1
    assert (
        "[WARNING]: auto scaling group" in drifted.stdout + drifted.stderr
        and "scaling policy 'cpu'" in drifted.stdout + drifted.stderr
    )
    assert len(autoscaling.describe_policies(AutoScalingGroupName=name)["ScalingPolicies"]) == 1


def test_the_role_stops_on_a_bad_variable_before_any_call(
    tmp_path: Path, aws_env: dict[str, str], clients: tuple[Any, Any], declaration: dict[str, Any]
) -> None:
    ec2, _ = clients
    result = run_playbook(tmp_path, aws_env, role_variables({**declaration, "hop_limit": 0}))
    assert result.returncode != 0
    assert "autoscaling_group_hop_limit: 0 is not accepted" in result.stdout
    found = ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [declaration["name"]]}])
    assert found["LaunchTemplates"] == []
