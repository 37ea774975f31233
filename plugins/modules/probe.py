#!/usr/bin/python
"""Observe a host in one round trip and return JSON facts; change nothing. Standard library only
(Python 3.9 or newer). DOCUMENTATION below says what it takes and returns.

Three ways to run it (see main()):
- as the Ansible module `ecrkit.ecr.probe`: AnsibleModule reads the task's arguments;
- with its arguments embedded in place of the marker below, as `ecrkit validate` sends it over
  SSH to hosts that may have no Ansible;
- as a script: `python3 ecrkit_probe.py < args.json` (the shebang is the one Ansible rewrites
  to the host's discovered interpreter).

Secrets never leave the host: environments are reported by name, with values only for the
keys in SHOWN_ENV; a live `get` reports the username and the secret's length; config.json, a
runner's DOCKER_AUTH_CONFIG and cached SSO tokens are summarised, never returned.
"""

# ruff: noqa: E402 - an Ansible module puts DOCUMENTATION, EXAMPLES and RETURN before its imports
# `_` names the unused parts of partition() (ansible-test's pylint reserves it for gettext, which the probe never uses)
# pylint: disable=disallowed-name
from __future__ import annotations

DOCUMENTATION = r"""
module: probe
short_description: Observe a host in one round trip and return JSON facts; change nothing
version_added: 0.1.0
author: ecrkit maintainers (@ecrkit)
description:
  - Reports users, file states and contents, command results and, for each process that runs
    the Amazon ECR credential helper, what C(ecrkit validate) judges, in one call.
  - The roles of this collection probe a host once and write only what differs.
  - Standard library only (Python 3.9 or newer), so it also runs as a plain script on hosts
    without Ansible (C(python3 ecrkit_probe.py < args.json)); C(ecrkit validate) sends it over SSH.
  - Secrets never leave the host. Environments are reported by name, with values only for a
    fixed list of keys (PATH, HOME, AWS_REGION, AWS_PROFILE, ...); a live C(get) reports the
    username and the secret's length; C(config.json), a runner's C(DOCKER_AUTH_CONFIG) and
    cached SSO tokens are summarised, never returned.
options:
  users:
    description: User names; each gets its passwd entry (with the primary group's name) or V(null) if missing.
    type: list
    elements: str
  paths:
    description:
      - Absolute paths; each gets its type, mode, owner, group and, for files, sha256.
      - Links are followed. A missing path has C(exists=false).
    type: list
    elements: str
  user_paths:
    description:
      - Paths relative to each user's home in O(users), probed like O(paths).
      - Their key in RV(paths) is C(<user>:<relative path>).
    type: list
    elements: str
  read:
    description:
      - Files whose content is returned base64-encoded in RV(contents).
      - Absolute paths, or C(<user>:<relative path>) keys of O(user_paths).
    type: list
    elements: str
  commands:
    description: Argument vectors to run (not through a shell), each with a 30 second timeout.
    type: list
    elements: list
  consumers:
    description:
      - Processes that run the credential helper, judged as C(ecrkit validate) judges them.
      - 'V({"service": UNIT}) for a systemd service; with C(runner_config) (a path, or V("")
        to find it) for a GitLab Runner manager.'
      - 'V({"user": NAME}) for a user''s login sessions.'
      - 'V({"task": AGENT_UNIT, "archive": PATH, "task_user": NAME}) for a Mesos task that
        fetches a C(docker.tar.gz).'
      - Consumers are observed at the same time, and so are a consumer's live C(get)s (after its
        C(list)). A live C(get) or C(list) that has not finished in time is stopped, and its
        C(timed_out) gives the seconds it had.
    type: list
    elements: dict
  registries:
    description: Registries for a live C(get) as each consumer; its own C(credHelpers) otherwise.
    type: list
    elements: str
  services:
    description:
      - systemd units whose running process is compared with what the unit gives a new start,
        so that a converge restarts a service that still runs with an old environment.
    type: list
    elements: str
  imds:
    description:
      - Ask the instance metadata service at 169.254.169.254 from the host (IMDSv2 token, the
        instance role, whether IMDSv1 answers) and, with C(job_command), from where a job runs.
      - C(job_command) is the start of a command that runs in the job network, as a job would
        (for example C(docker run --rm --pull=never --entrypoint= IMAGE), an image with C(sh) and
        C(curl)); the probe appends C(sh -c SCRIPT). The credentials themselves are never fetched, only the role's name.
    type: dict
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The probe only reads, so it runs in check mode as in a normal run.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - Python 3.9 or newer on the host (the standard library only).
notes:
  - A live C(get) may let the helper refresh its own token cache; the probe writes nothing else
    (a Mesos task's archive is unpacked into a temporary directory that is removed).
seealso:
  - name: Amazon ECR Docker Credential Helper
    description: The helper whose consumers the probe observes.
    link: https://github.com/awslabs/amazon-ecr-credential-helper
"""

