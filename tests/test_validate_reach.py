"""`ecrkit validate` reaches each host the way its inventory (or ssh_config) says: through
Ansible's own connection plugins, not a transport of ecrkit's.

The hosts are podman containers that run sshd (no systemd: only reaching them is under test,
tests/test_validate.py judges a provisioned host): a bastion published on a loopback port, and
a target on an internal podman network that only the bastion can reach. Each failure a host
can meet is one line naming the host and its cause, and the other hosts are still judged.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.hosts import BASE_IMAGE, ansible_playbook, podman
from tests.conftest import ROOT, run_ecrkit

pytestmark = [pytest.mark.hosts]
TAG = f"ecrkit-pytest-reach-{os.getpid()}"
SUBNET, TARGET_IP = "10.89.231.0/24", "10.89.231.10"
BASTION_PORT = 22301
BECOME_PASSWORD = "s3cret-Become-7f2a"  # deploy's sudo password: in the vault, never in any output
VAULT_PASSWORD = "vault-pass-91c4"
SSHD = "mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e"


@dataclass
class Bed:
    work: Path
    key: Path
    ssh_config: Path  # the bastion and the target as ssh_config Host aliases
    target: str  # the container on the internal network
    plain: str  # a container reached with containers.podman.podman


def _sshd_container(name: str, key: Path, *options: str) -> None:
    podman("run", "-d", "--name", name, "--hostname", name, *options, BASE_IMAGE, "sh", "-c", SSHD)
    podman("exec", name, "install", "-d", "-m", "0700", "/root/.ssh")
    podman("cp", str(key.with_suffix(".pub")), f"{name}:/root/.ssh/authorized_keys")
    podman("exec", name, "chown", "root:root", "/root/.ssh/authorized_keys")


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    work = tmp_path_factory.mktemp("reach")
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    network, bastion, target, plain = f"{TAG}-net", f"{TAG}-bastion", f"{TAG}-target", f"{TAG}-plain"
    podman("network", "rm", "-f", network, check=False)
    podman("network", "create", "--internal", "--subnet", SUBNET, network)
    try:
        _sshd_container(target, key, "--network", network, "--ip", TARGET_IP)
        _sshd_container(bastion, key, "--network", "podman", "-p", f"127.0.0.1:{BASTION_PORT}:22")
        podman("network", "connect", network, bastion)  # after: the published port stays on podman's network
        podman("run", "-d", "--name", plain, "--network", "none", BASE_IMAGE, "sleep", "infinity")
        # A login that must become root with a password (sudo asks for it).
        setup = (
            "useradd -m -s /bin/sh deploy && echo 'deploy:" + BECOME_PASSWORD + "' | chpasswd"
            " && install -d -o deploy -m 0700 /home/deploy/.ssh && cp /root/.ssh/authorized_keys /home/deploy/.ssh/"
            " && chown deploy /home/deploy/.ssh/authorized_keys"
            " && echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy"
        )
        podman("exec", target, "sh", "-c", setup)
        ssh_config = work / "ssh_config"
        ssh_config.write_text(
            f"Host test-bastion\n  HostName 127.0.0.1\n  Port {BASTION_PORT}\n  User root\n  IdentityFile {key}\n"
            f"Host test-target\n  HostName {TARGET_IP}\n  User root\n  IdentityFile {key}\n  ProxyJump test-bastion\n"
            "Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        )
        yield Bed(work, key, ssh_config, target, plain)
    finally:
        podman("rm", "-f", "-t", "0", bastion, target, plain, check=False)
        podman("network", "rm", "-f", network, check=False)


def write_inventory(path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    variables = {"docker_auth_config_users": ["root"], "ansible_ssh_pipelining": True}
    path.write_text(json.dumps({"all": {"vars": variables, "hosts": hosts}}))
    return path


def over_ssh(bed: Bed, *, port: int = BASTION_PORT, **more: Any) -> dict[str, Any]:
    return {
        "ansible_host": "127.0.0.1",
        "ansible_port": port,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(bed.key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        **more,
    }


def validate(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """`ecrkit validate --json`: its exit code, report, and everything it wrote (stdout and stderr)."""
    done = run_ecrkit("validate", "--json", *args, env={**os.environ, **(env or {})})
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout), done.stdout + done.stderr


def probed(report: dict[str, Any], host: str) -> dict[str, Any]:
    """The host's report, after checking that the probe ran there (root's login was seen)."""
    [entry] = [h for h in report["hosts"] if h["host"] == host]
    assert entry["unreachable"] is None, entry["unreachable"]
    assert ("user root", "exists", "ok") in [(f["subject"], f["check"], f["severity"]) for f in entry["findings"]]
    return dict(entry)


def playbook_probed(inventory: Path, host: str, *args: str) -> None:
    """playbooks/validate.yml reaches the host the same way: its probe task ran there (the host
    then fails the judge's checks, as it has no helper: only reaching it is under test here)."""
    done = ansible_playbook("-i", str(inventory), "--limit", host, *args, "playbooks/validate.yml")
    probe = done.stdout.split("Probe every process that runs the helper", 1)[-1].split("TASK [", 1)[0]
    assert f"ok: [{host}]" in probe, done.stdout[-3000:]
    assert "Traceback" not in done.stdout and BECOME_PASSWORD not in done.stdout


def unreachable(report: dict[str, Any], host: str) -> str:
    [entry] = [h for h in report["hosts"] if h["host"] == host]
    assert not entry["passed"] and entry["unreachable"], entry
    assert "\n" not in entry["unreachable"] and "Traceback" not in entry["unreachable"]
    return str(entry["unreachable"])


def test_a_host_behind_a_bastion_through_proxyjump_in_the_inventory_and_in_ssh_config(bed: Bed) -> None:
    """The target is on an internal network: only the bastion reaches it. The inventory names
    the jump in ansible_ssh_common_args; `ecrkit validate test-target` finds it in ssh_config
    (the file ANSIBLE_SSH_ARGS points OpenSSH at, as a user's ~/.ssh/config would)."""
    direct = subprocess.run(
        ["ssh", "-F", str(bed.ssh_config), "-o", "ConnectTimeout=3", "-i", str(bed.key), f"root@{TARGET_IP}", "true"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert direct.returncode != 0, "the target must not be reachable without the bastion"
    jump = f"-F {bed.ssh_config} -o ProxyJump=test-bastion"
    first: dict[str, Any] = {}
    # Apart: two hosts of one address, port and user share Ansible's ControlPath (one connection).
    ways: tuple[tuple[str, dict[str, Any]], ...] = (
        ("no-jump", {}),
        ("behind-bastion", {"ansible_ssh_common_args": jump}),
    )
    for name, variables in ways:
        inventory = write_inventory(bed.work / f"{name}.yml", {
            name: over_ssh(bed, ansible_host=TARGET_IP, ansible_port=22, **variables),
        })  # fmt: skip
        _, report, _ = validate("-i", str(inventory), env={"ANSIBLE_TIMEOUT": "5"} if name == "no-jump" else {})
        first = first if name != "no-jump" else report
    probed(report, "behind-bastion")
    playbook_probed(inventory, "behind-bastion")
    # Without the jump: the target's network is not the controller's (its SYN is answered, never its SSH).
    assert "within 5 s" in unreachable(first, "no-jump")
    _, report, _ = validate("test-target", env={"ANSIBLE_SSH_ARGS": f"-F {bed.ssh_config}"})
    probed(report, "test-target")
    _, report, _ = validate("test-target")  # without that ssh_config, no such host
    assert unreachable(report, "test-target").startswith("unreachable: Could not resolve hostname test-target")


def vault(text: str, name: str, password_file: Path) -> str:
    done = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-vault"), "encrypt_string", "--vault-password-file", str(password_file),
         text, "--name", name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def test_a_login_that_becomes_root_with_a_vaulted_password_never_shows_it(bed: Bed) -> None:
    password_file = bed.work / "vault-pass"
    password_file.write_text(VAULT_PASSWORD)
    jump = f"-F {bed.ssh_config} -o ProxyJump=test-bastion"
    login = {"ansible_host": TARGET_IP, "ansible_user": "deploy", "ansible_ssh_common_args": jump,
             "ansible_ssh_private_key_file": str(bed.key)}  # fmt: skip
    # YAML, for the vault's !vault tag: the password is an encrypted string in the inventory.
    encrypted = vault(BECOME_PASSWORD, "ansible_become_password", password_file).replace("\n", "\n      ")
    inventory = bed.work / "become.yml"
    inventory.write_text(
        "all:\n  vars:\n    docker_auth_config_users: [root]\n  hosts:\n"
        f"    with-password:\n      {encrypted}\n"
        + "".join(f"      {k}: {json.dumps(v)}\n" for k, v in login.items())
        + "    without-password:\n"
        + "".join(f"      {k}: {json.dumps(v)}\n" for k, v in login.items())
        + "    wrong-password:\n      ansible_become_password: not-the-password\n"
        + "".join(f"      {k}: {json.dumps(v)}\n" for k, v in login.items())
    )
    assert BECOME_PASSWORD not in inventory.read_text()
    junit = bed.work / "become.xml"
    _, report, said = validate("-i", str(inventory), "--vault-password-file", str(password_file),
                               "--junit", str(junit))  # fmt: skip
    probed(report, "with-password")  # the probe ran as root: it saw root's login
    playbook_probed(inventory, "with-password", "--vault-password-file", str(password_file))
    assert unreachable(report, "without-password").startswith("become needs a password and none was given")
    assert unreachable(report, "wrong-password").startswith("become refused: the become password was wrong")
    plain = run_ecrkit("validate", "-i", str(inventory), "--vault-password-file", str(password_file))
    for text in (said, junit.read_text(), plain.stdout, plain.stderr):
        assert BECOME_PASSWORD not in text and VAULT_PASSWORD not in text
    # Without the vault's password, the host that needs it is named, and the other still judged.
    _, report, said = validate("-i", str(inventory))
    assert unreachable(report, "with-password").startswith("vault: the inventory holds encrypted values and no vault")
    assert unreachable(report, "without-password").startswith("become needs a password")


@pytest.fixture
def not_ssh() -> Iterator[int]:
    """A loopback port whose server answers, but not with SSH (an HTTP server's reply)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def answer() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


def test_each_failure_is_one_line_with_its_cause_and_the_others_are_judged(bed: Bed, not_ssh: int) -> None:
    known_hosts = bed.work / "known_hosts"
    other_key = bed.work / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    known_hosts.write_text(f"[127.0.0.1]:{BASTION_PORT} {other_key.with_suffix('.pub').read_text()}")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))  # bound, not listening: refused
        refused = int(free.getsockname()[1])
        inventory = write_inventory(bed.work / "failures.yml", {
            "fine": over_ssh(bed),
            "refused": over_ssh(bed, port=refused),
            "not-ssh": over_ssh(bed, port=not_ssh),
            "nowhere": over_ssh(bed, ansible_host="nowhere.invalid"),
            "wrong-key": over_ssh(bed, ansible_ssh_private_key_file=str(other_key)),
            "changed-key": over_ssh(bed, ansible_ssh_common_args=f"-o UserKnownHostsFile={known_hosts}"),
            "no-python": over_ssh(bed, ansible_python_interpreter="/usr/bin/python3.99"),
        })  # fmt: skip
        code, report, said = validate("-i", str(inventory))
    assert code == 1
    probed(report, "fine")
    assert unreachable(report, "refused").startswith(f"connection refused: connect to host 127.0.0.1 port {refused}")
    assert unreachable(report, "not-ssh").startswith("not an SSH server: ")
    assert unreachable(report, "nowhere").startswith("unreachable: Could not resolve hostname nowhere.invalid")
    assert unreachable(report, "wrong-key").startswith("authentication failed: ")
    assert unreachable(report, "changed-key").startswith("host key mismatch: ")
    assert unreachable(report, "no-python").startswith("no Python on the host: ")
    assert "Traceback" not in said
    table = run_ecrkit("validate", "-i", str(inventory))  # the table: one row per host that was not probed
    assert table.returncode == 1 and "Traceback" not in table.stdout + table.stderr


def test_a_connection_plugin_other_than_ssh(bed: Bed) -> None:
    inventory = write_inventory(bed.work / "podman.yml", {
        bed.plain: {"ansible_connection": "containers.podman.podman"},
    })  # fmt: skip
    _, report, _ = validate("-i", str(inventory), env={"CONTAINERS_CONF": str(ROOT / "molecule/containers.conf")})
    probed(report, bed.plain)


STUB_SSM = '''
"""A stand-in for community.aws.aws_ssm: the local connection, recording that Ansible loaded it."""
import os
from ansible.plugins.connection.local import Connection as Local

DOCUMENTATION = """
name: aws_ssm
short_description: records its use, then runs locally (a test's stub)
description: [A test's stub.]
author: ecrkit tests
options: {}
"""


class Connection(Local):
    transport = "community.aws.aws_ssm"

    def _connect(self):
        with open(os.environ["STUB_SSM_RECORD"], "a") as record:
            record.write(self._play_context.remote_addr + "\\n")
        return super()._connect()
'''


def test_the_connection_plugin_the_inventory_names_is_the_one_ansible_loads(tmp_path: Path) -> None:
    """SSM cannot run here: a stub community.aws.aws_ssm in the test's own collection path
    shows that the inventory's ansible_connection is what reaches the host."""
    plugin = tmp_path / "collections/ansible_collections/community/aws/plugins/connection/aws_ssm.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text(STUB_SSM)
    record = tmp_path / "record"
    instance = "i-0123456789abcdef0"
    inventory = write_inventory(tmp_path / "ssm.yml", {
        "ec2-host": {"ansible_connection": "community.aws.aws_ssm", "ansible_host": instance,
                     "ansible_become": False, "ansible_python_interpreter": "/usr/bin/python3"},
    })  # fmt: skip
    env = {"ANSIBLE_COLLECTIONS_PATH": f"{tmp_path / 'collections'}", "STUB_SSM_RECORD": str(record)}
    _, report, _ = validate("-i", str(inventory), env=env)
    assert record.read_text().split() == [instance]
    assert report["hosts"][0]["unreachable"] is None
