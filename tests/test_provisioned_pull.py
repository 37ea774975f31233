"""End to end: a host provisioned by site.yml pulls from the stand-in ECR with what the roles wrote.

The host is a systemd container set up by `StandIn.host_options`: the docker CLI inside it
resolves credentials through the helper and the config.json that the roles installed, and
hands them to the stand-in's daemon, which pulls from the registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.hosts import Host, ansible_playbook, write_inventory
from testbed.standin import REGISTRY_HOST, StandIn
from tests.conftest import docker_pull, stand_in_host

pytestmark = [pytest.mark.hosts, pytest.mark.standin]


@pytest.fixture(scope="module")
def host(stand_in: StandIn) -> Iterator[Host]:
    with stand_in_host("ecrkit-pytest-pull", stand_in) as started:
        yield started


def test_the_host_pulls_only_after_the_roles_ran(host: Host, image: str, stand_in: StandIn, tmp_path: Path) -> None:
    assert docker_pull(host, image, stand_in) != 0, "the pull worked before ecrkit configured the host"

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
    assert docker_pull(host, image, stand_in) == 0
    assert stand_in.token_requests() == before + 1
    # The helper cached its token in the cache directory the role made, so it asks no more.
    assert host.exists("/var/lib/ecr-login/cache.json")
    assert docker_pull(host, image, stand_in) == 0
    assert stand_in.token_requests() == before + 1
