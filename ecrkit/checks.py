"""The validator's judge: turns facts gathered from hosts into findings. It only reasons.

The facts are what `the probe (plugins/modules/probe.py)` reports for each consumer: a process that runs
the helper (a systemd service, a user's login sessions, or a Mesos task's `docker pull` with
the archive it fetches as HOME). `judge` checks each one: the helper on its PATH and running,
its config.json (parses, safe, covers the registries), a region where credsStore needs one,
its cache directory, a live `get` per registry, and the helper log's recent errors. A GitLab
Runner manager is judged by the runner's own resolution, per `[[runners]]` entry and registry
(`_runners`); a workstation's IAM Identity Center session by its cached token's expiry.

Every failure of the helper prints the same `credentials not found in native keychain`;
the cause is only in its log (`<AWS_ECR_CACHE_DIR or ~/.ecr>/log/ecr-login.log`, logrus
lines `time=... level=... msg=... error=...`). `diagnose_helper_log` names it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ecrkit.constants import HELPER_BINARY
from ecrkit.helper import parse_version
from ecrkit.probe_facts import (
    ConfigSummary,
    ConsumerFacts,
    GetResult,
    ImdsFacts,
    JobImdsFacts,
    ListResult,
    ProbeResult,
    RunnerEntry,
)

Severity = Literal["ok", "note", "warning", "error"]  # only "error" fails a host
HELPER = HELPER_BINARY
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
        "SSO session expired",
        re.compile(r"SSO session has expired|session has expired or is invalid"),
        "sign in again with `aws sso login --profile <the profile>`: the helper reads the cached IAM Identity "
        "Center token, which lasts as long as the session the administrator set (8 hours by default)",
    ),
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
        re.compile(re.escape(HELPER_BINARY) + r".*(executable file not found|not found in \$PATH)"),
        f"install the helper into a directory on the PATH of the process that pulls, named exactly {HELPER_BINARY}",
    ),
    Cause(
        "answer lost by the helper",
        # Helpers before 0.12.0 (0.6.0, 0.7.1 seen): a race in their HTTP client drops the body of an
        # answer that comes within the helper's own scheduling delay (a near endpoint, a busy host).
        re.compile(r"failed to decode response body, .*use of closed network connection"),
        "a race in the HTTP client of helpers before 0.12.0 lost ECR's answer (it happens when the answer comes "
        "very fast to a busy host): run the check again, and install 0.12.0 or later (ecr_credential_helper_version)",
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
# A live call the probe stopped (probe.LIVE_TIMEOUT): the helper was still waiting, for the API
# (a hung or filtered endpoint, a proxy that never answers) or for the credentials it asks ECR with.
NO_ANSWER_FIX = (
    "let the host reach api.ecr.<region>.amazonaws.com over HTTPS (firewall, proxy, VPC endpoint for ecr.api), and "
    "check what gives the helper its credentials (the instance metadata service, with a hop limit of 2 in containers)"
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


def probe_args(
    registries: Iterable[str],
    services: Iterable[str],
    users: Iterable[str],
    runners: Mapping[str, str] | None = None,
    tasks: Sequence[Mapping[str, str]] = (),
    *,
    imds: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the probe needs to gather the facts that `judge` reasons about.

    `runners`: GitLab Runner manager units and their config.toml ("": the probe finds it);
    `tasks`: Mesos agents' tasks, {"task": AGENT_UNIT, "archive": PATH, "task_user": NAME};
    `imds`: for a host whose credentials come from its instance role, {"job_command": ARGV} with
    the start of a command that runs in its job network (a job host, or a runner manager whose
    executor runs jobs on it), or {} to ask the host only.
    """
    runners = dict(runners or {})
    agents = {task["task"] for task in tasks}
    # An agent's pulls read the task's archive, not the agent user's config.json (its own consumer).
    services = [name for name in services if name not in runners and name not in agents]
    consumers: list[dict[str, str]] = [{"service": name, "runner_config": path} for name, path in runners.items()]
    consumers += [{"service": name} for name in services]
    consumers += [{"user": name} for name in users] + [dict(task) for task in tasks]
    args: dict[str, Any] = {"consumers": consumers, "registries": list(registries)}
    if imds is not None:
        args["imds"] = dict(imds)
    return args


