"""The judge names the cause behind `credentials not found in native keychain`."""

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ecrkit.checks import Finding, diagnose_helper_log, judge, parse_log_line
from ecrkit.probe_facts import ConsumerFacts
from tests.facts import recorded

# Lines written by Debian's helper 0.6.0 on this kind of machine: `get` of a non-ECR name,
# `list` with no region, `get` with the API unreachable (resolver name shortened).
RECORDED = (Path(__file__).parent / "data" / "helper-log-recorded.log").read_text()


def test_logrus_fields_are_parsed_with_quotes_and_escapes() -> None:
    fields = parse_log_line('time="t" level=error msg="a \\"b\\"" error=x')
    assert fields == {"time": "t", "level": "error", "msg": 'a "b"', "error": "x"}


def test_recorded_failures_are_named_in_order_of_their_latest_line() -> None:
    findings = diagnose_helper_log(RECORDED)
    assert [f.check for f in findings] == [
        "helper log: not an ECR hostname",
        "helper log: no region",
        "helper log: ECR API unreachable",
    ]
    assert all(f.severity == "error" and f.fix for f in findings)
    assert "can only be used with Amazon Elastic Container Registry" in findings[0].evidence
    assert "AWS_REGION" in findings[1].fix


def test_debug_lines_without_an_error_are_not_findings() -> None:
    assert diagnose_helper_log('time="t" level=debug msg="Checking file cache" registry=1\n') == []


def test_an_empty_log_has_no_findings() -> None:
    assert diagnose_helper_log("") == []


# --- the judge, on what the probe reported from a provisioned host (a gitlab-runner stand-in
# service and root's logins, each with a working live get), changed one fact at a time.

GOOD_HOST = recorded("good-host")
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def findings_for(change: Callable[[ConsumerFacts], None] = lambda facts: None) -> dict[str, list[Finding]]:
    """The judge's findings by severity, after `change` edits the service's facts."""
    facts = copy.deepcopy(GOOD_HOST)
    change(facts["consumers"][0])
    by_severity: dict[str, list[Finding]] = {"ok": [], "warning": [], "error": []}
    for finding in judge(facts, [REGISTRY]):
        by_severity[finding.severity].append(finding)
    return by_severity


def test_a_good_host_passes_every_check_for_every_consumer() -> None:
    result = findings_for()
    assert result["error"] == [] and result["warning"] == []
    checks = {(f.subject, f.check) for f in result["ok"]}
    for subject in ("service gitlab-runner", "user root"):
        for check in ("exists", "helper on PATH", "helper runs", "config.json", "covers registry", "token cache"):
            assert (subject, check) in checks
        assert (subject, "live get") in checks


def only_error(change: Callable[[ConsumerFacts], None]) -> Finding:
    errors = findings_for(change)["error"]
    assert len(errors) == 1, errors
    assert errors[0].subject == "service gitlab-runner" and errors[0].fix
    return errors[0]


def test_a_missing_service_is_one_error() -> None:
    error = only_error(lambda c: c.update({"found": False, "error": "Unit gitlab-runner.service could not be found."}))
    assert error.check == "exists" and "could not be found" in error.evidence


def test_a_helper_off_the_path_is_named_with_the_path() -> None:
    def off_path(c: ConsumerFacts) -> None:
        c["helper"] = {"path": None, "misnamed": []}
        c["env"]["values"]["PATH"] = "/usr/bin:/bin"
        c["gets"] = []

    error = only_error(off_path)
    assert error.check == "helper on PATH" and "PATH=/usr/bin:/bin" in error.evidence


def test_a_misnamed_helper_is_told_to_be_renamed() -> None:
    def misnamed(c: ConsumerFacts) -> None:
        c["helper"] = {"path": None, "misnamed": ["/usr/local/bin/docker-credential-ecr-login-linux-amd64"]}
        c["gets"] = []

    error = only_error(misnamed)
    assert "linux-amd64" in error.evidence and "rename it to docker-credential-ecr-login" in error.fix


def test_a_config_others_can_write_is_an_error() -> None:
    error = only_error(lambda c: c["config"]["state"].update({"mode": "0666"}))
    assert error.check == "config.json" and "0666" in error.evidence


def test_a_registry_handed_to_another_helper_is_not_covered() -> None:
    error = only_error(lambda c: c["config"]["cred_helpers"].update({REGISTRY: "desktop"}))
    assert error.check == "covers registry" and "'desktop'" in error.evidence


def test_creds_store_without_a_region_is_an_error_for_a_service() -> None:
    error = only_error(lambda c: c["config"].update({"creds_store": "ecr-login"}))
    assert error.check == "region for credsStore" and "AWS_REGION" in error.fix


