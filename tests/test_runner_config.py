"""config.toml merged as TOML: ecrkit's keys in, everything else kept byte for byte."""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrkit.errors import FileFormatError, InputError
from ecrkit.hoststate import read_facts
from ecrkit.plans import runner_plan
from ecrkit.renderers.runner_config import (
    AUTH_PREFIX,
    HOP_LIMIT,
    RunnerSettings,
    machine_options,
    merge,
    validate_autoscaler,
    with_ready_command,
)
from ecrkit.renderers.userdata import instance_ready_command
from ecrkit.settings import CredentialRule
from tests.conftest import ROOT, readme_block, run_ecrkit

PAGE = "docs/gitlab-runner.md"  # the page whose examples these tests run

REGISTERED = (Path(__file__).parent / "data" / "runner-config.toml").read_text()
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
RULE = CredentialRule.build([REGISTRY])


def auth_configs(runner: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(e[len(AUTH_PREFIX) :]) for e in runner.get("environment", []) if e.startswith(AUTH_PREFIX)]


def full_settings() -> RunnerSettings:
    return RunnerSettings(
        RULE,
        docker_volumes=True,
        # 2, the opt-in: REGISTERED's hop-limit=1 is replaced, not added to
        machine_options=machine_options("ci-jobs", "/etc/gitlab-runner/ecrkit-userdata.sh", 2),
        autoscaler=validate_autoscaler({"max_instances": 20, "policy": [{"idle_count": 2, "idle_time": "20m0s"}]}),
    )


def test_every_line_ecrkit_does_not_own_is_kept_byte_for_byte() -> None:
    merged = merge(REGISTERED, full_settings(), path="config.toml").text
    owned = ("environment", "volumes", "hop-limit", "max_instances")
    for line in REGISTERED.splitlines():
        if not any(word in line for word in owned):
            assert line in merged.splitlines(), line
    before, after = tomllib.loads(REGISTERED), tomllib.loads(merged)
    for old, new in zip(before["runners"], after["runners"], strict=True):
        for key in ("name", "url", "id", "token", "token_obtained_at", "token_expires_at", "cache", "feature_flags"):
            assert new.get(key) == old.get(key), key


def test_each_runner_gets_exactly_one_auth_config_merged_with_what_it_had() -> None:
    after = tomllib.loads(merge(REGISTERED, full_settings(), path="config.toml").text)
    for runner in after["runners"]:
        [config] = auth_configs(runner)
        assert config["credHelpers"] == {REGISTRY: "ecr-login"}
    small = after["runners"][0]
    assert small["environment"][0] == "GIT_DEPTH=10"  # other entries stay, in place
    assert auth_configs(small)[0]["auths"] == {"registry.example.com": {"auth": "dXNlcjpwYXNz"}}


def test_merging_twice_changes_nothing_more() -> None:
    once = merge(REGISTERED, full_settings(), path="config.toml").text
    assert merge(once, full_settings(), path="config.toml").text == once


def test_a_file_with_nothing_to_change_is_returned_as_is() -> None:
    once = merge(REGISTERED, full_settings(), path="config.toml").text
    assert merge(once, full_settings(), path="config.toml").text is once


def test_duplicate_auth_entries_become_one() -> None:
    text = (
        '[[runners]]\n  name = "a"\n  executor = "docker"\n'
        '  environment = ["DOCKER_AUTH_CONFIG={\\"credsStore\\":\\"desktop\\"}", "X=1",'
        ' "DOCKER_AUTH_CONFIG={\\"auths\\":{}}"]\n'
    )
    runner = tomllib.loads(merge(text, RunnerSettings(RULE), path="c").text)["runners"][0]
    assert runner["environment"][1] == "X=1" and len(runner["environment"]) == 2
    assert auth_configs(runner) == [{"credsStore": "desktop", "auths": {}, "credHelpers": {REGISTRY: "ecr-login"}}]