def judge(facts: ProbeResult, registries: Iterable[str] = ()) -> list[Finding]:
    """Every check for every consumer the probe reported, passes included."""
    expected = list(registries)
    findings: list[Finding] = []
    for consumer in facts.get("consumers", []):
        kind, name = consumer["kind"], consumer["name"]
        subject = f"tasks of {name}" if kind == "task" else f"{kind} {name}"
        checks = _consumer(consumer, expected, facts.get("time"))
        findings += [Finding(f.check, f.severity, f.evidence, f.fix, subject) for f in checks]
    if "imds" in facts:
        findings += judge_imds(facts["imds"])
    return findings


IMDS_SUBJECT = "instance metadata"
JOB_SUBJECT = "jobs on this host"
ROLE_FIX = (
    "attach an instance profile whose role allows ecr:GetAuthorizationToken (the launch template's "
    "IamInstanceProfile, or the instance's), and let the host reach 169.254.169.254 (no firewall or proxy for it)"
)
HOP_FIX = (
    "set the response hop limit to 1, so that the token's answer dies at the host's bridge: "
    "gitlab_runner_ecr_hop_limit for docker+machine, autoscaling_group_hop_limit (the launch template's "
    "MetadataOptions.HttpPutResponseHopLimit) for docker-autoscaler, or "
    "`aws ec2 modify-instance-metadata-options --http-put-response-hop-limit 1` for an instance"
)
V1_FIX = (
    "require IMDSv2 (HttpTokens required in the launch template's MetadataOptions, or "
    "`aws ec2 modify-instance-metadata-options --http-tokens required`): IMDSv1 answers any caller, "
    "whatever the hop limit"
)


def judge_imds(facts: ImdsFacts) -> list[Finding]:
    """The host's instance role through IMDS, and whether a job reaches it (seed 001): a job
    container that reads the role's credentials can use the host's ECR rights and more."""
    findings: list[Finding] = []
    role = facts.get("role", "")
    if not facts.get("answered"):
        why = f" ({facts['error']})" if facts.get("error") else ""
        findings.append(
            Finding("instance role", "error", f"IMDS unreachable: nothing answered at 169.254.169.254{why}", ROLE_FIX)
        )
    elif not role:
        findings.append(Finding("instance role", "error", "no instance role: IMDS answered, naming no role", ROLE_FIX))
    else:
        how = "IMDSv2" if facts.get("token") else "IMDSv1 only (no token was given)"
        findings.append(Finding("instance role", "ok", f"role {role} through {how}"))
    if facts.get("v1_allowed"):
        findings.append(Finding("IMDSv1", "warning", "IMDSv1 allowed: a GET without a token is answered", V1_FIX))
    elif facts.get("answered"):
        findings.append(Finding("IMDSv1", "ok", "IMDSv2 required: a GET without a token is refused"))
    job = facts.get("job")
    if job is not None:
        findings += [Finding(f.check, f.severity, f.evidence, f.fix, JOB_SUBJECT) for f in _job_exposure(job)]
    return [Finding(f.check, f.severity, f.evidence, f.fix, f.subject or IMDS_SUBJECT) for f in findings]


JOB_IMAGE_FIX = (
    "docker pull it on the host, or set ecrkit_job_probe_image to an image the host has with sh and curl "
    "(the validator pulls nothing)"
)
JOB_COMMAND_FIX = (
    "let the validator run `docker run` on the host, as the runner's jobs run: ecrkit_job_probe_image (an image "
    "with sh and curl) and ecrkit_job_probe_network (the jobs' network_mode), or ecrkit_local_jobs: false"
)
ABSENT_IMAGE = re.compile(r"No such image: (\S+)|Unable to find image '([^']+)'", re.ASCII)


def _job_exposure(job: JobImdsFacts) -> list[Finding]:
    if not job.get("ran"):
        error = job.get("error") or "no report"
        absent = ABSENT_IMAGE.search(error)
        if absent:
            image = (absent[1] or absent[2]).rstrip(".")  # Docker ends its sentence after the name
            evidence = f"the job probe's image {image} is not on the host: whether a job reaches the role is unknown"
            return [Finding("job reaches instance role", "note", evidence, JOB_IMAGE_FIX)]
        said = next((line.strip() for line in error.splitlines() if line.strip()), error)
        evidence = f"the probe could not run in the job network: {said}"
        return [Finding("job reaches instance role", "note", evidence, JOB_COMMAND_FIX)]
    if job.get("role"):
        evidence = (
            f"a job in the job network got an IMDSv2 token and read role {job['role']}: the hop limit is 2 or more"
        )
        return [Finding("job reaches instance role", "warning", evidence, HOP_FIX)]
    if job.get("v1_role"):
        evidence = f"a job in the job network read role {job['v1_role']} without a token (IMDSv1)"
        return [Finding("job reaches instance role", "warning", evidence, V1_FIX)]
    how = "its token's answer did not reach it (hop limit 1)" if not job.get("token") else "it read no role"
    return [Finding("job reaches instance role", "ok", f"a job in the job network cannot read the role: {how}")]


