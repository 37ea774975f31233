"""End to end: a host provisioned by site.yml pulls from the stand-in ECR with what the roles wrote.

The host is a systemd container on the machine's network (so its helper reaches the
stand-in's API on 127.0.0.1) with the ECR API name mapped to loopback in its own
/etc/hosts and the stand-in daemon's socket mounted: the docker CLI inside it resolves
credentials through the helper and the config.json that the roles installed, and hands
them to the daemon, which pulls from the registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecrkit.standin import API_ADDRESS, API_HOST, REGISTRY_HOST, StandIn
from ecrkit.testbed import Host, ansible_playbook, remove_hosts, start_hosts, write_inventory

pytestmark = [pytest.mark.hosts, pytest.mark.standin]


@pytest.fixture(scope="module")
def host(stand_in: StandIn) -> Iterator[Host]:
    hosts = start_hosts(
        [f"ecrkit-pytest-pull-{os.getpid()}"],
        options=[
            "--network=host",
            f"--add-host={API_HOST}:{API_ADDRESS}",
            f"--volume={stand_in.docker_socket}:/run/docker.sock",
            "--volume=/usr/bin/docker:/usr/bin/docker:ro",
            f"--volume={stand_in.ca}:/etc/ecrkit-test/ca.crt:ro",
        ],
    )
    try:
        yield hosts[0]
    finally:
        remove_hosts(hosts)


def pull(host: Host, image: str) -> int:
    """`docker pull` as root on the host, with only what a real host would have: a role, no keys."""
    env = {
        "DOCKER_HOST": "unix:///run/docker.sock",
        "AWS_CA_BUNDLE": "/etc/ecrkit-test/ca.crt",
        "AWS_ACCESS_KEY_ID": "AKIASTANDIN000000000",  # stands in for the instance profile
        "AWS_SECRET_ACCESS_KEY": "stand-in-secret",
        "AWS_ECR_CACHE_DIR": "/var/lib/ecr-login",  # what a service's environment sets
    }
    done = host.run(f"docker pull {image} && docker rmi {image}", env)
    return done.returncode


def test_the_host_pulls_only_after_the_roles_ran(host: Host, image: str, stand_in: StandIn, tmp_path: Path) -> None:
    assert pull(host, image) != 0, "the pull worked before ecrkit configured the host"

    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"workstations": [host]},
        {
            "ecr_credential_helper_install_method": "controller_file",
            "ecr_credential_helper_src": "/usr/bin/docker-credential-ecr-login",
            "docker_auth_config_registries": [REGISTRY_HOST],
        },
    )
    result = ansible_playbook("-i", str(inventory), "site.yml")
    assert result.returncode == 0, result.stdout[-3000:]

    before = stand_in.token_requests()
    assert pull(host, image) == 0
    assert stand_in.token_requests() == before + 1
    # The helper cached its token in the cache directory the role made, so it asks no more.
    assert host.exists("/var/lib/ecr-login/cache.json")
    assert pull(host, image) == 0
    assert stand_in.token_requests() == before + 1
