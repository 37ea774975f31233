"""site.yml on a fresh systemd host: check mode changes nothing, secrets never reach the output,
a real run converges, and a second run reports changed=0."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ecrkit.renderers import registries_conf
from ecrkit.renderers.aws_config import SsoProfile, merge
from testbed.hosts import Host, ansible_playbook, recap, remove_hosts, start_hosts, write_inventory

pytestmark = pytest.mark.hosts

SECRET = "c2VjcmV0LXVzZXI6aHVudGVyMg=="  # base64 of secret-user:hunter2
EXISTING = json.dumps({"auths": {"registry.example.com": {"auth": SECRET}}, "currentContext": "default"})
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
AWS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXISTING_AWS = f"# mine\n[profile ops]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = {AWS_KEY}\n"
DROP_IN = "/etc/containers/registries.conf.d/50-ecrkit-mirror.conf"
SSO = {"start_url": "https://d-0123456789.awsapps.com/start", "sso_region": "eu-west-1", "role_name": "ECRPull"}


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    hosts = start_hosts([f"ecrkit-pytest-site-{os.getpid()}"])
    try:
        yield hosts[0]
    finally:
        remove_hosts(hosts)


@pytest.fixture(scope="module")
def inventory(host: Host, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_inventory(
        tmp_path_factory.mktemp("inventory") / "hosts.yml",
        {"workstations": [host]},
        {
            "ecr_credential_helper_install_method": "controller_file",
            "ecr_credential_helper_src": "/usr/bin/docker-credential-ecr-login",
            "docker_auth_config_registries": [ECR],
            **{f"aws_sso_profile_{key}": value for key, value in SSO.items()},
            "registries_conf_cache_prefix": "docker-hub",
        },
    )


def test_check_mode_reports_changes_and_makes_none(host: Host, inventory: Path) -> None:
    host.run(f"mkdir -p /root/.docker && printf '%s' '{EXISTING}' > /root/.docker/config.json")
    host.run(f"mkdir -p /root/.aws && printf '%s' '{EXISTING_AWS}' > /root/.aws/config")
    result = ansible_playbook("-i", str(inventory), "site.yml", "--check", "--diff", "-vvv")
    assert result.returncode == 0, result.stdout[-3000:]
    counts = recap(result.stdout)[host.name]
    assert counts["changed"] > 0
    assert counts["failed"] == 0
    for path in [
        "/usr/local/bin/docker-credential-ecr-login",
        "/var/lib/ecr-login",
        "/etc/logrotate.d/ecr-login",
        DROP_IN,
    ]:
        assert not host.exists(path), path
    assert host.read("/root/.docker/config.json") == EXISTING
    assert host.read("/root/.aws/config") == EXISTING_AWS
    # The diff is shown, redacted: the user sees what would change, never the stored credential.
    assert f'"{ECR}": "ecr-login"' in result.stdout
    assert "<redacted>" in result.stdout
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr


def test_a_real_run_converges_and_a_second_changes_nothing(host: Host, inventory: Path) -> None:
    first = ansible_playbook("-i", str(inventory), "site.yml", "--diff")
    assert first.returncode == 0, first.stdout[-3000:]
    assert recap(first.stdout)[host.name]["changed"] > 0
    assert SECRET not in first.stdout
    assert host.run("docker-credential-ecr-login version").returncode == 0
    assert f'"{ECR}": "ecr-login"' in host.read("/root/.docker/config.json")
    assert SECRET in host.read("/root/.docker/config.json")
    # The helper here is Debian's 0.6.x, so the profile takes the form it reads; the rest is kept.
    profile = SsoProfile.build(**SSO, profile="ecr", session="ecrkit", account_id="", region="", form="legacy",
                               registries=[ECR])  # fmt: skip
    assert host.read("/root/.aws/config") == merge(EXISTING_AWS, profile, "/root/.aws/config")
    assert host.run("stat -c %a /root/.aws /root/.aws/config").stdout.split() == ["700", "600"]
    assert AWS_KEY not in first.stdout + first.stderr
    assert host.read(DROP_IN) == registries_conf.render(ECR, "docker-hub")

    second = ansible_playbook("-i", str(inventory), "site.yml")
    assert second.returncode == 0, second.stdout[-3000:]
    assert recap(second.stdout)[host.name] == {**recap(second.stdout)[host.name], "changed": 0, "failed": 0}


def test_the_hosts_journal_never_holds_a_stored_credential(host: Host, inventory: Path, tmp_path: Path) -> None:
    """Modules log their arguments on the host; the converge task writes files that hold stored
    credentials with logging off (run after the real run above, which wrote them)."""
    marker = f"ecrkit-marker-{os.getpid()}"
    play = tmp_path / "marker.yml"
    write = {"ecrkit.ecr.files": {"files": [{"path": "/tmp/ecrkit-marker", "content": marker}]}}
    play.write_text(json.dumps([{"hosts": "workstations", "gather_facts": False, "tasks": [write]}]))
    assert ansible_playbook("-i", str(inventory), str(play)).returncode == 0
    journal = host.run("journalctl --no-pager -o cat").stdout
    assert marker in journal  # the negative control: a file's content in a logged call is there
    assert SECRET not in journal and AWS_KEY not in journal


def test_bad_input_stops_before_any_change(host: Host, inventory: Path) -> None:
    before = host.read("/root/.docker/config.json")
    result = ansible_playbook(
        "-i", str(inventory), "site.yml", "-e", '{"docker_auth_config_registries": ["registry.example.com"]}'
    )
    assert result.returncode != 0
    assert "docker_auth_config_registries[0]: 'registry.example.com' is not accepted" in result.stdout
    assert host.read("/root/.docker/config.json") == before


def test_an_s3_helper_is_fetched_by_the_controller_and_shipped(
    host: Host, inventory: Path, aws_env: dict[str, str], s3: Any, tmp_path: Path
) -> None:
    binary = Path("/usr/bin/docker-credential-ecr-login").read_bytes()
    s3.create_bucket(Bucket="ecrkit-helpers")
    s3.put_object(Bucket="ecrkit-helpers", Key="0.12.0/docker-credential-ecr-login", Body=binary)
    variables = {
        "ecr_credential_helper_install_method": "url",
        "ecr_credential_helper_url": "s3://ecrkit-helpers/0.12.0/docker-credential-ecr-login",
        "ecr_credential_helper_sha256": hashlib.sha256(binary).hexdigest(),
        "ecr_credential_helper_install_dir": "/opt/ecr/bin",
        "ecr_credential_helper_controller_cache": str(tmp_path / "cache"),
    }
    result = ansible_playbook("-i", str(inventory), "site.yml", "-e", json.dumps(variables), env=aws_env)
    assert result.returncode == 0, result.stdout[-3000:]
    shipped = host.run("sha256sum /opt/ecr/bin/docker-credential-ecr-login").stdout.split()[0]
    assert shipped == variables["ecr_credential_helper_sha256"]
    assert (tmp_path / "cache" / shipped).exists()
