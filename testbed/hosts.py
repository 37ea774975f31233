"""Disposable systemd hosts for `make run`, the tests and the benchmarks.

Each host is a podman container of the base image that `tools/base-image.sh` builds, reached
by Ansible through podman (no SSH). `python -m testbed` is `make run`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ecrkit.constants import HELPER_BINARY, HELPER_VERSION
from ecrkit.errors import EcrkitError, FileFormatError
from ecrkit.helper import binary_version
from ecrkit.hoststate import version_from
from ecrkit.output import print_rows
from ecrkit.renderers.docker_config import parse
from ecrkit.validate import (
    ACCOUNT_GROUP,
    SEVERITY_WORD,
    Report,
    Target,
    inventory_targets,
    print_report,
    validate_all,
)
from testbed.standin import API_ADDRESS, API_HOST, HOST_MOUNT, REGISTRY_HOST, StandIn
from testbed.standin_imds import ImdsSettings, ImdsStandIn

ROOT = Path(__file__).resolve().parent.parent
LOCAL_INVENTORY = ROOT / "inventory" / "local" / "hosts.yml"
STAND_IN_STATE = ROOT / ".cache" / "standin"
BASE_IMAGE = os.environ.get("ECRKIT_BASE_IMAGE", "localhost/debian-systemd:bookworm")
# Job hosts booted by cloud-init: the base image plus cloud-init (tools/cloudinit-image.sh).
CLOUDINIT_IMAGE = os.environ.get("ECRKIT_CLOUDINIT_IMAGE", "localhost/debian-systemd-cloudinit:bookworm")
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "molecule" / "containers.conf")}
ANSIBLE_ENV = {**PODMAN_ENV, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
BIN = Path(sys.executable).parent
RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)


# No podman call of the test bed takes minutes (a docker pull in a host included); one that does is
# stuck, e.g. a `systemctl` queued behind a boot that never ends, and is stopped with this error.
PODMAN_TIMEOUT = float(os.environ.get("ECRKIT_PODMAN_TIMEOUT", "300"))
# How long a container's systemd may take to boot (32 hosts booted and got sshd in 32 s on 2 cores).
BOOT_TIMEOUT = float(os.environ.get("ECRKIT_BOOT_TIMEOUT", "180"))


class HostSetupError(EcrkitError):
    """The machine cannot host the test bed's containers as asked, or one did not come up; the
    message names the limit or the host and what to change."""


def podman(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """podman with the project's containers.conf; a call that outlasts `timeout` (PODMAN_TIMEOUT
    unless given) raises HostSetupError naming the command instead of hanging."""
    limit = PODMAN_TIMEOUT if timeout is None else timeout
    try:
        return subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=PODMAN_ENV, check=check, timeout=limit
        )
    except subprocess.TimeoutExpired as exc:
        raise HostSetupError(f"podman {' '.join(args)}: no answer after {limit:.0f} s; stopped") from exc


@dataclass
class Host:
    name: str
    ssh_port: int | None = None  # set: reached over SSH on 127.0.0.1, else through podman

    def run(self, command: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        variables = [f"--env={key}={value}" for key, value in (env or {}).items()]
        return podman("exec", *variables, self.name, "sh", "-c", command, check=False)

    def exists(self, path: str) -> bool:
        return self.run(f"test -e {path}").returncode == 0

    def read(self, path: str) -> str:
        return podman("exec", self.name, "cat", path).stdout


# Every systemd container runs as the machine's root and takes root's inotify instances, a count
# the kernel caps per user for the whole machine (fs.inotify.max_user_instances, 128 on Debian):
# systemd 4 and logind 1 per host, measured at boot and with an SSH login open (the base image
# starts no user manager; the system bus's daemon counts against messagebus). A container whose
# systemd gets none logs "Failed to create inotify object: Too many open files" and never
# finishes booting: every `systemctl` in it then waits for ever (the 26th host did, at 128).
INOTIFY_PER_HOST = 8  # 5 measured, with room for an image or test that watches more
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


def inotify_instances_in_use() -> int:
    """Inotify instances held by the machine's processes (an upper bound of root's share)."""
    count = 0
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            count += sum(1 for fd in fd_dir.iterdir() if os.readlink(fd) == "anon_inode:inotify")
    return count


def ensure_inotify_instances(hosts: int, limit_file: Path = INOTIFY_INSTANCES) -> None:
    """Make room for `hosts` more systemd containers under fs.inotify.max_user_instances: raise it
    when it is too low and we may (root; it lasts until reboot), else refuse naming the limit."""
    if hosts <= 0 or not limit_file.is_file():
        return
    limit = int(limit_file.read_text())
    in_use = inotify_instances_in_use()
    needed = in_use + hosts * INOTIFY_PER_HOST
    if needed <= limit:
        return
    wanted = max(needed, 1024)
    try:
        limit_file.write_text(f"{wanted}\n")
    except OSError as exc:
        raise HostSetupError(
            f"fs.inotify.max_user_instances is {limit} with {in_use} in use; {hosts} more systemd containers "
            f"need about {hosts * INOTIFY_PER_HOST} more (one that gets none never finishes booting), and it "
            f"could not be raised ({exc.strerror}); as root: sysctl -w fs.inotify.max_user_instances={wanted}"
        ) from exc
    print(
        f"raised fs.inotify.max_user_instances from {limit} to {wanted} for {hosts} systemd containers", file=sys.stderr
    )


def start_hosts(
    names: Iterable[str],
    *,
    reuse: bool = False,
    options: Iterable[str] = (),
    image: str = BASE_IMAGE,
    command: Iterable[str] = (),
    wait: bool = True,
) -> list[Host]:
    """Start systemd containers (fresh ones unless `reuse`) and wait until systemd has booted them
    (unless not `wait`: the caller waits, with `wait_for_hosts`).

    `options` are more `podman run` options (networks, mounts, host entries); `image` and
    `command` replace the base image and its /sbin/init.
    """
    names = list(names)
    ensure_inotify_instances(len(names))
    hosts = []
    for name in names:
        running = podman("container", "inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip()
        if not (reuse and running == "true"):
            podman("rm", "-f", "-t", "0", name, check=False)
            podman("run", "-d", "--name", name, "--hostname", name, "--systemd=always", *options, image, *command)
        hosts.append(Host(name))
    if wait:
        wait_for_hosts(hosts)
    return hosts


def wait_for_hosts(hosts: Iterable[Host]) -> None:
    for host in hosts:
        _wait_for_systemd(host)


def start_ssh_hosts(
    names: Iterable[str], public_key: Path, first_port: int = 22001, options: Iterable[str] = ()
) -> list[Host]:
    """Systemd containers on the host's network, each with sshd on its own loopback port.

    SSH is how Ansible reaches real hosts, and it allows pipelining; nothing listens beyond
    127.0.0.1.
    """
    run_options = list(dict.fromkeys(["--network=host", *options]))  # the stand-in's options name it too
    names = list(names)
    ensure_inotify_instances(len(names))
    hosts = []
    for port, name in enumerate(names, start=first_port):
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("run", "-d", "--name", name, "--hostname", name, "--systemd=always", *run_options, BASE_IMAGE)
        hosts.append(Host(name, ssh_port=port))
    for host in hosts:
        _wait_for_systemd(host)
        host.run(f"printf 'Port {host.ssh_port}\\nListenAddress 127.0.0.1\\n' > /etc/ssh/sshd_config.d/ecrkit.conf")
        host.run("install -d -m 0700 /root/.ssh")
        podman("cp", str(public_key), f"{host.name}:/root/.ssh/authorized_keys")
        host.run("chown root:root /root/.ssh/authorized_keys && chmod 0600 /root/.ssh/authorized_keys")
        host.run("systemctl restart ssh")
    return hosts


def _wait_for_systemd(host: Host, timeout: float | None = None) -> None:
    """Until the host's systemd has booted (running, or degraded: sshd on port 22 fails on the host's
    network before it is moved); HostSetupError with the boot's unfinished jobs and warnings after
    `timeout` (BOOT_TIMEOUT unless given)."""
    deadline = time.monotonic() + (BOOT_TIMEOUT if timeout is None else timeout)
    while True:
        state = podman("exec", host.name, "systemctl", "is-system-running", check=False, timeout=30).stdout.strip()
        if state in ("running", "degraded"):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    jobs = podman("exec", host.name, "systemctl", "list-jobs", "--no-legend", check=False, timeout=30).stdout
    log = podman(
        "exec", host.name, "journalctl", "-b", "-p", "warning", "--no-pager", "-n", "5", check=False, timeout=30
    )
    raise HostSetupError(
        f"{host.name}: systemd did not finish booting in {BOOT_TIMEOUT if timeout is None else timeout:.0f} s "
        f"(state {state or 'unknown'!r}, {len(jobs.splitlines())} jobs waiting); its last warnings:\n"
        f'{log.stdout.strip()}\n("Failed to create inotify object" there: fs.inotify.max_user_instances is too low)'
    )


STAND_IN_UNIT = """[Unit]
Description=Stand-in for {name}: a process that runs the credential helper (the real one is not obtainable here)

