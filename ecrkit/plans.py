"""Each role's decision as one function of the package, called by both faces: the role (through
its converge task, ecrkit.converge, or its filter in plugins/filter/ecrkit.py) and the CLI
(`ecrkit render ...`), so that the two cannot assemble the same files two ways.

A plan takes what the probe saw (`facts`, ecrkit.probe_facts.ProbeResult) and the role's variables
without the role's prefix (`options`); errors name what the user wrote through `name`: the
role's variable (`variables("gitlab_runner_ecr_")`) or the command's option (`options_of()`).
Results are keyed by name (`plan["files"]["config_toml"]`), never by position.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypedDict

from ecrkit import helper, hoststate, images
from ecrkit.constants import HELPER_BINARY, HELPER_VERSION, HOP_LIMIT, INSTALL_DIR, RELEASE_BASE_URL, role_default
from ecrkit.errors import InputError
from ecrkit.probe_facts import ProbeResult
from ecrkit.renderers import docker_config, docker_tar, runner_config, service_env, userdata
from ecrkit.settings import CredentialRule, option_name, validate_absolute_path

Name = Callable[[str], str]  # an option's key -> what the user wrote it as


def variables(prefix: str) -> Name:
    """Errors name the role's variables: `gitlab_runner_ecr_` + key."""
    return lambda key: prefix + key


def options_of(**renamed: str) -> Name:
    """Errors name the command's options: `--` + key with dashes, unless the option is spelled otherwise.
    A renamed key also renames the paths below it (`autoscaler.policy` renames `autoscaler.policy[0].x`)."""

    def name(key: str) -> str:
        for path in sorted(renamed, key=len, reverse=True):
            if key == path or key.startswith((f"{path}.", f"{path}[")):
                return renamed[path] + key[len(path) :]
        return option_name("--", key)

    return name


class RuleOptions(TypedDict):
    """The three inputs of the credential rule, as every role and command takes them."""

    registries: Sequence[str]
    public: bool
    creds_store: bool


class RuleFacts(TypedDict):
    """The rule as roles read it back (lists and booleans, for YAML)."""

    registries: list[str]
    creds_store: bool


def credential_rule(options: Mapping[str, Any], name: Name) -> CredentialRule:
    """ecrkit's one rule (settings.CredentialRule) from a role's or a command's three inputs."""
    return CredentialRule.build(
        options["registries"],
        include_public=bool(options["public"]),
        force_creds_store=bool(options["creds_store"]),
        source=name("registries"),
    )


def rule_facts(rule: CredentialRule) -> RuleFacts:
    return {"registries": list(rule.registries), "creds_store": rule.creds_store}


class RunnerOptions(RuleOptions, total=False):
    """gitlab_runner_ecr's variables (and `ecrkit render runner-config`'s options), unprefixed."""

    config_path: str
    env_path: str  # "": no service environment (the command writes config.toml only)
    service: str  # the systemd service the drop-in is for, probed (facts["services"]) for what it runs with
    container: bool  # an env file for `docker run --env-file` instead of a systemd drop-in
    region: str
    cache_dir: str
    helper_dir: str
    helper_path: str  # default: helper_dir (or INSTALL_DIR) / HELPER_BINARY
    runners: Sequence[str]
    docker_volumes: bool
    instance_profile: str
    hop_limit: int
    userdata_path: str
    userdata_format: userdata.Format
    userdata_version: str
    userdata_release_base_url: str
    userdata_url: str
    userdata_sha256: str
    autoscaler: Mapping[str, Any]


def runner_settings(rule: CredentialRule, options: Mapping[str, Any], name: Name) -> runner_config.RunnerSettings:
    """What ecrkit manages in config.toml."""
    helper_path = options.get("helper_path") or posixpath.join(options.get("helper_dir") or INSTALL_DIR, HELPER_BINARY)
    return runner_config.RunnerSettings(
        rule,
        runners=tuple(options.get("runners") or ()),
        docker_volumes=bool(options.get("docker_volumes")),
        helper_path=helper_path,
        machine_options=runner_config.machine_options(
            options.get("instance_profile") or "",
            options.get("userdata_path") or "",
            options.get("hop_limit", HOP_LIMIT),
            sources=(name("instance_profile"), name("userdata_path"), name("hop_limit")),
        ),
        autoscaler=runner_config.with_ready_command(
            runner_config.validate_autoscaler(options.get("autoscaler") or {}, lambda path: name(f"autoscaler.{path}")),
            userdata.instance_ready_command(),
        ),
        runners_source=name("runners"),
    )


