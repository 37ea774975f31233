"""Decide, from what the probe saw (the probe (plugins/modules/probe.py)), which writes a converge needs.

A converge asks the host once, then writes only what differs from what the role would make
(the ecrkit.ecr.files module: atomic, check and diff mode), through ecrkit.converge. On an
idempotent run that leaves one round trip per role instead of one per file.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from ecrkit.constants import LOGROTATE_PATH
from ecrkit.errors import FileFormatError, InputError
from ecrkit.files import decode
from ecrkit.helper import expected_sha256, parse_version
from ecrkit.probe_facts import CommandResult, PathState, ProbeResult, ServiceState, UserEntry
from ecrkit.renderers import aws_config, docker_config, runner_config, service_env
from ecrkit.renderers.aws_config import SsoProfile
from ecrkit.renderers.docker_config import State
from ecrkit.renderers.logrotate import render as render_logrotate
from ecrkit.settings import CredentialRule

# What the docker_auth_config role asks the probe about, relative to each user's home.
DIRECTORY = ".docker"
CONFIG = ".docker/config.json"
# What the aws_sso_profile role asks about.
AWS_DIRECTORY = ".aws"
AWS_CONFIG = ".aws/config"


class FilesArguments(TypedDict):
    """The arguments of the ecrkit.ecr.files module: what a role writes in one round trip."""

    directories: list[dict[str, Any]]
    files: list[dict[str, Any]]


def differs(
    state: PathState | None,
    *,
    kind: str = "file",
    mode: str | None = None,
    owner: str | None = None,
    group: str | None = None,
    sha256: str | None = None,
) -> bool:
    """True unless the probed path already is exactly what the write would make.

    A None expectation is not checked; a path the probe could not read always differs.
    """
    if not state or state.get("exists") is not True or state.get("type") != kind:
        return True
    expected = {"mode": mode, "owner": owner, "group": group, "sha256": sha256}
    return any(value is not None and state.get(key) != value for key, value in expected.items())


def version_from(command: CommandResult | None) -> str:
    """The helper's version from a run of `<helper> -v` (or `version`), or '' if it did not run."""
    if not command or command.get("rc") != 0:
        return ""
    try:
        return parse_version(str(command.get("stdout", "")))
    except ValueError:
        return ""


def installed_version(probe: ProbeResult) -> str:
    """The helper's version from the probe's run of `<helper> -v` (the one command the
    ecr_credential_helper role asks it to run), or '' if it did not run."""
    commands = probe.get("commands") or []
    return version_from(commands[0] if commands else None)


def helper_changes(
    probe: ProbeResult,
    plan: Mapping[str, Any],
    *,
    cache_dir: str,
    cache_owner: str,
    logrotate: bool,
    logrotate_extra_paths: Iterable[str] = (),
) -> dict[str, Any]:
    """What the ecr_credential_helper role must write on this host, given the probe."""
    paths = probe["paths"]
    owner = probe["users"].get(cache_owner) if cache_dir else {}
    if owner is None:
        raise InputError("ecr_credential_helper_cache_owner", cache_owner, "an existing user (create it first)")
    group = str(owner.get("group", ""))
    expected = expected_sha256(plan)
    rule = render_logrotate(cache_dir, cache_owner, group, logrotate_extra_paths) if cache_dir and logrotate else ""
    install_dir = posixpath.dirname(plan["path"])
    todo = {
        "install_dir": plan["method"] != "package" and differs(paths.get(install_dir), kind="directory"),
        # Without a known checksum (release, package) the install tasks decide for themselves.
        "binary": expected is None or differs(paths.get(plan["path"]), mode="0755", owner="root", sha256=expected),
        "cache_dir": bool(cache_dir)
        and differs(paths.get(cache_dir), kind="directory", mode="0700", owner=cache_owner),
        "logrotate_content": rule,
        "logrotate": bool(rule)
        and differs(
            paths.get(LOGROTATE_PATH),
            mode="0644",
            owner="root",
            group="root",
            sha256=hashlib.sha256(rule.encode()).hexdigest(),
        ),
        "version": installed_version(probe),
        "sha256": expected,  # None where the install method's own tool checks it (release, package)
    }
    directories = []
    if todo["install_dir"]:
        directories.append({"path": install_dir, "owner": "root", "group": "root", "mode": "0755"})
    if todo["cache_dir"]:
        directories.append({"path": cache_dir, "owner": cache_owner, "mode": "0700"})
    files = [{"path": LOGROTATE_PATH, "content": rule, "owner": "root", "group": "root", "mode": "0644"}]
    return {**todo, "write": {"directories": directories, "files": files if todo["logrotate"] else []}}


