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
from ecrkit.probe_facts import ImdsFacts
from testbed.standin_imds import ImdsSettings, ImdsStandIn

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


def test_judge_includes_imds_only_when_probed() -> None:
    assert judge({"consumers": []}) == []
    assert {f.check for f in judge({"consumers": [], "imds": ROLE_V2})} == {"instance role", "IMDSv1"}
    assert probe_args([], [], [], imds={"job_command": ["x"]})["imds"] == {"job_command": ["x"]}
    assert "imds" not in probe_args([], [], [])


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