def job_host_userdata(
    rule: CredentialRule,
    *,
    version: str,
    release_base_url: str,
    url: str = "",
    sha256: str = "",
    install_dir: str = INSTALL_DIR,
    form: userdata.Format = "shell",
    name: Name,
) -> str:
    """The userdata of job hosts: the release (or `url`) checked against `sha256`, installed and
    named in root's config.json. `name` names version, release_base_url, url and sha256."""
    prefix = name("")  # the renderers name their inputs as prefix + key
    url = url or helper.release_url(version, userdata.ARCH, release_base_url, prefix=prefix)
    return userdata.render(rule, url=url, sha256=sha256, install_dir=install_dir, form=form, prefix=prefix)


def runner_plan(facts: ProbeResult, options: Mapping[str, Any], name: Name | None = None) -> dict[str, Any]:
    """gitlab_runner_ecr's decision: config.toml merged, the service's environment, the job hosts'
    userdata; each by name with whether the host differs (hoststate.runner_files), whether the
    service must be reloaded or restarted to run with its drop-in (hoststate.service_due), and the rule."""
    name = name or variables("gitlab_runner_ecr_")
    rule = credential_rule(options, name)
    settings = runner_settings(rule, options, name)
    env_path = options.get("env_path") or ""
    env = (
        service_env.environment(
            rule,
            region=options.get("region") or "",
            cache_dir=options.get("cache_dir") or "",
            helper_dir=options.get("helper_dir") or "",
            source=name(""),
        )
        if env_path
        else {}
    )
    userdata_path = options.get("userdata_path") or ""
    text = (
        job_host_userdata(
            rule,
            version=options.get("userdata_version") or HELPER_VERSION,
            release_base_url=options.get("userdata_release_base_url") or RELEASE_BASE_URL,
            url=options.get("userdata_url") or "",
            sha256=options.get("userdata_sha256") or "",
            form=options.get("userdata_format") or "shell",
            name=lambda key: name("userdata_" + key),
        )
        if userdata_path
        else ""
    )
    plan = hoststate.runner_files(
        facts,
        config_path=options["config_path"],
        settings=settings,
        env=env,
        env_path=env_path,
        env_form="env-file" if options.get("container") else "drop-in",
        userdata_path=userdata_path,
        userdata_text=text,
        service=options.get("service") or "",
    )
    return {**plan, "rule": rule_facts(rule)}


class DockerAuthOptions(RuleOptions):
    """docker_auth_config's variables, unprefixed."""

    users: Sequence[str]
    state: docker_config.State
    replace_invalid: bool


def docker_auth_plan(facts: ProbeResult, options: Mapping[str, Any], name: Name | None = None) -> dict[str, Any]:
    """docker_auth_config's decision: the credential rule, and every user's config.json rendered
    before any is written (hoststate.docker_config_files), in the order of the users."""
    name = name or variables("docker_auth_config_")
    rule = credential_rule(options, name)
    replace_invalid = bool(options.get("replace_invalid"))
    files = hoststate.docker_config_files(facts, options["users"], rule, options["state"], replace_invalid)
    return {"rule": rule_facts(rule), **hoststate.users_files_plan(files, backup=replace_invalid)}


class MarathonOptions(RuleOptions, total=False):
    """marathon_agent_ecr's variables, unprefixed."""

    region: str
    cache_dir: str


def marathon_plan(options: Mapping[str, Any], name: Name | None = None) -> dict[str, Any]:
    """marathon_agent_ecr's decision: the credential rule, the agent's environment and the
    cluster-wide --docker_config."""
    name = name or variables("marathon_agent_ecr_")
    rule = credential_rule(options, name)
    env = service_env.environment(
        rule, region=options.get("region") or "", cache_dir=options.get("cache_dir") or "", source=name("")
    )
    return {
        "rule": rule_facts(rule),
        "env": env,
        # Empty auths keep UCR pulls working.
        "docker_config": docker_config.dumps(docker_config.merge({"auths": {}}, rule)),
    }


def marathon_agent_plan(facts: ProbeResult, options: Mapping[str, Any], name: Name | None = None) -> dict[str, Any]:
    """marathon_agent_ecr's converge: its decision (marathon_plan) as the agent's files, by name,
    with whether the host differs, and what the agent needs to run with them (hoststate.marathon_files)."""
    name = name or variables("marathon_agent_ecr_")
    decided = marathon_plan(options, name)
    docker_config_path = options.get("docker_config_path") or ""
    files = hoststate.marathon_files(
        facts,
        archive_path=validate_absolute_path(options["docker_tar_path"], name("docker_tar_path")),
        archive=docker_tar.render(credential_rule(options, name)),
        env_file=validate_absolute_path(options["env_file"], name("env_file")),
        env=decided["env"],
        docker_config_path=validate_absolute_path(docker_config_path, name("docker_config_path"))
        if docker_config_path
        else "",
        docker_config=decided["docker_config"],
        service=options.get("service") or "",
    )
    return {**files, "rule": decided["rule"]}


