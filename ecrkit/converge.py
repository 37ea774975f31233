"""A role's whole converge as one task: the `ecrkit.ecr.converge` action (plugins/action/converge.py)
asks each role here what to probe, probes the host once, and asks what to change; then it writes
everything in one `ecrkit.ecr.files` call.

Every task costs each host a fork of ansible-playbook, its variables and its result, whether it
runs a module or not (bench/README.md), so a role that observes, decides and writes as one task
costs about what one module task costs. The decisions stay where they were (ecrkit.plans,
ecrkit.hoststate, ecrkit.helper); this module only says, per role, what goes in and what comes out.

Options are the role's variables without the role's prefix; errors name the variables.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from ecrkit import helper, hoststate, plans
from ecrkit.constants import HELPER_BINARY, LOGROTATE_PATH
from ecrkit.errors import InputError
from ecrkit.hoststate import FilesArguments
from ecrkit.probe_facts import CommandResult, ProbeResult
from ecrkit.renderers import aws_config, registries_conf
from ecrkit.settings import validate_absolute_path


class ProbeArgs(TypedDict, total=False):
    """The arguments of the ecrkit.ecr.probe module (its DOCUMENTATION says what each reads)."""

    users: list[str]
    paths: list[str]
    user_paths: list[str]
    read: list[str]
    commands: list[list[str]]
    services: list[str]


class Shipped(TypedDict):
    """A file of the controller's that the action copies to the host and the files module installs."""

    src: str  # on the controller
    path: str
    owner: str
    group: str
    mode: str
    fetch: str  # an s3:// URL to download into `src` first (verified against `sha256`), or ""
    sha256: str


class Redacted(TypedDict):
    """What a diff may show of a file that holds stored credentials."""

    path: str
    before: str
    after: str


class Run(TypedDict):
    """A command the role runs on the host after its writes (not in check mode): each is a change."""

    argv: list[str]
    what: str  # the command as the task's result and errors name it (argv may be a script)


class Changes(TypedDict):
    """What a role changes on one host, decided on the controller from one probe."""

    write: FilesArguments  # every directory and file that differs (files with `diff: false` hold secrets)
    ship: list[Shipped]  # controller files installed with the writes
    secrets: bool  # a file written holds stored credentials: the write is not logged on the host
    redacted: list[Redacted]  # the diffs shown for those files instead of their own
    then_probe: ProbeArgs | None  # asked after shipping (not in check mode), for `after`
    run: list[Run]  # run after the writes, whether or not anything is written; a failure fails the task
    pending: list[str]  # what the role's handlers must still do on the host, and why: the task reports a change
    facts: dict[str, Any]  # ansible_facts set on the host
    result: dict[str, Any]  # returned to the role as is (what its remaining tasks need)


def changes(**given: Any) -> Changes:
    """Changes with nothing to do, updated by `given`."""
    nothing: Changes = {
        "write": {"directories": [], "files": []},
        "ship": [],
        "secrets": False,
        "redacted": [],
        "then_probe": None,
        "run": [],
        "pending": [],
        "facts": {},
        "result": {},
    }
    return {**nothing, **given}  # type: ignore[typeddict-item]


# How many times the action probes and plans again when a file changed after the probe read it
# (GitLab Runner rewrites its own config.toml, e.g. refreshing a token) before it gives up.
REPLANS = 3


def as_read(write: FilesArguments, probe: ProbeResult) -> FilesArguments:
    """`write` with each file the probe saw given the digest of what it held then (`expected_sha256`,
    '' for no file), so that the files module replaces it only while it still holds what the plan
    was made from: never what another writer wrote since. A file the probe did not look at is
    planned whatever it holds, and written so."""
    paths = probe.get("paths") or {}

    def where(key: str) -> str:  # a key is the path, or <user>:<relative> whose state says the path
        return str(paths.get(key, {}).get("path") or key)

    seen: dict[str, str] = {}
    for key, state in paths.items():
        if state.get("exists") is False:
            seen[where(key)] = ""
        elif state.get("sha256"):
            seen[where(key)] = str(state["sha256"])
    for key, encoded in (probe.get("contents") or {}).items():  # what the plan merged: it wins
        seen[where(key)] = "" if encoded is None else hashlib.sha256(base64.b64decode(encoded)).hexdigest()
    files = [{**entry, "expected_sha256": seen[entry["path"]]} if entry["path"] in seen else entry
             for entry in write["files"]]  # fmt: skip
    return {"directories": write["directories"], "files": files}


