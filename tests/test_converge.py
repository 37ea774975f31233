"""What each role's converge task asks the host and changes given the answer (ecrkit.converge),
on probe facts written by hand; the action that carries it out runs in the role and host tests."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecrkit import converge, plans
from ecrkit.constants import LOGROTATE_PATH
from ecrkit.errors import InputError
from ecrkit.hoststate import FilesArguments
from ecrkit.renderers.logrotate import render as render_logrotate
from testbed.hosts import ANSIBLE_ENV, BIN, ROOT
from tests.facts import (
    MISSING,
    NO_SERVICE,
    directory_state,
    file_state,
    helper_options,
    probe_result,
    root_files,
    runner_options,
    service,
    user,
)

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
HELPER = "/usr/local/bin/docker-credential-ecr-login"
CONFIG_TOML = "/etc/gitlab-runner/config.toml"


def converged_helper(binary: bytes, *, version: str = "0.12.0", uname: str = "") -> Any:
    """The probe's answer on a host that already has `binary`, its directories and the rule."""
    rule = render_logrotate("/var/lib/ecr-login", "root", "root")
    facts = probe_result(
        users={"root": user("root")},
        paths={
            HELPER: file_state(mode="0755", sha256=hashlib.sha256(binary).hexdigest()),
            "/usr/local/bin": directory_state(),
            "/var/lib/ecr-login": directory_state(mode="0700"),
            LOGROTATE_PATH: file_state(mode="0644", sha256=hashlib.sha256(rule.encode()).hexdigest()),
        },
    )
    facts["commands"] = [{"rc": 0, "stdout": f"Version:    {version}\n"}]
    if uname:
        facts["commands"].append({"rc": 0, "stdout": uname + "\n"})
    return facts


def test_the_helper_probe_asks_for_the_binary_its_directories_and_for_a_release_the_architecture() -> None:
    role = converge.role("ecr_credential_helper")
    asked = role.probe_args(helper_options(install_method="release"))
    assert asked is not None
    assert asked["paths"] == [HELPER, "/usr/local/bin", "/var/lib/ecr-login", LOGROTATE_PATH]
    assert asked["commands"] == [[HELPER, "-v"], ["uname", "-m"]]
    assert role.probe_args(helper_options())["commands"] == [[HELPER, "-v"]]  # type: ignore[index]


def test_a_converged_host_gets_no_write_and_no_copy_but_its_facts(tmp_path: Path) -> None:
    binary = tmp_path / "helper"
    binary.write_bytes(b"\x7fELF helper")
    changes = converge.role("ecr_credential_helper").plan(
        converged_helper(binary.read_bytes()), helper_options(src=str(binary))
    )
    assert changes["write"] == {"directories": [], "files": []} and changes["ship"] == []
    assert changes["then_probe"] is None
    assert changes["facts"] == {
        "ecr_credential_helper_path": HELPER,
        "ecr_credential_helper_installed_version": "0.12.0",
    }
    assert changes["result"] == {"install": None, "on_host": False}


def test_another_controller_file_is_shipped_and_its_version_asked_after(tmp_path: Path) -> None:
    binary = tmp_path / "helper"
    binary.write_bytes(b"\x7fELF newer helper")
    changes = converge.role("ecr_credential_helper").plan(
        converged_helper(b"\x7fELF helper"), helper_options(src=str(binary))
    )
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    owner = {"owner": "root", "group": "root", "mode": "0755"}
    assert changes["ship"] == [{"src": str(binary), "path": HELPER, **owner, "fetch": "", "sha256": digest}]
    assert changes["then_probe"] == {"commands": [[HELPER, "-v"]]}
    assert converge.role("ecr_credential_helper").after(converged_helper(b"", version="0.7.1")) == {
        "ecr_credential_helper_installed_version": "0.7.1"
    }