def validate_args(
    options: Mapping[str, Any],
    services: Sequence[str],
    users: Sequence[str],
    variables_: Mapping[str, Any] | None = None,
    groups: Sequence[str] = (),
    *,
    name: Name | None = None,
) -> dict[str, Any]:
    """The validate entry point's decision: the probe's arguments (each service and user, a live
    get per registry of the rule, and what the host's groups add) and the registries to judge."""
    from ecrkit import checks  # noqa: PLC0415 - only for this entry point

    rule = credential_rule(options, name or variables("docker_auth_config_"))
    runners, tasks = special_consumers(variables_ or {}, list(groups))
    imds = instance_metadata(variables_ or {}, list(groups))
    return checks.probe_args(rule.registries, services, users, runners, tasks, imds=imds)


# `gitlab-runner fleeting install` (GitLab Runner 16.11 and later) fetches the plugins config.toml names.
FLEETING_INSTALL_SINCE = (16, 11)


def fleeting_marker(config_path: str, plugin: str) -> str:
    """The file beside config.toml that says the fleeting plugin `plugin` was installed for it: named
    by both, so that the install runs again when either changes. It lies beside config.toml, a
    directory that exists wherever the runner is registered."""
    validate_absolute_path(config_path, "gitlab_runner_ecr_config_path")
    key = hashlib.sha256(f"{config_path}\0{plugin}".encode()).hexdigest()[:16]
    return posixpath.join(posixpath.dirname(config_path), f".ecrkit-fleeting-{key}")


def fleeting_install(version_output: str, autoscaler: Mapping[str, Any], config_path: str) -> dict[str, Any]:
    """Whether gitlab_runner_ecr installs the fleeting plugin its autoscaler keys name, and how: from
    `gitlab-runner --version`'s output. Returns {argv, command, marker, reason}: argv runs `command`
    (`gitlab-runner fleeting -c CONFIG install`) and then writes the marker (fleeting_marker); both are
    empty when nothing is to be installed (no plugin named, a runner too old), with the reason. The
    marker exists only after an install that succeeded: the install runs again only when the plugin or
    config.toml changes (or the marker is removed), and a failed one is retried."""
    plugin = str(autoscaler.get("plugin") or "")
    if not plugin:
        return {"argv": [], "command": "", "marker": "",
                "reason": "no fleeting plugin named in gitlab_runner_ecr_autoscaler"}  # fmt: skip
    found = re.search(r"^Version:\s*(\d+)\.(\d+)\.", version_output, re.M)
    if not found:
        raise InputError(
            "gitlab-runner --version",
            version_output.strip()[:200],
            "GitLab Runner's version (a 'Version: X.Y.Z' line): is gitlab-runner installed on the manager?",
        )
    version = (int(found[1]), int(found[2]))
    if version < FLEETING_INSTALL_SINCE:
        since = ".".join(map(str, FLEETING_INSTALL_SINCE))
        return {"argv": [], "command": "", "marker": "", "reason": f"GitLab Runner {version[0]}.{version[1]} has no "
                f"`fleeting install` (since {since}): install the plugin binary by hand and name it"}  # fmt: skip
    marker = fleeting_marker(config_path, plugin)
    reason = f"{plugin} named in {config_path}"
    # One command installs, then marks: the marker exists only after an install that succeeded.
    script = (
        'gitlab-runner fleeting -c "$1" install && printf "# ecrkit: gitlab-runner fleeting install: %s\\n" "$3" > "$2"'
    )
    return {"argv": ["sh", "-c", script, "ecrkit-fleeting-install", config_path, marker, reason],
            "command": f"gitlab-runner fleeting -c {config_path} install", "marker": marker,
            "reason": reason}  # fmt: skip


# -- what a host should have, from its inventory variables (the validator's plan) ---------------

# docker_auth_config's variables, whose defaults (ecrkit.constants) lie under a host's own.
RULE_VARIABLES = (
    "docker_auth_config_users", "docker_auth_config_registries", "docker_auth_config_public",
    "docker_auth_config_creds_store",
)  # fmt: skip
RUNNER_GROUP, AGENT_GROUP = "gitlab_runners", "marathon_agents"  # playbooks/gitlab_runners.yml, marathon_agents.yml
JOB_NETWORK = re.compile(r"^(?:container:)?[A-Za-z0-9][A-Za-z0-9_.-]*\Z", re.ASCII)
JOB_HOST_GROUP = "job_hosts"  # playbooks/job_hosts.yml: docker+machine and docker-autoscaler job hosts


