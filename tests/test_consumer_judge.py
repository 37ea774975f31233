"""The judge sees each consumer's credentials as that consumer resolves them: a GitLab Runner
manager through config.toml's DOCKER_AUTH_CONFIG then its user's config.json, a Marathon task
through the archive it fetches, a workstation through its IAM Identity Center session.

The facts are the probe's real output from `make run`'s hosts (tests/data/probe-runner.json,
probe-agent.json), changed one fact at a time.
"""

from __future__ import annotations

import copy
import io
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from rich.console import Console

from ecrkit.checks import CI_VARIABLE_NOTE, Finding, judge, probe_args
from ecrkit.plans import special_consumers
from ecrkit.probe_facts import ArchiveFacts, ConfigSummary, ConsumerFacts, ProbeResult, RunnerEntry
from ecrkit.validate import Report, print_report, to_junit
from testbed.standin import REGISTRY_HOST
from tests.conftest import run_ecrkit
from tests.facts import good_get, recorded

DATA = Path(__file__).parent / "data"
OTHER = "999999999999.dkr.ecr.us-east-1.amazonaws.com"
HOME_CONFIG = "/root/.docker/config.json"


def facts(name: str) -> ProbeResult:
    return recorded(name)


def runner_facts() -> tuple[ProbeResult, ConsumerFacts]:
    """The runner host's facts and its service consumer."""
    data = facts("runner")
    return data, data["consumers"][0]


def the_runner(consumer: ConsumerFacts) -> RunnerEntry:
    return consumer["runner_config"]["runners"][0]


def auth_config(consumer: ConsumerFacts) -> ConfigSummary:
    """The runner's DOCKER_AUTH_CONFIG, as the probe summarised it."""
    auth = the_runner(consumer)["auth_config"]
    assert auth is not None
    return auth


def verdicts(data: ProbeResult) -> list[tuple[str, str, str]]:
    """(severity, check, evidence) of the findings about [[runners]] entries."""
    return [(f.severity, f.check, f.evidence) for f in judge(data, [REGISTRY_HOST]) if f.check.startswith("runner ")]


def errors(data: ProbeResult, registries: list[str] | None = None) -> list[Finding]:
    return [f for f in judge(data, [REGISTRY_HOST] if registries is None else registries) if f.severity == "error"]


def test_the_runner_is_judged_by_its_own_config_toml() -> None:
    data, service = runner_facts()
    assert service["runner_config"]["found_by"] == "ExecStart --config"
    assert verdicts(data) == [
        ("ok", "runner ecrkit-runner", f"{REGISTRY_HOST}: DOCKER_AUTH_CONFIG (credHelpers), through the live get")
    ]
    notes = [f.evidence for f in judge(data, [REGISTRY_HOST]) if f.severity == "note"]
    assert notes == [CI_VARIABLE_NOTE]


def test_invalid_json_in_docker_auth_config_is_an_error_naming_the_runner_and_the_parse_error() -> None:
    data, service = runner_facts()
    the_runner(service)["auth_config"] = {"error": "Expecting ',' delimiter: line 1 column 70 (char 69)"}
    [finding] = errors(data)
    assert finding.check == "runner ecrkit-runner"
    assert "DOCKER_AUTH_CONFIG in config.toml is not valid JSON (Expecting ',' delimiter" in finding.evidence


def test_a_docker_auth_config_naming_another_account_falls_back_to_the_users_config_json() -> None:
    """GitLab Runner merges its sources per registry, the first that defines one winning: a
    DOCKER_AUTH_CONFIG that names only another account's registry hands ours to config.json."""
    data, service = runner_facts()
    auth_config(service)["cred_helpers"] = {OTHER: "ecr-login"}
    service["gets"].append(good_get(OTHER))
    service["config"].update({"cred_helpers": {REGISTRY_HOST: "ecr-login"}, "creds_store": None, "auths": []})
    result = verdicts(data)
    assert result[0] == (
        "ok",
        "runner ecrkit-runner",
        f"{REGISTRY_HOST}: {HOME_CONFIG} (credHelpers), through the live get",
    )
    assert result[1][0] == "warning" and "DOCKER_AUTH_CONFIG does not name it" in result[1][2]
    # Without the fallback, nothing covers it: what root's own config.json says no longer matters.
    service["config"] = {"path": HOME_CONFIG, "state": {"path": HOME_CONFIG, "exists": False}}
    [finding] = errors(data)
    assert f"{REGISTRY_HOST}: no source gives it credentials" in finding.evidence


def test_a_missing_config_json_is_fine_when_docker_auth_config_covers_every_registry() -> None:
    data, service = runner_facts()
    service["config"] = {"path": HOME_CONFIG, "state": {"path": HOME_CONFIG, "exists": False}}
    assert errors(data) == []
    [note] = [f for f in judge(data, [REGISTRY_HOST]) if f.check == "config.json"]
    assert note.severity == "note"