def test_an_s3_object_is_shipped_from_the_controllers_cache_after_a_fetch() -> None:
    digest = "a" * 64
    options = helper_options(install_method="url", url="s3://bucket/helper", sha256=digest)
    changes = converge.role("ecr_credential_helper").plan(converged_helper(b"old"), options)
    assert [(item["src"], item["fetch"]) for item in changes["ship"]] == [(f"/cache/{digest}", "s3://bucket/helper")]


def test_a_release_is_left_to_the_host_with_the_url_for_its_architecture() -> None:
    options = helper_options(install_method="release")
    changes = converge.role("ecr_credential_helper").plan(converged_helper(b"x", uname="aarch64"), options)
    assert changes["ship"] == []
    assert changes["result"]["on_host"] is True
    assert changes["result"]["install"]["url"] == (
        "https://releases.example.com/0.12.0/linux-arm64/docker-credential-ecr-login"
    )


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"install_method": "pip"}, "ecr_credential_helper_install_method: 'pip'"),
        ({"install_dir": "bin"}, "ecr_credential_helper_install_dir: 'bin'"),
    ],
)
def test_the_helper_probe_is_not_asked_for_bad_inputs(changed: dict[str, Any], named: str) -> None:
    with pytest.raises(InputError, match=named):
        converge.role("ecr_credential_helper").probe_args(helper_options(**changed))


def test_a_config_json_with_stored_credentials_is_written_without_its_diff_but_with_a_redacted_one() -> None:
    stored = json.dumps({"auths": {"ghcr.io": {"auth": "c2VjcmV0"}}})
    facts = probe_result(
        users={"root": user("root")},
        paths={"root:.docker": directory_state(mode="0700"), "root:.docker/config.json": file_state()},
        contents={"root:.docker/config.json": stored},
    )
    options = {"users": ["root"], "registries": [ECR], "public": False, "creds_store": False,
               "state": "present", "replace_invalid": False}  # fmt: skip
    changes = converge.role("docker_auth_config").plan(facts, options)
    [written] = changes["write"]["files"]
    assert written["path"] == "/root/.docker/config.json" and written["diff"] is False
    assert changes["secrets"] is True
    [redacted] = changes["redacted"]
    assert "c2VjcmV0" not in json.dumps(redacted) and ECR in redacted["after"]
    assert changes["result"] == {"rule": {"registries": [ECR], "creds_store": False}}


def test_a_missing_user_stops_docker_auth_config_naming_the_variable() -> None:
    facts = probe_result(users={"ci": None}, paths={"ci:.docker": MISSING})
    options = {"users": ["ci"], "registries": [], "public": False, "creds_store": False,
               "state": "present", "replace_invalid": False}  # fmt: skip
    with pytest.raises(InputError, match="docker_auth_config_users"):
        converge.role("docker_auth_config").plan(facts, options)


def test_registries_conf_asks_nothing_and_writes_its_drop_in() -> None:
    role = converge.role("registries_conf")
    options = {"registry": ECR, "cache_prefix": "docker-hub", "upstream": "docker.io", "path": "/etc/c/r.d/50.conf"}
    assert role.probe_args(options) is None
    changes = role.plan({}, options)
    assert [item["path"] for item in changes["write"]["directories"]] == ["/etc/c/r.d"]
    assert f"{ECR}/docker-hub" in changes["write"]["files"][0]["content"]


def test_an_unknown_role_is_named_with_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"role: 'ecr_account' .*one of aws_sso_profile, docker_auth_config"):
        converge.role("ecr_account")