@dataclass(frozen=True)
class Role:
    """What a role asks the host, what it changes given the answer, and which facts come from the
    answer to `then_probe`."""

    probe_args: Callable[[Mapping[str, Any]], ProbeArgs | None]
    plan: Callable[[ProbeResult, Mapping[str, Any]], Changes]
    options: Mapping[str, str]  # every option the role's task passes, by Ansible type: the action's argument spec
    after: Callable[[ProbeResult], dict[str, Any]] = lambda probe: {}

    def argument_spec(self) -> dict[str, dict[str, Any]]:
        """The options as an Ansible argument spec: each required, with its type."""
        return {name: {"type": kind, "required": True} for name, kind in self.options.items()}


# ecr_credential_helper ---------------------------------------------------------------------------


def _helper_probe(options: Mapping[str, Any]) -> ProbeArgs:
    path = helper.install_path(options["install_method"], options["install_dir"])
    cache_dir = options["cache_dir"]
    commands = [[path, *helper.VERSION_ARGS]]
    if options["install_method"] == "release":
        commands.append(["uname", "-m"])  # the release's architecture, as Ansible's ansible_architecture
    return {
        "users": [options["cache_owner"]] if cache_dir else [],
        "paths": [path, posixpath.dirname(path), cache_dir or "/", LOGROTATE_PATH],
        "commands": commands,
    }


def _helper_plan(probe: ProbeResult, options: Mapping[str, Any]) -> Changes:
    method = options["install_method"]
    commands = probe.get("commands") or []
    architecture = str(commands[1].get("stdout", "")).strip() if method == "release" and len(commands) > 1 else ""
    plan = helper.install_plan(
        method,
        architecture=architecture,
        install_dir=options["install_dir"],
        version=options["version"],
        release_base_url=options["release_base_url"],
        url=options["url"],
        sha256=options["sha256"],
        src=options["src"],
    )
    todo = hoststate.helper_changes(
        probe,
        plan,
        cache_dir=options["cache_dir"],
        cache_owner=options["cache_owner"],
        logrotate=options["logrotate"],
        logrotate_extra_paths=options["logrotate_extra_paths"],
    )
    path = str(plan["path"])
    facts = {"ecr_credential_helper_path": path, "ecr_credential_helper_installed_version": todo["version"]}
    s3 = bool(plan.get("s3"))
    if method == "controller_file" or s3:
        ship: list[Shipped] = []
        if todo["binary"]:
            digest = str(todo["sha256"])
            src = posixpath.join(options["controller_cache"], digest) if s3 else str(plan["src"])
            fetch = str(plan["url"]) if s3 else ""
            ship = [Shipped(src=src, path=path, owner="root", group="root", mode="0755", fetch=fetch, sha256=digest)]
        then_probe = _version_probe({"path": path}) if ship else None
        result = {"install": None, "on_host": False}
        return changes(write=todo["write"], ship=ship, then_probe=then_probe, facts=facts, result=result)
    # release, package and url over HTTP(S): the host downloads or installs it (the role's next tasks). `on_host`
    # is that as a bool, for the role's condition: a bare variable, without a Jinja test (a test loads every test
    # plugin in the worker that evaluates it, on every host).
    on_host = bool(todo["binary"])
    return changes(write=todo["write"], facts=facts, result={"install": plan if on_host else None, "on_host": on_host})


def _version_probe(options: Mapping[str, Any]) -> ProbeArgs:
    """Ask the helper at `path` its version (after an install)."""
    return {"commands": [[options["path"], *helper.VERSION_ARGS]]}


def _helper_after(probe: ProbeResult) -> dict[str, Any]:
    version = hoststate.installed_version(probe)
    if not version:
        said = [command.get("stderr") or command.get("stdout") for command in probe.get("commands") or []]
        raise ValueError(f"the installed {HELPER_BINARY} did not report a version: {said!r}")
    return {"ecr_credential_helper_installed_version": version}


# docker_auth_config and aws_sso_profile: users' files ---------------------------------------------


def _users_probe(directory: str, config: str) -> Callable[[Mapping[str, Any]], ProbeArgs]:
    def probe_args(options: Mapping[str, Any]) -> ProbeArgs:
        users = list(options["users"])
        return {"users": users, "user_paths": [directory, config], "read": [f"{user}:{config}" for user in users]}

    return probe_args


