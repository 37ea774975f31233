"""The runner service's environment: region, cache directory, PATH; as a drop-in or an env file."""

from __future__ import annotations

import pytest

from ecrkit.errors import FileFormatError, InputError
from ecrkit.hoststate import runner_files
from ecrkit.renderers import runner_config, service_env
from ecrkit.settings import CredentialRule
from tests.facts import root_files

EU = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def test_the_region_comes_from_the_first_registry_unless_given() -> None:
    assert service_env.environment(CredentialRule.build([EU])) == {"AWS_REGION": "eu-west-1"}
    assert service_env.environment(CredentialRule.build([EU]), region="us-east-2")["AWS_REGION"] == "us-east-2"


def test_creds_store_without_a_region_is_refused() -> None:
    with pytest.raises(InputError, match=r"gitlab_runner_ecr_region: '' is not accepted.*`list` \(GitLab Runner\)"):
        service_env.environment(CredentialRule.build([]), source="gitlab_runner_ecr_")


def test_path_is_set_only_when_systemd_would_not_find_the_helper() -> None:
    rule = CredentialRule.build([EU])
    assert "PATH" not in service_env.environment(rule, helper_dir="/usr/local/bin")
    env = service_env.environment(rule, helper_dir="/opt/ecr/bin", cache_dir="/var/lib/ecr-login")
    assert env["PATH"] == "/opt/ecr/bin:" + service_env.SYSTEMD_PATH
    assert env["AWS_ECR_CACHE_DIR"] == "/var/lib/ecr-login"


def test_the_two_forms() -> None:
    env = {"AWS_REGION": "eu-west-1", "AWS_ECR_CACHE_DIR": "/var/lib/ecr-login"}
    assert service_env.drop_in(env).splitlines()[1:] == [
        "[Service]",
        'Environment="AWS_REGION=eu-west-1"',
        'Environment="AWS_ECR_CACHE_DIR=/var/lib/ecr-login"',
    ]
    assert service_env.env_file(env) == "AWS_REGION=eu-west-1\nAWS_ECR_CACHE_DIR=/var/lib/ecr-login\n"


def test_a_runner_in_a_container_gets_an_env_file_and_no_restart() -> None:
    config = '[[runners]]\n  name = "a"\n  token = "glrt-secret"\n  executor = "docker"\n'
    settings = runner_config.RunnerSettings(CredentialRule.build([EU]))
    plan = runner_files(
        root_files({"/etc/gitlab-runner/config.toml": config}),
        config_path="/etc/gitlab-runner/config.toml",
        settings=settings,
        env={"AWS_REGION": "eu-west-1"},
        env_path="/etc/gitlab-runner/ecrkit.env",
        env_form="env-file",
    )
    files = plan["files"]
    assert {name: (f["path"], f["write"]) for name, f in files.items()} == {
        "service_env": ("/etc/gitlab-runner/ecrkit.env", True),
        "config_toml": ("/etc/gitlab-runner/config.toml", True),
    }
    assert files["service_env"]["content"] == "AWS_REGION=eu-west-1\n" and plan["restart"] is False
    assert "glrt-secret" not in str(plan["redacted"]) and "glrt-secret" in files["config_toml"]["content"]


def test_a_manager_without_config_toml_is_told_to_register_first() -> None:
    with pytest.raises(FileFormatError, match="register the runner first"):
        runner_files(
            root_files({}),
            config_path="/etc/gitlab-runner/config.toml",
            settings=runner_config.RunnerSettings(CredentialRule.build([EU])),
            env={},
            env_path="/etc/systemd/system/gitlab-runner.service.d/ecrkit.conf",
            env_form="drop-in",
        )


def test_an_environment_file_keeps_its_other_lines_and_gets_ecrkits_keys() -> None:
    text = "# the agent's\nMESOS_MASTER=zk://m:2181/mesos\nAWS_REGION=us-east-1\nAWS_REGION=us-west-2\nLAST=1"
    merged = service_env.merge_env_file(text, {"AWS_REGION": "eu-west-1", "AWS_ECR_CACHE_DIR": "/var/lib/ecr-login"})
    assert merged == (
        "# the agent's\nMESOS_MASTER=zk://m:2181/mesos\nAWS_REGION=us-east-1\nAWS_REGION=eu-west-1\nLAST=1\n"
        "AWS_ECR_CACHE_DIR=/var/lib/ecr-login\n"
    )  # the last assignment is the one systemd applies: it is the one replaced
    assert service_env.merge_env_file(merged, {"AWS_REGION": "eu-west-1"}) == merged
    assert service_env.merge_env_file(None, {"AWS_REGION": "eu-west-1"}) == "AWS_REGION=eu-west-1\n"