def test_a_runners_config_toml_is_written_without_its_diff_and_its_typos_are_warnings() -> None:
    config = '[[runners]]\n  name = "a"\n  token = "glrt-secret"\n  executor = "docker"\n  excutor = "x"\n'
    options = runner_options(ECR, userdata_path="")
    facts = root_files({str(options["config_path"]): config})
    role = converge.role("gitlab_runner_ecr")
    assert role.probe_args(options) == {"paths": [options["config_path"], options["env_path"]]} | {
        "read": [options["config_path"], options["env_path"]],
        "services": ["gitlab-runner"],  # what it runs with
    }
    changes = role.plan(facts, options)
    by_path = {item["path"]: item for item in changes["write"]["files"]}
    assert by_path[options["config_path"]]["diff"] is False and by_path[options["env_path"]]["diff"] is True
    assert "owner" not in by_path[options["config_path"]]  # config.toml keeps its owner
    assert changes["secrets"] is True
    assert "glrt-secret" not in json.dumps(changes["redacted"]) and "<redacted>" in changes["redacted"][0]["after"]
    # A new drop-in: its directory, and the role restarts the service.
    assert changes["write"]["directories"] == [
        {"path": "/etc/systemd/system/gitlab-runner.service.d", "owner": "root", "group": "root", "mode": "0755"}
    ]
    assert changes["result"]["restart"] is True
    assert any("excutor" in warning for warning in changes["result"]["warnings"])


def test_a_converged_runner_gets_no_write_and_no_restart() -> None:
    options = runner_options(ECR, userdata_path="")
    config = '[[runners]]\n  name = "a"\n  token = "glrt-secret"\n  executor = "docker"\n'
    first = converge.role("gitlab_runner_ecr").plan(root_files({str(options["config_path"]): config}), options)
    contents = {item["path"]: item["content"] for item in first["write"]["files"]}
    facts = root_files(contents)  # the files as written, root's and 0600 (the env file's mode differs)
    facts["paths"][str(options["env_path"])]["mode"] = "0644"
    again = converge.role("gitlab_runner_ecr").plan(facts, options)
    assert again["write"] == {"directories": [], "files": []}
    assert again["result"]["restart"] is False and again["secrets"] is False and again["redacted"] == []


def test_each_file_the_probe_read_is_written_only_while_it_holds_what_the_plan_read() -> None:
    config, env, fresh, unread = "/etc/gitlab-runner/config.toml", "/etc/runner.env", "/etc/new.conf", "/etc/other"
    facts = probe_result(
        users={"deploy": user("deploy")},
        paths={
            config: file_state(sha256="0" * 64),  # the content below wins: it is what the plan merged
            env: file_state(sha256="e" * 64),
            fresh: MISSING,
            "deploy:.docker/config.json": {**file_state(sha256="d" * 64), "path": "/home/deploy/.docker/config.json"},
        },
        contents={config: "concurrent = 1\n"},
    )
    write: FilesArguments = {
        "directories": [{"path": "/etc/gitlab-runner"}],
        "files": [{"path": path, "content": "new"} for path in (config, env, fresh, unread)]
        + [{"path": "/home/deploy/.docker/config.json", "content": "{}"}],
    }
    expected = {entry["path"]: entry.get("expected_sha256") for entry in converge.as_read(write, facts)["files"]}
    assert expected == {
        config: hashlib.sha256(b"concurrent = 1\n").hexdigest(),
        env: "e" * 64,
        fresh: "",  # the plan found no file: one that appears meanwhile is someone else's
        unread: None,  # never read: its plan does not depend on what it holds
        "/home/deploy/.docker/config.json": "d" * 64,
    }
    assert converge.as_read(write, facts)["directories"] == write["directories"]


def converged_runner(options: dict[str, Any], **services: Any) -> Any:
    """The probe's answer on a manager whose files are as the role writes them, with `services`."""
    config = '[[runners]]\n  name = "a"\n  token = "glrt-secret"\n  executor = "docker"\n'
    seed = root_files({str(options["config_path"]): config})
    seed["commands"] = [{"rc": 0, "stdout": "Version: 17.11.0\n"}]  # asked when a fleeting plugin is named
    first = converge.role("gitlab_runner_ecr").plan(seed, options)
    facts = root_files({item["path"]: item["content"] for item in first["write"]["files"]})
    facts["paths"][str(options["env_path"])]["mode"] = "0644"
    facts["services"] = services
    return facts