def _consumer(facts: ConsumerFacts, expected: list[str], now: float | None) -> list[Finding]:
    if facts["kind"] == "task" and facts.get("found") and "sandbox" not in facts:
        return _archive(facts)  # nothing to judge past an archive the task cannot extract
    if not facts["found"]:
        what = {"service": "systemd unit", "task": "agent unit"}.get(facts["kind"], "user")
        fix = "create the user" if facts["kind"] == "user" else "install it, or stop naming it in ecrkit_services"
        return [Finding("exists", "error", f"{what} {facts['name']}: {facts.get('error') or 'not found'}", fix)]
    env = facts["env"]["values"]
    runner = "runner_config" in facts
    findings = [
        Finding("exists", "ok", f"runs as {facts['user']}; environment of the {facts['env_source']}"),
        *(_archive(facts) if facts["kind"] == "task" else []),
        *_helper(facts, env),
        *_config(facts, expected, optional=runner),
        *_region(facts, env),
        *_restart(facts, env),
        *_cache(facts),
        *_sso(facts, now),
        *_gets(facts, now),
        *_list(facts, now),
        *(_runners(facts, expected) if runner else []),
    ]
    named = {f.fix for f in findings if f.severity != "ok"}  # a failing live get or list named these
    since = now - RECENT if now is not None else None
    for finding in diagnose_helper_log(facts["log"].get("tail") or "", since=since):
        if finding.fix not in named:
            evidence = f"{facts['log']['path']}: {finding.evidence}"
            findings.append(Finding(finding.check, "warning", evidence, finding.fix))
    return findings


ARCHIVE_FIX = "run the marathon_agent_ecr role (it writes the archive 0644 root), and fetch that path in the app"


def _archive(facts: ConsumerFacts) -> list[Finding]:
    """A Mesos task fetches the archive and extracts it as its user into its sandbox (HOME)."""
    archive = facts["archive"]
    path, user = archive["path"], archive["task_user"]
    if "error" not in archive:
        return [Finding("docker.tar.gz", "ok", f"{path} extracts as {user} into a fresh sandbox (HOME of the pull)")]
    state = archive["state"]
    why = "does not exist" if state.get("exists") is False else f"cannot be extracted as {user}: {archive['error']}"
    return [
        Finding("docker.tar.gz", "error", f"{path} {why}: every task that fetches it pulls anonymously", ARCHIVE_FIX)
    ]


def _sso(facts: ConsumerFacts, now: float | None) -> list[Finding]:
    """An IAM Identity Center profile works only while `aws sso login`'s cached token is valid."""
    problem = _sso_problem(facts, now)
    if problem is not None:
        return [problem]
    sso = facts.get("sso")
    if not sso or "AWS_ACCESS_KEY_ID" in facts["env"]["names"]:
        return []
    return [Finding("SSO session", "ok", f"profile {sso['profile']} ({sso['form']}): valid until {sso['expires_at']}")]


def _sso_problem(facts: ConsumerFacts, now: float | None) -> Finding | None:
    sso = facts.get("sso")
    if not sso or "AWS_ACCESS_KEY_ID" in facts["env"]["names"]:  # keys in the environment come first
        return None
    fix = f"aws sso login --profile {sso['profile']}"
    if not sso.get("expires_at"):
        evidence = f"profile {sso['profile']} ({sso['form']}): no cached IAM Identity Center token ({sso['cache']})"
        return Finding("SSO session", "error", evidence + ": nobody has logged in", fix)
    try:
        expires = datetime.fromisoformat(str(sso["expires_at"]).replace("Z", "+00:00").replace("UTC", "+00:00"))
    except ValueError:
        return Finding("SSO session", "error", f"{sso['cache']}: expiresAt {sso['expires_at']!r} does not parse", fix)
    if now is not None and expires.timestamp() <= now:
        evidence = (
            f"profile {sso['profile']} ({sso['form']}): the IAM Identity Center session expired at {sso['expires_at']}"
        )
        return Finding("SSO session", "error", evidence, fix)
    return None


