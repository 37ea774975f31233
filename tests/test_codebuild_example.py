"""The CodeBuild example (examples/codebuild): `ecrkit mirror --config ssm:/...` scheduled without GitLab.

The buildspec is read as CodeBuild reads it (version 0.2, its keys, phases of commands), each ecrkit command
line through ecrkit's own parser; the CloudFormation template through cfn-lint (offline) and by hand: its
inline buildspec is the file's, its ECR statements are `ecrkit render iam-policy --for mirror`'s, every
statement fits AWS's Service Authorization Reference, and its schedule expression is one EventBridge
Scheduler accepts."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecrkit import mirror
from ecrkit.cli import build_parser
from ecrkit.renderers import iam_policy
from tests.conftest import ROOT, readme_block
from tests.test_iam_sar import sar_problems

EXAMPLE = ROOT / "examples" / "codebuild"
# The buildspec reference (CodeBuild User Guide, "Build specification reference").
TOP_KEYS = {"version", "run-as", "env", "proxy", "batch", "phases", "reports", "artifacts", "cache"}
PHASES = {"install", "pre_build", "build", "post_build"}
PHASE_KEYS = {"run-as", "on-failure", "runtime-versions", "commands", "finally"}
# What the template's pseudo parameters stand for in the checks below.
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
TARGET = "123456789012.dkr.ecr.us-east-1.amazonaws.com"

# EventBridge Scheduler's expressions: rate(value unit), cron(6 fields), at(yyyy-mm-ddThh:mm:ss).
CRON_FIELD = {
    "minutes": r"[0-5]?\d", "hours": r"[01]?\d|2[0-3]", "day-of-month": r"[1-9]|[12]\d|3[01]",
    "month": r"[1-9]|1[0-2]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC",
    "day-of-week": r"[1-7]|SUN|MON|TUE|WED|THU|FRI|SAT", "year": r"19[7-9]\d|2[01]\d\d",
}  # fmt: skip


def valid_schedule(expression: str) -> bool:
    if match := re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression):
        return int(match[1]) >= 1 and (match[1] == "1") == (not match[2].endswith("s"))
    if re.fullmatch(r"at\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\)", expression):
        return True
    match = re.fullmatch(r"cron\(([^()]*)\)", expression)
    if not match or len(fields := match[1].split(" ")) != 6:
        return False
    for (name, value_pattern), field in zip(CRON_FIELD.items(), fields, strict=True):
        single = rf"(?:{value_pattern})"
        extra = {"day-of-month": r"|L|LW|\d{1,2}W", "day-of-week": r"|L|[1-7]L|[1-7]#[1-5]"}.get(name, "")
        item = rf"(?:\*|{single}(?:-{single})?)(?:/\d+)?{extra}"
        if not (field == "?" and name in ("day-of-month", "day-of-week")) and not re.fullmatch(
            rf"{item}(?:,{item})*", field
        ):
            return False
    return (fields[2] == "?") != (fields[4] == "?")  # exactly one of day-of-month and day-of-week is `?`


def buildspec() -> dict[str, Any]:
    loaded = yaml.safe_load((EXAMPLE / "buildspec.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def template() -> dict[str, Any]:
    loaded = yaml.safe_load((EXAMPLE / "schedule.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def resolved(value: Any, parameters: dict[str, str]) -> Any:
    """The template's value with Fn::Sub and Ref of parameters and pseudo parameters resolved."""
    names = parameters | PSEUDO
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return re.sub(r"\$\{([\w:]+)\}", lambda match: names[match[1]], value["Fn::Sub"])
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in names:
        return names[value["Ref"]]
    if isinstance(value, dict):
        return {key: resolved(item, parameters) for key, item in value.items()}
    if isinstance(value, list):
        return [resolved(item, parameters) for item in value]
    return value


def defaults() -> dict[str, str]:
    return {name: spec["Default"] for name, spec in template()["Parameters"].items() if "Default" in spec}


def commands(spec: dict[str, Any]) -> list[str]:
    return [line for phase in spec["phases"].values() for line in phase["commands"]]


def test_the_buildspec_holds_only_what_codebuild_accepts() -> None:
    spec = buildspec()
    assert spec["version"] == 0.2  # the buildspec version CodeBuild documents (0.1 is obsolete)
    assert set(spec) <= TOP_KEYS
    assert set(spec["phases"]) <= PHASES and {"install", "build"} <= set(spec["phases"])
    for name, phase in spec["phases"].items():
        assert set(phase) <= PHASE_KEYS, name
        assert phase["commands"] and all(isinstance(line, str) for line in phase["commands"]), name