EXAMPLES = r"""
- name: Observe the users and their Docker configuration
  ecrkit.ecr.probe:
    users: [gitlab-runner, deploy]
    user_paths: [.docker, .docker/config.json]
    read: ["gitlab-runner:.docker/config.json", "deploy:.docker/config.json"]
  check_mode: false  # only reads
  register: probe
  no_log: true  # config.json may hold stored registry credentials

- name: The helper's version and the state of its binary
  ecrkit.ecr.probe:
    paths: [/usr/local/bin/docker-credential-ecr-login]
    commands:
      - [/usr/local/bin/docker-credential-ecr-login, -v]
  register: helper

- name: What the GitLab Runner service and a user get from the helper
  ecrkit.ecr.probe:
    consumers:
      - {service: gitlab-runner, runner_config: ""}
      - {user: deploy}
    registries: [123456789012.dkr.ecr.eu-west-1.amazonaws.com]
  register: consumers
"""

RETURN = r"""
changed:
  description: Always V(false); the probe changes nothing.
  returned: always
  type: bool
  sample: false
time:
  description: The host's clock (seconds since the epoch), to tell how recent its log lines are.
  returned: always
  type: float
  sample: 1767225600.0
users:
  description: Each of O(users) with its passwd entry, or V(null) if the user does not exist.
  returned: always
  type: dict
  sample: {"deploy": {"uid": 1001, "gid": 1001, "group": "deploy", "home": "/home/deploy", "shell": "/bin/bash"}}
paths:
  description:
    - Each of O(paths) and O(user_paths) (key C(<user>:<relative path>)) with C(path) and C(exists);
      when it exists also C(type) (V(file), V(directory) or V(other)), C(mode), C(owner), C(group)
      and, for files, C(sha256).
    - C(exists) is V(null) with an C(error) when the path cannot be examined.
  returned: always
  type: dict
  sample:
    /usr/local/bin/docker-credential-ecr-login:
      path: /usr/local/bin/docker-credential-ecr-login
      exists: true
      type: file
      mode: "0755"
      owner: root
      group: root
      sha256: 0f3e0e1b2f7c9d5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a
contents:
  description: Each of O(read) with its content base64-encoded, or V(null) if the file does not exist.
  returned: always
  type: dict
  sample: {"deploy:.docker/config.json": "eyJjcmVkc1N0b3JlIjogImVjci1sb2dpbiJ9"}
commands:
  description: Each of O(commands) with C(argv), C(rc) (V(null) if it could not run), C(stdout) and C(stderr).
  returned: always
  type: list
  elements: dict
  sample: [{"argv": ["docker-credential-ecr-login", "-v"], "rc": 0, "stdout": "0.9.1\n", "stderr": ""}]
consumers:
  description:
    - Each of O(consumers) as observed, for C(ecrkit validate)'s judge (C(ecrkit.ecr.findings)).
    - C(kind), C(name), C(found) and, when found, its user, where its environment comes from,
      the helper on its PATH, its config.json summary, cache directory, log and one live C(get)
      per registry.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "user", "name": "deploy", "found": true, "user": "deploy", "env_source": "login"}]
services:
  description:
    - Each of O(services) with C(found) and, when found, C(active_state), C(need_daemon_reload)
      (its unit files changed since systemd loaded them), C(main_pid), C(unit_env) (what its own
      C(Environment=) as loaded and C(EnvironmentFile=) as on disk give a new start) and
      C(process_env) (what its running process started with, V(null) if none runs).
    - Environments hold only the keys whose values the probe shows (PATH, AWS_REGION, ...).
  returned: always
  type: dict
  sample:
    gitlab-runner:
      found: true
      active_state: active
      need_daemon_reload: true
      main_pid: 412
      unit_env: {"AWS_REGION": "eu-west-1"}
      process_env: {"AWS_REGION": "us-east-1"}
imds:
  description:
    - With O(imds), what the host and a job found at 169.254.169.254; C(answered) false when
      nothing answered in time, C(role) "" when no role is attached.
  returned: when O(imds) is given
  type: dict
  sample:
    answered: true
    token: true
    role: ci-host
    v1_allowed: false
    job: {"ran": true, "token": false, "role": "", "v1_role": "", "error": ""}
"""

import base64
import configparser
import grp
import hashlib
import json
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

# `ecrkit validate` replaces this marker with the probe's arguments as JSON (a raw string keeps
# its escapes; JSON cannot contain three unescaped quotes in a row). Otherwise it stays: Ansible
# runs the probe as a module through AnsiballZ, since it imports AnsibleModule.
ANSIBLE_ARGUMENTS = r"""<<INCLUDE_ANSIBLE_MODULE_JSON_ARGS>>"""
MARKER_START = "<" + "<INCLUDE_ANSIBLE"

try:  # Ansible ships module_utils with the module; hosts without Ansible run the probe as a script
    from ansible.module_utils import basic
    from ansible.module_utils.basic import AnsibleModule
except ImportError:
    basic = AnsibleModule = None

