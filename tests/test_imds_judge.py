"""The validator's verdicts on the instance role and on a job's reach to it (seed 001): the judge
from probe facts, and the probe itself run in the IMDS stand-in's namespaces (a host, and a job
network one routing hop behind it) with the hop limit set both ways."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecrkit.checks import Finding, judge, judge_imds, probe_args
from ecrkit.errors import InputError
from ecrkit.plans import instance_metadata, validate_args
from ecrkit.probe_facts import ImdsFacts
from ecrkit.validate import inventory_targets, targets_from_arguments
from testbed.standin_imds import ImdsSettings, ImdsStandIn
from tests.conftest import run_ecrkit

PROBE = Path(__file__).resolve().parent.parent / "ecrkit" / "probe.py"
needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("curl") is None,
    reason="needs root, ip (iproute2) and curl for network namespaces",
)


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.check: finding for finding in findings}


# -- the judge, from facts ---------------------------------------------------------------------------

ROLE_V2: ImdsFacts = {"answered": True, "token": True, "role": "ci-host", "v1_allowed": False}


def test_hop_limit_one_passes() -> None:
    facts: ImdsFacts = {**ROLE_V2, "job": {"ran": True, "token": False, "role": "", "v1_role": "", "error": ""}}
    checks = by_check(judge_imds(facts))
    assert checks["instance role"].severity == "ok"
    assert checks["IMDSv1"].severity == "ok"
    job = checks["job reaches instance role"]
    assert (job.severity, job.subject) == ("ok", "jobs on this host")
    assert "hop limit 1" in job.evidence


def test_hop_limit_two_warns_naming_the_role_and_the_setting() -> None:
    facts: ImdsFacts = {**ROLE_V2, "job": {"ran": True, "token": True, "role": "ci-host", "v1_role": "", "error": ""}}
    job = by_check(judge_imds(facts))["job reaches instance role"]
    assert job.severity == "warning"
    assert "ci-host" in job.evidence
    assert "gitlab_runner_ecr_hop_limit" in job.fix and "HttpPutResponseHopLimit" in job.fix


def test_imdsv1_allowed_warns() -> None:
    facts: ImdsFacts = {
        **ROLE_V2,
        "v1_allowed": True,
        "job": {"ran": True, "token": False, "role": "", "v1_role": "ci-host", "error": ""},
    }
    checks = by_check(judge_imds(facts))
    assert checks["IMDSv1"].severity == "warning"
    assert "HttpTokens required" in checks["IMDSv1"].fix
    job = checks["job reaches instance role"]
    assert job.severity == "warning" and "ci-host" in job.evidence and "IMDSv1" in job.evidence


def test_a_host_without_a_role_and_an_unreachable_imds_are_named_causes() -> None:
    no_role = by_check(judge_imds({"answered": True, "token": True, "role": "", "v1_allowed": False}))
    assert no_role["instance role"].severity == "error"
    assert no_role["instance role"].evidence.startswith("no instance role")
    unreachable = by_check(judge_imds({"answered": False, "token": False, "role": "", "error": "timed out"}))
    assert unreachable["instance role"].severity == "error"
    assert unreachable["instance role"].evidence.startswith("IMDS unreachable")
    assert "IMDSv1" not in unreachable


def test_a_job_probe_that_did_not_run_is_a_note() -> None:
    facts: ImdsFacts = {**ROLE_V2, "job": {"ran": False, "error": "docker: not found"}}
    job = by_check(judge_imds(facts))["job reaches instance role"]
    assert job.severity == "note" and "docker: not found" in job.evidence


def test_an_absent_job_image_is_named_not_a_pass() -> None:
    error = "docker: Error response from daemon: No such image: docker.io/curlimages/curl:8.11.1.\n\nRun 'docker run'"
    job = by_check(judge_imds({**ROLE_V2, "job": {"ran": False, "error": error}}))["job reaches instance role"]
    assert job.severity == "note"
    assert "docker.io/curlimages/curl:8.11.1 is not on the host" in job.evidence
    assert "ecrkit_job_probe_image" in job.fix and "pulls nothing" in job.fix


def test_judge_includes_imds_only_when_probed() -> None:
    assert judge({"consumers": []}) == []
    assert {f.check for f in judge({"consumers": [], "imds": ROLE_V2})} == {"instance role", "IMDSv1"}
    assert probe_args([], [], [], imds={"job_command": ["x"]})["imds"] == {"job_command": ["x"]}
    assert "imds" not in probe_args([], [], [])


# -- which hosts are asked, from the inventory (ecrkit.plans.instance_metadata) -------------------------

JOB = ["docker", "run", "--rm", "--pull=never", "--entrypoint=", "--network=bridge", "docker.io/curlimages/curl:8.11.1"]


def test_job_hosts_are_asked_with_a_job_probe_by_default_and_other_hosts_are_not() -> None:
    assert instance_metadata({}, ["job_hosts"]) == {"job_command": JOB}
    for groups in (["gitlab_runners"], ["marathon_agents"], ["workstations"], []):
        assert instance_metadata({}, groups) is None
    assert instance_metadata({"ecrkit_instance_metadata": False}, ["job_hosts"]) is None
    assert instance_metadata({"ecrkit_instance_metadata": True}, ["gitlab_runners"]) == {}  # the host only
    manager = {
        "ecrkit_instance_metadata": True,
        "ecrkit_local_jobs": True,
        "ecrkit_job_probe_image": "alpine/curl:8.9.1",
        "ecrkit_job_probe_network": "container:jobs",
    }
    assert instance_metadata(manager, ["gitlab_runners"]) == {
        "job_command": [*JOB[:5], "--network=container:jobs", "alpine/curl:8.9.1"]
    }


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"ecrkit_instance_metadata": "yes"}, "h: ecrkit_instance_metadata"),
        ({"ecrkit_job_probe_image": "--privileged"}, "h: ecrkit_job_probe_image"),
        ({"ecrkit_job_probe_network": "host --privileged"}, "h: ecrkit_job_probe_network"),
    ],
)
def test_a_bad_variable_is_named(variables: dict[str, object], named: str) -> None:
    with pytest.raises(InputError, match=named):
        instance_metadata(variables, ["job_hosts"], "h")


def test_the_playbooks_entry_point_and_the_cli_decide_alike(tmp_path: Path) -> None:
    rule = {"registries": [], "public": False, "creds_store": False}
    assert validate_args(rule, [], ["root"], {}, ["job_hosts"])["imds"] == {"job_command": JOB}
    assert "imds" not in validate_args(rule, [], ["root"], {}, ["workstations"])
    inventory = tmp_path / "hosts.yml"
    hosts: dict[str, object] = {"job_hosts": {"hosts": {"build": {}}}, "workstations": {"hosts": {"laptop": {}}}}
    inventory.write_text(json.dumps({"all": {"vars": {"ansible_connection": "local"}, "children": hosts}}))
    found = {target.name: target.imds for target in inventory_targets(str(inventory), [])}
    assert found == {"build": {"job_command": JOB}, "laptop": None}


# -- the probe, in the stand-in's namespaces ------------------------------------------------------------


@pytest.fixture
def imds(tmp_path: Path) -> Iterator[ImdsStandIn]:
    stand_in = ImdsStandIn(tmp_path / "imds")
    try:
        stand_in.up(ImdsSettings(role="ci-host"))
        yield stand_in
    finally:
        stand_in.down()


def probe_in(imds: ImdsStandIn, host: str, job: str | None) -> ImdsFacts:
    """The probe as a script on the host (its namespace); the job's command enters the job network."""
    spec = {"job_command": ["ip", "netns", "exec", job]} if job else {}
    done = subprocess.run(
        ["ip", "netns", "exec", host, sys.executable, str(PROBE)],
        input=json.dumps({"imds": spec}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    facts: ImdsFacts = json.loads(done.stdout)["imds"]
    return facts


@needs_namespaces
@pytest.mark.parametrize("hop_limit", [1, 2])
def test_the_probe_finds_a_jobs_reach_as_the_hop_limit_says(imds: ImdsStandIn, hop_limit: int) -> None:
    host = imds.add_host("host")
    job = imds.add_job_network(host)
    imds.configure(hop_limit=hop_limit)
    facts = probe_in(imds, host, job)
    assert (facts["answered"], facts["token"], facts["role"], facts["v1_allowed"]) == (True, True, "ci-host", False)
    assert facts["job"]["ran"]
    checks = by_check(judge_imds(facts))
    verdict = checks["job reaches instance role"]
    if hop_limit == 1:
        assert facts["job"]["token"] is False
        assert verdict.severity == "ok"
    else:
        assert facts["job"]["role"] == "ci-host"
        assert verdict.severity == "warning" and "ci-host" in verdict.evidence


@needs_namespaces
def test_the_probe_finds_imdsv1_allowed(imds: ImdsStandIn) -> None:
    host = imds.add_host("host")
    job = imds.add_job_network(host)
    imds.configure(hop_limit=1, http_tokens="optional")
    facts = probe_in(imds, host, job)
    assert facts["v1_allowed"] and facts["job"]["v1_role"] == "ci-host"
    checks = by_check(judge_imds(facts))
    assert checks["IMDSv1"].severity == "warning"
    assert checks["job reaches instance role"].severity == "warning"


@needs_namespaces
def test_the_probe_finds_no_role_and_no_imds(imds: ImdsStandIn) -> None:
    host = imds.add_host("host")
    imds.configure(role="")
    assert by_check(judge_imds(probe_in(imds, host, None)))["instance role"].evidence.startswith("no instance role")
    imds.down()  # the host's namespace is gone with it: a fresh one that reaches nothing
    lone = f"{imds.prefix}-lone"
    subprocess.run(["ip", "netns", "add", lone], check=True)
    try:
        subprocess.run(["ip", "-n", lone, "link", "set", "lo", "up"], check=True)
        facts = probe_in(imds, lone, None)
    finally:
        subprocess.run(["ip", "netns", "delete", lone], check=False)
    assert facts["answered"] is False
    assert by_check(judge_imds(facts))["instance role"].evidence.startswith("IMDS unreachable")


def test_the_commands_options_ask_every_host_as_the_inventorys_variables_do(tmp_path: Path) -> None:
    """`ecrkit validate HOST --local-jobs ...` (no inventory) gives each host the imds argument that
    ecrkit_local_jobs and the job probe's variables give an inventory's host; they replace the inventory's."""
    inventory = tmp_path / "hosts.yml"
    variables = {"ecrkit_instance_metadata": True, "ecrkit_local_jobs": True, "ecrkit_job_probe_network": "ci"}
    hosts = {"runners": {"hosts": {"manager": variables}, "vars": {"ansible_connection": "local"}}}
    inventory.write_text(json.dumps({"all": {"children": hosts}}))
    (from_inventory,) = inventory_targets(str(inventory), [])
    given = {"ecrkit_local_jobs": True, "ecrkit_instance_metadata": True, "ecrkit_job_probe_network": "ci"}
    (direct,) = targets_from_arguments(["admin@runner-1"], None, [], [], ["root"], metadata=given)
    assert direct.imds == from_inventory.imds == {"job_command": [*JOB[:5], "--network=ci", JOB[-1]]}
    (replaced,) = targets_from_arguments([], str(inventory), [], [], [], metadata={"ecrkit_instance_metadata": True})
    assert replaced.imds == {}  # the host's role asked, no job probe: the inventory's local jobs replaced
    (untouched,) = targets_from_arguments(["admin@runner-1"], None, [], [], ["root"])
    assert untouched.imds is None  # the negative control: nothing given, nothing asked
    for argv, named in (
        (["--job-probe-network", "host x"], "--job-probe-network"),
        (["--job-probe-image", "bad image"], "--job-probe-image"),
        (["--job-probe-image", ""], "--job-probe-image"),  # given empty: refused, never taken as unset
        (["--job-probe-network", ""], "--job-probe-network"),
    ):
        done = run_ecrkit("validate", "admin@runner-1", *argv)
        assert done.returncode == 2 and done.stderr.startswith(f"ecrkit: {named}: "), done.stderr
