"""Merge ecrkit's keys into GitLab Runner's `config.toml` as TOML.

tomlkit keeps what ecrkit does not own byte for byte: tokens, ids, token timestamps,
comments, layout, unknown keys and other runners. For each selected `[[runners]]`:

- `environment` holds exactly one `DOCKER_AUTH_CONFIG=` entry, by the rule config.json
  follows; an existing one is merged as JSON (its `auths` and other helpers kept);
- `[runners.docker] volumes` gets the Docker socket, `/root/.docker` and the helper, on
  request (jobs that run docker themselves; the socket gives them the host's daemon);
- a docker+machine runner's `MachineOptions` get the amazonec2 options ecrkit manages, each
  replacing an earlier value of the same option;
- a docker-autoscaler runner's `[runners.autoscaler]` gets the keys given, and an
  `instance_ready_command` that holds jobs back until the job host's userdata has finished
  (`with_ready_command`).

Keys GitLab Runner does not know are reported: it ignores them silently.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Array, Item, Table

from ecrkit import constants
from ecrkit.constants import HELPER_BINARY, INSTALL_DIR
from ecrkit.errors import FileFormatError, InputError
from ecrkit.renderers import docker_config
from ecrkit.settings import CredentialRule, validate_absolute_path, validate_autoscaling_group, validate_hop_limit

AUTH_PREFIX = "DOCKER_AUTH_CONFIG="
SOCKET = "/var/run/docker.sock"
DOCKER_EXECUTORS = ("docker", "docker+machine", "docker-autoscaler", "docker-windows")
HOP_LIMIT = "amazonec2-metadata-token-response-hop-limit"
INSTANCE_PROFILE = re.compile(r"^[\w+=,.@-]{1,128}\Z", re.ASCII)  # IAM's own pattern for names

# GitLab Runner 19.4's keys (shared/reference/gitlab-runner.md), for the tables it defines
# with fixed keys; tables of free keys (feature_flags, plugin_config, ...) are not checked.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    k: frozenset(v.split())
    for k, v in {
        "": "concurrent check_interval log_level log_format user sentry_dsn listen_address connection_max_age "
        "shutdown_timeout labels session_server runners",
        "session_server": "listen_address advertise_address session_timeout",
        "runners": "name url id token token_obtained_at token_expires_at tls-ca-file tls-cert-file tls-key-file "
        "limit output_limit request_concurrency strict_check_interval unhealthy_requests_limit unhealthy_interval "
        "job_status_final_update_retry_limit labels executor builds_dir cache_dir clone_url environment proxy_exec "
        "shell step_runner_image use_slot_cgroups slot_cgroup_template pre_get_sources_script "
        "post_get_sources_script pre_build_script post_build_script prepare_timeout get_sources_timeout "
        "debug_trace_disabled safe_directory_checkout clean_git_config custom_build_dir referees cache artifact "
        "feature_flags monitoring experimental instance ssh docker parallels virtualbox machine kubernetes custom "
        "autoscaler",
        "runners.docker": "host tls_cert_path tls_verify image hostname runtime privileged "
        "disable_entrypoint_overwrite user allowed_users group_add userns_mode memory memory_swap "
        "memory_reservation cgroup_parent cpuset_cpus cpuset_mems cpus cpu_shares gpus shm_size ulimit "
        "oom_kill_disable oom_score_adjust cap_add cap_drop security_opt devices device_cgroup_rules isolation dns "
        "dns_search extra_hosts network_mode pid_mode ipcmode mac_address links enable_ipv6 network_mtu "
        "disable_cache volumes volume_keep volume_driver volume_driver_ops cache_dir volumes_from tmpfs sysctls "
        "services_privileged services_security_opt services_devices services_tmpfs services_limit service_memory "
        "service_memory_swap service_memory_reservation service_cgroup_parent service_slot_cgroup_template "
        "service_cpuset_cpus service_cpus service_cpu_shares service_gpus wait_for_services_timeout allowed_images "
        "allowed_privileged_images allowed_privileged_services allowed_pull_policies allowed_services pull_policy "
        "helper_image helper_image_flavor container_labels log_options services",
        "runners.docker.services": "name alias command entrypoint environment",
        "runners.machine": "IdleCount IdleScaleFactor IdleCountMin IdleTime MaxGrowthRate MaxBuilds "
        "MaxRemovalAttempts MachineDriver MachineName MachineOptions MachineOptionsWithName OffPeakPeriods "
        "OffPeakTimezone OffPeakIdleCount OffPeakIdleTime autoscaling",
        "runners.machine.autoscaling": "Periods Timezone IdleCount IdleScaleFactor IdleCountMin IdleTime",
        "runners.autoscaler": "capacity_per_instance max_use_count max_instances plugin plugin_config "
        "connector_config policy instance_ready_command instance_acquire_timeout update_interval "
        "update_interval_when_expecting deletion_retry_interval shutdown_deletion_interval "
        "shutdown_deletion_retries failure_threshold log_internal_ip log_external_ip delete_instances_on_shutdown "
        "scale_throttle vm_isolation state_storage",
        "runners.autoscaler.connector_config": "os arch protocol protocol_port username password key_path "
        "use_static_credentials keepalive timeout use_external_addr",
        "runners.autoscaler.policy": "periods timezone idle_count idle_time scale_factor scale_factor_limit "
        "preemptive_mode",
        "runners.autoscaler.scale_throttle": "limit burst",
        "runners.cache": "Type Path Shared MaxUploadedArchiveSize s3 gcs azure",
        "runners.cache.s3": "ServerAddress AccessKey SecretKey SessionToken BucketName BucketLocation Insecure "
        "AuthenticationType ServerSideEncryption ServerSideEncryptionKeyID DualStack PathStyle Accelerate RoleARN "
        "UploadRoleARN AssumeRoleMaxConcurrency DisableAssumeRoleCredentialsCaching",
    }.items()
}
SECRET_LINE = re.compile(
    r'^(\s*"?(?:token|SecretKey|AccessKey|SessionToken|password)"?\s*=\s*)(["\'])(.*)\2', re.M | re.ASCII
)
SECRET_JSON = re.compile(
    r'(\\"(?:auth|password|identitytoken|registrytoken)\\":\s*\\")(?:[^"\\]|\\[^"])*(\\")', re.ASCII
)
AUTOSCALER_SCALARS: dict[str, type] = {
    "plugin": str,
    "capacity_per_instance": int,
    "max_instances": int,
    "max_use_count": int,
    "instance_ready_command": str,
}
AUTOSCALER_TABLES = ("plugin_config", "connector_config")
# The formats GitLab documents for the keys of [runners.autoscaler]'s tables (durations are Go's).
DURATION = re.compile(r"^(?:0|(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)\Z", re.ASCII)  # µs: Go spells it so too
BOOL, INT, TEXT, TIME, NUMBER, TEXTS = (
    "a boolean",
    "a whole number, 0 or more",
    "a string",
    "a Go duration such as 20m0s",
    "a number",
    "a list of strings",
)
CONNECTOR_FORMATS = {
    "os": TEXT, "arch": TEXT, "protocol": TEXT, "protocol_port": INT, "username": TEXT, "password": TEXT,
    "key_path": TEXT, "use_static_credentials": BOOL, "keepalive": TIME, "timeout": TIME, "use_external_addr": BOOL,
}  # fmt: skip
POLICY_FORMATS = {
    "periods": TEXTS, "timezone": TEXT, "idle_count": INT, "idle_time": TIME, "scale_factor": NUMBER,
    "scale_factor_limit": INT, "preemptive_mode": BOOL,
}  # fmt: skip
# The AWS fleeting plugin's plugin_config (fleeting-plugin-aws's README): `name` is the Auto Scaling group.
AWS_PLUGIN_CONFIG = ("name", "profile", "config_file", "credentials_file", "region")
AWS_PLUGINS = ("aws", "fleeting-plugin-aws")


def _has_format(value: Any, form: str) -> bool:
    if form == BOOL:
        return isinstance(value, bool)
    if form == INT:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if form == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    if form == TIME:
        return isinstance(value, str) and bool(DURATION.match(value))
    if form == TEXTS:
        return isinstance(value, list) and all(isinstance(item, str) and item for item in value)
    return isinstance(value, str)


def _check_formats(table: Mapping[str, Any], formats: Mapping[str, str], source: str) -> None:
    unknown = sorted(set(table) - set(formats))
    if unknown:
        raise InputError(source, unknown, f"keys among {', '.join(sorted(formats))}")
    for key, value in table.items():
        if not _has_format(value, formats[key]):
            raise InputError(f"{source}.{key}", value, formats[key])


def is_aws_plugin(plugin: str) -> bool:
    """Whether a `plugin` value names GitLab's AWS fleeting plugin ([registry/][repository/]name[:version])."""
    return plugin.split(":", 1)[0].rsplit("/", 1)[-1] in AWS_PLUGINS