def test_a_helper_failure_drops_the_whole_source_as_the_runner_does() -> None:
    data, service = runner_facts()
    auth_config(service)["cred_helpers"][OTHER] = "ecr-login"
    service["gets"].append({"registry": OTHER, "rc": 1, "said": "credentials not found in native keychain", "log": ""})
    service["config"] = {"path": HOME_CONFIG, "state": {"path": HOME_CONFIG, "exists": False}}
    messages = [f.evidence for f in errors(data)]
    assert any(f"{REGISTRY_HOST}: no source gives it credentials (DOCKER_AUTH_CONFIG dropped" in m for m in messages)


def test_creds_store_in_docker_auth_config_needs_the_region_in_the_service() -> None:
    data, service = runner_facts()
    the_runner(service)["auth_config"] = {"creds_store": "ecr-login", "cred_helpers": {}, "auths": []}
    service["env"]["values"].pop("AWS_REGION", None)
    service["list"] = {"rc": 0, "registries": {}, "log": ""}
    service["gets"] = [g for g in service["gets"] if g["registry"] != REGISTRY_HOST]
    service["config"] = {"path": HOME_CONFIG, "state": {"path": HOME_CONFIG, "exists": False}}
    checks = {f.check: f for f in errors(data)}
    assert "region for credsStore" in checks
    assert "credsStore ecr-login" not in checks["runner ecrkit-runner"].evidence
    assert "no source gives it credentials" in checks["runner ecrkit-runner"].evidence
    # Listed, the same credsStore covers it.
    service["env"]["values"]["AWS_REGION"] = "us-east-1"
    service["list"] = {"rc": 0, "registries": {f"https://{REGISTRY_HOST}": "AWS"}, "log": ""}
    service["gets"].append(good_get(REGISTRY_HOST))
    assert verdicts(data)[0][2] == f"{REGISTRY_HOST}: DOCKER_AUTH_CONFIG (credsStore), through the live list and get"


def test_a_stored_credential_wins_over_roots_helper_and_is_an_error() -> None:
    data, service = runner_facts()
    the_runner(service)["auth_config"] = {"creds_store": None, "cred_helpers": {}, "auths": [REGISTRY_HOST]}
    [finding] = errors(data)
    assert "DOCKER_AUTH_CONFIG (auths): a stored credential" in finding.evidence


def test_executors_that_pull_no_images_are_skipped_with_a_note() -> None:
    data, service = runner_facts()
    the_runner(service).update({"executor": "shell", "auth_config": {"error": "broken"}})
    assert errors(data) == []
    assert ("note", "runner ecrkit-runner", "executor shell pulls no images: not judged") in [
        (f.severity, f.check, f.evidence) for f in judge(data, [REGISTRY_HOST])
    ]


def test_docker_machine_options_and_userdata_agree_with_what_ecrkit_writes() -> None:
    data, service = runner_facts()
    runner = the_runner(service)
    runner["executor"] = "docker+machine"
    runner["machine_options"] = {"amazonec2-iam-instance-profile": "ci", "amazonec2-metadata-token": "required"}
    assert errors(data) == []
    runner["machine_options"]["amazonec2-metadata-token"] = "optional"
    runner["machine_options"]["amazonec2-userdata"] = "/etc/gitlab-runner/userdata.sh"
    runner["userdata"] = {"state": {"exists": True}, "readable": True, "installs_helper": False}
    messages = [f.evidence for f in errors(data)]
    assert any("amazonec2-metadata-token is optional" in m for m in messages)
    assert any("neither installs the helper" in m for m in messages)


def test_docker_autoscaler_needs_its_keys() -> None:
    data, service = runner_facts()
    the_runner(service).update({"executor": "docker-autoscaler", "autoscaler_keys": ["plugin"]})
    [finding] = errors(data)
    assert "lacks capacity_per_instance, max_instances" in finding.evidence


@pytest.mark.parametrize(
    ("archive", "expected"),
    [
        ({"state": {"exists": False}, "error": "tar: Cannot open"}, "/etc/docker.tar.gz does not exist"),
        ({"state": {"exists": True}, "error": "gzip: stdin: not in gzip format"}, "not in gzip format"),
    ],
)
def test_a_task_archive_that_cannot_be_extracted_is_the_only_finding(archive: ArchiveFacts, expected: str) -> None:
    data = facts("agent")
    task = data["consumers"][0]
    del task["sandbox"]
    task["archive"].update(archive)
    [finding] = judge(data, [REGISTRY_HOST])
    assert (finding.subject, finding.check, finding.severity) == ("tasks of dcos-mesos-slave", "docker.tar.gz", "error")
    assert expected in finding.evidence and "marathon_agent_ecr" in finding.fix


def test_a_task_archive_naming_other_registries_is_an_error() -> None:
    data = facts("agent")
    data["consumers"][0]["config"]["cred_helpers"] = {OTHER: "ecr-login"}
    [finding] = errors(data)
    assert finding.check == "covers registry" and "/etc/docker.tar.gz: .docker/config.json" in finding.evidence
    assert "marathon_agent_ecr_registries" in finding.fix


