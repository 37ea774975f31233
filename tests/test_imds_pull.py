"""Hosts as on EC2: the real helper pulls with credentials from the IMDS stand-in, no keys planted,
and again after they have expired and rotated. The host is a network namespace one link away from
IMDS; the AWS/ECR stand-in's API reaches it at its own loopback through a relay."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecrkit.checks import diagnose_helper_log
from testbed.hosts import Host, give_stand_in_role, podman, remove_hosts, start_ec2_hosts
from testbed.standin import API_ADDRESS, REGISTRY_HOST, StandIn
from testbed.standin_imds import ImdsSettings, ImdsStandIn
from tests.conftest import TestedHelper

pytestmark = [
    pytest.mark.standin,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("curl") is None,
        reason="needs root, ip (iproute2) and curl for network namespaces",
    ),
]
LIFETIME = 8  # seconds the stand-in's role credentials last


@pytest.fixture
def ec2_host(stand_in: StandIn) -> Iterator[tuple[ImdsStandIn, str]]:
    imds = stand_in.imds()
    try:
        imds.up(ImdsSettings(credential_lifetime=LIFETIME))
        host = imds.add_host("ec2")
        imds.relay_to(host, API_ADDRESS, 443)
        yield imds, host
    finally:
        imds.down()


def pull(stand_in: StandIn, host: str, helper: TestedHelper, image: str, home: Path) -> tuple[int, str]:
    """`docker pull` in the host's network namespace, as a user with no AWS keys at all; no
    token cache, so every pull asks ECR (with the role's credentials of the moment)."""
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"credHelpers": {REGISTRY_HOST: "ecr-login"}}))
    env = {key: value for key, value in stand_in.client_env(home).items() if not key.startswith("AWS_ACCESS")}
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    env.update(AWS_ECR_CACHE_DIR=str(home / "ecr-cache"), AWS_ECR_DISABLE_CACHE="true")
    env = helper.env(env)
    done = stand_in.run(["docker", "pull", image], env, netns=host)
    stand_in.run(["docker", "rmi", image], env)
    return done.returncode, done.stderr


def test_the_helper_pulls_with_role_credentials_that_expire_and_rotate(
    stand_in: StandIn, image: str, ec2_host: tuple[ImdsStandIn, str], helper: TestedHelper, tmp_path: Path
) -> None:
    imds, host = ec2_host
    code, stderr = pull(stand_in, host, helper, image, tmp_path)
    assert code == 0, stderr
    first = list(imds.issued())
    assert len(first) == 1 and imds.keys_used() == [(first[0], "accepted")]
    time.sleep(imds.issued()[first[0]]["expiration"] - time.time() + 0.5)  # the role's keys have expired
    code, stderr = pull(stand_in, host, helper, image, tmp_path)
    assert code == 0, stderr
    second = [key for key in imds.issued() if key not in first]
    assert len(second) == 1
    assert imds.keys_used()[-1] == (second[0], "accepted")


def test_a_host_without_a_role_cannot_pull_and_the_log_says_why(
    stand_in: StandIn, image: str, ec2_host: tuple[ImdsStandIn, str], tmp_path: Path
) -> None:
    imds, host = ec2_host
    imds.configure(role="")
    newest = TestedHelper("sid")
    code, _ = pull(stand_in, host, newest, image, tmp_path)
    assert code != 0
    findings = diagnose_helper_log((tmp_path / "ecr-cache" / "log" / "ecr-login.log").read_text())
    assert "helper log: no credentials" in [f.check for f in findings]


def test_a_systemd_host_standing_for_an_ec2_instance_pulls_with_its_role(
    stand_in: StandIn, image: str, tmp_path: Path
) -> None:
    """The test bed's host (a podman systemd container) in an IMDS host namespace, no keys
    planted: the helper on it pulls with the instance role's credentials."""
    imds = stand_in.imds()
    name = f"ecrkit-ec2-{os.getpid()}"
    hosts: list[Host] = []
    try:
        imds.up(ImdsSettings(credential_lifetime=LIFETIME))
        hosts = start_ec2_hosts([name], stand_in, imds)
        host = hosts[0]
        give_stand_in_role(host, stand_in, keys=False)
        assert "AWS_ACCESS_KEY_ID" not in host.read("/etc/environment")
        podman("cp", str(TestedHelper("sid").path), f"{name}:/usr/local/bin/docker-credential-ecr-login")
        config = json.dumps({"credHelpers": {REGISTRY_HOST: "ecr-login"}})
        host.run(f"mkdir -p /root/.docker && printf '%s' '{config}' > /root/.docker/config.json")
        env = stand_in.host_env(keys=False) | {"AWS_ECR_DISABLE_CACHE": "true"}
        done = host.run(f"docker pull {image} && docker rmi {image}", env)
        assert done.returncode == 0, done.stderr
        assert [answer for _, answer in imds.keys_used()] == ["accepted"]
        imds.configure(role="")  # negative control: the same host without a role
        refused = host.run(f"docker pull {image}", env)
        assert refused.returncode != 0
    finally:
        remove_hosts(hosts)
        imds.down()