# DOCUMENTATION's options: every list the probe takes (AnsibleModule checks them under Ansible).
ARGUMENT_SPEC = {
    "users": {"type": "list", "elements": "str"},
    "paths": {"type": "list", "elements": "str"},
    "user_paths": {"type": "list", "elements": "str"},
    "read": {"type": "list", "elements": "str"},
    "commands": {"type": "list", "elements": "list"},
    "consumers": {"type": "list", "elements": "dict"},
    "registries": {"type": "list", "elements": "str"},
    "services": {"type": "list", "elements": "str"},
    "imds": {"type": "dict"},
}
HELPER = "docker-credential-ecr-login"
SHOWN_ENV = (
    "PATH", "HOME", "USER", "DOCKER_CONFIG", "DOCKER_HOST", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ECR_CACHE_DIR", "AWS_ECR_DISABLE_CACHE",
    "AWS_ECR_IGNORE_CREDS_STORAGE", "AWS_CA_BUNDLE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED", "AWS_USE_FIPS_ENDPOINT",
)  # fmt: skip
LOG_TAIL = 64 * 1024  # bytes of the helper's log: its recent lines, never the whole history
# Seconds a live `get` or `list` may take before the helper is stopped and ECR is named as not
# answering (a helper retries a hung TLS handshake: 0.6.0 takes about 33 s). A host's consumers,
# and a consumer's gets, run at the same time, so a host's live calls take at most twice this
# (its lists, then its gets), whatever the number of registries and consumers.
LIVE_TIMEOUT = 12
# The amazonec2 MachineOptions the validator judges; others (keys, secrets) are never reported.
MACHINE_OPTIONS = (
    "amazonec2-iam-instance-profile", "amazonec2-userdata", "amazonec2-metadata-token",
    "amazonec2-metadata-token-response-hop-limit",
)  # fmt: skip


# What the probe returns, as types: ecrkit/probe_facts.py, the contract with the package's planners and
# judge. Checked by mypy, never imported on hosts (annotations stay strings: `from __future__ import annotations`).
if TYPE_CHECKING:
    from ecrkit.probe_facts import (
        ArchiveFacts,
        CommandResult,
        ConfigSummary,
        ConsumerFacts,
        GetResult,
        ImdsFacts,
        JobImdsFacts,
        ListResult,
        PathState,
        ProbeResult,
        RunnerConfigFacts,
        RunnerEntry,
        ServiceState,
        ShownEnv,
        SsoFacts,
        UserEntry,
    )


def user_entry(name: str) -> UserEntry | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return {
        "uid": entry.pw_uid,
        "gid": entry.pw_gid,
        "group": group_name(entry.pw_gid),
        "home": entry.pw_dir,
        "shell": entry.pw_shell,
    }


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def path_state(path: str) -> PathState:
    try:
        info = os.stat(path)  # follows links: what matters is what a caller of the path gets
    except FileNotFoundError:
        return {"path": path, "exists": False}
    except OSError as exc:
        return {"path": path, "exists": None, "error": exc.strerror}
    kinds = {stat.S_IFREG: "file", stat.S_IFDIR: "directory"}
    state: PathState = {
        "path": path,
        "exists": True,
        "type": kinds.get(stat.S_IFMT(info.st_mode), "other"),
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
        "owner": user_name(info.st_uid),
        "group": group_name(info.st_gid),
    }
    if state["type"] == "file":
        try:
            state["sha256"] = sha256(path)
        except OSError as exc:
            state["error"] = exc.strerror
    return state