def sso_user(expires_at: str | None, keys_in_env: bool = False) -> ProbeResult:
    data = facts("agent")
    user = copy.deepcopy(data["consumers"][0])
    user.update({"kind": "user", "name": "dev", "user": "dev", "env_source": "login"})
    user.pop("archive"), user.pop("sandbox")
    user["env"]["names"] = [n for n in user["env"]["names"] if n != "AWS_ACCESS_KEY_ID"]
    if keys_in_env:
        user["env"]["names"].append("AWS_ACCESS_KEY_ID")
    user["sso"] = {
        "profile": "default",
        "form": "legacy",
        "cache": "/home/dev/.aws/sso/cache/x.json",
        "expires_at": expires_at,
    }
    user["gets"] = [{"registry": REGISTRY_HOST, "rc": 1, "said": "credentials not found in native keychain", "log": ""}]
    data["consumers"] = [user]
    data["time"] = time.time()
    return data


def test_an_expired_sso_session_is_named_with_its_fix() -> None:
    data = sso_user("2026-01-01T00:00:00Z")
    found = {f.check: f for f in errors(data)}
    assert "the IAM Identity Center session expired at 2026-01-01T00:00:00Z" in found["SSO session"].evidence
    assert found["SSO session"].fix == found["live get"].fix == "aws sso login --profile default"
    # A valid session is a pass; keys in the environment come before any profile, so it is not judged.
    assert "SSO session" not in {f.check for f in errors(sso_user("2999-01-01T00:00:00Z"))}
    assert "SSO session" not in {f.check for f in judge(sso_user("2026-01-01T00:00:00Z", keys_in_env=True))}


def reports() -> list[Report]:
    data, service = runner_facts()
    good = Report("ecrkit-runner", judge(data, [REGISTRY_HOST]))
    the_runner(service)["auth_config"] = {"error": "Expecting value: line 1 column 1 (char 0)"}
    return [good, Report("ecrkit-broken", judge(data, [REGISTRY_HOST])), Report("gone", unreachable="timed out")]


def test_eighty_columns_get_one_finding_per_line_below_its_host() -> None:
    out = io.StringIO()
    print_report(Console(file=out, width=80), reports())
    lines = out.getvalue().splitlines()
    assert lines[0] == "ecrkit validate: 1 of 3 hosts pass"
    assert "ecrkit-broken: FAILS" in lines and "  service gitlab-runner" in lines
    failed = next(
        i for i, line in enumerate(lines) if line.startswith("    FAIL  runner ecrkit-runner: DOCKER_AUTH_CONFIG")
    )
    assert lines[failed + 1].startswith("          fix: let gitlab_runner_ecr write it")
    # A wide terminal gets the table.
    wide = io.StringIO()
    print_report(Console(file=wide, width=250), reports())
    assert "┃ host" in wide.getvalue()


def test_junit_has_a_suite_per_host_and_a_failure_with_evidence_and_fix() -> None:
    root = ElementTree.fromstring(to_junit(reports()))
    suites = {suite.get("name"): suite for suite in root}
    assert list(suites) == ["ecrkit-runner", "ecrkit-broken", "gone"]
    assert suites["ecrkit-runner"].get("failures") == "0" and int(suites["ecrkit-runner"].get("tests", 0)) > 5
    [failure] = suites["ecrkit-broken"].iter("failure")
    assert "not valid JSON" in str(failure.get("message")) and "fix: let gitlab_runner_ecr" in str(failure.text)
    assert [case.get("name") for case in suites["gone"]] == ["reachable"]
    assert root.get("failures") == "2"


def test_a_hosts_groups_add_the_consumers_that_read_credentials_their_own_way() -> None:
    assert special_consumers({}, ["workstations"]) == ({}, [])
    runners, tasks = special_consumers({"ecrkit_task_user": "app"}, ["gitlab_runners", "marathon_agents"])
    assert runners == {"gitlab-runner": ""}  # the probe finds config.toml from the unit
    assert tasks == [{"task": "dcos-mesos-slave", "archive": "/etc/docker.tar.gz", "task_user": "app"}]
    given = {"gitlab_runner_ecr_service": "runner", "gitlab_runner_ecr_config_path": "/srv/config.toml"}
    assert special_consumers(given, ["gitlab_runners"])[0] == {"runner": "/srv/config.toml"}
    # A runner in a container has no unit to probe; its env file is not the process's environment.
    assert special_consumers({"gitlab_runner_ecr_container": True}, ["gitlab_runners"]) == ({}, [])
    # The agent's own service is not judged by root's config.json: its tasks are.
    args = probe_args([REGISTRY_HOST], ["dcos-mesos-slave", "other"], ["root"], {}, tasks)
    assert [c.get("service") or c.get("user") or c.get("task") for c in args["consumers"]] == [
        "other",
        "root",
        "dcos-mesos-slave",
    ]


def test_a_junit_path_that_cannot_be_written_is_refused_before_any_host_is_probed(tmp_path: Path) -> None:
    for path in (tmp_path / "missing" / "validate.xml", tmp_path):
        done = run_ecrkit("validate", "root@host.invalid", "--junit", str(path))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"ecrkit: --junit {path}: "), done.stderr
        assert "probing" not in done.stderr and "host.invalid" not in done.stdout