def test_machine_options_replace_their_own_earlier_values_and_keep_the_rest() -> None:
    after = tomllib.loads(merge(REGISTERED, full_settings(), path="config.toml").text)
    options = after["runners"][1]["machine"]["MachineOptions"]
    assert options == [
        "amazonec2-region=us-east-1",
        "amazonec2-instance-type=m5.large",
        "amazonec2-metadata-token-response-hop-limit=2",
        "amazonec2-vpc-id=vpc-0abc",
        "amazonec2-metadata-token=required",
        "amazonec2-iam-instance-profile=ci-jobs",
        "amazonec2-userdata=/etc/gitlab-runner/ecrkit-userdata.sh",
    ]
    # Only docker+machine runners get them.
    assert "machine" not in after["runners"][0] and "machine" not in after["runners"][2]


def test_docker_autoscaler_gets_the_keys_given_and_keeps_the_others() -> None:
    after = tomllib.loads(merge(REGISTERED, full_settings(), path="config.toml").text)
    autoscaler = after["runners"][2]["autoscaler"]
    assert autoscaler["max_instances"] == 20 and autoscaler["plugin"] == "aws:latest"
    assert autoscaler["plugin_config"] == {"name": "fleet-asg"}
    assert autoscaler["policy"] == [{"idle_count": 2, "idle_time": "20m0s"}]


def test_volumes_only_on_request_and_never_twice() -> None:
    plain = tomllib.loads(merge(REGISTERED, RunnerSettings(RULE), path="c").text)
    assert plain["runners"][0]["docker"]["volumes"] == ["/cache"]
    after = tomllib.loads(merge(REGISTERED, full_settings(), path="c").text)
    helper = "/usr/local/bin/docker-credential-ecr-login"
    assert after["runners"][1]["docker"]["volumes"] == [
        "/cache",
        "/var/run/docker.sock:/var/run/docker.sock",  # the user's own, kept once
        "/root/.docker:/root/.docker:ro",
        f"{helper}:{helper}:ro",
    ]


def test_runners_can_be_selected_by_name() -> None:
    after = tomllib.loads(merge(REGISTERED, RunnerSettings(RULE, runners=("fleet",)), path="c").text)
    assert [len(auth_configs(r)) for r in after["runners"]] == [1, 0, 1]  # the first had one already
    assert auth_configs(after["runners"][0]) == [{"auths": {"registry.example.com": {"auth": "dXNlcjpwYXNz"}}}]
    with pytest.raises(InputError, match=r"'nope'.*docker-small, autoscale-machine, fleet"):
        merge(REGISTERED, RunnerSettings(RULE, runners=("nope",)), path="c")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[runners]]\nname = 'a'\n[runners.docker\n", "not valid TOML"),
        ("[[runners]]\nname = 'a'\n[runners.docker]\nx = 1\n[runners.docker]\ny = 1\n", "not valid TOML"),
        ("concurrent = 1\n", "has no \\[\\[runners\\]\\]"),
        ("[[runners]]\nname = 'a'\nenvironment = ['DOCKER_AUTH_CONFIG={oops']\n", "not valid JSON"),
    ],
)
def test_a_file_that_cannot_be_merged_stops_with_its_path(text: str, problem: str) -> None:
    with pytest.raises(FileFormatError, match=f"/etc/gitlab-runner/config.toml.*{problem}"):
        merge(text, RunnerSettings(RULE), path="/etc/gitlab-runner/config.toml")