def run(argv: list[str]) -> CommandResult:
    try:
        # Not AnsibleModule.run_command: the probe runs without Ansible too (ecrkit validate, scripts/).
        # pylint: disable-next=ansible-bad-function
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"argv": argv, "rc": None, "stdout": "", "stderr": str(exc)}
    return {"argv": argv, "rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def parse_env_lines(text: str) -> dict[str, str]:
    """KEY=VALUE lines (an EnvironmentFile, /etc/environment), comments and quotes removed."""
    env = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def read_text(path: str, start: int = 0, limit: int | None = None) -> str | None:
    """The file from byte `start`, or its last `limit` bytes; None if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(start, size - limit) if limit is not None else start)
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def shown(env: dict[str, str]) -> ShownEnv:
    return {"values": {k: env[k] for k in SHOWN_ENV if k in env}, "names": sorted(env)}


def unit_properties(unit: str, keys: tuple[str, ...]) -> tuple[CommandResult, dict[str, list[str]]]:
    """`systemctl show` of these properties, each with its values (Environment= may span lines)."""
    done = run(["systemctl", "show", unit, *[f"--property={key}" for key in keys]])
    props: dict[str, list[str]] = {}
    for line in str(done["stdout"]).splitlines():
        key, _, value = line.partition("=")
        props.setdefault(key, []).append(value)
    return done, props


def unit_own_environment(props: dict[str, list[str]]) -> dict[str, str]:
    """What the unit itself gives its process: Environment= as systemd loaded it, then each
    EnvironmentFile= as it is on disk now (a new start reads them then)."""
    env: dict[str, str] = {}
    for assignment in shlex.split(" ".join(props.get("Environment", []))):
        key, _, value = assignment.partition("=")
        env[key] = value
    for entry in props.get("EnvironmentFiles", []):
        path = entry.split(" (")[0]
        env.update(parse_env_lines(read_text(path) or "") if path else {})
    return env


def process_environment(pid: str) -> dict[str, str] | None:
    """The environment a process started with; None without a process, or if it cannot be read."""
    environ = read_text(f"/proc/{pid}/environ") if pid not in ("", "0") else None
    if environ is None:
        return None
    return dict(item.split("=", 1) for item in environ.split("\0") if "=" in item)


def service_environment(unit: str) -> dict[str, Any]:
    """The unit as systemd runs it: its user, what its files say, and the running process's own."""
    keys = ("LoadState", "ActiveState", "User", "MainPID", "Environment", "EnvironmentFiles", "ExecStart")
    done, props = unit_properties(unit, keys)
    first = {key: values[0] for key, values in props.items()}
    if done["rc"] != 0 or first.get("LoadState") in (None, "not-found"):
        return {"found": False, "error": str(done["stderr"]).strip() or f"{unit} not found"}
    manager = run(["systemctl", "show-environment"])
    unit_env = parse_env_lines(str(manager["stdout"]))  # what every service inherits (PATH)
    unit_env.update(unit_own_environment(props))
    user = first.get("User") or "root"
    process_env = process_environment(first.get("MainPID", "0"))
    return {"found": True, "state": first.get("ActiveState"), "user": user, "unit_env": unit_env,
            "process_env": process_env, "exec": exec_argv(first.get("ExecStart", ""))}  # fmt: skip


def service_state(unit: str) -> ServiceState:
    """Whether a service's running process has what its unit would give a new start, for a
    converge that must restart it when not (a restart a killed run had notified is not lost)."""
    keys = ("LoadState", "ActiveState", "NeedDaemonReload", "MainPID", "Environment", "EnvironmentFiles")
    done, props = unit_properties(unit, keys)
    first = {key: values[0] for key, values in props.items()}
    if done["rc"] != 0 or first.get("LoadState") in (None, "not-found"):
        return {"found": False, "error": str(done["stderr"]).strip() or f"{unit} not found"}
    pid = first.get("MainPID", "0")
    process = process_environment(pid)
    return {
        "found": True,
        "active_state": first.get("ActiveState", ""),
        "need_daemon_reload": first.get("NeedDaemonReload") == "yes",
        "main_pid": int(pid) if pid.isdigit() else 0,
        "unit_env": shown(unit_own_environment(props))["values"],
        "process_env": shown(process)["values"] if process is not None else None,
    }


def exec_argv(value: str) -> list[str]:
    """ExecStart as `systemctl show` prints it: `{ path=... ; argv[]=/usr/bin/x run --config ... ; ... }`."""
    _, found, rest = value.partition("argv[]=")
    if not found:
        return []
    try:
        return shlex.split(rest.split(" ; ", 1)[0])
    except ValueError:
        return rest.split(" ; ", 1)[0].split()


def login_environment(entry: UserEntry, name: str) -> dict[str, str]:
    """What a login session of the user starts with: /etc/environment and login.defs' PATH."""
    root = entry["uid"] == 0
    env = {"HOME": str(entry["home"]), "USER": name, "LOGNAME": name, "SHELL": str(entry["shell"])}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    if root:
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for line in (read_text("/etc/login.defs") or "").splitlines():
        words = line.split()  # e.g. "ENV_SUPATH  PATH=/usr/local/sbin:..."
        if len(words) == 2 and words[0] == ("ENV_SUPATH" if root else "ENV_PATH"):
            env["PATH"] = words[1].removeprefix("PATH=")
    env.update(parse_env_lines(read_text("/etc/environment") or ""))
    return env


def as_user(
    argv: list[str], entry: UserEntry, env: dict[str, str], stdin: str = "", timeout: float = 60
) -> CommandResult:
    """Run as the consumer's user, with its environment (the probe itself runs as root); stopped after `timeout` s."""
    kwargs: dict[str, Any] = {}
    if os.geteuid() == 0 and entry["uid"] != 0:
        kwargs = {"user": entry["uid"], "group": entry["gid"], "extra_groups": entry["groups"]}
    try:
        # Not run_command, which has neither a timeout nor another user to run as; and see run() above.
        # pylint: disable-next=ansible-bad-function
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
                              env=env, cwd="/", **kwargs)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"rc": None, "stdout": "", "stderr": f"stopped after {timeout:g} s", "timed_out": timeout}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"rc": None, "stdout": "", "stderr": str(exc)}
    return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def config_summary(path: str) -> ConfigSummary:
    """What config.json hands to helpers; `auths` by hostname only (its values are secrets)."""
    summary: ConfigSummary = {"path": path, "state": path_state(path)}
    text = read_text(path)
    if text is None:
        return summary
    summary.update(docker_config_summary(text))
    return summary