def _helper(facts: ConsumerFacts, env: dict[str, str]) -> list[Finding]:
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
        Finding("helper runs", "ok", f"version {_version_in(version['stdout'])}")
        if version["rc"] == 0
        else Finding(
            "helper runs",
            "error",
            f"{helper['path']} -v: exit {version['rc']}: {version['stderr'].strip()[-300:]}",
            "reinstall the helper for this host's architecture (ecr_credential_helper_install_method)",
        )
    )
    return [Finding("helper on PATH", "ok", f"{helper['path']} (PATH={path})"), runs]


def _config(facts: ConsumerFacts, expected: list[str], optional: bool = False) -> list[Finding]:
    """The consumer's config.json. A runner manager's is its second source (`optional`): the
    runners' DOCKER_AUTH_CONFIG come first, and `_runners` judges what each registry gets."""
    config = facts["config"].copy()
    path, state = config["path"], config["state"]
    if facts["kind"] == "task":  # a throwaway sandbox: name the archive it came from
        config["path"] = path = f"{facts['archive']['path']}: .docker/config.json"
        if not state.get("exists"):
            return [Finding("config.json", "error", f"{path} is missing: tasks pull anonymously", ARCHIVE_FIX)]
    if not state.get("exists"):
        if optional:
            return [
                Finding(
                    "config.json",
                    "note",
                    f"{path} does not exist: the runners' DOCKER_AUTH_CONFIG must cover each registry",
                )
            ]
        fix = "run the docker_auth_config role for this user"
        return [Finding("config.json", "error", f"{path} does not exist", fix)]
    if "error" in config:
        return [
            Finding(
                "config.json",
                "error",
                f"{path} is not valid JSON: {config['error']}",
                ARCHIVE_FIX if facts["kind"] == "task" else
                "fix it, or let docker_auth_config replace it (docker_auth_config_replace_invalid keeps a backup)",
            )
        ]  # fmt: skip
    if facts["kind"] == "task":  # the task's own fresh copy: only what it names matters
        return [Finding("config.json", "ok", f"{path}, extracted"), *_coverage(config, expected, task=True)]
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
    return findings + ([] if optional else _coverage(config, expected, facts["kind"] == "task"))


def _coverage(config: ConfigSummary, expected: list[str], task: bool = False) -> list[Finding]:
    helpers, store = config["cred_helpers"], config["creds_store"]
    role = "marathon_agent_ecr" if task else "docker_auth_config"
    named = [host for host, helper in helpers.items() if helper == "ecr-login"]
    if not expected and not named:
        if store == "ecr-login":
            return [Finding("covers registries", "ok", "credsStore ecr-login: every registry")]
        return [
            Finding(
                "covers registries",
                "error",
                f"{config['path']} names ecr-login neither in credsStore nor in credHelpers",
                f"run the {role} role",
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
                    f"name ecr-login for it ({role}_registries)",
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
                    f"add it to {role}_registries and run the {role} role",
                )
            )
    return findings


def _sources(facts: ConsumerFacts) -> list[ConfigSummary]:
    """Every Docker config this consumer's helper calls come from: config.json, and for a
    runner manager each runner's DOCKER_AUTH_CONFIG."""
    runners = facts.get("runner_config", {}).get("runners", [])
    return [facts["config"], *(auth for r in runners if (auth := r.get("auth_config")))]


def _region(facts: ConsumerFacts, env: dict[str, str]) -> list[Finding]:
    if not any(source.get("creds_store") == "ecr-login" for source in _sources(facts)):
        return []
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or facts.get("profile_region")
    if region:
        return [Finding("region for credsStore", "ok", f"region {region}")]
    service = facts["kind"] != "user"
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


def _restart(facts: ConsumerFacts, env: dict[str, str]) -> list[Finding]:
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


def _cache(facts: ConsumerFacts) -> list[Finding]:
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


def _no_answer(call: GetResult | ListResult, causes: list[Finding]) -> tuple[str, str] | None:
    """A live call the probe had to stop: ECR's silence is its cause, with what the log said meanwhile.
    The evidence and the fix, or None if the call finished."""
    seconds = call.get("timed_out")
    if seconds is None:
        return None
    evidence = f"ECR did not answer within {seconds:g} s (the probe stopped the helper)"
    if causes:
        return f"{evidence}; the log: {causes[-1].evidence}", causes[-1].fix
    return evidence, NO_ANSWER_FIX