def test_a_runner_that_still_runs_with_its_old_region_is_restarted_with_nothing_written() -> None:
    # A converge killed after it wrote the drop-in and before its handler: the file is as planned,
    # systemd has not reloaded it, and the process runs with the region it started with.
    options = runner_options(ECR, userdata_path="")
    stale = service(
        need_daemon_reload=True, unit_env={"AWS_REGION": "us-east-1"}, process_env={"AWS_REGION": "us-east-1"}
    )
    changes = converge.role("gitlab_runner_ecr").plan(converged_runner(options, **{"gitlab-runner": stale}), options)
    assert changes["write"] == {"directories": [], "files": []}
    assert changes["result"]["restart"] is True and changes["result"]["daemon_reload"] is True
    assert any("AWS_REGION=us-east-1, a new start gets eu-west-1" in why for why in changes["pending"])


def test_a_runner_as_its_drop_in_says_is_left_alone() -> None:
    options = runner_options(ECR, userdata_path="")
    env = {"AWS_REGION": "eu-west-1", "AWS_ECR_CACHE_DIR": "/var/lib/ecr-login"}
    fresh = service(unit_env=env, process_env={**env, "PATH": "/usr/bin"})
    changes = converge.role("gitlab_runner_ecr").plan(converged_runner(options, **{"gitlab-runner": fresh}), options)
    assert changes["pending"] == [] and changes["result"]["restart"] is False
    assert changes["result"]["daemon_reload"] is False


def test_a_runner_without_its_unit_gets_its_drop_in_and_no_restart() -> None:
    options = runner_options(ECR, userdata_path="")
    config = '[[runners]]\n  name = "a"\n  token = "glrt-secret"\n  executor = "docker"\n'
    facts = root_files({str(options["config_path"]): config})
    facts["services"] = {"gitlab-runner": NO_SERVICE}
    changes = converge.role("gitlab_runner_ecr").plan(facts, options)
    assert options["env_path"] in [item["path"] for item in changes["write"]["files"]]
    assert changes["result"]["restart"] is False and changes["result"]["daemon_reload"] is True


def test_a_runner_in_a_container_is_not_asked_about_systemd() -> None:
    options = runner_options(ECR, userdata_path="", container=True, env_path="/etc/gitlab-runner/ecrkit.env")
    asked = converge.role("gitlab_runner_ecr").probe_args(options)
    assert asked is not None and "services" not in asked
    changes = converge.role("gitlab_runner_ecr").plan(converged_runner(options), options)
    assert changes["result"]["restart"] is False and changes["pending"] == []


def test_the_runner_role_is_one_task() -> None:
    """Every step of gitlab_runner_ecr, the fleeting plugin's install too, is its converge task's."""
    tasks = yaml.safe_load((ROOT / "roles" / "gitlab_runner_ecr" / "tasks" / "main.yml").read_text())
    assert [next(key for key in task if "." in key) for task in tasks] == ["ecrkit.ecr.converge"]


AUTOSCALER = {"plugin": "aws:latest", "plugin_config": {"name": "gitlab-jobs"}}


def fleeting_runner(options: dict[str, Any], version: dict[str, Any], marker: bool = False) -> Any:
    """A converged manager whose `gitlab-runner --version` answered `version`, with or without the marker."""
    facts = converged_runner(options)
    facts["commands"] = [{"argv": ["gitlab-runner", "--version"], **version}]
    facts["paths"][plans.fleeting_marker(str(options["config_path"]), "aws:latest")] = (
        file_state(mode="0644") if marker else MISSING
    )
    return facts


def test_a_plugin_named_asks_gitlab_runner_its_version_and_for_the_marker() -> None:
    role = converge.role("gitlab_runner_ecr")
    options = runner_options(ECR, userdata_path="", autoscaler=AUTOSCALER)
    asked = role.probe_args(options)
    marker = plans.fleeting_marker("/etc/gitlab-runner/config.toml", "aws:latest")
    assert asked is not None and asked["commands"] == [["gitlab-runner", "--version"]]
    assert asked["paths"][-1] == marker and marker not in asked["read"]
    for without in ({"autoscaler": {"max_instances": 2}}, {"container": True}):
        asked = role.probe_args({**options, **without})
        assert asked is not None and "commands" not in asked and marker not in asked["paths"], without


