"""docker_auth_config's decision as its converge task takes it (ecrkit.plans.docker_auth_plan,
through ecrkit.converge): every user's config.json rendered before any is written, secrets kept
out of the diff; and the helper's version as the role reads it."""

import json
import re
from typing import Any

import pytest

from ecrkit import converge, plans
from ecrkit.errors import EcrkitError
from ecrkit.probe_facts import PathState, ProbeResult
from tests.facts import MISSING, directory_state, file_state, probe_result, user

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def probe_of(files: dict[str, bytes | None], users: tuple[str, ...] = ("root", "ci")) -> ProbeResult:
    """What the probe (plugins/modules/probe.py) returns for these users and config.json contents."""
    paths: dict[str, PathState] = {}
    for name in users:
        paths[f"{name}:.docker"] = directory_state(mode="0700", owner=name)
        paths[f"{name}:.docker/config.json"] = (
            file_state(owner=name, group=name) if files.get(name) is not None else MISSING
        )
    return probe_result(
        users={name: user(name) for name in users},
        paths=paths,
        contents={f"{name}:.docker/config.json": files.get(name) for name in users},
    )


def docker_configs(
    probe: ProbeResult, users: list[str], registries: list[str], state: str = "present"
) -> list[dict[str, Any]]:
    """docker_auth_config's files, as its converge task plans them."""
    options = {"registries": registries, "public": False, "creds_store": False, "users": users, "state": state}
    plan = plans.docker_auth_plan(probe, {**options, "replace_invalid": False})
    assert plan["rule"] == {"registries": registries, "creds_store": not registries}
    files: list[dict[str, Any]] = plan["files"]
    return files


def test_errors_reach_ansible_with_ecrkit_message() -> None:
    with pytest.raises(EcrkitError, match=r"docker_auth_config_registries\[0\]: 'nope'"):
        docker_configs(probe_of({}), ["root"], ["nope"])


def test_every_file_is_rendered_before_any_is_written() -> None:
    probe = probe_of({"root": b'{"auths": {"x": {"auth": "c2VjcmV0"}}}', "ci": b"{oops"})
    with pytest.raises(EcrkitError, match=re.escape("/home/ci/.docker/config.json: not valid JSON")):
        docker_configs(probe, ["root", "ci"], [ECR])


def test_rendered_files_say_what_to_write_and_keep_secrets_out_of_the_diff() -> None:
    probe = probe_of({"root": b'{"auths": {"x": {"auth": "c2VjcmV0"}}}', "ci": None})
    files = docker_configs(probe, ["root", "ci"], [ECR])
    assert [f["path"] for f in files] == ["/root/.docker/config.json", "/home/ci/.docker/config.json"]
    assert [f["write"] for f in files] == [True, True]
    assert [f["secrets"] for f in files] == [True, False]
    assert "c2VjcmV0" not in json.dumps(files[0]["redacted"])
    assert json.loads(files[1]["content"]) == {"credHelpers": {ECR: "ecr-login"}}


def test_a_file_that_is_already_right_is_not_written() -> None:
    done = json.dumps({"credHelpers": {ECR: "ecr-login"}}).encode()
    files = docker_configs(probe_of({"root": done}, ("root",)), ["root"], [ECR])
    assert files[0]["write"] is False
    assert files[0]["fix_dir"] is False


def test_a_right_file_with_a_wrong_mode_is_written() -> None:
    probe = probe_of({"root": json.dumps({"credHelpers": {ECR: "ecr-login"}}).encode()}, ("root",))
    probe["paths"]["root:.docker/config.json"]["mode"] = "0644"
    probe["paths"]["root:.docker"]["mode"] = "0755"
    files = docker_configs(probe, ["root"], [ECR])
    assert files[0]["write"] is True
    assert files[0]["fix_dir"] is True


def test_missing_users_are_named() -> None:
    probe = probe_of({}, ("root",))
    probe["users"]["gitlab-runner"] = None
    with pytest.raises(EcrkitError, match=r"docker_auth_config_users: \['gitlab-runner'\]"):
        docker_configs(probe, ["root", "gitlab-runner"], [], "present")


def test_absent_leaves_missing_files_alone() -> None:
    files = docker_configs(probe_of({}, ("root",)), ["root"], [], "absent")
    assert files[0]["content"] is None
    assert files[0]["write"] is False


def test_a_file_that_is_not_text_is_refused_with_its_path() -> None:
    probe = probe_of({"root": b"\xff\xfe{}"}, ("root",))
    with pytest.raises(EcrkitError, match=re.escape("/root/.docker/config.json: not UTF-8 text")):
        docker_configs(probe, ["root"], [], "present")


def test_the_helper_version_is_read_from_the_probes_run_of_it() -> None:
    ran = probe_result(commands=[{"argv": ["h", "-v"], "rc": 0, "stdout": "Version:    0.12.0\n", "stderr": ""}])
    after = converge.role("ecr_credential_helper").after
    assert after(ran) == {"ecr_credential_helper_installed_version": "0.12.0"}
    failed = probe_result(commands=[{"argv": ["h", "-v"], "rc": 126, "stdout": "", "stderr": "cannot execute"}])
    with pytest.raises(ValueError, match="did not report a version: \\['cannot execute'\\]"):
        after(failed)
