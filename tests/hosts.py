"""Disposable systemd hosts: podman containers from the base image that `make image` builds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = os.environ.get("ECRKIT_BASE_IMAGE", "localhost/debian-systemd:bookworm")
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "molecule" / "containers.conf")}
RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=PODMAN_ENV, check=check)


@dataclass
class Host:
    name: str

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, "sh", "-c", command, check=False)

    def exists(self, path: str) -> bool:
        return self.run(f"test -e {path}").returncode == 0

    def read(self, path: str) -> str:
        return podman("exec", self.name, "cat", path).stdout


def start_hosts(names: Iterable[str]) -> list[Host]:
    """Start systemd containers and wait until systemd has booted them."""
    hosts = []
    for name in names:
        podman("rm", "-f", name, check=False)
        podman("run", "-d", "--name", name, "--hostname", name, "--systemd=always", BASE_IMAGE)
        hosts.append(Host(name))
    for host in hosts:
        for _ in range(100):
            state = host.run("systemctl is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
    return hosts


def remove_hosts(hosts: Iterable[Host]) -> None:
    for host in hosts:
        podman("rm", "-f", "-t", "0", host.name, check=False)


def write_inventory(path: Path, groups: dict[str, list[Host]], variables: dict[str, object]) -> Path:
    """A YAML inventory reaching the containers through podman (JSON is valid YAML)."""
    inventory = {
        "all": {
            "vars": {"ansible_connection": "containers.podman.podman", **variables},
            "children": {group: {"hosts": {h.name: None for h in hosts}} for group, hosts in groups.items()},
        }
    }
    path.write_text(json.dumps(inventory))
    return path


def ansible_playbook(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from the project's root, with its ansible.cfg, as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**PODMAN_ENV, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0", **(env or {})},
        check=False,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters by host."""
    return {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")} for m in RECAP.finditer(output)
    }
