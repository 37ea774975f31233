"""`make run`'s job: the embedded default provisions every local host, pulls on each, and
validates them; with --keep everything stays up, --destroy (make clean-hosts) removes it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from ecrkit.standin import API_ADDRESS, listening
from ecrkit.testbed import LOCAL_INVENTORY, PODMAN_ENV, ROOT, local_host_groups, podman
from tests.conftest import run_ecrkit

pytestmark = pytest.mark.hosts


def make_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecrkit.testbed", *args],
        cwd=ROOT,
        env={**PODMAN_ENV, "COLUMNS": "200"},  # wide enough for every cell: rows are read as text
        capture_output=True,
        text=True,
        check=False,
    )


def running(name: str) -> bool:
    return podman("container", "exists", name, check=False).returncode == 0


def row(output: str, host: str) -> str:
    """The table row of a host, cells separated by single spaces."""
    lines = [line for line in output.splitlines() if f"│ {host} " in line]
    assert lines, host
    return " ".join(lines[0].replace("│", " ").split())


def test_the_embedded_default_provisions_pulls_and_validates_every_context() -> None:
    groups = local_host_groups()
    assert set(groups) == {"gitlab_runners", "marathon_agents", "workstations"}
    names = [name for members in groups.values() for name in members]
    make_run("--destroy")  # start from fresh hosts
    try:
        result = make_run("--keep")
        problems = [line for line in result.stdout.splitlines() if re.search(r"FAIL|refused|fatal:|error", line)]
        assert result.returncode == 0, "\n".join([*problems, result.stdout[-2000:]])
        out = result.stdout
        # Each step says what it does and how long it took.
        assert len(re.findall(r"^\[\d/6\] .*: done in \d+\.\d s$", out, re.M)) == 6
        # The account got what inventory/local declares, read back through the stand-in's API.
        assert row(out, "repository") == (
            "repository ecrkit/demo expire untagged images after 14 days; keep the last 100 images;"
            " read by o-ecrkitdemo1"
        )
        assert row(out, "pull-through rule") == "pull-through rule ecr-public caches public.ecr.aws"
        assert (
            row(out, "creation template") == "creation template ecr-public PULL_THROUGH_CACHE: keep the last 50 images"
        )
        assert row(out, "IAM policy") == (
            "IAM policy ecrkit-hosts/ecrkit-job-host ecr:BatchCheckLayerAvailability ecr:BatchGetImage"
            " ecr:GetAuthorizationToken ecr:GetDownloadUrlForLayer"
        )
        # The agent's helper sits where the Mesos agent's PATH finds it; the others in /usr/local/bin.
        assert "ecrkit-agent marathon_agents /usr/bin/docker-credential-ecr-login" in row(out, "ecrkit-agent")
        assert "/usr/local/bin/docker-credential-ecr-login" in row(out, "ecrkit-runner")
        assert "credsStore=ecr-login" in row(out, "ecrkit-workstation")
        # Every host pulled a real image through the helper and the config the roles wrote,
        # and every check of the validator passed, for each host's service and root.
        assert len(re.findall(r"│ pulled +│", out)) == 3 and "refused" not in out
        assert "ecrkit validate: 3 of 3 hosts pass" in out and "FAIL" not in out
        assert out.rstrip().endswith("every host pulled and passed validation")
        # --keep kept the hosts and the stand-in for exploring: the validator still reaches them,
        # and a live token came to each host's service and root (to the workstation's by `list`).
        assert all(running(name) for name in names) and listening(API_ADDRESS)
        report = json.loads(run_ecrkit("validate", "-i", str(LOCAL_INVENTORY), "--json").stdout)
        live = {
            (h["host"], f["subject"]) for h in report["hosts"] for f in h["findings"] if f["check"].startswith("live")
        }
        assert report["passed"] and live == {
            ("ecrkit-runner", "service gitlab-runner"),
            ("ecrkit-runner", "user root"),
            ("ecrkit-agent", "service dcos-mesos-slave"),
            ("ecrkit-agent", "user root"),
            ("ecrkit-workstation", "user root"),
        }
    finally:
        destroyed = make_run("--destroy")
    assert destroyed.returncode == 0
    assert not any(running(name) for name in names) and not listening(API_ADDRESS)