def _users_changes(plan: Mapping[str, Any]) -> Changes:
    """A users' files plan (hoststate.users_files_plan) as changes: a file written that holds
    stored credentials shows its redacted diff, where its renderer makes one."""
    redacted = [
        item["redacted"] for item in plan["files"] if item["secrets"] and item["write"] and item.get("redacted")
    ]
    return changes(write=plan["write"], secrets=plan["secrets"], redacted=redacted)


def _docker_auth_plan(probe: ProbeResult, options: Mapping[str, Any]) -> Changes:
    plan = plans.docker_auth_plan(probe, options)
    return {**_users_changes(plan), "result": {"rule": plan["rule"]}}


def _sso_plan(probe: ProbeResult, options: Mapping[str, Any]) -> Changes:
    form = options["form"]
    chosen = aws_config.form_for(options["helper_version"]) if form == "auto" else form
    inputs = {key: str(options[key]) for key in ("session", "start_url", "sso_region", "account_id", "role_name")}
    profile = aws_config.SsoProfile.build(
        **inputs,
        profile=options["name"],
        region=options["region"],
        form=chosen,
        registries=options["registries"],
        prefix="aws_sso_profile_",
    )
    files = hoststate.aws_config_files(probe, options["users"], profile)
    return {**_users_changes(hoststate.users_files_plan(files)), "result": {"form": chosen}}


# gitlab_runner_ecr: config.toml, the service's environment, the job hosts' userdata ----------------


# docker-autoscaler: the fleeting plugin the autoscaler keys name, installed by GitLab Runner itself on
# a manager that runs on the host (not in a container), after the writes that name it in config.toml.
FLEETING_VERSION = ["gitlab-runner", "--version"]


def _fleeting_plugin(options: Mapping[str, Any]) -> str:
    return "" if options.get("container") else str((options.get("autoscaler") or {}).get("plugin") or "")


def _runner_probe(options: Mapping[str, Any]) -> ProbeArgs:
    paths = [options["config_path"], options["env_path"]] + (
        [options["userdata_path"]] if options["userdata_path"] else []
    )
    service = options.get("service") or ""
    # What the service runs with, against what its drop-in gives a new start (hoststate.service_due).
    services = [service] if service and not options.get("container") else []
    asked: ProbeArgs = {"paths": paths, "read": paths, **({"services": services} if services else {})}
    plugin = _fleeting_plugin(options)
    if plugin:  # whether GitLab Runner can install it, and whether it was (_fleeting)
        asked["paths"] = [*paths, plans.fleeting_marker(options["config_path"], plugin)]
        asked["commands"] = [FLEETING_VERSION]
    return asked


def _fleeting(probe: ProbeResult, options: Mapping[str, Any]) -> tuple[list[Run], dict[str, str], list[str]]:
    """The fleeting plugin's install (ecrkit.plans.fleeting_install) unless its marker says it was
    made; the result's account of it (the command run, or why none); and a warning when GitLab
    Runner cannot install the plugin named (the user installs it by hand)."""
    plugin = _fleeting_plugin(options)
    if not plugin:
        reason = "no fleeting plugin named in gitlab_runner_ecr_autoscaler"
        if options.get("container"):
            reason = "the runner runs in a container (gitlab_runner_ecr_container): ecrkit installs no plugin there"
        return [], {"install": "", "reason": reason}, []
    version = next(iter(probe.get("commands") or []), CommandResult())
    # A gitlab-runner that did not run says why on stderr (such as no such file): the error names it.
    said = version.get("stdout") if version.get("rc") == 0 else version.get("stderr") or version.get("stdout")
    decided = plans.fleeting_install(str(said or ""), options["autoscaler"], options["config_path"])
    if not decided["argv"]:  # a runner too old
        return [], {"install": "", "reason": decided["reason"]}, [decided["reason"]]
    if (probe.get("paths") or {}).get(decided["marker"], {}).get("exists"):
        return [], {"install": "", "reason": f"{decided['reason']}: installed (marker {decided['marker']})"}, []
    command = str(decided["command"])
    return [Run(argv=decided["argv"], what=command)], {"install": command, "reason": decided["reason"]}, []


