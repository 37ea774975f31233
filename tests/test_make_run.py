"""`make run`'s job: the embedded default provisions every local host, pulls on each, and
validates them; with --keep everything stays up, --destroy (make clean-hosts) removes it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from ecrkit.constants import HELPER_VERSION
from testbed.hosts import LOCAL_INVENTORY, PODMAN_ENV, ROOT, local_host_groups, podman
from testbed.standin import API_ADDRESS, listening
from tests.conftest import run_ecrkit

pytestmark = pytest.mark.hosts


def make_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed", *args],
        cwd=ROOT,
        env={k: v for k, v in PODMAN_ENV.items() if k != "COLUMNS"},  # a log: no terminal, rich's 80 columns
        capture_output=True,
        text=True,
        check=False,
    )


def running(name: str) -> bool:
    return podman("container", "exists", name, check=False).returncode == 0


def record(output: str, first: str) -> dict[str, str]:
    """A row as make run's log shows it, one `column: value` line below its first cell."""
    lines = output.splitlines()
    start = lines.index(first)
    cells: dict[str, str] = {}
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        column, _, value = line.strip().partition(": ")
        cells[column] = value
    return cells


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
        assert len(re.findall(r"^\[\d/7\] .*: done in \d+\.\d s$", out, re.M)) == 7
        # The account got what inventory/local declares, read back through the stand-in's API.
        assert record(out, "repository") == {
            "name": "ecrkit/demo",
            "state": "expire untagged images after 14 days; keep the last 100 images; read by o-ecrkitdemo1; "
            "encrypted KMS arn:aws:kms:us-east-1:123456789012:key/ecrkit-demo",
        }
        assert record(out, "replication rule") == {"name": "1", "state": "ecrkit/ to eu-west-1 of 123456789012"}
        assert record(out, "pull-through rule") == {"name": "ecr-public", "state": "caches public.ecr.aws"}
        assert record(out, "creation template") == {
            "name": "ecr-public",
            "state": "PULL_THROUGH_CACHE: keep the last 50 images",
        }
        assert record(out, "IAM policy") == {
            "name": "ecrkit-hosts/ecrkit-job-host",
            "state": "ecr:BatchCheckLayerAvailability ecr:BatchGetImage ecr:GetAuthorizationToken "
            "ecr:GetDownloadUrlForLayer",
        }
        # The agent's helper sits where the Mesos agent's PATH finds it; the others in /usr/local/bin.
        hosts = {name: record(out, name) for name in names}
        assert hosts["ecrkit-agent"]["helper on PATH"] == "/usr/bin/docker-credential-ecr-login"
        assert hosts["ecrkit-runner"]["helper on PATH"] == "/usr/local/bin/docker-credential-ecr-login"
        assert hosts["ecrkit-workstation"]["/root/.docker/config.json"] == "credsStore=ecr-login"
        # What users get: ecrkit's default helper version, downloaded from the release mirror.
        assert {hosts[name]["version"] for name in names} == {HELPER_VERSION}
        # Every host pulled a real image through the helper and the config the roles wrote, and
        # every check of the validator passed, for each host's service, tasks and root; all of it
        # readable in a log of 80 columns.
        assert [hosts[name]["docker pull"] for name in names] == ["pulled"] * 3 and "docker pull: refused" not in out
        # The hosts standing for EC2 instances pulled with their instance role's credentials from IMDS
        # (accepted by the stand-in's API), no keys planted; the workstation with keys, as a person's.
        for name in ("ecrkit-runner", "ecrkit-agent"):
            assert re.fullmatch(r"IMDS role, [1-9]\d* accepted", hosts[name]["credentials"]), hosts[name]
        assert hosts["ecrkit-workstation"]["credentials"] == "planted keys"
        assert "    pass  instance role: role ecrkit-hosts through IMDSv2" in out
        # The validator's verdict on a job's reach to the instance role (seed 001), both ways.
        assert record(out, "hop limit 1") == {
            "host": "ecrkit-runner",
            "result": "pass",
            "evidence": "a job in the job network cannot read the role: its token's answer did not reach it "
            "(hop limit 1)",
        }
        exposed = record(out, "hop limit 2")
        assert (exposed["host"], exposed["result"]) == ("ecrkit-runner", "warn")
        assert "read role ecrkit-hosts" in exposed["evidence"]
        assert "gitlab_runner_ecr_hop_limit" in exposed["fix"] and "HttpPutResponseHopLimit" in exposed["fix"]
        assert "ecrkit validate: 3 of 3 hosts pass" in out and "FAIL" not in out
        assert "    pass  runner ecrkit-runner: 123456789012.dkr.ecr.us-east-1.amazonaws.com: DOCKER_AUTH_CONFIG" in out
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
            ("ecrkit-agent", "tasks of dcos-mesos-slave"),
            ("ecrkit-agent", "user root"),
            ("ecrkit-workstation", "user root"),
        }
    finally:
        destroyed = make_run("--destroy")
    assert destroyed.returncode == 0
    assert not any(running(name) for name in names) and not listening(API_ADDRESS)