[Service]
ExecStart={exec_start}

[Install]
WantedBy=multi-user.target
"""


# What `gitlab-runner register` leaves behind (tokens are stand-ins).
REGISTERED_RUNNER = """concurrent = 1
check_interval = 0

[session_server]
  session_timeout = 1800

[[runners]]
  name = "{name}"
  url = "https://gitlab.example.com"
  id = 1
  token = "glrt-stand-in-token"
  token_obtained_at = 2026-11-23T00:00:00Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "docker"
  [runners.cache]
    MaxUploadedArchiveSize = 0
  [runners.docker]
    image = "alpine:3.20"
    volumes = ["/cache"]
"""


# The instance role of make run's hosts, which the inventory's ecr_accounts gives an ECR policy.
HOSTS_ROLE = "ecrkit-hosts"
EC2_TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})  # fmt: skip
# The environment files real units read besides what the stand-in role gives them.
AGENT_ENV_FILES = {"dcos-mesos-slave": "/var/lib/dcos/mesos-slave-common"}
# The command lines of the real units (gitlab-runner's package installs this one), run by a
# stand-in binary that only sleeps: the validator reads config.toml's path from them.
EXEC_START = {
    "gitlab-runner": "/usr/bin/gitlab-runner run --config /etc/gitlab-runner/config.toml "
    "--working-directory /home/gitlab-runner --service gitlab-runner --user gitlab-runner",
}


# gitlab-runner's stand-in: `run` (the unit's command line) sleeps; `--version` answers as GitLab Runner
# does, with the version in RUNNER_STAND_IN_VERSION (a file, so a test can change it); any other command
# (`fleeting install`, ...) is recorded, one line of arguments each, in RUNNER_STAND_IN_CALLS.
RUNNER_STAND_IN_VERSION = "/etc/gitlab-runner-stand-in.version"
RUNNER_STAND_IN_CALLS = "/var/log/gitlab-runner-stand-in.calls"
RUNNER_STAND_IN = f"""#!/bin/sh
case "$1" in
  run) exec sleep infinity ;;
  --version | -v)
    version=$(cat {RUNNER_STAND_IN_VERSION} 2> /dev/null || echo 17.11.0)
    printf 'Version:      %s\\nGit revision: stand-in\\n' "$version" ;;
  *) echo "$*" >> {RUNNER_STAND_IN_CALLS} ;;