@dataclass(frozen=True)
class RunnerSettings:
    """What ecrkit manages in config.toml; see the module's docstring."""

    rule: CredentialRule
    runners: tuple[str, ...] = ()  # names of the [[runners]] to manage; none: all
    docker_volumes: bool = False
    helper_path: str = f"{INSTALL_DIR}/{HELPER_BINARY}"
    machine_options: Mapping[str, str] = field(default_factory=dict)
    autoscaler: Mapping[str, Any] = field(default_factory=dict)
    runners_source: str = "runners"  # what the user wrote the runner names in (--runner, or a variable)


@dataclass(frozen=True)
class Merged:
    text: str
    typos: list[str]  # keys GitLab Runner does not know, each with where it is


def machine_options(
    instance_profile: str = "",
    userdata: str = "",
    hop_limit: int = constants.HOP_LIMIT,
    sources: tuple[str, str, str] = ("--instance-profile", "--userdata", "--hop-limit"),
) -> dict[str, str]:
    """The amazonec2 MachineOptions ecrkit manages. Hop limit 1 (ecrkit's default) keeps job
    containers from the instance role; 2 lets them reach it, and so every job can read its
    credentials. `sources` name the inputs in errors (the options, or the role's variables)."""
    options = {"amazonec2-metadata-token": "required"}
    options[HOP_LIMIT] = str(validate_hop_limit(hop_limit, sources[2]))
    if instance_profile:
        if not isinstance(instance_profile, str) or not INSTANCE_PROFILE.match(instance_profile):
            raise InputError(sources[0], instance_profile, "an IAM instance profile name")
        options["amazonec2-iam-instance-profile"] = instance_profile
    if userdata:
        options["amazonec2-userdata"] = validate_absolute_path(userdata, sources[1])
    return options


