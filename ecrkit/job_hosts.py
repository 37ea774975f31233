"""The job hosts of a docker-autoscaler runner, declared: the EC2 launch template they boot from and
the Auto Scaling group the runner's fleeting plugin (`plugin = "aws"`) scales.

The launch template carries ecrkit's userdata in MIME form (the helper installed and named in
root's config.json), IMDSv2 required with a response hop limit (1 by default: job containers one
hop further cannot reach the instance role) and the instance profile. The group gets the settings
GitLab's docs require for docker-autoscaler: no scaling policy (the runner scales), new instances
protected from scale-in (the runner removes them), AZRebalance suspended (it would terminate
instances that run jobs); min and max size as declared. The desired capacity is set when the group
is created and is the runner's afterwards: it is never reset.

`plan` validates a whole declaration before any API call; `sync` makes the account match through
boto3. A new launch template version is made only when the content differs, and it becomes the
default. Each version ecrkit writes says so in its description, with the sha256 of its data: a
default version that is not ecrkit's, and any difference in the group's fixed settings (a scaling
policy added, scale-in protection off, AZRebalance resumed, another template), is drift, reported
and corrected.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from ecrkit import helper, plans
from ecrkit.constants import HELPER_VERSION, HOP_LIMIT, RELEASE_BASE_URL
from ecrkit.ecr_account import Change
from ecrkit.errors import InputError
from ecrkit.renderers import userdata
from ecrkit.settings import validate_autoscaling_group, validate_hop_limit, validate_region

Name = plans.Name
TEMPLATE_NAME = re.compile(r"^[a-zA-Z0-9().\-/_]{3,128}\Z", re.ASCII)  # EC2's pattern and lengths
IMAGE_ID = re.compile(r"^ami-[0-9a-f]{8,17}\Z", re.ASCII)
INSTANCE_TYPE = re.compile(r"^[a-z0-9-]+\.[a-z0-9-]+\Z", re.ASCII)
SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}\Z", re.ASCII)
SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}\Z", re.ASCII)
ZONE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d[a-z]\Z", re.ASCII)
PROFILE_NAME = re.compile(r"^[\w+=,.@-]{1,128}\Z", re.ASCII)  # IAM's pattern for names
PROFILE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]{1,512}\Z", re.ASCII)
SUSPENDED = ("AZRebalance",)  # GitLab's docs: instances running jobs must not be rebalanced away
DESCRIPTION = "ecrkit sha256:"  # + the sha256 of the version's data, in each version ecrkit writes
DEFAULT_VERSION = "$Default"
KEYS = frozenset(
    ("name", "launch_template_name", "instance_profile", "hop_limit", "image_id", "instance_type",
     "security_group_ids", "subnets", "availability_zones", "min_size", "max_size", "desired_capacity",
     "registries", "public", "creds_store", "helper_version", "release_base_url", "url", "sha256")
)  # fmt: skip
PLAIN: Name = plans.variables("")  # errors name the declaration's own keys


def launch_template_data(
    userdata_text: str,
    *,
    instance_profile: str = "",
    hop_limit: int = HOP_LIMIT,
    image_id: str = "",
    instance_type: str = "",
    security_group_ids: object = (),
    name: Name = PLAIN,
) -> dict[str, Any]:
    """LaunchTemplateData as EC2 takes it: the userdata (base64), IMDSv2 required with the hop limit,
    the instance profile and the optional image, type and security groups; each input checked."""
    validate_hop_limit(hop_limit, name("hop_limit"))
    size = len(userdata_text.encode())
    if size > userdata.EC2_USERDATA_LIMIT:
        raise InputError("userdata", f"{size} bytes", f"at most {userdata.EC2_USERDATA_LIMIT} bytes (EC2's limit)")
    data: dict[str, Any] = {
        "UserData": base64.b64encode(userdata_text.encode()).decode(),
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": hop_limit, "HttpEndpoint": "enabled"},
    }
    if instance_profile:
        if not isinstance(instance_profile, str) or not (
            PROFILE_NAME.match(instance_profile) or PROFILE_ARN.match(instance_profile)
        ):
            raise InputError(name("instance_profile"), instance_profile, "an IAM instance profile name or ARN")
        data["IamInstanceProfile"] = {"Arn" if instance_profile.startswith("arn:") else "Name": instance_profile}
    if image_id:
        data["ImageId"] = _match(image_id, IMAGE_ID, name("image_id"), "an AMI ID such as ami-0123456789abcdef0")
    if instance_type:
        data["InstanceType"] = _match(instance_type, INSTANCE_TYPE, name("instance_type"), "an instance type, t3.small")
    groups = _strings(security_group_ids, name("security_group_ids"), SECURITY_GROUP, "security group IDs (sg-...)")
    if groups:
        data["SecurityGroupIds"] = groups
    return data


def plan(declaration: Mapping[str, Any], name: Name = PLAIN) -> dict[str, Any]:
    """Validate the whole declaration (keyed as the role's variables without their prefix; `name`
    names them in errors), then return {region, launch_template: {name, data}, group}."""
    unknown = sorted(set(declaration) - KEYS - {"region", "profile", "endpoint_url"})
    if unknown:
        raise InputError(name(unknown[0]), declaration[unknown[0]], f"one of {', '.join(sorted(KEYS))}")
    region = validate_region(declaration.get("region"), name("region"))
    group = validate_autoscaling_group(declaration.get("name"), name("name"))
    template = declaration.get("launch_template_name") or group
    template = _match(template, TEMPLATE_NAME, name("launch_template_name"), "3 to 128 of a-z A-Z 0-9 ( ) . - / _")
    rule = plans.credential_rule(
        {key: declaration.get(key) or default for key, default in (("registries", []), ("public", False),
                                                                   ("creds_store", False))},
        name,
    )  # fmt: skip
    version = helper.validate_version(declaration.get("helper_version") or HELPER_VERSION, name("helper_version"))
    text = plans.job_host_userdata(
        rule,
        version=version,
        release_base_url=declaration.get("release_base_url") or RELEASE_BASE_URL,
        url=declaration.get("url") or "",
        sha256=declaration.get("sha256") or "",
        form="mime",
        name=name,
    )
    data = launch_template_data(
        text,
        instance_profile=declaration.get("instance_profile") or "",
        hop_limit=declaration.get("hop_limit", HOP_LIMIT),
        image_id=declaration.get("image_id") or "",
        instance_type=declaration.get("instance_type") or "",
        security_group_ids=declaration.get("security_group_ids") or [],
        name=name,
    )
    subnets = _strings(declaration.get("subnets") or [], name("subnets"), SUBNET, "subnet IDs (subnet-...)")
    zones = _strings(declaration.get("availability_zones") or [], name("availability_zones"), ZONE, "zones, eu-west-1a")
    if bool(subnets) == bool(zones):
        raise InputError(f"{name('subnets')}, {name('availability_zones')}", subnets or zones or None,
                         "exactly one of the two: the subnets (in a VPC) or the availability zones")  # fmt: skip
    low = _size(declaration.get("min_size", 0), name("min_size"), 0)
    high = _size(declaration.get("max_size"), name("max_size"), max(low, 1))
    desired = declaration.get("desired_capacity")
    desired = low if desired is None else _size(desired, name("desired_capacity"), low)
    if desired > high:
        raise InputError(name("desired_capacity"), desired, f"from {name('min_size')} to {name('max_size')} ({high})")
    return {
        "region": region,
        "launch_template": {"name": template, "data": data},
        "group": {
            "name": group,
            "min_size": low,
            "max_size": high,
            "desired_capacity": desired,
            "subnets": subnets,
            "availability_zones": zones,
        },
    }


def _match(value: object, pattern: re.Pattern[str], source: str, accepted: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InputError(source, value, accepted)
    return value


def _strings(value: object, source: str, pattern: re.Pattern[str], accepted: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and pattern.match(v) for v in value):
        raise InputError(source, value, f"a list of {accepted}")
    if len(set(value)) != len(value):
        raise InputError(source, value, f"a list of {accepted}, each once")
    return list(value)


def _size(value: object, source: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 10000:
        raise InputError(source, value, f"an integer from {low} to 10000")
    return value


# -- sync ----------------------------------------------------------------------------------------


def digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def sync(ec2: Any, autoscaling: Any, planned: Mapping[str, Any], *, check: bool) -> tuple[list[Change], list[str]]:
    """Make the launch template and the group match `planned` (plan's output); in check mode only say
    what would change. Returns the changes, and the drift found (each also corrected, as a change)."""
    changes, drift = _sync_template(ec2, planned["launch_template"], check)
    group_changes, group_drift = _sync_group(autoscaling, planned["group"], planned["launch_template"]["name"], check)
    return changes + group_changes, drift + group_drift


def _sync_template(ec2: Any, wanted: Mapping[str, Any], check: bool) -> tuple[list[Change], list[str]]:
    name, data = wanted["name"], wanted["data"]
    found = ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [name]}])
    templates = found.get("LaunchTemplates", [])
    description = DESCRIPTION + digest(data)
    if not templates:
        change = Change("launch template", name, "create", {}, _shown(data))
        if not check:
            ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data, VersionDescription=description)
        return [change], []
    template_id = templates[0]["LaunchTemplateId"]
    version = ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=[DEFAULT_VERSION])
    current = version["LaunchTemplateVersions"][0]
    current_data = current.get("LaunchTemplateData", {})
    if current_data == data:
        return [], []
    drift = []
    said = str(current.get("VersionDescription") or "")
    if not said.startswith(DESCRIPTION) or said != DESCRIPTION + digest(current_data):
        differences = ", ".join(_differences(current_data, data)) or "its data"
        drift.append(
            f"launch template {name}: its default version {current['VersionNumber']} was not written by ecrkit "
            f"and differs from the declaration ({differences}); a new version restores it"
        )
    change = Change("launch template", name, "update", _shown(current_data), _shown(data))
    if not check:
        made = ec2.create_launch_template_version(
            LaunchTemplateId=template_id, LaunchTemplateData=data, VersionDescription=description
        )
        number = made["LaunchTemplateVersion"]["VersionNumber"]
        ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=str(number))
    return [change], drift


def _shown(data: Mapping[str, Any]) -> dict[str, Any]:
    """The data for a diff: the userdata decoded (it holds no secret), the rest as it is."""
    shown = dict(data)
    if "UserData" in shown:
        shown["UserData"] = base64.b64decode(shown["UserData"]).decode(errors="replace")
    return shown


def _differences(current: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "") -> list[str]:
    said = []
    for key in sorted(set(current) | set(wanted)):
        here, there = current.get(key), wanted.get(key)
        if isinstance(here, Mapping) and isinstance(there, Mapping):
            said += _differences(here, there, f"{prefix}{key}.")
        elif here != there:
            value = "changed" if key == "UserData" else f"{here!r}, declared {there!r}"
            said.append(f"{prefix}{key} {value}")
    return said


def _group_settings(group: Mapping[str, Any], template: str) -> dict[str, Any]:
    """What ecrkit declares of a group, from plan's group (for the API's names)."""
    settings: dict[str, Any] = {
        "LaunchTemplate": {"LaunchTemplateName": template, "Version": DEFAULT_VERSION},
        "MinSize": group["min_size"],
        "MaxSize": group["max_size"],
        "NewInstancesProtectedFromScaleIn": True,
    }
    if group["subnets"]:
        settings["VPCZoneIdentifier"] = ",".join(group["subnets"])
    else:
        settings["AvailabilityZones"] = list(group["availability_zones"])
    return settings


def _current_settings(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The same keys, read from describe_auto_scaling_groups."""
    reference = found.get("LaunchTemplate") or {}
    current: dict[str, Any] = {
        "LaunchTemplate": {key: reference.get(key) for key in ("LaunchTemplateName", "Version")},
        "MinSize": found.get("MinSize"),
        "MaxSize": found.get("MaxSize"),
        "NewInstancesProtectedFromScaleIn": bool(found.get("NewInstancesProtectedFromScaleIn")),
    }
    if "VPCZoneIdentifier" in wanted:  # the same subnets in any order are the same
        subnets = sorted(filter(None, str(found.get("VPCZoneIdentifier") or "").split(",")))
        current["VPCZoneIdentifier"] = ",".join(subnets)
    else:
        current["AvailabilityZones"] = sorted(found.get("AvailabilityZones") or [])
    return current