def test_creds_store_with_a_region_in_the_environment_or_profile_passes() -> None:
    def with_region(c: ConsumerFacts) -> None:
        c["config"]["creds_store"] = "ecr-login"
        c["profile_region"] = "eu-west-1"

    assert findings_for(with_region)["error"] == []


def test_a_cache_the_user_cannot_write_is_an_error() -> None:
    error = only_error(lambda c: c["cache"].update({"writable": False}))
    assert error.check == "token cache" and "every pull asks ECR for a new token" in error.evidence


def test_a_cache_others_can_read_is_an_error() -> None:
    error = only_error(lambda c: c["cache"]["state"].update({"mode": "0755"}))
    assert "others can read live registry tokens" in error.evidence


def test_a_disabled_cache_is_a_warning() -> None:
    warnings = findings_for(lambda c: c["cache"].update({"disabled": True}))["warning"]
    assert [w.check for w in warnings] == ["token cache"] and "AWS_ECR_DISABLE_CACHE" in warnings[0].evidence


def test_stored_credentials_readable_by_others_are_a_warning() -> None:
    def readable(c: ConsumerFacts) -> None:
        c["config"]["state"]["mode"] = "0644"
        c["config"]["auths"] = ["registry.example.com"]

    warnings = findings_for(readable)["warning"]
    assert [w.check for w in warnings] == ["config.json"] and "registry.example.com" in warnings[0].evidence
    assert findings_for(lambda c: c["config"]["state"].update({"mode": "0644"}))["warning"] == []  # nothing stored


def test_a_helper_that_does_not_run_is_an_error() -> None:
    error = only_error(lambda c: c["helper"]["version"].update({"rc": 126, "stderr": "cannot execute binary file"}))
    assert error.check == "helper runs" and "cannot execute binary file" in error.evidence


def test_a_running_service_with_an_old_environment_needs_a_restart() -> None:
    warnings = findings_for(lambda c: c["unit_env"]["values"].update({"AWS_REGION": "us-east-1"}))["warning"]
    assert [w.check for w in warnings] == ["environment current"]
    assert warnings[0].fix == "systemctl restart gitlab-runner"


def test_a_failed_live_get_carries_the_cause_from_its_own_log_lines() -> None:
    denied = (
        'time="2026-11-23T20:47:17Z" level=error msg="Error retrieving credentials" error="ecr: Failed to get '
        'authorization token: api error AccessDeniedException: denied"\n'
    )

    def refused(c: ConsumerFacts) -> None:
        c["gets"][0] = {
            "registry": REGISTRY,
            "rc": 1,
            "said": "credentials not found in native keychain",
            "log": denied,
        }

    error = only_error(refused)
    assert error.check == "live get" and "AccessDeniedException" in error.evidence
    assert "ecr:GetAuthorizationToken" in error.fix


def test_a_get_whose_answer_the_helper_lost_says_so() -> None:
    # As Debian's 0.6.0 logged it when the stand-in answered within its scheduling delay.
    lost = (
        'time="2026-12-03T16:55:17Z" level=error msg="Error retrieving credentials" error="ecr: Failed to get '
        "authorization token: operation error ECR: GetAuthorizationToken, https response error StatusCode: 200, "
        "RequestID: 7A3a, deserialization failed, failed to decode response body, read tcp "
        '127.0.0.1:55004->127.0.0.1:443: use of closed network connection"\n'
    )

    def cut(c: ConsumerFacts) -> None:
        c["gets"][0] = {"registry": REGISTRY, "rc": 1, "said": "credentials not found in native keychain", "log": lost}

    error = only_error(cut)
    assert error.check == "live get" and "use of closed network connection" in error.evidence
    assert "before 0.12.0" in error.fix and "run the check again" in error.fix


@pytest.mark.parametrize(
    ("said", "named"),
    [
        # What Debian's helper (0.6.x) prints when AWS_CA_BUNDLE is unreadable for the user, and
        # for an sso-session profile (both seen from the real binary); then any other panic.
        ("panic: open /run/ca.pem: permission denied\n\ngoroutine 1 [running]:", "AWS_CA_BUNDLE"),
        (
            'panic: profile "ecr" is configured to use SSO but is missing required configuration: sso_region, '
            "sso_start_url",
            "aws_sso_profile_form",
        ),
        ("panic: runtime error: invalid memory address", "~/.aws/config"),
        ("credentials not found in native keychain", "ecr-login.log on the host"),
    ],
)
def test_a_helper_that_dies_before_logging_is_judged_by_what_it_said(said: str, named: str) -> None:
    def crashed(c: ConsumerFacts) -> None:
        c["gets"][0] = {"registry": REGISTRY, "rc": 2, "said": said, "log": ""}

    error = only_error(crashed)
    assert error.check == "live get" and said.splitlines()[0] in error.evidence
    assert named in error.fix


