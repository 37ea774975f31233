"""What the probe returns: the contract between the probe (plugins/modules/probe.py, the
module ecrkit.ecr.probe), the planners (ecrkit.hoststate, ecrkit.converge, ecrkit.plans) and the
judge (ecrkit.checks, ecrkit.validate); tests build their facts from these (tests/facts.py).

The probe runs on hosts alone (Python 3.9, standard library only, shipped by Ansible or run as a
script) and imports these under TYPE_CHECKING only, so that mypy holds its results to this
contract while hosts need nothing of ecrkit. typing.TypedDict only; total=False where a key is
present only in some cases. SHOWN_ENV, MACHINE_OPTIONS and LIVE_TIMEOUT are the probe's.
"""

from __future__ import annotations

from typing import Any, TypedDict


class UserEntry(TypedDict, total=False):
    uid: int
    gid: int
    group: str  # the primary group's name
    home: str
    shell: str
    groups: list[int]  # all group ids: the probe's own, to run commands as the user (never reported)


class PathState(TypedDict, total=False):
    path: str
    exists: bool | None  # None: it could not be examined (see error)
    type: str  # file, directory or other
    mode: str  # octal, e.g. "0600"
    owner: str
    group: str
    sha256: str  # files only
    error: str | None


class CommandResult(TypedDict, total=False):
    argv: list[str]
    rc: int | None  # None: it could not be run (stderr says why)
    stdout: str
    stderr: str
    timed_out: float  # the seconds it was given: it was stopped then


class ShownEnv(TypedDict):
    values: dict[str, str]  # only the keys in SHOWN_ENV
    names: list[str]  # every key, without values


class ConfigSummary(TypedDict, total=False):
    """A Docker config (config.json, or a runner's DOCKER_AUTH_CONFIG), without its secrets."""

    path: str  # config.json only
    state: PathState  # config.json only
    error: str  # it does not parse
    creds_store: str | None
    cred_helpers: dict[str, str]
    auths: list[str]  # hostnames only


class UserdataFacts(TypedDict):
    state: PathState
    readable: bool  # by the runner's user
    installs_helper: bool


class RunnerEntry(TypedDict, total=False):
    name: str
    executor: str
    auth_config: ConfigSummary | None  # its DOCKER_AUTH_CONFIG
    machine_options: dict[str, str]  # only MACHINE_OPTIONS
    userdata: UserdataFacts
    autoscaler_keys: list[str]


class RunnerConfigFacts(TypedDict, total=False):
    path: str
    found_by: str
    state: PathState
    error: str  # it does not parse
    unreadable: str  # no TOML parser on the host
    runners: list[RunnerEntry]


class SsoFacts(TypedDict, total=False):
    profile: str
    form: str  # sso-session or legacy
    cache: str
    expires_at: str | None


class HelperFacts(TypedDict, total=False):
    path: str | None  # where the consumer's PATH finds it
    misnamed: list[str]
    version: CommandResult


class CacheFacts(TypedDict):
    dir: str
    disabled: bool
    state: PathState
    file: PathState
    writable: bool


class LogFacts(TypedDict):
    path: str
    tail: str | None


class ListResult(TypedDict, total=False):
    rc: int | None
    log: str
    registries: Any  # what `list` printed, parsed (a JSON object: registry URL -> username)
    said: str
    timed_out: float  # seconds (LIVE_TIMEOUT): the helper had not answered and was stopped


class GetResult(TypedDict, total=False):
    registry: str
    rc: int | None
    said: str
    username: str | None
    secret_length: int  # the secret itself never leaves the host
    server_url: str | None
    log: str
    timed_out: float  # seconds (LIVE_TIMEOUT): the helper had not answered and was stopped


class ArchiveFacts(TypedDict, total=False):
    path: str
    state: PathState
    task_user: str
    error: str


class ConsumerFacts(TypedDict, total=False):
    """One process that runs the helper, as `consumer` observes it."""

    kind: str  # service, user or task
    name: str
    found: bool
    state: str | None
    error: str | None
    env_source: str
    unit_env: ShownEnv
    user: str
    archive: ArchiveFacts
    sandbox: str
    env: ShownEnv
    profile_region: str | None
    sso: SsoFacts | None
    helper: HelperFacts
    config: ConfigSummary
    runner_config: RunnerConfigFacts
    cache: CacheFacts
    log: LogFacts
    gets: list[GetResult]
    list: ListResult  # after gets: in this class, `list` names this key


class ServiceState(TypedDict, total=False):
    """A systemd service as `service_state` observes it; environments hold SHOWN_ENV keys only."""

    found: bool
    error: str  # not found: what systemctl said
    active_state: str
    need_daemon_reload: bool  # its unit files changed on disk since systemd loaded them
    main_pid: int  # 0: no process runs
    unit_env: dict[str, str]  # what its own Environment= (as loaded) and EnvironmentFile= (as on disk) give
    process_env: dict[str, str] | None  # what its running process started with; None: none, or unreadable


class JobImdsFacts(TypedDict, total=False):
    ran: bool  # the job's command ran (its shell printed its report)
    token: bool  # it got an IMDSv2 token: the token's answer crossed the hops to it
    role: str  # the role it read with that token; "" none
    v1_role: str  # the role it read without a token (IMDSv1); "" none
    error: str  # why it did not run


class ImdsFacts(TypedDict, total=False):
    answered: bool  # IMDS answered the host (any HTTP status)
    token: bool  # the host got an IMDSv2 token
    role: str  # the instance role's name; "" none
    v1_allowed: bool  # a GET without a token was answered
    error: str  # what the host's request met when nothing answered
    job: JobImdsFacts


class ProbeResult(TypedDict, total=False):
    """What the probe prints: only the keys asked about are filled."""

    changed: bool
    time: float  # the host's clock
    users: dict[str, UserEntry | None]  # None: no such user
    paths: dict[str, PathState]  # keyed by path, or "<user>:<relative>"
    contents: dict[str, str | None]  # base64; None: no such file
    commands: list[CommandResult]
    consumers: list[ConsumerFacts]
    services: dict[str, ServiceState]  # keyed by unit
    imds: ImdsFacts
