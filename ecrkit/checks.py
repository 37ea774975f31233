"""The validator's judge: turns facts gathered from hosts into findings. It only reasons.

The facts are what `scripts/ecrkit_probe.py` reports for each consumer: a process that runs
the helper (a systemd service, or a user's login sessions). `judge` checks each one: the
helper on its PATH and running, its config.json (parses, safe, covers the registries), a
region where credsStore needs one, its cache directory, a live `get` per registry, and the
helper log's recent errors.

Every failure of the helper prints the same `credentials not found in native keychain`;
the cause is only in its log (`<AWS_ECR_CACHE_DIR or ~/.ecr>/log/ecr-login.log`, logrus
lines `time=... level=... msg=... error=...`). `diagnose_helper_log` names it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Severity = Literal["ok", "warning", "error"]
HELPER = "docker-credential-ecr-login"
RECENT = 24 * 3600  # helper log lines younger than this are "recent" errors


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    evidence: str
    fix: str = ""
    subject: str = ""  # the consumer it is about, e.g. "service gitlab-runner" or "user root"


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
        # 0.6.0: "an AWS region is required, but was not found"; 0.7.1 and 0.12.0 (endpoint rules):
        # "endpoint rule error, Invalid Configuration: Missing Region".
        re.compile(r"an AWS region is required|Invalid Configuration: Missing Region"),
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
        "helper not found",
        re.compile(r"docker-credential-ecr-login.*(executable file not found|not found in \$PATH)"),
        "install the helper into a directory on the PATH of the process that pulls, named exactly "
        "docker-credential-ecr-login",
    ),
    Cause(
        "ECR API unreachable",
        re.compile(r"no such host|connection refused|i/o timeout|network is unreachable|request send failed"),
        "let the host reach api.ecr.<region>.amazonaws.com over HTTPS (DNS, proxy, VPC endpoint for ecr.api)",
    ),
)
# What a helper that dies before it logs says on stderr (it panics when the AWS SDK cannot load
# its configuration), most specific first; used when its log names no cause.
HELPER_ANSWER_CAUSES = (
    Cause(
        "unreadable file",
        re.compile(r"^panic: open \S+: (permission denied|no such file or directory)"),
        "the helper panics when a file that its AWS configuration names cannot be read (AWS_CA_BUNDLE, "
        "AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE): make it readable by this user (a CA bundle can be 0644) "
        "or point the variable at one that is",
    ),
    Cause(
        "sso-session profile",
        re.compile(r"missing required configuration: sso_region, sso_start_url"),
        "helpers before 0.7.0 cannot read an sso-session profile: upgrade the helper, or write the legacy form "
        "(aws_sso_profile_form: auto or legacy)",
    ),
    Cause(
        "helper crashed",
        re.compile(r"^panic: "),
        "the helper crashed loading its AWS configuration: check AWS_CA_BUNDLE, AWS_PROFILE and ~/.aws/config "
        "of this user",
    ),
)
LOG_LINE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_log_line(line: str) -> dict[str, str]:
    """The key=value fields of one logrus line, quotes removed."""
    return {
        key: value[1:-1].replace('\\"', '"') if value.startswith('"') else value
        for key, value in LOG_LINE.findall(line)
    }


def log_time(fields: dict[str, str]) -> float | None:
    try:
        return datetime.fromisoformat(fields["time"]).timestamp()
    except (KeyError, ValueError):
        return None


def diagnose_helper_log(text: str, since: float | None = None) -> list[Finding]:
    """One finding per cause seen in the log's failures, with the latest line as evidence.

    Only lines that carry an error count: the helper logs its fallbacks at debug level too.
    With `since` (a timestamp), older lines are left out.
    """
    latest: dict[str, tuple[Cause, str]] = {}
    for line in text.splitlines():
        fields = parse_log_line(line)
        when = log_time(fields)
        if since is not None and (when is None or when < since):
            continue
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


def probe_args(registries: Iterable[str], services: Iterable[str], users: Iterable[str]) -> dict[str, Any]:
    """What the probe needs to gather the facts that `judge` reasons about."""
    consumers = [{"service": name} for name in services] + [{"user": name} for name in users]
    return {"consumers": consumers, "registries": list(registries)}


def judge(facts: dict[str, Any], registries: Iterable[str] = ()) -> list[Finding]:
    """Every check for every consumer the probe reported, passes included."""
    expected = list(registries)
    findings: list[Finding] = []
    for consumer in facts.get("consumers", []):
        subject = f"{consumer['kind']} {consumer['name']}"
        checks = _consumer(consumer, expected, facts.get("time"))
        findings += [Finding(f.check, f.severity, f.evidence, f.fix, subject) for f in checks]
    return findings


def _consumer(facts: dict[str, Any], expected: list[str], now: float | None) -> list[Finding]:
    if not facts["found"]:
        what = "systemd unit" if facts["kind"] == "service" else "user"
        fix = "install it, or stop naming it in ecrkit_services" if facts["kind"] == "service" else "create the user"
        return [Finding("exists", "error", f"{what} {facts['name']}: {facts.get('error') or 'not found'}", fix)]
    env = facts["env"]["values"]
    findings = [
        Finding("exists", "ok", f"runs as {facts['user']}; environment of the {facts['env_source']}"),
        *_helper(facts, env),
        *_config(facts, expected),
        *_region(facts, env),
        *_restart(facts, env),
        *_cache(facts),
        *_gets(facts),
        *_list(facts),
    ]
    named = {f.fix for f in findings if f.severity != "ok"}  # a failing live get or list named these
    since = now - RECENT if now is not None else None
    for finding in diagnose_helper_log(facts["log"].get("tail") or "", since=since):
        if finding.fix not in named:
            evidence = f"{facts['log']['path']}: {finding.evidence}"
            findings.append(Finding(finding.check, "warning", evidence, finding.fix))
    return findings


def _helper(facts: dict[str, Any], env: dict[str, str]) -> list[Finding]:
    helper = facts["helper"]
    path = env.get("PATH", "")
    if not helper["path"]:
        if helper["misnamed"]:
            return [
                Finding(
                    "helper on PATH",
                    "error",
                    f"no {HELPER} on PATH={path}, but {', '.join(helper['misnamed'])}",
                    f"rename it to {HELPER}: Docker runs docker-credential-<name> for the helper <name>",
                )
            ]
        return [
            Finding(
                "helper on PATH",
                "error",
                f"no {HELPER} on PATH={path}",
                f"install {HELPER} into a directory on this PATH (ecr_credential_helper_install_dir), "
                "or add its directory to the PATH of this consumer",
            )
        ]
    version = helper["version"]
    runs = (
        Finding("helper runs", "ok", f"version {version['stdout'].strip()}")
        if version["rc"] == 0
        else Finding(
            "helper runs",
            "error",
            f"{helper['path']} version: exit {version['rc']}: {version['stderr'].strip()[-300:]}",
            "reinstall the helper for this host's architecture (ecr_credential_helper_install_method)",
        )
    )
    return [Finding("helper on PATH", "ok", f"{helper['path']} (PATH={path})"), runs]


def _config(facts: dict[str, Any], expected: list[str]) -> list[Finding]:
    config = facts["config"]
    path, state = config["path"], config["state"]
    if not state.get("exists"):
        fix = "run the docker_auth_config role for this user"
        return [Finding("config.json", "error", f"{path} does not exist", fix)]
    if "error" in config:
        return [
            Finding(
                "config.json",
                "error",
                f"{path} is not valid JSON: {config['error']}",
                "fix it, or let docker_auth_config replace it (docker_auth_config_replace_invalid keeps a backup)",
            )
        ]
    mode, owner = int(state["mode"], 8), state["owner"]
    findings = []
    if mode & 0o022 or owner not in (facts["user"], "root"):
        findings.append(
            Finding(
                "config.json",
                "error",
                f"{path} is {state['mode']} {owner}:{state['group']}: others can change which helper runs",
                f"chown {facts['user']} and chmod 0600 it (the docker_auth_config role does)",
            )
        )
    elif config["auths"] and mode & 0o044:
        findings.append(
            Finding(
                "config.json",
                "warning",
                f"{path} is {state['mode']} and stores credentials for {', '.join(config['auths'])}",
                "chmod 0600 it",
            )
        )
    else:
        findings.append(Finding("config.json", "ok", f"{path} {state['mode']} {owner}:{state['group']}"))
    return findings + _coverage(config, expected)


def _coverage(config: dict[str, Any], expected: list[str]) -> list[Finding]:
    helpers, store = config["cred_helpers"], config["creds_store"]
    named = [host for host, helper in helpers.items() if helper == "ecr-login"]
    if not expected and not named:
        if store == "ecr-login":
            return [Finding("covers registries", "ok", "credsStore ecr-login: every registry")]
        return [
            Finding(
                "covers registries",
                "error",
                f"{config['path']} names ecr-login neither in credsStore nor in credHelpers",
                "run the docker_auth_config role for this user",
            )
        ]
    findings = []
    for registry in expected or named:
        if helpers.get(registry) == "ecr-login":
            findings.append(Finding("covers registry", "ok", f"{registry}: credHelpers"))
        elif registry in helpers:
            findings.append(
                Finding(
                    "covers registry",
                    "error",
                    f"{registry}: credHelpers names {helpers[registry]!r}",
                    "name ecr-login for it (docker_auth_config_registries)",
                )
            )
        elif store == "ecr-login":
            findings.append(Finding("covers registry", "ok", f"{registry}: credsStore ecr-login"))
        else:
            findings.append(
                Finding(
                    "covers registry",
                    "error",
                    f"{registry}: {config['path']} does not hand it to ecr-login",
                    "add it to docker_auth_config_registries and run the docker_auth_config role",
                )
            )
    return findings


def _region(facts: dict[str, Any], env: dict[str, str]) -> list[Finding]:
    if facts["config"].get("creds_store") != "ecr-login":
        return []
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or facts.get("profile_region")
    if region:
        return [Finding("region for credsStore", "ok", f"region {region}")]
    service = facts["kind"] == "service"
    return [
        Finding(
            "region for credsStore",
            "error" if service else "warning",
            "credsStore ecr-login, and no AWS_REGION, AWS_DEFAULT_REGION or profile region in "
            + ("the service's environment: its `list` finds nothing (`an AWS region is required`)" if service else
               "the login environment: `docker pull` works, but whatever calls `list` finds nothing"),
            "set AWS_REGION in the environment of this consumer (a systemd drop-in for a service), or name "
            "the registries (credHelpers) so each region comes from its hostname",
        )
    ]  # fmt: skip


def _restart(facts: dict[str, Any], env: dict[str, str]) -> list[Finding]:
    """A running service keeps the environment it started with: a changed unit needs a restart."""
    if facts.get("env_source") != "running process":
        return []
    unit = facts["unit_env"]["values"]
    stale = [key for key in sorted(set(unit) | set(env)) if key != "HOME" and unit.get(key) != env.get(key)]
    if not stale:
        return []
    return [
        Finding(
            "environment current",
            "warning",
            "; ".join(f"{key}: running {env.get(key)!r}, unit {unit.get(key)!r}" for key in stale),
            f"systemctl restart {facts['name']}",
        )
    ]


def _cache(facts: dict[str, Any]) -> list[Finding]:
    cache = facts["cache"]
    directory, state = cache["dir"], cache["state"]
    if cache["disabled"]:
        return [
            Finding(
                "token cache",
                "warning",
                "AWS_ECR_DISABLE_CACHE is set: every pull asks ECR for a new token",
                "unset AWS_ECR_DISABLE_CACHE (any value, even false, disables the cache)",
            )
        ]
    if not cache["writable"]:
        return [
            Finding(
                "token cache",
                "error",
                f"{directory} is not writable by {facts['user']}: every pull asks ECR for a new token "
                "(throttling under load)",
                f"give {facts['user']} the directory (ecr_credential_helper_cache_owner) or point AWS_ECR_CACHE_DIR "
                "at one it owns",
            )
        ]
    exposed = [s for s in (state, cache["file"]) if s.get("exists") and int(s["mode"], 8) & 0o004]
    if exposed:
        return [
            Finding(
                "token cache",
                "error",
                ", ".join(f"{s['path']} is {s['mode']}" for s in exposed) + ": others can read live registry tokens",
                f"chmod 0700 {directory} (the ecr_credential_helper role creates it so)",
            )
        ]
    mode = f"{state['mode']} {state['owner']}" if state.get("exists") else "created on first use"
    return [Finding("token cache", "ok", f"{directory} ({mode}), writable by {facts['user']}")]


def _gets(facts: dict[str, Any]) -> list[Finding]:
    findings = []
    for get in facts["gets"]:
        registry = get["registry"]
        if get["rc"] == 0 and get.get("secret_length"):
            evidence = f"{registry}: username {get['username']}, a secret of {get['secret_length']} characters"
            findings.append(Finding("live get", "ok", evidence))
            continue
        causes = diagnose_helper_log(get["log"])
        said = get.get("said") or "no answer"
        if causes:
            for cause in causes:
                findings.append(
                    Finding("live get", "error", f"{registry}: {said}; the log: {cause.evidence}", cause.fix)
                )
        else:
            evidence = f"{registry}: exit {get['rc']}: {said}"
            findings.append(Finding("live get", "error", evidence, _answer_fix(said, facts)))
    return findings


def _answer_fix(said: str, facts: dict[str, Any]) -> str:
    """The fix for a helper whose log names no cause: from what it said, else read the log."""
    cause = next((cause for cause in HELPER_ANSWER_CAUSES if cause.pattern.search(said)), None)
    return cause.fix if cause else f"read {facts['log']['path']} on the host"


def _list(facts: dict[str, Any]) -> list[Finding]:
    """credsStore makes callers such as GitLab Runner use `list`. It asks ECR for the default
    registry's token and returns what the cache holds, so a list that names registries can
    still have failed to renew them: its own log lines tell. (It primes ECR Public too; a host
    that cannot reach that has no problem with its private registries.)"""
    if "list" not in facts:
        return []
    listed = facts["list"].get("registries")
    private_lines = [line for line in facts["list"]["log"].splitlines() if "public registry" not in line]
    causes = diagnose_helper_log("\n".join(private_lines))
    if facts["list"]["rc"] == 0 and listed and not causes:
        return [Finding("live list", "ok", ", ".join(f"{url}: {user}" for url, user in listed.items()))]
    severity: Severity = "error" if facts["kind"] == "service" else "warning"  # `docker pull` never lists
    said = f"lists {len(listed)} registries" if isinstance(listed, dict) else facts["list"].get("said") or "no answer"
    if not causes:
        return [Finding("live list", severity, said, _answer_fix(said, facts))]
    return [Finding("live list", severity, f"{said}; the log: {cause.evidence}", cause.fix) for cause in causes]
