"""Typed builders of the probe's facts (the TypedDicts of ecrkit/probe_facts.py) for the
fixtures tests write by hand; facts recorded from real hosts (tests/data/probe-*.json) are
loaded with `recorded`."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ecrkit.probe_facts import CommandResult, GetResult, PathState, ProbeResult, ServiceState, UserEntry

DATA = Path(__file__).parent / "data"
HOMES = {"root": "/root"}


def recorded(name: str) -> ProbeResult:
    """tests/data/probe-NAME.json: what the probe printed on one of `make run`'s hosts."""
    facts: ProbeResult = json.loads((DATA / f"probe-{name}.json").read_text())
    return facts


def user(name: str, *, home: str = "", group: str = "", uid: int = 0, gid: int = 0) -> UserEntry:
    return {
        "uid": uid,
        "gid": gid,
        "group": group or name,
        "home": home or HOMES.get(name, f"/home/{name}"),
        "shell": "/bin/sh",
    }


def file_state(*, mode: str = "0600", owner: str = "root", group: str = "root", sha256: str = "") -> PathState:
    state: PathState = {"exists": True, "type": "file", "mode": mode, "owner": owner, "group": group}
    if sha256:
        state["sha256"] = sha256
    return state


def directory_state(*, mode: str = "0755", owner: str = "root", group: str = "root") -> PathState:
    return {"exists": True, "type": "directory", "mode": mode, "owner": owner, "group": group}


MISSING: PathState = {"exists": False}


def encoded(data: str | bytes) -> str:
    """File content as the probe returns it (base64)."""
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def probe_result(
    *,
    users: Mapping[str, UserEntry | None] | None = None,
    paths: Mapping[str, PathState] | None = None,
    contents: Mapping[str, str | bytes | None] | None = None,
    commands: Sequence[CommandResult] = (),
    services: Mapping[str, ServiceState] | None = None,
) -> ProbeResult:
    """The probe's answer for these users, path states, file contents (given as text) and services."""
    return {
        "changed": False,
        "users": dict(users or {}),
        "paths": dict(paths or {}),
        "contents": {key: None if data is None else encoded(data) for key, data in (contents or {}).items()},
        "commands": list(commands),
        "consumers": [],
        "services": dict(services or {}),
    }


def service(
    *,
    active: bool = True,
    need_daemon_reload: bool = False,
    unit_env: Mapping[str, str] | None = None,
    process_env: Mapping[str, str] | None = None,
) -> ServiceState:
    """A systemd service as the probe's `services` sees it: running (with `process_env`) or
    inactive; `unit_env` is what its unit gives a new start."""
    return {
        "found": True,
        "active_state": "active" if active else "inactive",
        "need_daemon_reload": need_daemon_reload,
        "main_pid": 412 if active else 0,
        "unit_env": dict(unit_env or {}),
        "process_env": dict(process_env or {}) if active else None,
    }


NO_SERVICE: ServiceState = {"found": False, "error": "Unit gitlab-runner.service could not be found."}


def root_files(files: Mapping[str, str], mode: str = "0600") -> ProbeResult:
    """The probe's answer for these files, read, each owned by root with `mode`."""
    return probe_result(paths={path: file_state(mode=mode) for path in files}, contents=files)


def good_get(registry: str) -> GetResult:
    """A live `get` that returned a token."""
    return {"registry": registry, "rc": 0, "username": "AWS", "secret_length": 23, "log": ""}


def runner_options(registry: str, **changed: object) -> dict[str, object]:
    """gitlab_runner_ecr's variables without their prefix, as its converge task takes them (ecrkit.converge)."""
    return {
        "registries": [registry],
        "public": False,
        "creds_store": False,
        "config_path": "/etc/gitlab-runner/config.toml",
        "env_path": "/etc/systemd/system/gitlab-runner.service.d/ecrkit.conf",
        "container": False,
        "service": "gitlab-runner",
        "region": "",
        "cache_dir": "/var/lib/ecr-login",
        "helper_dir": "/usr/local/bin",
        "runners": [],
        "docker_volumes": False,
        "instance_profile": "",
        "hop_limit": 2,
        "userdata_path": "/etc/gitlab-runner/userdata.sh",
        "userdata_format": "shell",
        "userdata_version": "0.12.0",
        "userdata_release_base_url": "https://mirror.example.com",
        "userdata_url": "",
        "userdata_sha256": "",
        "autoscaler": {},
        **changed,
    }


def helper_options(**changed: Any) -> dict[str, Any]:
    """ecr_credential_helper's variables without their prefix, as its converge task takes them (ecrkit.converge)."""
    return {
        "install_method": "controller_file", "version": "0.12.0",
        "release_base_url": "https://releases.example.com", "url": "", "sha256": "", "src": "",
        "install_dir": "/usr/local/bin", "controller_cache": "/cache", "cache_dir": "/var/lib/ecr-login",
        "cache_owner": "root", "logrotate": True, "logrotate_extra_paths": [], **changed,
    }  # fmt: skip