esac
"""


def install_runner_stand_in(host: Host, binary: str = "/usr/bin/gitlab-runner", version: str = "") -> None:
    """The gitlab-runner stand-in at `binary`; `version` (e.g. 16.10.0) is what it says it is."""
    host.run(f"cat > {binary} << 'EOF'\n{RUNNER_STAND_IN}EOF\nchmod 0755 {binary}")
    if version:
        host.run(f"echo {version} > {RUNNER_STAND_IN_VERSION}")


def start_ec2_hosts(names: Iterable[str], stand_in: StandIn, imds: ImdsStandIn, image: str = BASE_IMAGE) -> list[Host]:
    """Systemd hosts standing for EC2 instances: each in a host namespace of the IMDS stand-in
    (`imds`, up), where 169.254.169.254 is its instance metadata and its loopback reaches the
    stand-in's API through a relay. No keys are planted: give them `give_stand_in_role(...,
    keys=False)`, and the helper's credentials come from the instance role."""
    hosts = []
    for name in names:
        namespace = imds.add_host(name)
        imds.relay_to(namespace, API_ADDRESS, 443)
        network = f"ns:{imds.netns_path(namespace)}"
        hosts += start_hosts([name], options=stand_in.host_options(network), image=image, wait=False)
    wait_for_hosts(hosts)  # booting together
    return hosts


def give_stand_in_role(host: Host, stand_in: StandIn, services: Iterable[str] = (), keys: bool = True) -> None:
    """What an EC2 host gets from outside ecrkit, emulated: an instance role (here keys for the
    stand-in, with its CA; with `keys` false only the CA: a host of `start_ec2_hosts`, whose
    role is IMDS's) in every login's and every named service's environment, and the services
    themselves (stand-ins for gitlab-runner or the Mesos agent, which cannot run here; a
    gitlab-runner comes registered, with its config.toml).
    """
    role = "\n".join(f"{key}={value}" for key, value in stand_in.host_env(keys).items()) + "\n"
    host.run(f"printf '%s' '{role}' > /etc/environment")
    for name in services:
        unit = f"/etc/systemd/system/{name}.service"
        exec_start = EXEC_START.get(name, "/bin/sleep infinity")
        binary = exec_start.split()[0]
        if name == "gitlab-runner" and not host.exists(binary):
            install_runner_stand_in(host, binary)
        elif not host.exists(binary):
            host.run(f"printf '#!/bin/sh\\nexec sleep infinity\\n' > {binary} && chmod 0755 {binary}")
        host.run(
            f"printf '%s' '{STAND_IN_UNIT.format(name=name, exec_start=exec_start)}' > {unit} && mkdir -p {unit}.d"
        )
        own = f"EnvironmentFile=-{AGENT_ENV_FILES[name]}\\n" if name in AGENT_ENV_FILES else ""
        host.run(f"printf '[Service]\\nEnvironmentFile=/etc/environment\\n{own}' > {unit}.d/stand-in-role.conf")
        host.run(f"systemctl daemon-reload && systemctl enable --now {name}.service")
        if name == "gitlab-runner" and not host.exists("/etc/gitlab-runner/config.toml"):
            config = REGISTERED_RUNNER.format(name=host.name)
            host.run(
                f"install -d -m 0700 /etc/gitlab-runner && printf '%s' '{config}' > /etc/gitlab-runner/config.toml"
            )
            host.run("chmod 0600 /etc/gitlab-runner/config.toml")


# The image of the validator's job probe on the test bed's hosts (ecrkit_job_probe_image in
# inventory/local): sh, curl and head of this machine with their libraries, imported into the
# stand-in's Docker daemon (the hosts' daemon), which pulls nothing from Docker Hub.
JOB_PROBE_IMAGE = "ecrkit/job-probe:1"
JOB_PROBE_FILES = ("/bin/sh", "/usr/bin/curl", "/usr/bin/head", "/usr/bin/sleep")


def load_job_probe_image(stand_in: StandIn) -> str:
    """JOB_PROBE_IMAGE in the stand-in's Docker daemon; returns its name."""
    files = set(JOB_PROBE_FILES)
    for binary in JOB_PROBE_FILES:
        linked = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        files.update(word for word in linked.split() if word.startswith("/"))
    listed = " ".join(sorted(files))
    done = stand_in.run(["sh", "-c", f"tar -chP --transform 's,^/,,' {listed} | docker import - {JOB_PROBE_IMAGE}"])
    if done.returncode != 0:
        raise HostSetupError(f"the job probe's image {JOB_PROBE_IMAGE} could not be imported: {done.stderr.strip()}")
    return JOB_PROBE_IMAGE


def job_network(host: Host) -> str:
    """The Docker network a job on `host` joins (ecrkit_job_probe_network): a container of its own."""
    return f"container:ecrkit-jobs-{host.name}"


def start_job_network(host: Host, stand_in: StandIn, imds: ImdsStandIn) -> str:
    """Where jobs on an EC2 host (of `start_ec2_hosts`) run, as behind a job host's docker0 bridge:
    a container of the host's Docker daemon (the stand-in's), whose network namespace the IMDS
    stand-in routes through the host's (one routing hop further from IMDS). The host's docker CLI
    reaches that daemon at Docker's own socket path, as on a job host. Returns the network's name
    for `docker run --network` (job_network)."""
    anchor = job_network(host).removeprefix("container:")
    stand_in.run(["docker", "rm", "-f", anchor])
    started = stand_in.run(["docker", "run", "-d", "--name", anchor, "--network=none", "--entrypoint=",
                            JOB_PROBE_IMAGE, "sleep", "infinity"])  # fmt: skip
    pid = stand_in.run(["docker", "inspect", "-f", "{{.State.Pid}}", anchor]).stdout.strip()
    if started.returncode != 0 or not pid.isdigit():
        raise HostSetupError(f"{host.name}: the job network's container did not start: {started.stderr.strip()}")
    imds.add_job_network(f"{imds.prefix}-{host.name}", int(pid))
    host.run(f"ln -sf {HOST_MOUNT}/{stand_in.docker_socket.name} /var/run/docker.sock")
    return job_network(host)


def remove_job_networks(stand_in: StandIn) -> None:
    """The job networks' containers, before the stand-in stops (else its dockerd waits 10 s for each)."""
    if (stand_in.state / "pids" / "holder").exists():
        listed = stand_in.run(["docker", "ps", "-aq", "--filter", "name=^ecrkit-jobs-"]).stdout.split()
        if listed:
            stand_in.run(["docker", "rm", "-f", *listed])


HELPERS_DIR = ROOT / ".cache" / "helpers"  # what `make helpers` fetched: <suite>/docker-credential-ecr-login


class ReleaseMirror:
    """The official release bucket's layout on loopback (`<version>/linux-amd64/<binary>` and
    `.sha256` in sha256sum format), holding real helpers (`binaries`), each under the version its
    binary reports. Counts requests; a version can be given a tampered file."""

    def __init__(self, root: Path, binaries: Iterable[Path]) -> None:
        self.root = root
        self.requests: list[str] = []
        self.versions: list[str] = []
        for binary in binaries:
            version = binary_version(str(binary))
            self.versions.append(version)
            self.publish(version, binary.read_bytes())
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Handler(*a, directory=str(root)))
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, version: str, binary: bytes, checksum: str | None = None) -> str:
        """Put a release in place; `checksum` (default: the binary's) is what its .sha256 says."""
        directory = self.root / version / "linux-amd64"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / HELPER_BINARY).write_bytes(binary)
        digest = checksum or hashlib.sha256(binary).hexdigest()
        (directory / f"{HELPER_BINARY}.sha256").write_text(f"{digest}  {HELPER_BINARY}\n")
        return digest

    def downloads(self, version: str) -> int:
        return self.requests.count(f"/{version}/linux-amd64/{HELPER_BINARY}")

    def close(self) -> None:
        self.server.shutdown()


def release_mirror() -> ReleaseMirror:
    """The release bucket's mirror for `make run`, holding the helpers `make helpers` fetched,
    among them the version ecrkit installs by default."""
    binaries = sorted(HELPERS_DIR.glob(f"*/{HELPER_BINARY}"))
    root = STAND_IN_STATE.parent / "releases"
    shutil.rmtree(root, ignore_errors=True)
    mirror = ReleaseMirror(root, binaries)
    if HELPER_VERSION not in mirror.versions:
        mirror.close()
        raise HostSetupError(
            f"{HELPERS_DIR} holds no helper {HELPER_VERSION} (ecrkit's default, which make run installs from a "
            f"mirror of the release bucket), only {mirror.versions or 'none'}: run `make helpers`"
        )
    return mirror


def remove_hosts(hosts: Iterable[Host]) -> None:
    for host in hosts:
        podman("rm", "-f", "-t", "0", host.name, check=False)


def write_inventory(
    path: Path, groups: dict[str, list[Host]], variables: dict[str, object], ssh_key: Path | None = None
) -> Path:
    """A YAML inventory (JSON is valid YAML) reaching the containers through podman or SSH."""

    def connection(host: Host) -> dict[str, object]:
        if host.ssh_port is None:
            return {"ansible_connection": "containers.podman.podman"}
        return {
            "ansible_connection": "ssh",
            "ansible_host": "127.0.0.1",
            "ansible_port": host.ssh_port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(ssh_key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        }

    inventory = {
        "all": {
            "vars": variables,
            "children": {group: {"hosts": {h.name: connection(h) for h in hosts}} for group, hosts in groups.items()},
        }
    }
    path.write_text(json.dumps(inventory))
    return path


def ansible_playbook(
    *args: str, env: dict[str, str] | None = None, capture: bool = True
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from the project's root, with its ansible.cfg, as a user runs it.
    An `env` that sets AWS_* variables (a stand-in's) replaces the caller's AWS settings whole."""
    own_aws = any(key.startswith("AWS_") for key in env or {})
    inherited = {k: v for k, v in ANSIBLE_ENV.items() if not (own_aws and k.startswith("AWS_"))}
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        capture_output=capture,
        text=True,
        cwd=ROOT,
        env={**inherited, "ANSIBLE_FORCE_COLOR": "0", **(env or {})},
        check=False,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters by host."""
    return {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")} for m in RECAP.finditer(output)
    }


def inventory_groups(inventory: Path) -> dict[str, list[str]]:
    """Host names by group, as Ansible itself reads the inventory (ecr_accounts included)."""
    listing = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=ANSIBLE_ENV,
    )
    data = json.loads(listing.stdout)
    return {
        group: value["hosts"]
        for group, value in data.items()
        if isinstance(value, dict) and value.get("hosts") and group not in ("all", "ungrouped")
    }


def local_host_groups() -> dict[str, list[str]]:
    """make run's hosts by group: its inventory's, less the account (driven from the controller)."""
    groups = inventory_groups(LOCAL_INVENTORY)
    groups.pop(ACCOUNT_GROUP, None)
    return groups


def helper_entries(text: str) -> str:
    """Which registries a config.json hands to the helper, one per line."""
    try:
        config = parse(text, "config.json")
    except FileFormatError as exc:
        return str(exc)
    entries = [f"credsStore={config['credsStore']}"] if "credsStore" in config else []
    entries += [f"{host} -> {helper}" for host, helper in config.get("credHelpers", {}).items()]
    return "\n".join(entries) or "no helper"


def pull_result(host: Host, image: str, stand_in: StandIn, keys: bool = True) -> str:
    """A pull on the host; without `keys` (an EC2 host) with no token cache, so that it asks ECR with the role's."""
    env = stand_in.host_env(keys) | ({} if keys else {"AWS_ECR_DISABLE_CACHE": "true"})
    done = host.run(f"docker pull -q {image} && docker rmi -f {image} >/dev/null", env)
    return "pulled" if done.returncode == 0 else f"refused: {done.stderr.strip().splitlines()[-1:]}"


PULL_HEADERS = ("host", "group", "credentials", "helper on PATH", "version", "docker pull", "/root/.docker/config.json")


def summary(
    groups: dict[str, list[str]],
    image: str,
    stand_in: StandIn,
    imds: ImdsStandIn | None = None,
    ec2: Iterable[str] = (),
) -> tuple[list[tuple[str, ...]], bool]:
    """What each host got, and a real pull on each (rows for PULL_HEADERS); True when every host pulled.
    The hosts named in `ec2` pull with their instance role's credentials from `imds`: the row says
    whether keys were planted, and how many of the role's credentials the API accepted for the pull."""
    rows: list[tuple[str, ...]] = []
    pulled = True
    ec2 = set(ec2)
    for group, names in groups.items():
        for name in names:
            host = Host(name)
            path = host.run("command -v docker-credential-ecr-login").stdout.strip() or "missing"
            asked = host.run("docker-credential-ecr-login -v")  # -v: the version verb may say 0.6.4 (helper.py)
            version = version_from({"rc": asked.returncode, "stdout": asked.stdout}) or "-"
            config = helper_entries(host.run("cat /root/.docker/config.json").stdout)
            used = len(imds.keys_used()) if imds is not None else 0
            pull = pull_result(host, image, stand_in, keys=name not in ec2)
            pulled = pulled and pull == "pulled"
            credentials = "planted keys"
            if name in ec2 and imds is not None:
                planted = "AWS_ACCESS_KEY_ID" in host.read("/etc/environment")
                accepted = [answer for _, answer in imds.keys_used()[used:]].count("accepted")
                credentials = f"{'planted keys and ' if planted else ''}IMDS role, {accepted} accepted"
            rows.append((name, group, credentials, path, version, pull, config))
    return rows, pulled


ACCOUNT_HEADERS = ("setting", "name", "state")


def account_summary(stand_in: StandIn) -> list[tuple[str, str, str]]:
    """What the stand-in's account holds after playbooks/ecr.yml, read back through its API."""
    ecr, iam = stand_in.client("ecr"), stand_in.client("iam")
    rows = []
    for repository in ecr.describe_repositories()["repositories"]:
        name = repository["repositoryName"]
        lifecycle = _lifecycle_text(ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"])
        policy = json.loads(ecr.get_repository_policy(repositoryName=name)["policyText"])
        readers = policy["Statement"][0]["Condition"]["StringEquals"]["aws:PrincipalOrgID"]
        encryption = repository["encryptionConfiguration"]
        sealed = " ".join(filter(None, (encryption["encryptionType"], encryption.get("kmsKey"))))
        rows.append(("repository", name, f"{lifecycle}; read by {readers}; encrypted {sealed}"))
    replication = ecr.describe_registry().get("replicationConfiguration") or {"rules": []}
    for number, rule in enumerate(replication["rules"], start=1):
        targets = ", ".join(f"{d['region']} of {d['registryId']}" for d in rule["destinations"])
        prefixes = ", ".join(f["filter"] for f in rule.get("repositoryFilters", [])) or "every repository"
        rows.append(("replication rule", str(number), f"{prefixes} to {targets}"))
    for rule in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]:
        rows.append(("pull-through rule", rule["ecrRepositoryPrefix"], f"caches {rule['upstreamRegistryUrl']}"))
    for template in ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]:
        lifecycle = _lifecycle_text(template["lifecyclePolicy"])
        rows.append(("creation template", template["prefix"], f"{', '.join(template['appliedFor'])}: {lifecycle}"))
    for role in iam.list_roles()["Roles"]:
        for name in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=name)["PolicyDocument"]
            actions = sorted({action for statement in document["Statement"] for action in statement["Action"]})
            rows.append(("IAM policy", f"{role['RoleName']}/{name}", " ".join(actions)))
    return rows


def _lifecycle_text(policy: str) -> str:
    return "; ".join(rule["description"] for rule in json.loads(policy)["rules"])


def start_local_hosts(targets: Sequence[Target], stand_in: StandIn, imds: ImdsStandIn, mirror_port: int) -> list[Host]:
    """make run's hosts with what a site has besides ecrkit: the services, and an instance role. A host
    whose inventory says it is an EC2 instance (ecrkit_instance_metadata) gets the role from the IMDS
    stand-in (`imds`, up), no keys planted, and reaches the release mirror (`mirror_port`) through a
    relay; where jobs run on it (ecrkit_local_jobs), they get a network one hop behind it. The others
    (the workstation) get keys standing in for a role, and are reused if running."""
    ec2 = [target.name for target in targets if target.imds is not None]
    hosts = start_hosts([t.name for t in targets if t.name not in ec2], reuse=True, options=stand_in.host_options())
    hosts += start_ec2_hosts(ec2, stand_in, imds)
    services = {target.name: target.services for target in targets}
    for host in hosts:
        give_stand_in_role(host, stand_in, services[host.name], keys=host.name not in ec2)
        if host.name in ec2:
            imds.relay_to(f"{imds.prefix}-{host.name}", "127.0.0.1", mirror_port)
    jobs = {target.name for target in targets if target.imds and target.imds.get("job_command")}
    if jobs:
        load_job_probe_image(stand_in)
    for host in (h for h in hosts if h.name in jobs):
        print(
            f"    jobs on {host.name} run on {start_job_network(host, stand_in, imds)}, one hop behind it", flush=True
        )
    return hosts


def exposure_at_hop_limits(
    reports: Sequence[Report], jobs: Sequence[Target], imds: ImdsStandIn
) -> list[tuple[str, str, str, str, str]]:
    """The validator's verdict on a job's reach to the instance role on each host where jobs run:
    at hop limit 1 from `reports`, then at hop limit 2 (the IMDS stand-in reconfigured, as by a launch
    template with HttpPutResponseHopLimit 2, and set back after). Rows for EXPOSURE_HEADERS."""
    names = {target.name for target in jobs}
    verdicts = [("hop limit 1", *exposure(report)) for report in reports if report.host in names]
    imds.configure(hop_limit=2)
    try:
        again = validate_all(jobs)
    finally:
        imds.configure(hop_limit=1)
    return verdicts + [("hop limit 2", *exposure(report)) for report in again]


class Steps:
    """Say what `make run` is doing, and how long each step took."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.done += 1
        print(f"[{self.done}/{self.total}] {what} ...", flush=True)
        started = time.monotonic()
        yield
        print(f"[{self.done}/{self.total}] {what}: done in {time.monotonic() - started:.1f} s", flush=True)


def destroy(names: Iterable[str], stand_in: StandIn) -> None:
    remove_hosts(Host(name) for name in names)
    remove_job_networks(stand_in)
    recorded = stand_in.state / "imds" / "prefix"  # the IMDS stand-in's namespaces, also those of a kept run
    if recorded.exists():
        stand_in.imds(recorded.read_text().strip()).down()
    stand_in.down()


EXPOSURE_HEADERS = ("IMDS", "host", "result", "evidence", "fix")


def exposure(report: Report) -> tuple[str, str, str, str]:
    """The validator's verdict on a job's reach to the instance role: (host, result, evidence, fix)."""
    found = [f for f in report.findings if f.check == "job reaches instance role"]
    if not found:
        return (report.host, "missing", report.unreachable or "the validator gave no verdict on a job's reach", "")
    verdict = found[0]
    return (report.host, SEVERITY_WORD[verdict.severity], verdict.evidence,
            verdict.fix if verdict.severity != "ok" else "")  # fmt: skip


def run(keep: bool = False) -> int:
    """`make run`: the stand-in for ECR, local hosts provisioned with site.yml, a real pull on
    each, and the validator's report; then everything is torn down unless `keep`."""
    groups = local_host_groups()
    names = [name for members in groups.values() for name in members]
    targets = inventory_targets(str(LOCAL_INVENTORY), [])  # also what each host should have
    stand_in = StandIn(STAND_IN_STATE)
    imds = stand_in.imds()
    # The hosts that stand for EC2 instances (ecrkit_instance_metadata), and those where jobs run.
    ec2 = {target.name for target in targets if target.imds is not None}
    jobs = [target for target in targets if target.imds and target.imds.get("job_command")]
    steps = Steps(7)
    console = Console()
    mirror = release_mirror()
    try:
        with steps.step("starting the stand-in for AWS and ECR and pushing an image to it"):
            stand_in.up()
            image = stand_in.push_image("ecrkit/demo", "1")
            stand_in.client("iam").create_role(RoleName=HOSTS_ROLE, AssumeRolePolicyDocument=EC2_TRUST)
            imds.up(ImdsSettings(role=HOSTS_ROLE, hop_limit=1))
            print(f"    https://{API_HOST} and {REGISTRY_HOST} on loopback, in a private mount namespace")
            print(
                f"    instance metadata at 169.254.169.254 for {', '.join(sorted(ec2))}: role {HOSTS_ROLE}, hop limit 1"
            )
        with steps.step(f"starting hosts {', '.join(names)} (podman systemd containers)"):
            hosts = start_local_hosts(targets, stand_in, imds, int(mirror.base_url.rsplit(":", 1)[1]))
            for host in (h for h in hosts if h.name in groups.get("workstations", [])):
                host.run("mkdir -p /root/.aws && printf '[default]\\nregion = us-east-1\\n' > /root/.aws/config")
        with steps.step("applying site.yml with --diff (the account through the stand-in's API, then the hosts)"):
            # What users get: ecrkit's default install method and helper version, downloaded by
            # each host from the test bed's mirror of the release bucket.
            release = [f"ecr_credential_helper_release_base_url={mirror.base_url}"]
            release += ["ecr_credential_helper_install_method=release"]
            result = ansible_playbook(
                "-i", str(LOCAL_INVENTORY), *(f"--extra-vars={pair}" for pair in release), "site.yml", "--diff",
                env=stand_in.controller_env(), capture=False,
            )  # fmt: skip
            if result.returncode != 0:
                return result.returncode
            title = "What ecrkit declared in the stand-in's ECR account, read back through its API"
            print_rows(console, title, ACCOUNT_HEADERS, account_summary(stand_in))
        with steps.step(f"pulling {image} on every host through the helper"):
            rows, pulled = summary(groups, image, stand_in, imds, ec2)
            print_rows(console, f"What ecrkit set up on each host, and a real pull of {image}", PULL_HEADERS, rows)
        with steps.step("validating every host (ecrkit validate -i inventory/local/hosts.yml)"):
            reports = validate_all(targets)
            print_report(console, reports)
        with steps.step(
            f"validating {', '.join(t.name for t in jobs)} again at hop limit 2: can a job reach the role?"
        ):
            verdicts = exposure_at_hop_limits(reports, jobs, imds)
            title = "A job's reach to the instance role, as the validator judged it (seed 001)"
            print_rows(console, title, EXPOSURE_HEADERS, verdicts)
        passed = pulled and all(report.passed for report in reports) and all(v[2] != "missing" for v in verdicts)
    finally:
        with steps.step("keeping the hosts and the stand-in (make clean-hosts removes them)" if keep else
                        "removing the hosts and stopping the stand-in (make run KEEP=1 keeps them)"):  # fmt: skip
            mirror.close()
            if not keep:
                destroy(names, stand_in)
    print("every host pulled and passed validation" if passed else "FAILED: see the tables above", flush=True)
    return 0 if passed else 1


def main(argv: list[str]) -> int:
    if "--destroy" in argv:
        names = [name for members in local_host_groups().values() for name in members]
        destroy(names, StandIn(STAND_IN_STATE))
        print(f"removed {', '.join(names)} and stopped the stand-in")
        return 0
    try:
        return run(keep="--keep" in argv)
    except HostSetupError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