def _gets(facts: ConsumerFacts, now: float | None = None) -> list[Finding]:
    findings = []
    sso = _sso_problem(facts, now)  # an expired session explains a failing get better than its log
    for get in facts["gets"]:
        registry = get["registry"]
        if get["rc"] == 0 and get.get("secret_length"):
            evidence = f"{registry}: username {get['username']}, a secret of {get['secret_length']} characters"
            findings.append(Finding("live get", "ok", evidence))
            continue
        causes = diagnose_helper_log(get["log"])
        said = get.get("said") or "no answer"
        silent = _no_answer(get, causes)
        if sso is not None:
            findings.append(Finding("live get", "error", f"{registry}: {said}; {sso.evidence}", sso.fix))
        elif silent is not None:
            findings.append(Finding("live get", "error", f"{registry}: {silent[0]}", silent[1]))
        elif causes:
            for cause in causes:
                findings.append(
                    Finding("live get", "error", f"{registry}: {said}; the log: {cause.evidence}", cause.fix)
                )
        else:
            evidence = f"{registry}: exit {get['rc']}: {said}"
            findings.append(Finding("live get", "error", evidence, _answer_fix(said, facts)))
    return findings


def _answer_fix(said: str, facts: ConsumerFacts) -> str:
    """The fix for a helper whose log names no cause: from what it said, else read the log."""
    cause = next((cause for cause in HELPER_ANSWER_CAUSES if cause.pattern.search(said)), None)
    return cause.fix if cause else f"read {facts['log']['path']} on the host"


def _list(facts: ConsumerFacts, now: float | None = None) -> list[Finding]:
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
    # A failed list fails every consumer, as the README's check table says: for a login too
    # (`docker pull` only gets, but whatever lists for it, such as GitLab Runner, gets nothing).
    said = f"lists {len(listed)} registries" if isinstance(listed, dict) else facts["list"].get("said") or "no answer"
    sso = _sso_problem(facts, now)
    if sso is not None:
        return [Finding("live list", "error", f"{said}; {sso.evidence}", sso.fix)]
    silent = _no_answer(facts["list"], causes)
    if silent is not None:
        return [Finding("live list", "error", *silent)]
    if not causes:
        return [Finding("live list", "error", said, _answer_fix(said, facts))]
    return [Finding("live list", "error", f"{said}; the log: {cause.evidence}", cause.fix) for cause in causes]


# Executors whose images the runner manager pulls, resolving credentials itself (kubernetes
# turns them into an image pull secret); the others pull nothing.
PULLING_EXECUTORS = ("docker", "docker-windows", "docker+machine", "docker-autoscaler", "kubernetes")
AUTOSCALER_REQUIRED = ("plugin", "capacity_per_instance", "max_instances")
CI_VARIABLE_NOTE = (
    "a CI/CD variable named DOCKER_AUTH_CONFIG (project, group or instance) replaces config.toml's for the jobs "
    "that see it, with no merge; this host cannot show whether one is set"
)


def _runners(facts: ConsumerFacts, expected: list[str]) -> list[Finding]:
    """GitLab Runner's own resolution (helpers/docker/auth AllConfigs), per runner and registry:
    DOCKER_AUTH_CONFIG, then the process user's config.json; the first source that defines the
    registry wins. A source defines what its credHelpers and auths name, and what its credsStore
    `list`s; a helper that fails on any of its registries drops the whole source."""
    config = facts["runner_config"]
    path = f"{config['path']} ({config['found_by']})"
    if not config["state"].get("exists"):
        fix = "register the runner, or name its config.toml in gitlab_runner_ecr_config_path"
        return [Finding("config.toml", "error", f"{path} does not exist: this is not a registered runner", fix)]
    if "unreadable" in config:
        fix = "judge this host from a Python 3.11+ probe, or install tomli for the host's python3"
        return [Finding("config.toml", "warning", f"{path}: {config['unreadable']}; the runners were not judged", fix)]
    if "error" in config:
        fix = "fix the TOML by hand (gitlab-runner does not start with it); ecrkit never writes over a broken file"
        return [Finding("config.toml", "error", f"{path} is not valid TOML: {config['error']}", fix)]
    runners = config.get("runners", [])
    findings = [
        Finding("config.toml", "ok", f"{path}: {len(runners)} [[runners]]"),
        Finding("config.toml", "note", CI_VARIABLE_NOTE),
    ]
    if not runners:
        findings.append(Finding("config.toml", "error", f"{path} has no [[runners]]", "register a runner"))
    for runner in runners:
        subject = f"runner {runner['name'] or '(unnamed)'}"
        if runner["executor"] not in PULLING_EXECUTORS:
            evidence = f"executor {runner['executor'] or '(none)'} pulls no images: not judged"
            findings.append(Finding(subject, "note", evidence))
            continue
        findings += _resolution(facts, runner, subject, expected)
        findings += _machine(runner, subject) + _autoscaler(runner, subject)
    return findings


