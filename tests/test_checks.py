"""The judge names the cause behind `credentials not found in native keychain`."""

from pathlib import Path

from ecrkit.checks import diagnose_helper_log, parse_log_line

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