def docker_config_summary(text: str) -> ConfigSummary:
    """What a Docker config (config.json, DOCKER_AUTH_CONFIG) hands to helpers; `auths` by
    hostname only (its values are secrets), and a parse error by position only."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        return {"error": str(exc)}
    helpers = data.get("credHelpers")
    store = data.get("credsStore")
    return {
        "creds_store": store if isinstance(store, str) else None,
        "cred_helpers": {k: v for k, v in helpers.items() if isinstance(v, str)} if isinstance(helpers, dict) else {},
        "auths": sorted(data["auths"]) if isinstance(data.get("auths"), dict) else [],
    }


def load_toml(text: str) -> dict[str, Any]:
    """tomllib (Python 3.11+), else a tomli that the host has (pip vendors one); ValueError if none parses."""
    for name in ("tomllib", "tomli", "pip._vendor.tomli"):
        try:
            module = __import__(name, fromlist=["loads"])
        except ImportError:
            continue
        try:
            return dict(module.loads(text))
        except Exception as exc:
            raise ValueError(str(exc)) from None
    raise LookupError(f"no TOML parser on this host's Python {sys.version.split()[0]} (3.11+ has tomllib)")


def runner_config_path(argv: list[str], entry: UserEntry, given: str) -> tuple[str, str]:
    """Where the runner reads config.toml, and how we know: the inventory, the unit's
    `--config`/`-c`, or gitlab-runner's default for its user (root: /etc/gitlab-runner)."""
    if given:
        return given, "inventory"
    for index, word in enumerate(argv):
        if word in ("--config", "-c") and index + 1 < len(argv):
            return argv[index + 1], "ExecStart " + word
        if word.startswith("--config="):
            return word.split("=", 1)[1], "ExecStart --config"
    if entry["uid"] == 0:
        return "/etc/gitlab-runner/config.toml", "default for root"
    return os.path.join(str(entry["home"]), ".gitlab-runner", "config.toml"), "default for its user"


def runner_facts(path: str, how: str, entry: UserEntry, env: dict[str, str]) -> RunnerConfigFacts:
    """Each [[runners]] entry: name, executor, its DOCKER_AUTH_CONFIG summarised, and the
    docker+machine / docker-autoscaler settings ecrkit manages (never tokens or keys)."""
    facts: RunnerConfigFacts = {"path": path, "found_by": how, "state": path_state(path)}
    text = read_text(path)
    if text is None:
        return facts
    try:
        document = load_toml(text)
    except (ValueError, LookupError) as exc:
        facts["error" if isinstance(exc, ValueError) else "unreadable"] = str(exc)
        return facts
    runners = document.get("runners")
    facts["runners"] = (
        [runner_entry(r, entry, env) for r in runners if isinstance(r, dict)] if isinstance(runners, list) else []
    )
    return facts


def runner_entry(runner: dict[str, Any], entry: UserEntry, env: dict[str, str]) -> RunnerEntry:
    facts: RunnerEntry = {"name": str(runner.get("name", "")), "executor": str(runner.get("executor", ""))}
    environment = runner.get("environment")
    values = [str(item) for item in environment] if isinstance(environment, list) else []
    auth = [item.split("=", 1)[1] for item in values if item.startswith("DOCKER_AUTH_CONFIG=")]
    facts["auth_config"] = docker_config_summary(auth[-1]) if auth else None  # the last definition wins
    machine = runner.get("machine")
    if isinstance(machine, dict):
        options = {str(o).partition("=")[0]: str(o).partition("=")[2] for o in machine.get("MachineOptions") or []}
        facts["machine_options"] = {k: v for k, v in options.items() if k in MACHINE_OPTIONS}
        userdata = options.get("amazonec2-userdata")
        if userdata:
            text = read_text(userdata) or ""
            facts["userdata"] = {
                "state": path_state(userdata),
                "readable": as_user(["/bin/sh", "-c", 'test -r "$1"', "-", userdata], entry, env)["rc"] == 0,
                "installs_helper": HELPER in text and "config.json" in text,
            }
    autoscaler = runner.get("autoscaler")
    if isinstance(autoscaler, dict):
        facts["autoscaler_keys"] = sorted(autoscaler)
    return facts


def aws_profile(env: dict[str, str]) -> tuple[str, dict[str, str]] | None:
    """The profile the AWS SDK uses for this environment, and its keys in the shared config file."""
    path = env.get("AWS_CONFIG_FILE") or os.path.join(env.get("HOME", "/"), ".aws", "config")
    profile = env.get("AWS_PROFILE", "default")
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(read_text(path) or "")
    except configparser.Error:
        return None
    section = profile if profile == "default" else f"profile {profile}"
    return profile, dict(parser.items(section)) if parser.has_section(section) else {}


def profile_region(env: dict[str, str]) -> str | None:
    """The region the AWS SDK would read from the shared config file for this environment."""
    found = aws_profile(env)
    return found[1].get("region") if found else None


def sso_session(env: dict[str, str]) -> SsoFacts | None:
    """For an IAM Identity Center profile: which form, and when its cached token expires (the
    token itself never leaves the host). The cache is named by the sha1 of the sso-session's
    name, or of the start URL for a legacy profile."""
    found = aws_profile(env)
    if found is None:
        return None
    profile, keys = found
    session, start_url = keys.get("sso_session"), keys.get("sso_start_url")
    if session is None and start_url is None:
        return None
    key = session if session is not None else str(start_url)
    cache = os.path.join(env.get("HOME", "/"), ".aws", "sso", "cache", hashlib.sha1(key.encode()).hexdigest() + ".json")
    facts: SsoFacts = {"profile": profile, "form": "sso-session" if session else "legacy", "cache": cache}
    try:
        token = json.loads(read_text(cache) or "null")
    except ValueError:
        token = None
    facts["expires_at"] = token.get("expiresAt") if isinstance(token, dict) else None
    return facts


