"""One assembly path: the role's filter and the CLI call the same plan (ecrkit.plans), so that
`ecrkit render runner-config` / `render userdata` print what gitlab_runner_ecr writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ecrkit import converge, plans
from ecrkit.errors import InputError
from plugins.filter.ecrkit import FilterModule
from tests.conftest import run_ecrkit
from tests.facts import root_files, runner_options

FILTERS = FilterModule().filters()
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
TOML = '[[runners]]\n  name = "a"\n  token = "glrt-x"\n  executor = "docker+machine"\n'
USERDATA = "/etc/gitlab-runner/userdata.sh"
MIRROR = "https://mirror.example.com/releases"


def role_options(config: Path, **changed: Any) -> dict[str, Any]:
    """gitlab_runner_ecr's variables, as its converge task takes them, with the CLI's options below."""
    cli = {"docker_volumes": True, "instance_profile": "ci-jobs", "hop_limit": 1, "userdata_path": USERDATA}
    return runner_options(ECR, **{"config_path": str(config), "userdata_release_base_url": MIRROR, **cli, **changed})


def written(changes: converge.Changes) -> dict[str, str]:
    """What the role's converge task writes, by path."""
    return {item["path"]: item["content"] for item in changes["write"]["files"]}


def test_the_command_prints_the_config_toml_the_role_writes(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(TOML)
    plan = converge.role("gitlab_runner_ecr").plan(root_files({str(config): TOML}), role_options(config))
    printed = run_ecrkit(
        "render", "runner-config", "--config", str(config), "--registry", ECR, "--docker-volumes",
        "--instance-profile", "ci-jobs", "--userdata", USERDATA, "--hop-limit", "1",
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == written(plan)[str(config)]


def test_the_command_prints_the_userdata_the_role_writes(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    options = role_options(config, userdata_format="cloud-config")
    plan = converge.role("gitlab_runner_ecr").plan(root_files({str(config): TOML}), options)
    printed = run_ecrkit(
        "render", "userdata", "--registry", ECR, "--release-base-url", MIRROR, "--format", "cloud-config"
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == written(plan)[USERDATA]


def test_files_are_named_and_the_rule_comes_back() -> None:
    plan = plans.runner_plan(root_files({"/c.toml": TOML}), role_options(Path("/c.toml"), userdata_path=""))
    assert sorted(plan["files"]) == ["config_toml", "service_env"]
    assert plan["rule"] == {"registries": [ECR], "creds_store": False}
    assert 'Environment="AWS_REGION=eu-west-1"' in plan["files"]["service_env"]["content"]


def test_errors_name_the_variable_or_the_option() -> None:
    bad = {"registries": ["Nope"], "public": False, "creds_store": False}
    with pytest.raises(InputError, match=r"gitlab_runner_ecr_registries\[0\]"):
        plans.credential_rule(bad, plans.variables("gitlab_runner_ecr_"))
    with pytest.raises(InputError, match=r"--registry\[0\]"):
        plans.credential_rule(bad, plans.options_of(registries="--registry"))
    assert plans.options_of()("hop_limit") == "--hop-limit"


def test_the_marathon_plan_holds_what_the_role_writes() -> None:
    plan = plans.marathon_plan(
        {"registries": [ECR], "public": True, "creds_store": True, "region": "", "cache_dir": "/var/lib/ecr-login"}
    )
    assert plan["rule"] == {"registries": [ECR, "public.ecr.aws"], "creds_store": True}
    assert plan["env"] == {"AWS_REGION": "eu-west-1", "AWS_ECR_CACHE_DIR": "/var/lib/ecr-login"}
    assert json.loads(plan["docker_config"]) == {
        "auths": {},
        "credsStore": "ecr-login",
        "credHelpers": {ECR: "ecr-login", "public.ecr.aws": "ecr-login"},
    }


def test_validate_args_probe_the_rules_registries() -> None:
    args = FILTERS["validate_args"](
        {"registries": [], "public": True, "creds_store": False}, ["gitlab-runner"], ["root"]
    )
    assert args["registries"] == ["public.ecr.aws"]
    assert args["consumers"] == [{"service": "gitlab-runner"}, {"user": "root"}]