def test_the_fleeting_plugin_is_installed_after_the_writes_until_its_marker_says_it_was() -> None:
    role = converge.role("gitlab_runner_ecr")
    options = runner_options(ECR, userdata_path="", autoscaler=AUTOSCALER)
    changes = role.plan(fleeting_runner(options, {"rc": 0, "stdout": "Version:      17.11.0\n"}), options)
    decided = plans.fleeting_install("Version: 17.11.0\n", AUTOSCALER, str(options["config_path"]))
    assert changes["run"] == [{"argv": decided["argv"], "what": f"gitlab-runner fleeting -c {CONFIG_TOML} install"}]
    assert changes["result"]["fleeting"]["install"] == f"gitlab-runner fleeting -c {CONFIG_TOML} install"
    marked = role.plan(fleeting_runner(options, {"rc": 0, "stdout": "Version: 17.11.0\n"}, marker=True), options)
    assert marked["run"] == [] and "installed (marker" in marked["result"]["fleeting"]["reason"]
    assert marked["write"] == {"directories": [], "files": []}


def test_a_runner_too_old_to_install_its_plugin_gets_a_warning_saying_why() -> None:
    options = runner_options(ECR, userdata_path="", autoscaler=AUTOSCALER)
    too_old = fleeting_runner(options, {"rc": 0, "stdout": "Version: 16.10.3\n"})
    changes = converge.role("gitlab_runner_ecr").plan(too_old, options)
    assert changes["run"] == []
    assert any("GitLab Runner 16.10 has no `fleeting install`" in warning for warning in changes["result"]["warnings"])


def test_a_missing_gitlab_runner_is_named() -> None:
    options = runner_options(ECR, userdata_path="", autoscaler=AUTOSCALER)
    missing = {"rc": None, "stdout": "", "stderr": "[Errno 2] No such file or directory: 'gitlab-runner'"}
    with pytest.raises(
        InputError, match=r"^gitlab-runner --version: .*No such file or directory.*is gitlab-runner installed"
    ):
        converge.role("gitlab_runner_ecr").plan(fleeting_runner(options, missing), options)


# marathon_agent_ecr ----------------------------------------------------------------------------------

AGENT: dict[str, Any] = {
    "registries": [ECR], "public": False, "creds_store": False, "region": "", "cache_dir": "/var/lib/ecr-login",
    "docker_tar_path": "/etc/docker.tar.gz", "env_file": "/var/lib/dcos/mesos-slave-common",
    "service": "dcos-mesos-slave", "docker_config_path": "",
}  # fmt: skip
ENV_FILE = "MESOS_WORK_DIR=/var/lib/mesos/slave\nAWS_REGION=us-east-1\n"


def agent_facts(archive: bytes | None, env_file: str, **services: Any) -> Any:
    """The probe's answer on an agent with this archive (None: none) and environment file."""
    facts = root_files({AGENT["env_file"]: env_file}, mode="0644")
    facts["paths"][AGENT["docker_tar_path"]] = (
        file_state(mode="0644", sha256=hashlib.sha256(archive).hexdigest()) if archive is not None else MISSING
    )
    facts["services"] = services
    return facts


def test_an_agent_gets_the_archive_as_bytes_and_its_keys_merged_into_its_environment_file() -> None:
    fresh = agent_facts(None, ENV_FILE, **{"dcos-mesos-slave": NO_SERVICE})
    changes = converge.role("marathon_agent_ecr").plan(fresh, AGENT)
    archive, env_file = changes["write"]["files"]
    assert archive["path"] == "/etc/docker.tar.gz" and archive["diff"] is False and archive["mode"] == "0644"
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(archive["content_base64"]))) as tar:
        config = json.load(tar.extractfile(".docker/config.json"))  # type: ignore[arg-type]
    assert config == {"credHelpers": {ECR: "ecr-login"}}
    assert env_file["content"] == (
        "MESOS_WORK_DIR=/var/lib/mesos/slave\nAWS_REGION=eu-west-1\nAWS_ECR_CACHE_DIR=/var/lib/ecr-login\n"
    )
    assert [entry["path"] for entry in changes["write"]["directories"]] == ["/etc", "/var/lib/dcos"]
    assert changes["result"]["restart"] is False  # the probe found no agent unit: nothing to restart