def validate_autoscaler(settings: Mapping[str, Any], name: Callable[[str], str] | str = "autoscaler") -> dict[str, Any]:
    """The docker-autoscaler keys ecrkit may set, checked for type and spelling. Errors name a key by
    `name(path)` (path as in `plugin_config.name`), what the user wrote for it; a string is a prefix."""
    where = name if callable(name) else lambda path: f"{name}.{path}"
    known = set(AUTOSCALER_SCALARS) | set(AUTOSCALER_TABLES) | {"policy"}
    for key, value in settings.items():
        if key not in known:
            raise InputError(where(f"{key}"), value, f"one of {', '.join(sorted(known))}")
        if AUTOSCALER_SCALARS.get(key) is str and not (isinstance(value, str) and value):
            raise InputError(where(f"{key}"), value, "a non-empty string")
        if AUTOSCALER_SCALARS.get(key) is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(where(f"{key}"), value, "a positive integer")
        elif key in AUTOSCALER_TABLES and not isinstance(value, Mapping):
            raise InputError(where(f"{key}"), value, "a mapping")
    policies = settings.get("policy", [])
    if not isinstance(policies, list) or not all(isinstance(p, Mapping) for p in policies):
        raise InputError(where("policy"), policies, "a list of mappings")
    for index, policy in enumerate(policies):
        _check_formats(policy, POLICY_FORMATS, where(f"policy[{index}]"))
    _check_formats(settings.get("connector_config", {}), CONNECTOR_FORMATS, where("connector_config"))
    plugin_config = settings.get("plugin_config", {})
    if is_aws_plugin(str(settings.get("plugin", ""))):
        _check_formats(plugin_config, dict.fromkeys(AWS_PLUGIN_CONFIG, TEXT), where("plugin_config"))
        if not plugin_config.get("name"):
            raise InputError(where("plugin_config.name"), plugin_config.get("name"),
                             "the job hosts' Auto Scaling group name (the AWS plugin needs it)")  # fmt: skip
        validate_autoscaling_group(plugin_config["name"], where("plugin_config.name"))
    return dict(settings)


