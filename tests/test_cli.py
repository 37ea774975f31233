"""`ecrkit` as a user runs it: output, exit codes, and files it must never modify."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ecrkit.validate import inventory_targets, targets_from_arguments
from tests.conftest import ROOT, run_ecrkit

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def test_no_registry_prints_creds_store() -> None:
    result = run_ecrkit("render", "docker-config")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"credsStore": "ecr-login"}


def test_registries_print_cred_helpers_and_creds_store_can_be_forced() -> None:
    result = run_ecrkit("render", "docker-config", "--registry", ECR, "--public", "--creds-store")
    assert json.loads(result.stdout) == {
        "credsStore": "ecr-login",
        "credHelpers": {ECR: "ecr-login", "public.ecr.aws": "ecr-login"},
    }


def test_merge_keeps_foreign_keys_and_never_modifies_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    original = '{"auths": {"ghcr.io": {"auth": "eDp5"}}, "credHelpers": {"gcr.io": "gcloud"}}'
    path.write_text(original)
    result = run_ecrkit("render", "docker-config", "--registry", ECR, "--merge", str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "auths": {"ghcr.io": {"auth": "eDp5"}},
        "credHelpers": {"gcr.io": "gcloud", ECR: "ecr-login"},
    }
    assert path.read_text() == original


def test_merge_of_a_missing_file_starts_empty(tmp_path: Path) -> None:
    result = run_ecrkit("render", "docker-config", "--merge", str(tmp_path / "none.json"))
    assert json.loads(result.stdout) == {"credsStore": "ecr-login"}


def test_a_bad_registry_exits_2_naming_it() -> None:
    result = run_ecrkit("render", "docker-config", "--registry", ECR, "--registry", "registry.example.com")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "--registry[1]: 'registry.example.com'" in result.stderr


def test_an_unparsable_file_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"auths": ')
    result = run_ecrkit("render", "docker-config", "--merge", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert "not valid JSON" in result.stderr
    assert path.read_text() == '{"auths": '


def test_fetch_from_s3_verifies_before_replacing(tmp_path: Path, aws_env: dict[str, str], s3: Any) -> None:
    s3.create_bucket(Bucket="helpers")
    payload = b"\x7fELF pretend helper"
    s3.put_object(Bucket="helpers", Key="ecr-login/0.12.0", Body=payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "docker-credential-ecr-login"

    first = run_ecrkit("fetch", "s3://helpers/ecr-login/0.12.0", "--sha256", digest, "-o", str(dest), env=aws_env)
    assert first.returncode == 0, first.stderr
    assert dest.read_bytes() == payload
    assert dest.stat().st_mode & 0o777 == 0o755

    again = run_ecrkit("fetch", "s3://helpers/ecr-login/0.12.0", "--sha256", digest, "-o", str(dest), env=aws_env)
    assert "already present" in again.stdout

    wrong = run_ecrkit("fetch", "s3://helpers/ecr-login/0.12.0", "--sha256", "0" * 64, "-o", str(dest), env=aws_env)
    assert wrong.returncode == 1
    assert f"expected {'0' * 64}" in wrong.stderr
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in tmp_path.iterdir()) == [dest.name]


def test_validate_refuses_a_bad_registry_before_probing_anything() -> None:
    done = run_ecrkit("validate", "--registry", "registry.example.com", "127.0.0.1:1")
    assert done.returncode == 2
    assert "'registry.example.com' is not accepted" in done.stderr and done.stdout == ""


def test_validate_names_an_inventory_host_it_does_not_have(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"known": {}}}}))
    done = run_ecrkit("validate", "-i", str(inventory), "unknown")
    assert done.returncode == 2 and "'unknown' is not accepted" in done.stderr
    done = run_ecrkit("validate", "-i", str(tmp_path / "missing.yml"))
    assert done.returncode == 2 and "missing.yml" in done.stderr


def test_validate_reports_a_host_it_cannot_reach_and_exits_1() -> None:
    done = run_ecrkit("validate", "--json", "root@127.0.0.1:1")  # nothing listens on port 1
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["passed"] is False
    [host] = report["hosts"]
    assert host["host"] == "root@127.0.0.1:1" and host["unreachable"]


def test_validate_probes_the_local_host_by_default() -> None:
    """`nobody` has no config.json; with no registry to ask for, the helper calls no API."""
    done = run_ecrkit("validate", "--user", "nobody", "--json")
    assert done.returncode == 1
    [host] = json.loads(done.stdout)["hosts"]
    assert host["host"] == "localhost" and host["unreachable"] is None
    results = {f["check"]: (f["subject"], f["severity"]) for f in host["findings"]}
    assert results["helper runs"] == ("user nobody", "ok")
    assert results["config.json"] == ("user nobody", "error")


def test_render_runner_config_prints_and_changes_the_file_only_in_place(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[runners]]\n  name = "a"  # kept\n  token = "glrt-x"\n  executor = "docker"\n')
    config.chmod(0o640)
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    printed = run_ecrkit("render", "runner-config", "--config", str(config), "--registry", registry)
    assert printed.returncode == 0, printed.stderr
    assert "DOCKER_AUTH_CONFIG=" in printed.stdout and 'name = "a"  # kept' in printed.stdout
    assert "DOCKER_AUTH_CONFIG" not in config.read_text()
    done = run_ecrkit("render", "runner-config", "--config", str(config), "--registry", registry, "--in-place")
    assert done.returncode == 0 and done.stdout == "" and "updated" in done.stderr
    assert config.read_text() == printed.stdout and config.stat().st_mode & 0o777 == 0o600
    again = run_ecrkit("render", "runner-config", "--config", str(config), "--registry", registry, "--in-place")
    assert "unchanged" in again.stderr


def test_render_runner_config_refuses_bad_input_untouched(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[[runners]]\nname = 'a'\n[runners.docker\n")
    done = run_ecrkit("render", "runner-config", "--config", str(config), "--registry", "x.example.com")
    assert done.returncode == 2 and "'x.example.com' is not accepted" in done.stderr
    done = run_ecrkit("render", "runner-config", "--config", str(config), "--in-place")
    assert done.returncode == 2 and "not valid TOML" in done.stderr and str(config) in done.stderr
    assert config.read_text() == "[[runners]]\nname = 'a'\n[runners.docker\n"
    done = run_ecrkit("render", "runner-config", "--config", str(tmp_path / "missing.toml"))
    assert done.returncode == 2 and "missing.toml" in done.stderr


def test_render_userdata_prints_either_form() -> None:
    shell = run_ecrkit("render", "userdata", "--registry", "123456789012.dkr.ecr.us-east-1.amazonaws.com")
    assert shell.returncode == 0 and shell.stdout.startswith("#!/bin/bash\n")
    assert "/0.12.0/linux-@ARCH@/docker-credential-ecr-login" in shell.stdout
    cloud = run_ecrkit("render", "userdata", "--format", "cloud-config", "--url", "https://m.example/h")
    assert cloud.returncode == 0 and cloud.stdout.startswith("#cloud-config\n")
    bad = run_ecrkit("render", "userdata", "--sha256", "nothex")
    assert bad.returncode == 2 and "'nothex' is not accepted" in bad.stderr


def test_validate_flags_replace_what_the_inventory_expects(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    host = {"ansible_connection": "local", "ecrkit_services": ["gitlab-runner"], "docker_auth_config_users": ["ci"]}
    inventory.write_text(json.dumps({"all": {"hosts": {"h": host}}}))
    [kept] = targets_from_arguments([], str(inventory), [], [], [])
    assert (kept.services, kept.users, kept.registries) == (["gitlab-runner"], ["ci"], [])
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    [replaced] = targets_from_arguments([], str(inventory), [registry], ["dcos-mesos-slave"], [])
    assert (replaced.services, replaced.users, replaced.registries) == (["dcos-mesos-slave"], ["ci"], [registry])
    [remote] = targets_from_arguments(["deploy@10.0.0.5:2222"], None, [], ["gitlab-runner"], [])
    assert (remote.connection, remote.address, remote.port, remote.user) == ("ssh", "10.0.0.5", 2222, "deploy")
    assert (remote.services, remote.users) == (["gitlab-runner"], [])


def test_validate_judges_the_inventorys_hosts_not_its_aws_accounts() -> None:
    names = [target.name for target in inventory_targets(str(ROOT / "inventory/example"), [])]
    assert "prod-us-east-1" not in names  # ecr_accounts: driven through the API, nothing to probe
    assert "gitlab-ci-jobs-asg" not in names and names  # autoscaling_groups too
    assert sorted(names) == [
        "agent-1.example.internal", "agent-2.example.internal", "build-1.example.internal",
        "laptop-1.example.internal", "runner-1.example.internal",
    ]  # fmt: skip