def test_an_agent_as_planned_gets_nothing_and_a_killed_runs_restart_is_still_made() -> None:
    first = converge.role("marathon_agent_ecr").plan(agent_facts(None, ENV_FILE), AGENT)
    archive = base64.b64decode(first["write"]["files"][0]["content_base64"])
    merged = first["write"]["files"][1]["content"]
    env = {"AWS_REGION": "eu-west-1", "AWS_ECR_CACHE_DIR": "/var/lib/ecr-login"}
    running = service(unit_env=env, process_env=env)
    again = converge.role("marathon_agent_ecr").plan(
        agent_facts(archive, merged, **{"dcos-mesos-slave": running}), AGENT
    )
    assert again["write"]["files"] == [] and again["pending"] == [] and again["result"]["restart"] is False
    stale = service(unit_env=env, process_env={**env, "AWS_REGION": "us-east-1"})  # the file is new, the agent old
    killed = converge.role("marathon_agent_ecr").plan(
        agent_facts(archive, merged, **{"dcos-mesos-slave": stale}), AGENT
    )
    assert killed["write"]["files"] == [] and killed["result"]["restart"] is True
    assert killed["pending"] == ["dcos-mesos-slave runs with AWS_REGION=us-east-1, a new start gets eu-west-1"]


def test_an_agents_bad_path_is_named_before_anything_is_written() -> None:
    with pytest.raises(InputError, match="marathon_agent_ecr_env_file: 'mesos-common'"):
        converge.role("marathon_agent_ecr").plan(agent_facts(None, ENV_FILE), {**AGENT, "env_file": "mesos-common"})


# The action's argument spec ------------------------------------------------------------------------


def _converge_tasks() -> list[dict[str, Any]]:
    """Every ecrkit.ecr.converge task of the collection's roles."""
    found = []
    for tasks in sorted(Path(converge.__file__).resolve().parent.parent.glob("roles/*/tasks/*.yml")):
        found += [task["ecrkit.ecr.converge"] for task in yaml.safe_load(tasks.read_text()) or []
                  if "ecrkit.ecr.converge" in task]  # fmt: skip
    return found