def users_files_plan(files: list[dict[str, Any]], *, backup: bool = False) -> dict[str, Any]:
    """Users' files planned by docker_config_files or aws_config_files, with `write`, the
    ecrkit.ecr.files module's arguments for each directory and file that differs (private to
    its user; a file that holds stored credentials without its own diff), and `secrets`, whether
    any file written holds them (the write is then not logged on the host)."""
    directories: list[dict[str, Any]] = []
    written: list[dict[str, Any]] = []
    for item in files:
        owner = {"owner": item["user"], "group": item["group"]}
        if item["fix_dir"]:
            directories.append({"path": item["dir"], **owner, "mode": "0700"})
        if item["write"]:
            text = {"path": item["path"], "content": item["content"]}
            written.append({**text, **owner, "mode": "0600", "backup": backup, "diff": not item["secrets"]})
    write: FilesArguments = {"directories": directories, "files": written}
    return {"files": files, "write": write, "secrets": any(item["secrets"] and item["write"] for item in files)}


def docker_config_files(
    probe: ProbeResult,
    users: Iterable[str],
    rule: CredentialRule,
    state: State,
    replace_invalid: bool = False,
) -> list[dict[str, Any]]:
    """Every user's config.json rendered before any is written, with what must be written.

    One file that cannot be parsed stops them all (FileFormatError), so no user's file changes.
    """
    _require_users(probe, users, "docker_auth_config_users")
    files: list[dict[str, Any]] = []
    for user in users:
        entry = _entry(probe, user)
        path = posixpath.join(entry["home"], CONFIG)
        before = _text(probe, f"{user}:{CONFIG}", path)
        item: dict[str, Any] = {"user": user, "group": entry["group"], "path": path, "dir": posixpath.dirname(path)}
        if before is None and state == "absent":
            files.append({**item, "content": None, "write": False, "fix_dir": False, "secrets": False})
            continue
        after = docker_config.render(before, rule, path=path, state=state, replace_invalid=replace_invalid)
        present = state == "present"
        wrong_file = differs(probe["paths"].get(f"{user}:{CONFIG}"), mode="0600", owner=user, group=entry["group"])
        files.append(
            {
                **item,
                "content": after,
                "write": after != before or (present and wrong_file),
                "fix_dir": present
                and differs(probe["paths"].get(f"{user}:{DIRECTORY}"), kind="directory", mode="0700", owner=user),
                "secrets": docker_config.has_secrets(docker_config.parse(after, path)),
                # What a diff may show: looping over the entries above would echo the content.
                "redacted": {
                    "path": path,
                    "before": docker_config.redact(before),
                    "after": docker_config.redact(after),
                },
            }
        )
    return files


def aws_config_files(probe: ProbeResult, users: Iterable[str], profile: SsoProfile) -> list[dict[str, Any]]:
    """Every user's ~/.aws/config with the SSO profile merged in, rendered before any is written."""
    _require_users(probe, users, "aws_sso_profile_users")
    files = []
    for user in users:
        entry = _entry(probe, user)
        path = posixpath.join(entry["home"], AWS_CONFIG)
        before = _text(probe, f"{user}:{AWS_CONFIG}", path)
        after = aws_config.merge(before, profile, path)
        wrong_file = differs(probe["paths"].get(f"{user}:{AWS_CONFIG}"), mode="0600", owner=user, group=entry["group"])
        wrong_dir = differs(probe["paths"].get(f"{user}:{AWS_DIRECTORY}"), kind="directory", mode="0700", owner=user)
        files.append(
            {
                "user": user,
                "group": entry["group"],
                "path": path,
                "dir": posixpath.dirname(path),
                "content": after,
                "write": after != before or wrong_file,
                "fix_dir": wrong_dir,
                "secrets": aws_config.has_secrets(after),
            }
        )
    return files