def test_its_ecrkit_command_reads_the_config_from_parameter_store() -> None:
    parser = build_parser()
    runs = [shlex.split(line) for line in commands(buildspec()) if line.startswith("ecrkit ")]
    assert len(runs) == 1
    args = parser.parse_args(runs[0][1:])
    assert runs[0][1] == "mirror" and not args.dry_run
    assert args.config.startswith(mirror.SSM_SCHEME)
    assert mirror.SSM_NAME.fullmatch(args.config.removeprefix(mirror.SSM_SCHEME))
    # Negative control: the parser refuses what a typo would give.
    with pytest.raises(SystemExit):
        parser.parse_args(["mirror", "--config", "ssm:/x", "--jobs", "0"])


def test_the_template_passes_cfn_lint_and_runs_the_buildspec() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(EXAMPLE / "schedule.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    project = template()["Resources"]["MirrorProject"]["Properties"]
    inline = yaml.safe_load(resolved(project["Source"]["BuildSpec"], defaults()))
    assert inline == buildspec()
    assert project["Source"]["Type"] == "NO_SOURCE"  # the config is in Parameter Store, not in a repository
    assert f"ssm:{defaults()['ConfigParameter']}" in " ".join(commands(inline))


def test_the_role_is_ecrkits_mirror_policy_and_what_codebuild_needs() -> None:
    role = resolved(template()["Resources"]["MirrorRole"]["Properties"], defaults())
    (policy,) = role["Policies"]
    statements = {statement["Sid"]: statement for statement in policy["PolicyDocument"]["Statement"]}
    rendered = iam_policy.render("mirror", TARGET, (f"{defaults()['RepositoryPrefix']}/*",))
    for statement in rendered["Statement"]:
        ours = statements[statement["Sid"]]
        assert ours["Action"] == statement["Action"]
        assert ours["Resource"] in (statement["Resource"], [statement["Resource"]])
    assert statements["MirrorConfig"] == {
        "Sid": "MirrorConfig",
        "Effect": "Allow",
        "Action": ["ssm:GetParameter"],
        "Resource": ["arn:aws:ssm:us-east-1:123456789012:parameter/ecrkit/mirror"],
    }
    assert sar_problems(policy["PolicyDocument"]) == []
    scheduler = resolved(template()["Resources"]["SchedulerRole"]["Properties"], defaults())
    assert scheduler["Policies"][0]["PolicyDocument"]["Statement"][0]["Action"] == ["codebuild:StartBuild"]


def test_the_mirror_policy_grants_what_a_mirror_run_calls() -> None:
    """The actions `ecrkit mirror` needs, as its code calls them (negative control: pull-through lacks push)."""
    needed = {"ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability",
              "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
              "ecr:DescribeRepositories", "ecr:CreateRepository", "ecr:DescribePullThroughCacheRules"}  # fmt: skip

    def granted(context: str) -> set[str]:
        return {action for s in iam_policy.render(context)["Statement"] for action in s["Action"]}

    assert needed <= granted("mirror")
    assert not needed <= granted("pull-through")


def test_the_schedule_is_an_expression_eventbridge_scheduler_accepts() -> None:
    schedule = resolved(template()["Resources"]["MirrorSchedule"]["Properties"], defaults())
    assert valid_schedule(schedule["ScheduleExpression"])
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": ["MirrorProject", "Arn"]}
    assert schedule["FlexibleTimeWindow"]["Mode"] in ("OFF", "FLEXIBLE")
    for good in ("rate(1 day)", "rate(6 hours)", "cron(0 3 ? * MON-FRI *)", "cron(15 3 * * ? *)",
                 "cron(0/15 * * * ? *)", "at(2026-12-24T18:00:00)"):  # fmt: skip
        assert valid_schedule(good), good
    for bad in ("rate(1 days)", "rate(0 hours)", "cron(15 3 * * *)", "cron(15 3 * * * *)", "cron(15 3 ? * ? *)",
                "cron(60 3 * * ? *)", "15 3 * * *", "*-*-* 03:15:00"):  # fmt: skip
        assert not valid_schedule(bad), bad


def test_the_docs_show_the_buildspec() -> None:
    assert yaml.safe_load(readme_block("<!-- mirror-codebuild -->", "docs/mirroring.md")) == buildspec()