def writable_as(directory: str, entry: UserEntry, env: dict[str, str]) -> bool:
    """Whether the user can create files there, or create it (the helper makes missing parents)."""
    existing = directory
    while not os.path.isdir(existing) and existing not in ("/", ""):
        existing = os.path.dirname(existing)
    # An absolute shell: the consumer's PATH may not reach /bin (that is what is being judged).
    test = as_user(["/bin/sh", "-c", 'test -w "$1" && test -x "$1"', "-", existing], entry, env)
    return test["rc"] == 0


def consumer(spec: dict[str, str], registries: list[str], lists: threading.Barrier | None = None) -> ConsumerFacts:
    """One process that runs the helper: a systemd service (a GitLab Runner manager's with its
    config.toml), a user's login sessions, or a Mesos task's `docker pull`.

    Its user and environment (a running service's own, else what its unit gives it), the helper
    on its PATH and whether it runs, its config.json, its cache directory (writable by it?) and
    log, and a live `get` for each registry run exactly as that process would run it.

    `lists`: where the consumers observed at the same time wait for each other's `list` before
    any `get` (consumers can share a cache, which `list` answers from and a get fills).
    """
    kind = next(key for key in ("service", "user", "task") if key in spec)
    name = spec[kind]
    facts: ConsumerFacts = {"kind": kind, "name": name}
    sandbox = None
    waited: list[bool] = []

    def lists_done() -> None:  # once per consumer: before its gets, or when it has none
        if lists is not None and not waited:
            waited.append(True)
            lists.wait()

    try:
        if kind == "user":
            user, env = name, {}
        else:
            service = service_environment(name)
            facts.update({"found": service["found"], "state": service.get("state"), "error": service.get("error")})
            if not service["found"]:
                return facts
            user = service["user"]
            env = service["process_env"] if service["process_env"] is not None else service["unit_env"]
            facts["env_source"] = "running process" if service["process_env"] is not None else "unit"
            facts["unit_env"] = shown(service["unit_env"])
        entry = user_entry(user)
        facts["user"] = user
        if entry is None:
            facts.update({"found": False, "error": f"user {user} does not exist"})
            return facts
        entry["groups"] = os.getgrouplist(user, entry["gid"])
        facts["found"] = True
        if kind == "user":
            env = login_environment(entry, user)
            facts["env_source"] = "login"
        env = dict(env)
        env.setdefault("HOME", str(entry["home"]))
        if kind == "task":
            sandbox, facts["archive"] = fetch_into_sandbox(spec.get("archive", ""), spec.get("task_user") or user)
            if sandbox is None:
                return facts
            env["HOME"] = sandbox  # what the Docker containerizer gives `docker pull`
            facts["sandbox"] = sandbox
        runner = kind == "service" and ("runner_config" in spec or os.path.basename(
            (service.get("exec") or [""])[0]) == "gitlab-runner")  # fmt: skip
        return observe(facts, entry, env, registries, spec.get("runner_config", "") if runner else None,
                       service.get("exec", []) if runner else [], lists_done)  # fmt: skip
    finally:
        lists_done()
        if sandbox is not None:
            shutil.rmtree(sandbox, ignore_errors=True)


def fetch_into_sandbox(archive: str, task_user: str) -> tuple[str | None, ArchiveFacts]:
    """What the Mesos fetcher does with `file://<archive>` and extract: true, as the task's user,
    into a fresh sandbox that user owns. Returns the sandbox (None if extraction failed)."""
    facts: ArchiveFacts = {"path": archive, "state": path_state(archive), "task_user": task_user}
    entry = user_entry(task_user)
    if entry is None:
        facts["error"] = f"task user {task_user} does not exist"
        return None, facts
    entry["groups"] = os.getgrouplist(task_user, entry["gid"])
    sandbox = tempfile.mkdtemp(prefix="ecrkit-sandbox-")
    os.chown(sandbox, entry["uid"], entry["gid"])
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": sandbox}
    done = as_user(["/bin/tar", "-C", sandbox, "-xf", archive], entry, env)
    if done["rc"] != 0:
        shutil.rmtree(sandbox, ignore_errors=True)
        facts["error"] = "; ".join(str(done["stderr"]).split("\n")).strip("; ")[-300:] or f"tar exit {done['rc']}"
        return None, facts
    return sandbox, facts