def test_unknown_keys_are_reported_as_likely_typos() -> None:
    text = REGISTERED.replace("    IdleTime = 1800", '    IdleTime = 1800\n    MachineOption = ["x=1"]')
    typos = merge(text, RunnerSettings(RULE), path="c").typos
    assert typos == [
        "c: the top level: unknown key 'listen_adress', which GitLab Runner ignores (did you mean 'listen_address'?)",
        "c: [runners.machine] of runner 'autoscale-machine': unknown key 'MachineOption', which GitLab Runner "
        "ignores (did you mean 'MachineOptions'?)",
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: machine_options(hop_limit=0), "--hop-limit: 0 is not accepted"),
        (lambda: machine_options(instance_profile="a b"), "--instance-profile: 'a b'"),
        (lambda: machine_options(userdata="userdata.sh"), "an absolute path"),
        (lambda: validate_autoscaler({"max_instance": 3}), "autoscaler.max_instance"),
        (lambda: validate_autoscaler({"max_instances": "3"}), "a positive integer"),
        (lambda: validate_autoscaler({"policy": [{"idle_cont": 1}]}), r"policy\[0\]"),
        # GitLab's documented formats: Go durations, booleans, whole numbers; the AWS plugin's own keys.
        (lambda: validate_autoscaler({"policy": [{"idle_time": "20 minutes"}]}), r"policy\[0\]\.idle_time: '20 min"),
        (lambda: validate_autoscaler({"policy": [{"idle_count": -1}]}), r"idle_count: -1 .* 0 or more"),
        (lambda: validate_autoscaler({"policy": [{"periods": "* * * * *"}]}), "periods: .* a list of strings"),
        (lambda: validate_autoscaler({"connector_config": {"use_external_addr": "yes"}}), "a boolean"),
        (lambda: validate_autoscaler({"connector_config": {"timeout": 10}}), "timeout: 10 .* Go duration"),
        (
            lambda: validate_autoscaler({"plugin": "aws", "plugin_config": {"asg": "x", "name": "x"}}),
            r"plugin_config: \['asg'\] .* config_file, credentials_file, name, profile, region",
        ),
        (
            lambda: validate_autoscaler({"plugin": "registry.gitlab.com/gitlab-org/fleeting/plugins/aws:1.0"}),
            "plugin_config.name: None .* Auto Scaling group",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_value(call: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()


# --- property: over generated config.toml files, nothing foreign is lost and merging is idempotent

KEYS = st.sampled_from(["limit", "builds_dir", "shell", "clone_url", "output_limit", "x_custom", "tls-ca-file"])
VALUES = st.one_of(
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=20),
)
ENTRIES = st.lists(st.from_regex(r"[A-Z_]{1,8}=[a-z0-9]{0,8}", fullmatch=True), max_size=3)


@st.composite
def config_files(draw: st.DrawFn) -> str:
    lines = [f"concurrent = {draw(st.integers(1, 50))}  # {draw(st.text('abc xyz', max_size=10))}"]
    for index in range(draw(st.integers(1, 4))):
        lines += ["", f"# runner {index}", "[[runners]]", f'  name = "r{index}"', f'  token = "glrt-{index}secret"']
        lines.append(f'  executor = "{draw(st.sampled_from(["docker", "docker+machine", "shell"]))}"')
        for key, value in draw(st.dictionaries(KEYS, VALUES, max_size=3)).items():
            toml_value = str(value).lower() if isinstance(value, bool) else json.dumps(value, ensure_ascii=False)
            lines.append(f"  {key} = {toml_value}")
        entries = draw(ENTRIES)
        if draw(st.booleans()):
            helpers = {"registry.example.com": "desktop"} if draw(st.booleans()) else {}
            entries.append(AUTH_PREFIX + json.dumps({"credHelpers": helpers}))
        write_empty = draw(st.booleans())  # `environment = []` is a list ecrkit must fill, too
        if entries or write_empty:
            lines.append(f"  environment = {json.dumps(entries)}  # kept")
        if draw(st.booleans()):
            lines += ["  [runners.machine]", '    MachineOptions = ["amazonec2-region=eu-west-1"]']
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None)
@given(config_files())
def test_generated_files_lose_nothing_and_merge_once(text: str) -> None:
    first = merge(text, full_settings(), path="c").text
    assert merge(first, full_settings(), path="c").text == first
    for line in text.splitlines():
        if "environment" not in line and "MachineOptions" not in line:
            assert line in first.splitlines()
    before, after = tomllib.loads(text), tomllib.loads(first)
    assert after["concurrent"] == before["concurrent"]
    for old, new in zip(before["runners"], after["runners"], strict=True):
        for key, value in old.items():
            if key == "environment":
                kept = [e for e in value if not e.startswith(AUTH_PREFIX)]
                assert [e for e in new[key] if not e.startswith(AUTH_PREFIX)] == kept
                [config] = auth_configs(new)
                assert config["credHelpers"][REGISTRY] == "ecr-login"
                if "registry.example.com" in str(value):
                    assert config["credHelpers"]["registry.example.com"] == "desktop"
            elif key == "machine":
                assert "amazonec2-region=eu-west-1" in new["machine"]["MachineOptions"]
            else:
                assert new[key] == value, key


def test_the_readme_example_diff_is_what_the_merge_makes() -> None:
    before = readme_block("<!-- runner-config-before -->", PAGE)
    options = machine_options("gitlab-ci-jobs", "/etc/gitlab-runner/ecrkit-userdata.sh")
    after = merge(before, RunnerSettings(RULE, machine_options=options), path="config.toml").text
    lines = difflib.unified_diff(before.splitlines(True), after.splitlines(True), "config.toml", "config.toml")
    assert "".join(lines) == readme_block("<!-- runner-config-diff -->", PAGE)