def _runner_plan(probe: ProbeResult, options: Mapping[str, Any]) -> Changes:
    """config.toml holds runner tokens: written without its own diff, shown redacted. A new
    drop-in gets its directory. The role's handler reloads systemd (`daemon_reload`) and restarts
    the service (`restart`) whenever the running service differs from its drop-in, whether this
    run wrote it or a killed run did (`pending`: the task reports a change). A fleeting plugin is
    installed after the writes, which may name it (`fleeting`); one GitLab Runner cannot install
    is a warning saying why."""
    plan = plans.runner_plan(probe, options)
    run, fleeting, unable = _fleeting(probe, options)
    root = {"owner": "root", "group": "root"}
    owners = {"service_env": root, "config_toml": {}, "userdata": root}  # config.toml keeps its owner
    written = {name: item for name, item in plan["files"].items() if item["write"]}
    files = [
        {**{key: item[key] for key in ("path", "content", "mode")}, **owners[name], "diff": name != "config_toml"}
        for name, item in written.items()
    ]
    env = written.get("service_env")
    container = bool(options.get("container"))
    drop_in = [{"path": posixpath.dirname(env["path"]), **root, "mode": "0755"}] if env and not container else []
    tokens = "config_toml" in written
    return changes(
        write={"directories": drop_in, "files": files},
        secrets=tokens,
        redacted=[plan["redacted"]] if tokens else [],
        run=run,
        pending=plan["why"] if plan["restart"] or plan["daemon_reload"] else [],
        # Keys GitLab Runner would ignore without a word, a plugin it cannot install: Ansible shows them as warnings.
        result={
            "restart": plan["restart"],
            "daemon_reload": plan["daemon_reload"],
            "rule": plan["rule"],
            "fleeting": fleeting,
            "warnings": [*plan["typos"], *unable],
        },
    )


# marathon_agent_ecr: docker.tar.gz, the agent's environment file, the cluster-wide --docker_config -----


def _marathon_probe(options: Mapping[str, Any]) -> ProbeArgs:
    texts = [options["env_file"]] + ([options["docker_config_path"]] if options["docker_config_path"] else [])
    return {"paths": [options["docker_tar_path"], *texts], "read": texts, "services": [options["service"]]}


def _marathon_plan(probe: ProbeResult, options: Mapping[str, Any]) -> Changes:
    """The archive is rendered here and written as bytes (a few hundred): no controller file to
    ship. The agent is restarted whenever it runs with other values than its environment file
    gives it, whether this run wrote the file or a killed run did (`pending`)."""
    plan = plans.marathon_agent_plan(probe, options)
    root = {"owner": "root", "group": "root"}
    files = []
    for name, item in plan["files"].items():
        if not item["write"]:
            continue
        content = (
            {"content_base64": base64.b64encode(item["data"]).decode("ascii"), "diff": False}
            if name == "archive"
            else {"content": item["content"]}
        )
        files.append({"path": item["path"], **content, "mode": item["mode"], **root})
    # Parents are created where missing, and left as they are otherwise.
    directories = [{"path": posixpath.dirname(entry["path"])} for entry in files]
    return changes(
        write={"directories": directories, "files": files},
        pending=plan["why"] if plan["restart"] or plan["daemon_reload"] else [],
        result={"restart": plan["restart"], "daemon_reload": plan["daemon_reload"], "rule": plan["rule"]},
    )


# ecr_mirror: the mirror config, ecrkit's own files, the service and timer ----------------------------

MIRROR_HEADER = "# Managed by Ansible (role ecr_mirror): changes made here are overwritten."


def _mirror_probe(options: Mapping[str, Any]) -> ProbeArgs:
    from ecrkit.renderers import mirror_service  # noqa: PLC0415 - the mirror and urllib3, only for this role

    units = mirror_service.unit_paths(str(options["unit"]))
    return {"paths": list(units.values()), "read": list(units.values()), "services": list(units)}