def _listed(facts: ConsumerFacts) -> list[str]:
    listed = facts.get("list", {}).get("registries")
    return [url.split("://")[-1].split("/")[0] for url in listed] if isinstance(listed, dict) else []


def _source_failure(source: ConfigSummary, facts: ConsumerFacts) -> str | None:
    """Why the runner would drop this source whole: a helper call of it that fails (a
    source that names no helper cannot fail so)."""
    if not any(h == "ecr-login" for h in source["cred_helpers"].values()) and source.get("creds_store") != "ecr-login":
        return None
    gets = {get["registry"]: get for get in facts["gets"]}

    def failed(get: GetResult | None) -> bool:  # None: the helper is not on the service's PATH
        return get is None or not (get["rc"] == 0 and get.get("secret_length"))

    if not facts["helper"]["path"]:
        return f"the runner cannot run {HELPER} (see helper on PATH)"
    for registry, helper in source["cred_helpers"].items():
        if helper == "ecr-login" and failed(gets.get(registry)):
            return f"the helper failed for {registry} (see live get)"
    if source.get("creds_store") == "ecr-login":
        if facts.get("list", {}).get("rc") != 0:
            return "the helper's list failed (see live list)"
        for registry in _listed(facts):
            if failed(gets.get(registry)):
                return f"the helper failed for {registry}, which list names (see live get)"
    return None


def _resolution(facts: ConsumerFacts, runner: RunnerEntry, subject: str, expected: list[str]) -> list[Finding]:
    auth = runner["auth_config"]
    findings: list[Finding] = []
    sources: list[tuple[str, ConfigSummary]] = []
    if auth is not None and "error" in auth:
        findings.append(
            Finding(
                subject,
                "error",
                f"DOCKER_AUTH_CONFIG in config.toml is not valid JSON ({auth['error']}): the runner drops it",
                "let gitlab_runner_ecr write it (quotes escaped as TOML needs), or fix the JSON by hand",
            )
        )
    elif auth is not None:
        sources.append(("DOCKER_AUTH_CONFIG", auth))
    home = facts["config"]
    if home["state"].get("exists") and "error" not in home:
        sources.append((home["path"], home))
    named = [host for _, source in sources for host, helper in source["cred_helpers"].items() if helper == "ecr-login"]
    registries = expected or list(dict.fromkeys(named + _listed(facts)))
    if not registries:
        fix = "name the registries (gitlab_runner_ecr_registries), or give the service AWS_REGION for credsStore's list"
        return [*findings, Finding(subject, "error", "no source hands any ECR registry to ecr-login", fix)]
    failures = {name: _source_failure(source, facts) for name, source in sources}
    for registry in registries:
        passed_over: list[str] = []
        for name, source in sources:
            if failures[name] is not None:
                passed_over.append(f"{name} dropped: {failures[name]}")
                continue
            found = _defines(source, registry, _listed(facts))
            if found is None:
                listing = source.get("creds_store") == "ecr-login"
                passed_over.append(f"{name}'s credsStore does not list it" if listing else f"{name} does not name it")
                continue
            findings += _verdict(subject, registry, name, found, passed_over)
            break
        else:
            why = "; ".join(passed_over) or "no source"
            evidence = f"{registry}: no source gives it credentials ({why}): the runner pulls anonymously"
            fix = "run gitlab_runner_ecr with the registry in gitlab_runner_ecr_registries (DOCKER_AUTH_CONFIG)"
            findings.append(Finding(subject, "error", evidence, fix))
    return findings