def _sync_group(
    autoscaling: Any, group: Mapping[str, Any], template: str, check: bool
) -> tuple[list[Change], list[str]]:
    name = group["name"]
    wanted = _group_settings(group, template)
    comparable = {**wanted}
    if "VPCZoneIdentifier" in comparable:
        comparable["VPCZoneIdentifier"] = ",".join(sorted(group["subnets"]))
    else:
        comparable["AvailabilityZones"] = sorted(group["availability_zones"])
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name]).get("AutoScalingGroups", [])
    if not found:
        after = {**wanted, "DesiredCapacity": group["desired_capacity"], "SuspendedProcesses": list(SUSPENDED)}
        if not check:
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=name, DesiredCapacity=group["desired_capacity"], **wanted
            )
            autoscaling.suspend_processes(AutoScalingGroupName=name, ScalingProcesses=list(SUSPENDED))
        return [Change("auto scaling group", name, "create", {}, after)], []
    current = _current_settings(found[0], wanted)
    changes, drift = [], []
    fixed = {"LaunchTemplate": "launch template", "NewInstancesProtectedFromScaleIn": "scale-in protection"}
    for key, what in fixed.items():
        if current[key] != comparable[key]:
            drift.append(f"auto scaling group {name}: {what} is {current[key]!r}, GitLab's docker-autoscaler needs "
                         f"{comparable[key]!r}")  # fmt: skip
    if current != comparable:
        before = {key: current[key] for key in comparable if current[key] != comparable[key]}
        after = {key: comparable[key] for key in before}
        changes.append(Change("auto scaling group", name, "update", before, after))
        if not check:
            autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, **wanted)
    suspended = {process["ProcessName"] for process in found[0].get("SuspendedProcesses") or []}
    missing = [process for process in SUSPENDED if process not in suspended]
    if missing:
        drift.append(f"auto scaling group {name}: {', '.join(missing)} is not suspended; it would terminate "
                     "instances that run jobs")  # fmt: skip
        changes.append(Change("suspended processes", name, "update", {"suspended": sorted(suspended)},
                              {"suspended": sorted(suspended | set(missing))}))  # fmt: skip
        if not check:
            autoscaling.suspend_processes(AutoScalingGroupName=name, ScalingProcesses=missing)
    policies = [policy["PolicyName"] for policy in _policies(autoscaling, name)]
    for policy in policies:
        drift.append(f"auto scaling group {name}: scaling policy {policy!r}; the runner does the scaling (none is "
                     "GitLab's requirement)")  # fmt: skip
        changes.append(Change("scaling policy", f"{name}/{policy}", "delete", {"policy": policy}, {}))
        if not check:
            autoscaling.delete_policy(AutoScalingGroupName=name, PolicyName=policy)
    return changes, drift


def _policies(autoscaling: Any, name: str) -> list[dict[str, Any]]:
    pages = autoscaling.get_paginator("describe_policies").paginate(AutoScalingGroupName=name)
    return [policy for page in pages for policy in page.get("ScalingPolicies", [])]