def read_facts(texts: Mapping[str, str]) -> ProbeResult:
    """The probe's answer for files read here, not on a host (the CLI's --config and the like);
    their states are unknown, so every planned file says it must be written."""
    contents: dict[str, str | None] = {path: base64.b64encode(text.encode()).decode() for path, text in texts.items()}
    return {"users": {}, "paths": {}, "contents": contents, "commands": [], "consumers": [], "services": {}}


def _require_users(probe: ProbeResult, users: Iterable[str], variable: str) -> None:
    missing = [user for user in users if probe["users"].get(user) is None]
    if missing:
        raise InputError(variable, missing, "existing user names (create them first)")


def _entry(probe: ProbeResult, user: str) -> UserEntry:
    """The passwd entry of a user that _require_users found."""
    entry = probe["users"][user]
    assert entry is not None, user
    return entry


def _text(probe: ProbeResult, key: str, path: str | None = None) -> str | None:
    """What the probe read under `key` (a path, or "<user>:<relative>"), or None if missing."""
    path = path or key
    encoded = probe["contents"].get(key)
    if encoded is None:
        return None
    return decode(base64.b64decode(encoded), path)


class PlannedFile(TypedDict):
    """A file a role writes: its content, its mode (owner root), and whether the host differs."""

    path: str
    content: str
    mode: str
    write: bool


def runner_files(
    probe: ProbeResult,
    *,
    config_path: str,
    settings: runner_config.RunnerSettings,
    env: dict[str, str],
    env_path: str,
    env_form: str,
    userdata_path: str = "",
    userdata_text: str = "",
    service: str = "",
) -> dict[str, Any]:
    """GitLab Runner's files, all rendered before any is written, by name: `service_env` (a
    systemd drop-in, or an env file for a runner in a container; none without `env_path`),
    `config_toml`, and `userdata` (only with `userdata_path`); and what the drop-in's `service`
    needs (service_due: `daemon_reload`, `restart`, `why`).

    config.toml holds runner tokens: its entry carries a redacted before/after for diffs.
    """
    before = _text(probe, config_path)
    if before is None:
        raise FileFormatError(config_path, "does not exist; register the runner first (gitlab-runner register)")
    merged = runner_config.merge(before, settings, path=config_path)
    wanted: dict[str, tuple[str, str, str]] = {}
    if env_path:
        env_text = service_env.drop_in(env) if env_form == "drop-in" else service_env.env_file(env)
        wanted["service_env"] = (env_path, env_text, "0644")
    wanted["config_toml"] = (config_path, merged.text, "0600")
    if userdata_path:
        wanted["userdata"] = (userdata_path, userdata_text, "0600")
    files: dict[str, PlannedFile] = {}
    for name, (path, content, mode) in wanted.items():
        old = before if path == config_path else _text(probe, path)
        changed = content != old or differs(probe["paths"].get(path), mode=mode, owner="root")
        files[name] = {"path": path, "content": content, "mode": mode, "write": changed}
    due: ServiceDue = {"daemon_reload": False, "restart": False, "why": []}
    if env_form == "drop-in" and "service_env" in files:
        state = (probe.get("services") or {}).get(service) if service else None
        due = service_due(service, state, env, written=files["service_env"]["write"], unit_file=True)
    return {
        "files": files,
        "typos": merged.typos,
        **due,
        "redacted": {
            "path": config_path,
            "before": runner_config.redact(before),
            "after": runner_config.redact(merged.text),
        },
    }


def file_differs(probe: ProbeResult, path: str, content: str, *, mode: str) -> bool:
    """Whether the file the probe read at `path` is not `content`, mode `mode`, owned by root."""
    return content != _text(probe, path) or differs(probe["paths"].get(path), mode=mode, owner="root", group="root")