def _defines(source: ConfigSummary, registry: str, listed: list[str]) -> str | None:
    """How a Docker config defines the registry for GitLab Runner, if it does."""
    helper = source["cred_helpers"].get(registry)
    if helper:
        return f"credHelpers {helper}"
    if registry in source["auths"]:
        return "auths"
    if source.get("creds_store") and (source["creds_store"] != "ecr-login" or registry in listed):
        return f"credsStore {source['creds_store']}"
    return None


def _verdict(subject: str, registry: str, source: str, how: str, passed_over: list[str]) -> list[Finding]:
    kind = how.split(maxsplit=1)[0]
    if how in ("credHelpers ecr-login", "credsStore ecr-login"):
        evidence = (
            f"{registry}: {source} ({kind}), through the live {'get' if kind == 'credHelpers' else 'list and get'}"
        )
        findings = [Finding(subject, "ok", evidence)]
        if source != "DOCKER_AUTH_CONFIG" and passed_over:
            evidence = f"{registry}: {'; '.join(passed_over)}, so the runner falls back to {source}"
            fix = "put the registry in the runner's DOCKER_AUTH_CONFIG (gitlab_runner_ecr_registries)"
            findings.append(Finding(subject, "warning", evidence, fix))
        return findings
    if kind == "auths":
        evidence = f"{registry}: {source} (auths): a stored credential, which the runner uses instead of the helper"
        fix = "remove the auths entry: ECR tokens expire after 12 hours; let ecr-login get a fresh one (credHelpers)"
        return [Finding(subject, "error", evidence, fix)]
    evidence = f"{registry}: {source} ({how}): the runner calls docker-credential-{how.split()[1]}, not ecr-login"
    return [Finding(subject, "error", evidence, "name ecr-login for it (gitlab_runner_ecr_registries)")]


def _machine(runner: RunnerEntry, subject: str) -> list[Finding]:
    """docker+machine job hosts: what ecrkit writes into MachineOptions (job hosts need it when jobs run docker)."""
    if runner["executor"] != "docker+machine":
        return []
    options = runner.get("machine_options") or {}
    findings = []
    if options.get("amazonec2-metadata-token") != "required":
        evidence = f"MachineOptions amazonec2-metadata-token is {options.get('amazonec2-metadata-token') or 'not set'}"
        findings.append(
            Finding(
                subject, "error", evidence + ": job hosts accept IMDSv1", "run gitlab_runner_ecr (it requires IMDSv2)"
            )
        )
    if not options.get("amazonec2-iam-instance-profile"):
        evidence = "MachineOptions name no amazonec2-iam-instance-profile: jobs that run docker get no ECR credentials"
        findings.append(Finding(subject, "warning", evidence, "set gitlab_runner_ecr_instance_profile"))
    userdata = runner.get("userdata")
    if userdata is not None:
        path = options["amazonec2-userdata"]
        if not userdata["state"].get("exists") or not userdata["readable"]:
            evidence = (
                f"amazonec2-userdata {path} is missing or unreadable by the service: docker-machine cannot create hosts"
            )
            findings.append(
                Finding(subject, "error", evidence, "run gitlab_runner_ecr with gitlab_runner_ecr_userdata_path")
            )
        elif not userdata["installs_helper"]:
            evidence = f"amazonec2-userdata {path} neither installs the helper nor writes config.json"
            findings.append(
                Finding(subject, "error", evidence, "let gitlab_runner_ecr write it (ecrkit render userdata)")
            )
    if not findings:
        findings.append(
            Finding(
                subject,
                "ok",
                "MachineOptions: instance profile, IMDSv2, "
                + ("userdata installs the helper" if userdata else "no userdata"),
            )
        )
    return findings


def _autoscaler(runner: RunnerEntry, subject: str) -> list[Finding]:
    if runner["executor"] != "docker-autoscaler":
        return []
    missing = [key for key in AUTOSCALER_REQUIRED if key not in runner.get("autoscaler_keys", [])]
    if missing:
        evidence = f"[runners.autoscaler] lacks {', '.join(missing)}: no instances are created"
        return [Finding(subject, "error", evidence, "set them in gitlab_runner_ecr_autoscaler")]
    return [Finding(subject, "ok", "[runners.autoscaler]: " + ", ".join(AUTOSCALER_REQUIRED) + " set")]


def _version_in(said: str) -> str:
    """The release `-v` names (probes of older ecrkit ran the `version` verb: its number as it said)."""
    try:
        return parse_version(said)
    except ValueError:
        return said.strip()