def test_old_log_errors_are_left_out_and_recent_ones_are_warnings() -> None:
    line = (
        'time="{}" level=error msg="Error parsing the serverURL" '
        'error="can only be used with Amazon Elastic Container Registry."\n'
    )
    now = GOOD_HOST["time"]
    old = datetime.fromtimestamp(now - 2 * 86400, UTC).isoformat()
    recent = datetime.fromtimestamp(now - 60, UTC).isoformat()
    assert findings_for(lambda c: c["log"].update({"tail": line.format(old)}))["warning"] == []
    warnings = findings_for(lambda c: c["log"].update({"tail": line.format(recent)}))["warning"]
    assert [w.check for w in warnings] == ["helper log: not an ECR hostname"]


NO_REGION = (
    'time="t" level=debug msg="couldn\'t get authorization token for default registry" error="ecr: Failed to get '
    'authorization token: failed to resolve service endpoint, an AWS region is required, but was not found"\n'
)
PUBLIC_UNREACHABLE = (
    'time="t" level=debug msg="couldn\'t get authorization token for public registry" error="ecr: request send '
    'failed, dial tcp: lookup api.ecr-public.us-east-1.amazonaws.com: no such host"\n'
)


def listing(log: str, registries: dict[str, str] | None) -> Callable[[ConsumerFacts], None]:
    def change(c: ConsumerFacts) -> None:
        c["config"]["creds_store"] = "ecr-login"
        c["env"]["values"]["AWS_REGION"] = "us-east-1"
        c["list"] = {"rc": 0, "log": log, "registries": registries}

    return change


def test_a_list_that_names_registries_passes() -> None:
    result = findings_for(listing("", {f"https://{REGISTRY}": "AWS"}))
    assert result["error"] == [] and f"https://{REGISTRY}: AWS" in [f.evidence for f in result["ok"]]


def test_a_list_served_from_the_cache_while_renewal_fails_is_an_error() -> None:
    error = only_error(listing(NO_REGION, {f"https://{REGISTRY}": "AWS"}))
    assert error.check == "live list" and "lists 1 registries" in error.evidence and "AWS_REGION" in error.fix


def test_ecr_public_failing_in_a_list_does_not_fail_private_registries() -> None:
    assert findings_for(listing(PUBLIC_UNREACHABLE, {f"https://{REGISTRY}": "AWS"}))["error"] == []


# --- live calls the probe had to stop (probe.LIVE_TIMEOUT): a hung or silent ECR API.

STOPPED = "stopped after 12 s"  # what the probe's as_user says of a helper it stopped


def test_a_live_list_that_timed_out_fails_every_consumer_naming_ecrs_silence() -> None:
    """The workstation's false pass: a login's credsStore `list` that never finished was a warning."""
    facts = copy.deepcopy(GOOD_HOST)
    for consumer in facts["consumers"]:
        consumer["config"]["creds_store"] = "ecr-login"
        consumer["profile_region"] = "us-east-1"
        consumer["list"] = {"rc": None, "log": "", "said": STOPPED, "timed_out": 12}
    errors = [f for f in judge(facts, [REGISTRY]) if f.severity != "ok"]
    assert [(f.subject, f.check, f.severity) for f in errors] == [
        ("service gitlab-runner", "live list", "error"),
        ("user root", "live list", "error"),
    ]
    assert {f.evidence for f in errors} == {"ECR did not answer within 12 s (the probe stopped the helper)"}
    assert all("api.ecr.<region>.amazonaws.com" in f.fix for f in errors)


def test_any_failed_live_list_is_an_error_for_a_login_too() -> None:
    facts = copy.deepcopy(GOOD_HOST)
    listing(NO_REGION, {})(facts["consumers"][1])  # the login's own environment: no restart to ask for
    [error] = [f for f in judge(facts, [REGISTRY]) if f.severity != "ok"]
    assert (error.subject, error.check, error.severity) == ("user root", "live list", "error")


def test_a_live_get_that_timed_out_names_ecrs_silence_and_what_the_log_said() -> None:
    def hung(c: ConsumerFacts) -> None:
        c["gets"][0] = {"registry": REGISTRY, "rc": None, "said": STOPPED, "log": "", "timed_out": 12}

    error = only_error(hung)
    assert (error.check, error.evidence) == (
        "live get",
        f"{REGISTRY}: ECR did not answer within 12 s (the probe stopped the helper)",
    )
    assert "api.ecr.<region>.amazonaws.com" in error.fix
    unreachable = (
        'time="t" level=error msg="Error retrieving credentials" error="ecr: request send failed, '
        'dial tcp 10.0.0.1:443: i/o timeout"\n'
    )

    def logged(c: ConsumerFacts) -> None:
        hung(c)
        c["gets"][0]["log"] = unreachable

    error = only_error(logged)
    assert "ECR did not answer within 12 s" in error.evidence and "i/o timeout" in error.evidence
    assert "VPC endpoint for ecr.api" in error.fix