def observe(  # noqa: PLR0917 - one consumer's whole context
    facts: ConsumerFacts, entry: UserEntry, env: dict[str, str], registries: list[str],
    runner_config: str | None, argv: list[str], lists_done: Callable[[], None] = lambda: None,
) -> ConsumerFacts:  # fmt: skip
    """The helper as this consumer runs it: PATH, config, cache, log, live get and list
    (`lists_done`: called between them)."""
    facts["env"] = shown(env)
    facts["profile_region"] = profile_region(env)
    facts["sso"] = sso_session(env)

    found = shutil.which(HELPER, path=env.get("PATH", ""))
    misnamed = []
    for directory in dict.fromkeys([*env.get("PATH", "").split(":"), "/usr/local/bin", "/usr/bin"]):
        if os.path.isdir(directory):
            misnamed += [os.path.join(directory, f) for f in sorted(os.listdir(directory))
                         if f.startswith("docker-credential-ecr") and f != HELPER]  # fmt: skip
    facts["helper"] = {"path": found, "misnamed": misnamed}
    if found:
        facts["helper"]["version"] = as_user([found, "-v"], entry, env)  # `version` says 0.6.4 in 0.6.0 and 0.7.1

    config_dir = env.get("DOCKER_CONFIG") or os.path.join(env["HOME"], ".docker")
    facts["config"] = config_summary(os.path.join(config_dir, "config.json"))
    sources = [facts["config"]]
    if runner_config is not None:
        path, how = runner_config_path(argv, entry, runner_config)
        facts["runner_config"] = runner_facts(path, how, entry, env)
        sources += [r["auth_config"] for r in facts["runner_config"].get("runners", []) if r["auth_config"]]

    cache_dir = env.get("AWS_ECR_CACHE_DIR") or os.path.join(env["HOME"], ".ecr")
    log_path = os.path.join(cache_dir, "log", "ecr-login.log")
    facts["cache"] = {
        "dir": cache_dir,
        "disabled": bool(env.get("AWS_ECR_DISABLE_CACHE")),
        "state": path_state(cache_dir),
        "file": path_state(os.path.join(cache_dir, "cache.json")),
        "writable": writable_as(cache_dir, entry, env),
    }
    facts["log"] = {"path": log_path, "tail": read_text(log_path, limit=LOG_TAIL)}

    # A runner asks the helper for every registry a source names (one failure drops the whole
    # source), so each is tried; other consumers, for the registries expected of them.
    named = [host for source in sources for host, helper in (source.get("cred_helpers") or {}).items()
             if helper == "ecr-login"]  # fmt: skip
    wanted = list(dict.fromkeys(registries + named)) if runner_config is not None else registries or named
    if found and any(source.get("creds_store") == "ecr-login" for source in sources):
        # Before any get (`lists_done` holds them): `list` answers from the cache, which a get would fill.
        facts["list"] = live_list(found, entry, env, log_path)
        if runner_config is not None:  # GetAll: `get` for each registry `list` names
            listed = facts["list"].get("registries")
            hosts = [url.split("://")[-1].split("/")[0] for url in (listed if isinstance(listed, dict) else {})]
            wanted += [host for host in dict.fromkeys(hosts) if host not in wanted]
    lists_done()
    # Together, so that a hung API costs one timeout; their log lines then interleave (a failing
    # get's lines may include those of another that failed at the same time).
    facts["gets"] = in_parallel(lambda host: live_get(found, host, entry, env, log_path), wanted) if found else []
    return facts


Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


def in_parallel(call: Callable[[Item], Outcome], items: list[Item]) -> list[Outcome]:
    """`call` for each item, each in a thread of its own, so that the slowest bounds them all; in the items' order."""
    if len(items) < 2:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(call, items))


def file_size(path: str) -> int:
    """Where the helper's next log lines will start (0 if it has not logged yet)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def live_list(helper: str, entry: UserEntry, env: dict[str, str], log: str) -> ListResult:
    """`list` as the consumer runs it (what GitLab Runner calls for credsStore): registries and usernames."""
    before = file_size(log)
    done = as_user([helper, "list"], entry, env, timeout=LIVE_TIMEOUT)
    result: ListResult = {"rc": done["rc"], "log": read_text(log, start=before, limit=LOG_TAIL) or ""}
    if "timed_out" in done:
        result["timed_out"] = done["timed_out"]
    try:
        result["registries"] = json.loads(str(done["stdout"]))
    except ValueError:
        result["said"] = (str(done["stderr"]).strip() or str(done["stdout"]).strip())[:500]
    return result


def live_get(helper: str, registry: str, entry: UserEntry, env: dict[str, str], log: str) -> GetResult:
    """`get` as the consumer runs it; the secret is reduced to its length, the log to this call's lines."""
    before = file_size(log)
    done = as_user([helper, "get"], entry, env, stdin=registry, timeout=LIVE_TIMEOUT)
    result: GetResult = {"registry": registry, "rc": done["rc"]}
    if "timed_out" in done:
        result["timed_out"] = done["timed_out"]
    if done["rc"] != 0:  # what it said instead of credentials (it prints its error on stdout)
        result["said"] = (str(done["stderr"]).strip() or str(done["stdout"]).strip())[:500]
    try:
        answer = json.loads(str(done["stdout"]))
        result.update({"username": answer.get("Username"), "secret_length": len(answer.get("Secret") or ""),
                       "server_url": answer.get("ServerURL")})  # fmt: skip
    except (ValueError, AttributeError):
        pass
    result["log"] = read_text(log, start=before, limit=LOG_TAIL) or ""
    return result