def test_docker_autoscaler_gets_an_instance_ready_command_that_waits_for_the_userdata() -> None:
    ready = instance_ready_command()
    assert ready == "cloud-init status --wait > /dev/null && /usr/local/bin/docker-credential-ecr-login version"
    keys = with_ready_command(validate_autoscaler({"max_instances": 20}), ready)
    after = tomllib.loads(merge(REGISTERED, RunnerSettings(RULE, autoscaler=keys), path="c").text)
    assert after["runners"][2]["autoscaler"]["instance_ready_command"] == ready
    assert "autoscaler" not in after["runners"][0] and "autoscaler" not in after["runners"][1]
    # The user's own command stays; no autoscaler keys, no command (not a docker-autoscaler runner).
    assert with_ready_command({"instance_ready_command": "true"}, ready) == {"instance_ready_command": "true"}
    assert with_ready_command({}, ready) == {}


def test_the_readmes_autoscaler_variables_give_the_table_it_shows() -> None:
    variables = yaml.safe_load(readme_block("<!-- autoscaler-vars -->", PAGE))["gitlab_runner_ecr_autoscaler"]
    registered = (
        '[[runners]]\n  name = "fleet"\n  url = "https://gitlab.example.com"\n  token = "glrt-x"\n'
        '  executor = "docker-autoscaler"\n'
    )
    keys = with_ready_command(validate_autoscaler(variables), instance_ready_command())
    merged = merge(registered, RunnerSettings(RULE, autoscaler=keys), path="config.toml")
    assert merged.typos == []
    shown = tomllib.loads("[[runners]]\n" + readme_block("<!-- autoscaler-toml -->", PAGE))["runners"][0]["autoscaler"]
    assert tomllib.loads(merged.text)["runners"][0]["autoscaler"] == shown


def test_a_plugin_other_than_aws_keeps_its_own_plugin_config_keys() -> None:
    settings = {"plugin": "googlecloud:latest", "plugin_config": {"project": "p", "zone": "z", "name": "ig"}}
    assert validate_autoscaler(settings) == settings
    assert validate_autoscaler({"plugin": "fleeting-plugin-aws", "plugin_config": {"name": "g", "region": "eu-west-1"}})


