"""The validator's judge: turns facts gathered from hosts into findings. It only reasons.

Every failure of the helper prints the same `credentials not found in native keychain`;
the cause is only in its log (`<AWS_ECR_CACHE_DIR or ~/.ecr>/log/ecr-login.log`, logrus
lines `time=... level=... msg=... error=...`). `diagnose_helper_log` names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    evidence: str
    fix: str


@dataclass(frozen=True)
class Cause:
    name: str
    pattern: re.Pattern[str]
    fix: str


# Most specific first: a line is given the first cause that matches it.
HELPER_LOG_CAUSES = (
    Cause(
        "not an ECR hostname",
        re.compile(r"can only be used with Amazon Elastic Container Registry"),
        "name only ECR registries for ecr-login (credHelpers), or leave credsStore out for hosts that log in to "
        "other registries; custom domains, CNAMEs and VPC endpoint names are not accepted",
    ),
    Cause(
        "no region",
        re.compile(r"an AWS region is required"),
        "set AWS_REGION in the environment of the process that calls the helper (for credsStore, the "
        "gitlab-runner service itself), or name the registries so the region comes from each hostname",
    ),
    Cause(
        "no credentials",
        re.compile(r"no EC2 IMDS role found|failed to refresh cached credentials|no valid providers in chain"),
        "attach an instance profile to the host (with IMDSv2 and a hop limit of 2 when containers call the "
        "helper), or give the service AWS_PROFILE or a web identity",
    ),
    Cause(
        "access denied",
        re.compile(r"AccessDenied|not authorized to perform"),
        "allow ecr:GetAuthorizationToken on * in the host role's identity policy (a repository policy cannot "
        "grant it), and the pull actions on the repositories",
    ),
    Cause(
        "certificate",
        re.compile(r"x509: |certificate signed by unknown authority|tls: failed to verify"),
        "the host does not trust the certificate of the ECR API: install the CA bundle (ca-certificates) or "
        "point AWS_CA_BUNDLE at the proxy's CA",
    ),
    Cause(
        "throttled",
        re.compile(r"ThrottlingException|TooManyRequests"),
        "keep the helper's cache usable (a writable AWS_ECR_CACHE_DIR, never AWS_ECR_DISABLE_CACHE) so each "
        "host asks for a token about every 6 hours instead of on every pull",
    ),
    Cause(
        "ECR API unreachable",
        re.compile(r"no such host|connection refused|i/o timeout|network is unreachable|request send failed"),
        "let the host reach api.ecr.<region>.amazonaws.com over HTTPS (DNS, proxy, VPC endpoint for ecr.api)",
    ),
)
LOG_LINE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_log_line(line: str) -> dict[str, str]:
    """The key=value fields of one logrus line, quotes removed."""
    return {
        key: value[1:-1].replace('\\"', '"') if value.startswith('"') else value
        for key, value in LOG_LINE.findall(line)
    }


def diagnose_helper_log(text: str) -> list[Finding]:
    """One finding per cause seen in the log's failures, with the latest line as evidence.

    Only lines that carry an error count: the helper logs its fallbacks at debug level too.
    """
    latest: dict[str, tuple[Cause, str]] = {}
    for line in text.splitlines():
        fields = parse_log_line(line)
        message = fields.get("error", "")
        if not message and fields.get("level") != "error":
            continue
        detail = f"{fields.get('msg', '')}: {message}".strip(": ")
        for cause in HELPER_LOG_CAUSES:
            if cause.pattern.search(detail):
                latest.pop(cause.name, None)  # keep the order of latest occurrence
                latest[cause.name] = (cause, f"{fields.get('time', '')} {detail}".strip())
                break
    return [
        Finding(check=f"helper log: {name}", severity="error", evidence=evidence, fix=cause.fix)
        for name, (cause, evidence) in latest.items()
    ]
