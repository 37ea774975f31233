"""`ecrkit validate` on hosts standing for EC2 instances: the inventory says which hosts are asked
about instance metadata (ecrkit_instance_metadata, ecrkit_local_jobs; job_hosts by default), and the
validator, through Ansible as a user runs it, reports the role, IMDSv1, and a job's reach to the role
from a container on the job network, with the IMDS stand-in's hop limit set both ways. The host is a
systemd container in an IMDS host namespace, with no keys planted; its jobs' network is a container
of its Docker daemon one routing hop behind it (testbed.hosts.start_job_network)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from ecrkit.checks import Finding
from ecrkit.validate import Report, inventory_targets, validate_all
from testbed.hosts import (
    JOB_PROBE_IMAGE,
    Host,
    ansible_playbook,
    give_stand_in_role,
    load_job_probe_image,
    remove_hosts,
    remove_job_networks,
    start_ec2_hosts,
    start_job_network,
    write_inventory,
)
from testbed.standin import StandIn
from testbed.standin_imds import ImdsSettings, ImdsStandIn
from tests.conftest import run_ecrkit

pytestmark = [
    pytest.mark.standin,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("curl") is None,
        reason="needs root, ip (iproute2) and curl for network namespaces",
    ),
]
ROLE = "ci-job-host"


@pytest.fixture(scope="module")
def ec2_job_host(stand_in: StandIn) -> Iterator[tuple[ImdsStandIn, Host, str]]:
    """An EC2 job host (IMDS role, no keys) with a job network; yields the IMDS stand-in, the host
    and the network its jobs join."""
    imds = stand_in.imds()
    hosts: list[Host] = []
    try:
        imds.up(ImdsSettings(role=ROLE))
        hosts = start_ec2_hosts([f"ecrkit-imds-validate-{os.getpid()}"], stand_in, imds)
        give_stand_in_role(hosts[0], stand_in, keys=False)
        load_job_probe_image(stand_in)
        yield imds, hosts[0], start_job_network(hosts[0], stand_in, imds)
    finally:
        remove_hosts(hosts)
        remove_job_networks(stand_in)
        imds.down()


def inventory(tmp_path: Path, host: Host, group: str, **variables: object) -> Path:
    return write_inventory(tmp_path / "hosts.yml", {group: [host]}, dict(variables))


def validated(path: Path) -> Report:
    [report] = validate_all(inventory_targets(str(path), []))
    assert report.unreachable is None, report.unreachable
    return report


def imds_findings(report: Report) -> dict[tuple[str, str], Finding]:
    subjects = ("instance metadata", "jobs on this host")
    return {(f.subject, f.check): f for f in report.findings if f.subject in subjects}


JOB = ("jobs on this host", "job reaches instance role")
ROLE_CHECK = ("instance metadata", "instance role")


@pytest.fixture
def job_host_inventory(tmp_path: Path, ec2_job_host: tuple[ImdsStandIn, Host, str]) -> Path:
    """The host in job_hosts: asked about IMDS and jobs by default; only where its jobs run is said."""
    _, host, network = ec2_job_host
    return inventory(
        tmp_path, host, "job_hosts", ecrkit_job_probe_image=JOB_PROBE_IMAGE, ecrkit_job_probe_network=network
    )


def test_hop_limit_one_passes_and_two_warns_naming_the_role_and_the_setting(
    ec2_job_host: tuple[ImdsStandIn, Host, str], job_host_inventory: Path
) -> None:
    imds, _, _ = ec2_job_host
    imds.configure(hop_limit=1, http_tokens="required", role=ROLE)
    found = imds_findings(validated(job_host_inventory))
    assert found[ROLE_CHECK].severity == "ok" and ROLE in found[ROLE_CHECK].evidence
    assert found[("instance metadata", "IMDSv1")].severity == "ok"
    assert found[JOB].severity == "ok" and "hop limit 1" in found[JOB].evidence
    imds.configure(hop_limit=2)
    try:
        exposed = imds_findings(validated(job_host_inventory))[JOB]
    finally:
        imds.configure(hop_limit=1)
    assert exposed.severity == "warning" and f"read role {ROLE}" in exposed.evidence
    assert "gitlab_runner_ecr_hop_limit" in exposed.fix and "HttpPutResponseHopLimit" in exposed.fix


def test_imdsv1_allowed_warns(ec2_job_host: tuple[ImdsStandIn, Host, str], job_host_inventory: Path) -> None:
    imds, _, _ = ec2_job_host
    imds.configure(hop_limit=1, http_tokens="optional", role=ROLE)
    try:
        found = imds_findings(validated(job_host_inventory))
    finally:
        imds.configure(http_tokens="required")
    assert found[("instance metadata", "IMDSv1")].severity == "warning"
    assert found[JOB].severity == "warning" and "without a token (IMDSv1)" in found[JOB].evidence


def test_a_host_without_a_role_fails_naming_the_cause_in_json_and_junit(
    ec2_job_host: tuple[ImdsStandIn, Host, str], job_host_inventory: Path, tmp_path: Path
) -> None:
    imds, _, _ = ec2_job_host
    imds.configure(hop_limit=1, http_tokens="required", role="")
    try:
        report = validated(job_host_inventory)
        as_json = run_ecrkit("validate", "-i", str(job_host_inventory), "--json")
        run_ecrkit("validate", "-i", str(job_host_inventory), "--junit", str(tmp_path / "junit.xml"))
    finally:
        imds.configure(role=ROLE)
    role = imds_findings(report)[ROLE_CHECK]
    assert role.severity == "error" and role.evidence.startswith("no instance role")
    assert not report.passed
    [host] = json.loads(as_json.stdout)["hosts"]
    said = {(f["subject"], f["check"]): f for f in host["findings"]}
    assert said[ROLE_CHECK]["severity"] == "error" and said[JOB]["severity"] == "ok"
    cases = {case.get("name"): case for case in ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    failure = cases["instance metadata: instance role"].find("failure")
    assert failure is not None and failure.get("message", "").startswith("no instance role")
    assert cases["jobs on this host: job reaches instance role"].find("failure") is None


def test_an_absent_job_image_is_named(ec2_job_host: tuple[ImdsStandIn, Host, str], tmp_path: Path) -> None:
    _, host, network = ec2_job_host
    path = inventory(
        tmp_path, host, "job_hosts", ecrkit_job_probe_image="ecrkit/absent:1", ecrkit_job_probe_network=network
    )
    job = imds_findings(validated(path))[JOB]
    assert job.severity == "note" and "ecrkit/absent:1 is not on the host" in job.evidence


def test_negative_control_a_host_the_inventory_does_not_call_an_instance_is_not_asked(
    ec2_job_host: tuple[ImdsStandIn, Host, str], tmp_path: Path
) -> None:
    """The same host as a workstation (no ecrkit_instance_metadata): no IMDS checks at all, and
    with ecrkit_instance_metadata but not ecrkit_local_jobs, the host only (no job probe)."""
    _, host, _ = ec2_job_host
    assert imds_findings(validated(inventory(tmp_path, host, "workstations"))) == {}
    asked = imds_findings(validated(inventory(tmp_path, host, "gitlab_runners", ecrkit_instance_metadata=True)))
    assert asked[ROLE_CHECK].severity == "ok" and JOB not in asked


def test_the_playbook_asks_as_the_cli_does(
    ec2_job_host: tuple[ImdsStandIn, Host, str], job_host_inventory: Path
) -> None:
    """playbooks/validate.yml (the role's validate entry point) decides and probes alike."""
    imds, _, _ = ec2_job_host
    imds.configure(hop_limit=2, http_tokens="required", role=ROLE)
    try:
        result = ansible_playbook("-i", str(job_host_inventory), "playbooks/validate.yml")
    finally:
        imds.configure(hop_limit=1)
    said = " ".join(result.stdout.split())
    assert f"OK | instance metadata | instance role | role {ROLE} through IMDSv2" in said
    job = "WARNING | jobs on this host | job reaches instance role | a job in the job network got an IMDSv2 token"
    assert f"{job} and read role {ROLE}" in said