def with_ready_command(settings: Mapping[str, Any], ready_command: str) -> dict[str, Any]:
    """docker-autoscaler keys plus ecrkit's `instance_ready_command`, unless one is given: the
    runner sends no job to a new instance before the command succeeds on it. None are added when
    no autoscaler keys are given (not a docker-autoscaler runner)."""
    if not settings or "instance_ready_command" in settings:
        return dict(settings)
    return {**settings, "instance_ready_command": ready_command}


def merge(text: str, settings: RunnerSettings, *, path: str) -> Merged:
    """The new config.toml. Nothing to change returns `text` itself."""
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise FileFormatError(path, f"not valid TOML ({exc})") from None
    runners = document.get("runners")
    if not isinstance(runners, AoT) or not len(runners):
        raise FileFormatError(path, "has no [[runners]]; register a runner first")
    names = [str(runner.get("name", "")) for runner in runners]
    unknown = [name for name in settings.runners if name not in names]
    if unknown:
        accepted = f"names of the [[runners]] in {path}: {', '.join(names)}"
        raise InputError(settings.runners_source, ", ".join(unknown), accepted)
    for name, runner in zip(names, runners, strict=True):
        if settings.runners and name not in settings.runners:
            continue
        where = f"{path}: runner {name!r}"
        _merge_auth(runner, settings.rule, where)
        executor = str(runner.get("executor", ""))
        if settings.docker_volumes and executor in DOCKER_EXECUTORS:
            _merge_volumes(runner, settings.helper_path)
        if settings.machine_options and executor == "docker+machine":
            _merge_machine_options(runner, settings.machine_options)
        if settings.autoscaler and executor == "docker-autoscaler":
            _merge_autoscaler(runner, settings.autoscaler)
    merged = tomlkit.dumps(document)
    return Merged(text if merged == text else merged, list(typos(document, path)))


def _merge_auth(runner: Table, rule: CredentialRule, where: str) -> None:
    environment = runner.get("environment")
    if environment is None:
        value = AUTH_PREFIX + docker_config.dumps_compact(docker_config.merge({}, rule))
        _add(runner, "environment", tomlkit.item([value]))
        return
    if not isinstance(environment, Array):
        raise FileFormatError(where, "environment is not a list of strings")
    indices = [i for i, entry in enumerate(environment) if str(entry).startswith(AUTH_PREFIX)]
    current: dict[str, Any] = {}
    for index in indices:  # several entries become one, later keys winning as GitLab Runner reads them
        parsed = docker_config.parse(str(environment[index])[len(AUTH_PREFIX) :], f"{where}: DOCKER_AUTH_CONFIG")
        for key, value in parsed.items():
            earlier = current.get(key)
            current[key] = {**earlier, **value} if isinstance(earlier, dict) and isinstance(value, dict) else value
    merged = docker_config.merge(current, rule)
    if len(indices) == 1 and merged == current:
        return
    _put_once(environment, indices, AUTH_PREFIX + docker_config.dumps_compact(merged))


def _put_once(array: Array, indices: list[int], value: str) -> None:
    """`value` in place of the first of `indices` (appended if none), the others removed."""
    if not indices:
        array.append(value)
        return
    if str(array[indices[0]]) != value:
        array[indices[0]] = value
    for index in reversed(indices[1:]):
        del array[index]


def _subtable(table: Table, key: str) -> Table:
    """The sub-table `key`, created (after the table's other content) if it is missing."""
    child = table.get(key)
    if child is None:
        child = tomlkit.table()
        table.append(key, child)
    return child