def _mirror_plan(probe: ProbeResult, options: Mapping[str, Any]) -> Changes:
    """Every file in one write, which compares each with the host (ecrkit's own files go as bytes,
    without a diff). systemd reloads whenever a unit on disk is not what it loaded, this run's write
    or a killed run's (`pending`); the service is a oneshot its timer starts: nothing to restart."""
    from ecrkit.renderers import mirror_service  # noqa: PLC0415 - the mirror and urllib3, only for this role

    plan = mirror_service.plan(options["config"], mirror_service.options_of(options), header=MIRROR_HEADER)
    root = {"owner": "root", "group": "root", "mode": "0644"}
    units = {plan["service_path"]: plan["service"], plan["timer_path"]: plan["timer"]}
    package = [
        {"path": item["dest"], "content_base64": base64.b64encode(Path(item["src"]).read_bytes()).decode(),
         "diff": False, **root}
        for item in plan["files"]
    ]  # fmt: skip
    config_path = str(options["config_path"])
    files = [{"path": config_path, "content": plan["config"], **root}, *package]
    files += [{"path": path, "content": content, **root} for path, content in units.items()]
    directories = [{"path": path, "owner": "root", "group": "root", "mode": "0755"}
                   for path in [*plan["directories"], posixpath.dirname(config_path)]]  # fmt: skip
    due = [
        hoststate.service_due(name, (probe.get("services") or {}).get(name), {}, unit_file=True,
                              written=hoststate.file_differs(probe, path, units[path], mode="0644"))
        for name, path in mirror_service.unit_paths(str(options["unit"])).items()
    ]  # fmt: skip
    return changes(
        write={"directories": directories, "files": files},
        pending=[why for item in due for why in item["why"]],
        result={
            "daemon_reload": any(item["daemon_reload"] for item in due),
            "user": plan["user"],
            "home": plan["home"],
        },
    )


# registries_conf: nothing to read; the files module compares --------------------------------------


def _registries_conf_plan(probe: ProbeResult, options: Mapping[str, Any]) -> Changes:
    sources = ("registries_conf_registry", "registries_conf_cache_prefix", "registries_conf_upstream")
    content = registries_conf.render(options["registry"], options["cache_prefix"], options["upstream"], sources=sources)
    path = validate_absolute_path(options["path"], "registries_conf_path")
    root = {"owner": "root", "group": "root"}
    write: FilesArguments = {
        "directories": [{"path": posixpath.dirname(path), **root, "mode": "0755"}],
        "files": [{"path": path, "content": content, **root, "mode": "0644"}],
    }
    return changes(write=write)


RULE = {"registries": "list", "public": "bool", "creds_store": "bool"}
ROLES: dict[str, Role] = {
    "ecr_credential_helper": Role(_helper_probe, _helper_plan, after=_helper_after, options={
        "install_method": "str", "version": "str", "release_base_url": "str", "url": "str", "sha256": "str",
        "src": "str", "install_dir": "str", "controller_cache": "str", "cache_dir": "str", "cache_owner": "str",
        "logrotate": "bool", "logrotate_extra_paths": "list"}),
    # After the role's host-side install (release, package, url): the version the binary reports.
    "ecr_credential_helper_version": Role(
        _version_probe, lambda probe, options: changes(facts=_helper_after(probe)), options={"path": "str"}
    ),
    "docker_auth_config": Role(_users_probe(hoststate.DIRECTORY, hoststate.CONFIG), _docker_auth_plan, options={
        **RULE, "users": "list", "state": "str", "replace_invalid": "bool"}),
    "aws_sso_profile": Role(_users_probe(hoststate.AWS_DIRECTORY, hoststate.AWS_CONFIG), _sso_plan, options={
        "users": "list", "name": "str", "session": "str", "start_url": "str", "sso_region": "str",
        "account_id": "str", "role_name": "str", "region": "str", "registries": "list", "form": "str",
        "helper_version": "str"}),
    "registries_conf": Role(lambda options: None, _registries_conf_plan, options={
        "registry": "str", "cache_prefix": "str", "upstream": "str", "path": "str"}),
    "gitlab_runner_ecr": Role(_runner_probe, _runner_plan, options={
        **RULE, "config_path": "str", "env_path": "str", "container": "bool", "service": "str", "region": "str",
        "cache_dir": "str", "helper_dir": "str", "runners": "list", "docker_volumes": "bool",
        "instance_profile": "str", "hop_limit": "int", "userdata_path": "str", "userdata_format": "str",
        "userdata_version": "str", "userdata_release_base_url": "str", "userdata_url": "str",
        "userdata_sha256": "str", "autoscaler": "dict"}),
    "marathon_agent_ecr": Role(_marathon_probe, _marathon_plan, options={
        **RULE, "region": "str", "cache_dir": "str", "docker_tar_path": "str", "env_file": "str", "service": "str",
        "docker_config_path": "str"}),
    "ecr_mirror": Role(_mirror_probe, _mirror_plan, options={
        "config": "dict", "unit": "str", "schedule": "str", "randomized_delay": "str", "jobs": "int", "region": "str",
        "environment": "dict", "install_dir": "str", "config_path": "str"}),
}  # fmt: skip


def role(name: str) -> Role:
    if name not in ROLES:
        raise InputError("role", name, f"one of {', '.join(sorted(ROLES))}")
    return ROLES[name]