def marathon_files(
    probe: ProbeResult,
    *,
    archive_path: str,
    archive: bytes,
    env_file: str,
    env: dict[str, str],
    docker_config_path: str = "",
    docker_config: str = "",
    service: str = "",
) -> dict[str, Any]:
    """A Mesos agent's files, all rendered before any is written, by name: `archive` (the
    docker.tar.gz tasks fetch, compared by its sha256), `env_file` (ecrkit's keys merged into the
    agent's EnvironmentFile), `docker_config` (only with its path); each 0644 root, with whether
    the host differs; and what the agent needs to run with them (service_due)."""
    files: dict[str, dict[str, Any]] = {}
    digest = hashlib.sha256(archive).hexdigest()
    stale = differs(probe["paths"].get(archive_path), mode="0644", owner="root", group="root", sha256=digest)
    files["archive"] = {"path": archive_path, "data": archive, "mode": "0644", "write": stale}
    texts = {"env_file": (env_file, service_env.merge_env_file(_text(probe, env_file), env))}
    if docker_config_path:
        texts["docker_config"] = (docker_config_path, docker_config)
    for name, (path, content) in texts.items():
        changed = content != _text(probe, path) or differs(
            probe["paths"].get(path), mode="0644", owner="root", group="root"
        )
        files[name] = {"path": path, "content": content, "mode": "0644", "write": changed}
    state_of = (probe.get("services") or {}).get(service) if service else None
    due = service_due(service, state_of, env, written=files["env_file"]["write"], unit_file=False)
    return {"files": files, **due}


# The keys ecrkit writes into a service's environment (ecrkit.renderers.service_env.environment).
MANAGED_ENV = ("AWS_REGION", "AWS_ECR_CACHE_DIR", "PATH")


class ServiceDue(TypedDict):
    """What a service needs so that its running process has what is on disk."""

    daemon_reload: bool
    restart: bool
    why: list[str]  # each reason, for the task's output


def service_due(
    unit: str, state: ServiceState | None, env: Mapping[str, str], *, written: bool, unit_file: bool
) -> ServiceDue:
    """Judged from the running service, not only from this run's writes, so that a restart a
    killed run had notified is not lost: `unit` is reloaded while systemd says its files changed
    since it loaded them (NeedDaemonReload), and restarted while its process runs with other
    values of ecrkit's keys (MANAGED_ENV) than a new start would get. A stopped service gets the
    new values when it starts: it is not started.

    `env` is what ecrkit's file gives it once this run wrote it (`written`); `unit_file`: that file
    is a drop-in, read by systemd at a daemon-reload, not an EnvironmentFile read at each start.
    What a new start gets is `env` while that file is new to systemd, else the probed unit's own
    environment (another drop-in may override ours: no restart for ever). Without `state` (the
    service was not probed) or its process's environment (not readable), a write restarts it.
    """
    if state is None:
        return {"daemon_reload": written and unit_file, "restart": written, "why": []}
    if not state.get("found"):
        why = [f"{unit}: {state.get('error') or 'not found'}; nothing to restart"] if written else []
        return {"daemon_reload": written and unit_file, "restart": False, "why": why}
    pending = bool(state.get("need_daemon_reload"))
    ours = unit_file and (written or pending)  # systemd has not loaded our drop-in yet
    new = dict(env) if written or ours else dict(state.get("unit_env") or {})
    process = state.get("process_env")
    running = int(state.get("main_pid") or 0) > 0
    stale: list[str] = []
    if not running or process is None:
        restart = running and (written or ours)
    else:
        stale = [key for key in MANAGED_ENV if key in new and process.get(key) != new[key]]
        restart = bool(stale)
    # A restart with unit files changed on disk would start the unit as systemd loaded it.
    reload = ours or (restart and pending)
    why = [f"{unit}: systemd has not loaded its changed unit files (NeedDaemonReload)"] if reload and pending else []
    had = process or {}
    why += [f"{unit} runs with {key}={had.get(key, '(unset)')}, a new start gets {new[key]}" for key in stale]
    return {"daemon_reload": reload, "restart": restart, "why": why}