def _merge_volumes(runner: Table, helper: str) -> None:
    wanted = [f"{SOCKET}:{SOCKET}", "/root/.docker:/root/.docker:ro", f"{helper}:{helper}:ro"]
    docker = _subtable(runner, "docker")
    volumes = docker.get("volumes")
    if volumes is None:
        _add(docker, "volumes", tomlkit.item(wanted))
        return
    mounted = {str(volume).split(":")[1] if ":" in str(volume) else str(volume) for volume in volumes}
    for volume in wanted:
        if volume.split(":")[1] not in mounted:  # a mount of the same path, the user's own, stays
            volumes.append(volume)


def _merge_machine_options(runner: Table, options: Mapping[str, str]) -> None:
    machine = _subtable(runner, "machine")
    current = machine.get("MachineOptions")
    if current is None:
        _add(machine, "MachineOptions", tomlkit.item([f"{k}={v}" for k, v in options.items()]))
        return
    for name, value in options.items():
        indices = [i for i, entry in enumerate(current) if str(entry).split("=", 1)[0] == name]
        _put_once(current, indices, f"{name}={value}")


def _merge_autoscaler(runner: Table, settings: Mapping[str, Any]) -> None:
    autoscaler = _subtable(runner, "autoscaler")
    for key in AUTOSCALER_SCALARS:
        if key in settings and autoscaler.get(key) != settings[key]:
            _set(autoscaler, key, settings[key])
    for key in AUTOSCALER_TABLES:
        if key in settings:
            table = _subtable(autoscaler, key)
            for name, value in settings[key].items():
                if table.get(name) != value:
                    _set(table, name, value)
    if "policy" in settings and [dict(p) for p in autoscaler.get("policy", [])] != settings["policy"]:
        policies = tomlkit.aot()
        for policy in settings["policy"]:
            policies.append(_table(policy))
        policies[-1].add(tomlkit.nl())  # a blank line before whatever table follows
        if "policy" in autoscaler:
            del autoscaler["policy"]
        autoscaler.append("policy", policies)


def _table(values: Mapping[str, Any]) -> Table:
    table = tomlkit.table()
    for key, value in values.items():
        table.add(key, value)
    return table


def _set(table: Table, key: str, value: Any) -> None:
    if key in table:
        table[key] = value
    else:
        _add(table, key, tomlkit.item(value))


def _add(table: Table, key: str, value: Any) -> None:
    """Add a key, indented like the table's other keys, before its sub-tables (tomlkit would
    also push the next sub-table down a line: the indents it had are put back)."""
    indents = [(item, item.trivia.indent) for key, item in table.value.body if key is not None]
    table.add(key, value)
    for item, indent in indents:
        item.trivia.indent = indent
    siblings = [item for k, item in table.value.body if k is not None and k.key != key and not _is_table(item)]
    if siblings:
        added = table.value.item(key)
        if isinstance(added, Item):
            added.trivia.indent = siblings[0].trivia.indent


def _is_table(item: Any) -> bool:
    return isinstance(item, Table | AoT)


def typos(document: Container | Table, path: str, table_path: str = "", runner: str = "") -> Iterator[str]:
    """Keys GitLab Runner does not know, in the tables whose keys it fixes."""
    known = KNOWN_KEYS.get(table_path)
    for key, value in document.items():
        if known is not None and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            where = f"[{table_path}]" if table_path else "the top level"
            if runner:
                where += f" of runner {runner!r}"
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            yield f"{path}: {where}: unknown key {key!r}, which GitLab Runner ignores{hint}"
        child = f"{table_path}.{key}" if table_path else key
        if isinstance(value, Table):
            yield from typos(value, path, child, runner)
        elif isinstance(value, AoT):
            for entry in value:
                yield from typos(entry, path, child, str(entry.get("name", runner)) if child == "runners" else runner)


def redact(text: str) -> str:
    """config.toml for a diff: runner tokens, cache keys and stored registry credentials hidden."""
    text = SECRET_LINE.sub(lambda m: f"{m[1]}{m[2]}{docker_config.REDACTED}{m[2]}", text)
    return SECRET_JSON.sub(lambda m: f"{m[1]}{docker_config.REDACTED}{m[2]}", text)