def test_every_roles_task_passes_exactly_the_options_its_spec_names_or_its_variables() -> None:
    """A task passes every option, or none: then the action reads each from the role's variable of
    that name, which the role's argument spec documents."""
    tasks = _converge_tasks()
    assert sorted({task["role"] for task in tasks}) == sorted(converge.ROLES)
    for task in tasks:
        options = converge.ROLES[task["role"]].options
        if "options" in task:
            assert sorted(task["options"]) == sorted(options), task["role"]
            continue
        root = Path(converge.__file__).resolve().parent.parent / "roles" / task["role"]
        documented = yaml.safe_load((root / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
        assert {f"{task['role']}_{name}" for name in options} <= set(documented["options"]), task["role"]


def run_action(
    role: str, options: object, variables: dict[str, Any] | None = None, *, check: bool = True, path: str = ""
) -> dict[str, Any]:
    """One ad-hoc ecrkit.ecr.converge task on this machine, in check mode unless `check` is false;
    its JSON result. `options` None: the task passes none (the action reads the role's `variables`).
    `path`: a directory put first on PATH."""
    arguments = json.dumps({"role": role, **({} if options is None else {"options": options})})
    command = [str(BIN / "ansible"), "localhost", "-c", "local", *(["--check"] if check else []),
               "-m", "ecrkit.ecr.converge", "-a", arguments, "-e", f"ansible_python_interpreter={sys.executable}",
               "-e", json.dumps(variables or {})]  # fmt: skip
    env = {**ANSIBLE_ENV, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"}
    if path:
        env["PATH"] = f"{path}:{env.get('PATH') or os.environ['PATH']}"
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    result: dict[str, Any] = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result


MIRROR_OPTIONS = {"config": {}, "unit": "ecrkit-mirror", "schedule": "daily", "randomized_delay": "15m", "jobs": 4,
                  "region": "", "environment": {}, "install_dir": "/opt/ecrkit",
                  "config_path": "/etc/ecrkit/m.yml"}  # fmt: skip
DROP_IN_OPTIONS = {"registry": ECR, "cache_prefix": "docker-hub", "upstream": "docker.io", "path": "/tmp/x/r.conf"}


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({k: v for k, v in DROP_IN_OPTIONS.items() if k != "path"}, "missing required arguments: path"),
        ({**DROP_IN_OPTIONS, "pth": "/tmp/r.conf"}, "unknown option pth. Supported parameters include: cache_prefix"),
        ({**MIRROR_OPTIONS, "jobs": "many"}, "argument 'jobs' is of type str and we were unable to convert to int"),
        ("registry=x", "options: str given; expected a mapping"),
    ],
    ids=["missing", "unknown", "mistyped", "not a mapping"],
)
def test_the_action_refuses_bad_options_naming_them_and_never_with_a_traceback(options: object, said: str) -> None:
    result = run_action("ecr_mirror" if isinstance(options, dict) and "jobs" in options else "registries_conf", options)
    assert result["failed"] is True and said in result["msg"], result["msg"]
    assert "Traceback (most recent call last)" not in json.dumps(result)
    assert result.get("exception", "(traceback unavailable)") == "(traceback unavailable)"


def test_the_action_takes_good_options(tmp_path: Path) -> None:
    result = run_action("registries_conf", {**DROP_IN_OPTIONS, "path": str(tmp_path / "r.conf")})
    assert result.get("failed") is not True and result["changed"] is True, result


def test_without_options_the_action_reads_the_roles_variables_templated(tmp_path: Path) -> None:
    variables = {f"registries_conf_{key}": value for key, value in DROP_IN_OPTIONS.items()}
    result = run_action("registries_conf", None, {**variables, "drop_in": str(tmp_path / "r.conf"),
                                                  "registries_conf_path": "{{ drop_in }}"})  # fmt: skip
    assert result.get("failed") is not True and result["changed"] is True, result
    assert str(tmp_path / "r.conf") in result["changed_paths"]  # "{{ drop_in }}" templated


def test_without_options_a_package_default_is_what_the_filter_answers() -> None:
    """A variable that only asks the package for a default is answered without Jinja: as templating does."""
    variables = {f"registries_conf_{key}": value for key, value in DROP_IN_OPTIONS.items()}
    variables["registries_conf_path"] = "{{ 'marathon_agent_ecr_docker_tar_path' | ecrkit.ecr.default }}"
    result = run_action("registries_conf", None, variables)
    assert result.get("failed") is not True and "/etc/docker.tar.gz" in result["changed_paths"], result


def test_without_options_a_missing_variable_is_named() -> None:
    variables = {f"registries_conf_{key}": value for key, value in DROP_IN_OPTIONS.items() if key != "path"}
    result = run_action("registries_conf", None, variables)
    assert result["failed"] is True and "missing required arguments: path" in result["msg"], result["msg"]
    assert "the role's variables without registries_conf_" in result["msg"]


def test_a_roles_download_names_the_roles_variables_not_the_clis_options(tmp_path: Path) -> None:
    from ecrkit import aws  # noqa: PLC0415 - boto3

    names = ("ecr_credential_helper_url", "ecr_credential_helper_sha256", "ecr_credential_helper_controller_cache")
    with pytest.raises(InputError, match=r"^ecr_credential_helper_sha256: 'abc'"):
        aws.download_verified("s3://b/k", "abc", str(tmp_path / "h"), names)
    with pytest.raises(InputError, match=r"^ecr_credential_helper_url: 'https://b/k'"):
        aws.download_verified("https://b/k", "a" * 64, str(tmp_path / "h"), names)
    with pytest.raises(InputError, match=r"^--sha256: 'abc'"):  # the CLI's own names by default
        aws.download_verified("s3://b/k", "abc", str(tmp_path / "h"))


# A gitlab-runner that answers --version, records each other call, and fails while `fail` exists.
GITLAB_RUNNER = """#!/bin/sh
here=$(dirname "$0")
if [ "$1" = --version ]; then printf 'Version:      17.11.0\\nGit revision: x\\n'; exit 0; fi
echo "$*" >> "$here/calls"
if [ -e "$here/fail" ]; then printf 'fetching plugin\\nERROR: plugin aws:latest not found\\n' >&2; exit 3; fi
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the runner's drop-in directory is root's")
def test_the_action_runs_the_roles_commands_after_its_writes_once_and_names_one_that_failed(tmp_path: Path) -> None:
    """The fleeting plugin's install, by the action on this machine: a change in check mode that
    runs nothing, run once, then nothing; a failed install fails the task naming the command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gitlab-runner").write_text(GITLAB_RUNNER)
    (bin_dir / "gitlab-runner").chmod(0o755)
    config = tmp_path / "config.toml"
    config.write_text(
        'concurrent = 1\n[[runners]]\n  name = "a"\n  token = "glrt-secret"\n  executor = "docker-autoscaler"\n'
    )
    options = runner_options(ECR, userdata_path="", service="", config_path=str(config),
                             env_path=str(tmp_path / "drop-in" / "ecrkit.conf"), autoscaler=AUTOSCALER)  # fmt: skip
    install = f"gitlab-runner fleeting -c {config} install"
    calls, marker = bin_dir / "calls", Path(plans.fleeting_marker(str(config), "aws:latest"))

    checked = run_action("gitlab_runner_ecr", options, check=True, path=str(bin_dir))
    assert checked.get("failed") is not True and checked["changed"] is True and checked["run"] == [install], checked
    assert not calls.exists() and not marker.exists() and "plugin" not in config.read_text()
    first = run_action("gitlab_runner_ecr", options, check=False, path=str(bin_dir))
    assert first.get("failed") is not True and first["changed"] is True and first["run"] == [install], first
    assert calls.read_text() == f"fleeting -c {config} install\n" and marker.exists()
    assert 'plugin = "aws:latest"' in config.read_text()  # written before the install that reads it
    again = run_action("gitlab_runner_ecr", options, check=False, path=str(bin_dir))
    assert again.get("failed") is not True and again["changed"] is False and again["run"] == [], again
    assert calls.read_text() == f"fleeting -c {config} install\n"

    marker.unlink()
    (bin_dir / "fail").touch()
    failed = run_action("gitlab_runner_ecr", options, check=False, path=str(bin_dir))
    assert failed["failed"] is True, failed
    assert failed["msg"] == f"{install}: failed with exit status 3: ERROR: plugin aws:latest not found", failed
    assert "glrt-secret" not in json.dumps(failed) and not marker.exists()


@pytest.mark.parametrize("check", [False, True], ids=["run", "check mode"])
def test_the_files_module_runs_its_then_run_commands_after_writing(tmp_path: Path, check: bool) -> None:
    """How the action asks a shipped helper its version without a second module call."""
    path = tmp_path / "written"
    arguments = json.dumps({"files": [{"path": str(path), "content": "x\n"}], "then_run": [["cat", str(path)]]})
    command = [str(BIN / "ansible"), "localhost", "-c", "local", *(["--check"] if check else []), "-m",
               "ecrkit.ecr.files", "-a", arguments, "-e", f"ansible_python_interpreter={sys.executable}"]  # fmt: skip
    env = {**ANSIBLE_ENV, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    expected = [] if check else [{"argv": ["cat", str(path)], "rc": 0, "stdout": "x\n", "stderr": ""}]
    assert result.get("failed") is not True and result["commands"] == expected, result