def special_consumers(
    variables: Mapping[str, Any], groups: Iterable[str]
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The consumers a host's groups add, judged as their real consumer reads its credentials:
    a runner manager's service through config.toml (the path given, else the probe finds it),
    and a Marathon agent's tasks through the archive they fetch (as ecrkit_task_user)."""
    groups = set(groups)
    runners: dict[str, str] = {}
    tasks: list[dict[str, str]] = []
    if RUNNER_GROUP in groups and not variables.get("gitlab_runner_ecr_container"):  # a container has no unit
        service = _variable(variables, "gitlab_runner_ecr_service")
        runners[service] = str(variables.get("gitlab_runner_ecr_config_path") or "")
    if AGENT_GROUP in groups:
        tasks.append({
            "task": _variable(variables, "marathon_agent_ecr_service"),
            "archive": _variable(variables, "marathon_agent_ecr_docker_tar_path"),
            "task_user": str(variables.get("ecrkit_task_user") or role_default("ecrkit_task_user")),
        })  # fmt: skip
    return runners, tasks


def _variable(variables: Mapping[str, Any], name: str, named: Name | None = None) -> str:
    """A plain-string variable, with the role's default underneath."""
    value = variables.get(name)
    if value is None:
        value = role_default(name)
    if not isinstance(value, str) or not value:
        raise InputError(named(name) if named else name, value, "a non-empty string")
    return value


def _named(name: str, source: str) -> str:
    """A host's variable in errors: `host: variable` when the host is known."""
    return f"{source}: {name}" if source else name


def expected(variables: dict[str, Any], source: str) -> tuple[list[str], list[str], list[str]]:
    """Registries, services and users from a host's variables, with the roles' defaults underneath."""
    merged = {**{name: role_default(name) for name in RULE_VARIABLES}, **variables}
    prefix = "docker_auth_config_"
    rule = credential_rule(
        {key: merged[prefix + key] for key in ("registries", "public", "creds_store")},
        lambda key: f"{source}: {prefix}{key}",
    )
    services = merged.get("ecrkit_services") or []
    if not isinstance(services, list) or not all(isinstance(s, str) and s for s in services):
        raise InputError(f"{source}: ecrkit_services", services, "a list of systemd unit names")
    return list(rule.registries), services, list(merged["docker_auth_config_users"])


def instance_metadata(
    variables: Mapping[str, Any], groups: Iterable[str], source: str = "", name: Name | None = None
) -> dict[str, Any] | None:
    """Whether the validator asks a host's instance metadata service, and from where a job runs
    (the probe's `imds` argument; None: not asked).

    `ecrkit_instance_metadata`: the host is an EC2 instance whose credentials come from its
    instance role (default: true on job_hosts hosts, which docker+machine and docker-autoscaler
    start on EC2). `ecrkit_local_jobs`: jobs run in containers on this host (default: true on
    job_hosts hosts; set it on a runner manager whose executor is docker): the probe then runs
    `docker run` of `ecrkit_job_probe_image` on `ecrkit_job_probe_network`, as a job would,
    never pulling the image (the probe changes nothing on a host). Errors name a variable as
    `name(variable)` (the command's options), else with the host (`source`)."""
    named = name or (lambda variable: _named(variable, source))
    groups = set(groups)
    job_host = JOB_HOST_GROUP in groups
    asked = _flag(variables, "ecrkit_instance_metadata", job_host, named)
    if not asked:
        return None
    if not _flag(variables, "ecrkit_local_jobs", job_host, named):
        return {}
    image = _variable(variables, "ecrkit_job_probe_image", named)
    images.split(image, named("ecrkit_job_probe_image"))  # a reference, or InputError naming it
    network = _variable(variables, "ecrkit_job_probe_network", named)
    if not JOB_NETWORK.match(network):
        accepted = (
            "a Docker network name (bridge, a network's name, or container:NAME), the network_mode of the runner's jobs"
        )
        raise InputError(named("ecrkit_job_probe_network"), network, accepted)
    return {"job_command": job_command(image, network)}


def job_command(image: str, network: str) -> list[str]:
    """The start of the command that runs the job probe's `sh -c SCRIPT`: a container of `image`
    on `network`, removed after, its entrypoint cleared, the image never pulled."""
    return ["docker", "run", "--rm", "--pull=never", "--entrypoint=", f"--network={network}", image]


def _flag(variables: Mapping[str, Any], name: str, default: bool, named: Name) -> bool:
    value = variables.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(named(name), value, "true or false")
    return value