def probe(args: dict[str, Any]) -> ProbeResult:
    users = {name: user_entry(name) for name in args.get("users") or []}
    resolved: dict[str, str] = {path: path for path in args.get("paths") or []}
    for name, entry in users.items():
        if entry is not None:
            for relative in args.get("user_paths") or []:
                resolved[f"{name}:{relative}"] = os.path.join(str(entry["home"]), relative)
    paths = {key: path_state(path) for key, path in resolved.items()}
    contents: dict[str, str | None] = {}
    for key in args.get("read") or []:
        path = resolved.get(key, key)
        try:
            with open(path, "rb") as handle:
                contents[key] = base64.b64encode(handle.read()).decode("ascii")
        except FileNotFoundError:
            contents[key] = None
    commands = [run(list(argv)) for argv in args.get("commands") or []]
    registries = list(args.get("registries") or [])
    specs = list(args.get("consumers") or [])
    lists = threading.Barrier(len(specs)) if len(specs) > 1 else None  # every consumer's list, then the gets
    consumers = in_parallel(lambda spec: consumer(spec, registries, lists), specs)
    services = {unit: service_state(unit) for unit in args.get("services") or []}
    result: ProbeResult = {
        "changed": False,
        "time": time.time(),  # the host's clock: how recent its log lines are
        "users": users,
        "paths": paths,
        "contents": contents,
        "commands": commands,
        "consumers": consumers,
        "services": services,
    }
    if args.get("imds") is not None:
        result["imds"] = imds_facts(dict(args["imds"]))
    return result


IMDS = "http://169.254.169.254/latest"
IMDS_ROLES = IMDS + "/meta-data/iam/security-credentials/"
IMDS_TIMEOUT = 2
# What a job runs, in sh: the token (its answer is what the hop limit stops), the role with it, the
# role without it (IMDSv1). Only the role's name is read, never its credentials. An image without
# curl says so and reports nothing: its empty answers would read as a job that cannot reach the role.
JOB_IMDS_SCRIPT = (
    'command -v curl > /dev/null || { echo "curl: not found in the image" >&2; exit 127; }; '
    f"t=$(curl -sf -m {IMDS_TIMEOUT} -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' {IMDS}/api/token); "
    'if [ -n "$t" ]; then echo token=yes; '
    f'echo "role=$(curl -sf -m {IMDS_TIMEOUT} -H "X-aws-ec2-metadata-token: $t" {IMDS_ROLES} | head -n 1)"; '
    "else echo token=no; fi; "
    f'echo "v1_role=$(curl -sf -m {IMDS_TIMEOUT} {IMDS_ROLES} | head -n 1)"'
)


def imds_request(path: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    """(HTTP status, body) from the instance metadata service; status 0 and the error when none came."""
    import urllib.error  # noqa: PLC0415 - only a probe asked about IMDS needs it
    import urllib.request  # noqa: PLC0415

    request = urllib.request.Request(IMDS + path, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # IMDS is never reached by a proxy
    try:
        with opener.open(request, timeout=IMDS_TIMEOUT) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError as exc:
        return 0, str(getattr(exc, "reason", exc))


def imds_facts(spec: dict[str, Any]) -> ImdsFacts:
    status, token = imds_request("/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    facts: ImdsFacts = {"answered": status != 0, "token": status == 200, "role": "", "v1_allowed": False}
    if status == 0:
        facts["error"] = token
    roles = "/meta-data/iam/security-credentials/"
    if status == 200:
        found, role = imds_request(roles, headers={"X-aws-ec2-metadata-token": token})
        facts["role"] = role.splitlines()[0] if found == 200 and role else ""
    found, role = imds_request(roles)
    if found != 0:
        facts["answered"] = True
    facts["v1_allowed"] = found in (200, 404)  # 404: answered without a token, but no role
    if found == 200 and role and not facts["role"]:
        facts["role"] = role.splitlines()[0]
    command = list(spec.get("job_command") or [])
    if command:
        result = run([*command, "sh", "-c", JOB_IMDS_SCRIPT])
        lines = dict(line.partition("=")[::2] for line in str(result.get("stdout", "")).splitlines() if "=" in line)
        job: JobImdsFacts = {
            "ran": "token" in lines,
            "token": lines.get("token") == "yes",
            "role": lines.get("role", "").strip(),
            "v1_role": lines.get("v1_role", "").strip(),
            "error": "" if "token" in lines else str(result.get("stderr", "")).strip()[-500:],
        }
        facts["job"] = job
    return facts


def script_args() -> dict[str, Any] | None:
    """The arguments of a probe run without Ansible's module wrapper, or None under Ansible.

    Embedded in place of the marker (`ecrkit validate`), else a JSON document on stdin. With
    neither, AnsibleModule reads them if Ansible is importable (a module run, or ansible-test);
    a host without Ansible probes with no arguments.
    """
    if not ANSIBLE_ARGUMENTS.startswith(MARKER_START):
        embedded = json.loads(ANSIBLE_ARGUMENTS)
        return {key: value for key, value in embedded.items() if not key.startswith("_ansible")}
    if basic is not None and getattr(basic, "_ANSIBLE_ARGS", None) is not None:
        return None  # AnsiballZ handed the task's arguments to AnsibleModule
    text = sys.stdin.read() if not sys.stdin.isatty() else ""
    if text.strip():
        return json.loads(text)  # type: ignore[no-any-return]
    return None if AnsibleModule is not None else {}


def main() -> None:
    args = script_args()
    if args is None:
        module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
        module.exit_json(**probe(module.params))
    else:  # the facts exactly as under Ansible (where exit_json adds only its `invocation`)
        sys.stdout.write(json.dumps(probe(args)) + "\n")


if __name__ == "__main__":
    main()