def test_render_runner_config_writes_the_autoscaler_options_in_gitlabs_formats(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(REGISTERED)
    done = run_ecrkit(
        "render", "runner-config", "--config", str(config), "--registry", REGISTRY,
        "--autoscaler-plugin", "aws", "--autoscaling-group", "gitlab-jobs",
        "--plugin-config", '{"region": "us-east-1"}',
        "--capacity-per-instance", "2", "--max-use-count", "5", "--max-instances", "20",
        "--connector-config", '{"username": "admin", "timeout": "10m0s"}',
        "--policy", '{"idle_count": 1, "idle_time": "20m0s"}',
        "--policy", '{"periods": ["* 8-18 * * mon-fri"], "timezone": "UTC", "idle_count": 5, "scale_factor": 0.5}',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    before, after = tomllib.loads(REGISTERED)["runners"], tomllib.loads(done.stdout)["runners"]
    autoscaler = after[2]["autoscaler"]
    assert autoscaler == {
        "plugin": "aws",
        "capacity_per_instance": 2,
        "max_use_count": 5,
        "max_instances": 20,
        "instance_ready_command": instance_ready_command(),
        "plugin_config": {"name": "gitlab-jobs", "region": "us-east-1"},
        # the file's own connector keys stay; the given ones are set
        "connector_config": {"username": "admin", "use_external_addr": True, "timeout": "10m0s"},
        "policy": [
            {"idle_count": 1, "idle_time": "20m0s"},
            {"periods": ["* 8-18 * * mon-fri"], "timezone": "UTC", "idle_count": 5, "scale_factor": 0.5},
        ],
    }
    assert after[0] == {**before[0], "environment": after[0]["environment"]}  # other executors: no autoscaler
    assert "autoscaler" not in after[0] and "autoscaler" not in after[1]
    assert "[runners.autoscaler" not in done.stderr  # every key written is one GitLab Runner knows
    # Without the options, the file's [runners.autoscaler] is left as it is (negative control).
    plain = run_ecrkit("render", "runner-config", "--config", str(config), "--registry", REGISTRY)
    assert tomllib.loads(plain.stdout)["runners"][2]["autoscaler"] == before[2]["autoscaler"]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("--policy", "idle_count=1"), "--policy[0]: 'idle_count=1' is not accepted; expected a JSON object"),
        (("--policy", "[1]"), "--policy[0]: '[1]' is not accepted; expected a JSON object"),
        (("--connector-config", '{"usename": "x"}'), "ecrkit: --connector-config: ['usename']"),
        # Each named as the user wrote it, an option `--help` lists (not a path into [runners.autoscaler]).
        (("--autoscaler-plugin", "aws"), "ecrkit: --autoscaling-group: None"),
        (("--autoscaler-plugin", "aws", "--autoscaling-group", "jobs:1"), "ecrkit: --autoscaling-group: 'jobs:1'"),
        (("--max-instances", "0"), "ecrkit: --max-instances: 0"),
        (("--capacity-per-instance", "0"), "ecrkit: --capacity-per-instance: 0"),
        (("--max-use-count", "0"), "ecrkit: --max-use-count: 0"),
        (("--autoscaler-plugin", "aws", "--plugin-config", '{"regio": "x"}'), "ecrkit: --plugin-config: ['regio']"),
        (("--connector-config", '{"timeout": 10}'), "ecrkit: --connector-config.timeout: 10"),
        (("--policy", '{"idle_time": 5}'), "ecrkit: --policy[0].idle_time: 5"),
    ],
)
def test_bad_autoscaler_options_are_named_and_nothing_is_printed(
    tmp_path: Path, argv: tuple[str, ...], named: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(REGISTERED)
    done = run_ecrkit("render", "runner-config", "--config", str(config), "--registry", REGISTRY, *argv)
    assert done.returncode == 2 and done.stdout == "" and named in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("autoscaler", "named"),
    [
        ({"max_instances": 0}, "gitlab_runner_ecr_autoscaler.max_instances"),
        ({"plugin": "aws"}, "gitlab_runner_ecr_autoscaler.plugin_config.name"),
        ({"plugin": "aws", "plugin_config": {"name": "a:b"}}, "gitlab_runner_ecr_autoscaler.plugin_config.name"),
        ({"policy": [{"idle_time": 5}]}, "gitlab_runner_ecr_autoscaler.policy[0].idle_time"),
    ],
)
def test_the_role_names_a_bad_autoscaler_key_by_its_variable(autoscaler: dict[str, Any], named: str) -> None:
    with pytest.raises(InputError) as error:
        runner_plan(
            read_facts({}), {"registries": [REGISTRY], "public": False, "creds_store": False, "autoscaler": autoscaler}
        )
    assert error.value.source == named


def test_job_hosts_keep_job_containers_from_the_instance_role_unless_told(tmp_path: Path) -> None:
    """Hop limit 1 wherever ecrkit makes job hosts: docker+machine's MachineOptions (function, CLI, role)
    and the docker-autoscaler's launch template (CLI, role); 2 only when asked for."""
    assert machine_options()[HOP_LIMIT] == "1"
    assert machine_options(hop_limit=2)[HOP_LIMIT] == "2"
    config = tmp_path / "config.toml"
    config.write_text('[[runners]]\nname = "m"\nexecutor = "docker+machine"\n')
    done = run_ecrkit("render", "runner-config", "--config", str(config), "--registry", REGISTRY)
    assert f"{HOP_LIMIT}=1" in tomllib.loads(done.stdout)["runners"][0]["machine"]["MachineOptions"], done.stderr
    template = run_ecrkit("render", "launch-template", "--registry", REGISTRY)
    assert json.loads(template.stdout)["MetadataOptions"]["HttpPutResponseHopLimit"] == 1, template.stderr
    for role, variable in (("gitlab_runner_ecr", "gitlab_runner_ecr_hop_limit"),
                           ("autoscaling_group", "autoscaling_group_hop_limit")):  # fmt: skip
        spec = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())
        assert spec["argument_specs"]["main"]["options"][variable]["default"] == 1
