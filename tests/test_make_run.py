"""`make run`'s job: the embedded default provisions every local host and proves a pull on each."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ecrkit.standin import REGISTRY_HOST, StandIn
from ecrkit.testbed import LOCAL_INVENTORY, PODMAN_ENV, ROOT, STAND_IN_STATE, inventory_groups, summary

DEMO_IMAGE = f"{REGISTRY_HOST}/ecrkit/demo:1"

pytestmark = pytest.mark.hosts


def test_the_embedded_default_provisions_every_context() -> None:
    groups = inventory_groups(LOCAL_INVENTORY)
    assert set(groups) == {"gitlab_runners", "marathon_agents", "workstations"}
    destroy = [sys.executable, "-m", "ecrkit.testbed", "--destroy"]
    subprocess.run(destroy, cwd=ROOT, env=PODMAN_ENV, capture_output=True, check=False)  # start from fresh hosts
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ecrkit.testbed"],
            cwd=ROOT,
            env=PODMAN_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:]
        assert "What ecrkit set up on each host" in result.stdout
        stand_in = StandIn(STAND_IN_STATE)
        stand_in.up()  # make run stops its stand-in when it is done; ask the hosts again
        try:
            table = summary(groups, DEMO_IMAGE, stand_in)
        finally:
            stand_in.down()
        cells = {str(column.header): [str(cell) for cell in column.cells] for column in table.columns}
        rows = dict(
            zip(
                cells["host"],
                zip(cells["helper on PATH"], cells["/root/.docker/config.json"], cells["docker pull"], strict=True),
                strict=True,
            )
        )
        # The agent's helper sits where the Mesos agent's PATH finds it; the others in /usr/local/bin.
        assert rows["ecrkit-agent"][0] == "/usr/bin/docker-credential-ecr-login"
        assert rows["ecrkit-runner"][0] == "/usr/local/bin/docker-credential-ecr-login"
        assert "123456789012.dkr.ecr.us-east-1.amazonaws.com -> ecr-login" in rows["ecrkit-runner"][1]
        assert rows["ecrkit-workstation"][1] == "credsStore=ecr-login"
        # Every host pulled a real image through the helper and the config the roles wrote.
        assert {row[2] for row in rows.values()} == {"pulled"}
    finally:
        subprocess.run(destroy, cwd=ROOT, env=PODMAN_ENV, capture_output=True, check=False)
