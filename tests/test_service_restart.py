"""Restarts that survive a kill, on a systemd host: a converge killed after it wrote a service's
environment and before its handler restarted the service leaves the file new and the process
old; the next converge must see that from the running service and restart it (issue 27).

The kill is real: ansible-playbook is killed (SIGKILL, its whole process group) while a task
that follows the role waits, after the role's write and before the play's handlers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.hosts import (
    ANSIBLE_ENV,
    BIN,
    ROOT,
    Host,
    ansible_playbook,
    recap,
    remove_hosts,
    start_hosts,
    write_inventory,
)

pytestmark = pytest.mark.hosts

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
RUNNER_DROP_IN = "/etc/systemd/system/gitlab-runner.service.d/ecrkit.conf"
AGENT_ENV = "/var/lib/dcos/mesos-slave-common"
UNITS = {
    # Stand-ins for gitlab-runner and the DC/OS Mesos agent (neither is obtainable here).
    "gitlab-runner": "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
    "dcos-mesos-slave": f"[Service]\nEnvironmentFile=-{AGENT_ENV}\nExecStart=/bin/sleep infinity\n"
    "[Install]\nWantedBy=multi-user.target\n",
}
PLAY = """- name: {name}
  hosts: all
  gather_facts: false
  roles:
    - role: ecrkit.ecr.{role}
"""
# Tasks after the roles run before the play's handlers: the kill lands between write and restart.
HANG = """  tasks:
    - name: Wait here to be killed
      ansible.builtin.pause:
        minutes: 10
"""


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    hosts = start_hosts([f"ecrkit-pytest-restart-{os.getpid()}"])
    try:
        host = hosts[0]
        for unit, text in UNITS.items():
            host.run(f"printf '%s' '{text}' > /etc/systemd/system/{unit}.service")
        host.run("mkdir -p /etc/gitlab-runner /var/lib/dcos && chmod 0700 /etc/gitlab-runner")
        host.run(f"printf 'MESOS_ATTRIBUTES=zone:a\\nAWS_REGION=eu-west-1\\n' > {AGENT_ENV}")
        done = host.run("systemctl daemon-reload && systemctl enable --now gitlab-runner dcos-mesos-slave")
        assert done.returncode == 0, done.stderr
        config = (ROOT / "tests" / "data" / "runner-config.toml").read_text()
        subprocess.run(
            ["podman", "exec", "-i", host.name, "sh", "-c", "cat > /etc/gitlab-runner/config.toml"],
            input=config, text=True, check=True, env=ANSIBLE_ENV,
        )  # fmt: skip
        yield host
    finally:
        remove_hosts(hosts)


@pytest.fixture(scope="module")
def inventory(host: Host, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_inventory(
        tmp_path_factory.mktemp("inventory") / "hosts.yml",
        {"managers": [host]},
        {
            "docker_auth_config_registries": [ECR],
        },
    )


def playbook(directory: Path, role: str, *, hang: bool = False) -> Path:
    path = directory / f"{role}{'-hang' if hang else ''}.yml"
    path.write_text(PLAY.format(name=f"Converge {role}", role=role) + (HANG if hang else ""))
    return path


# The setting each role's converges change: a region, or the mirror's schedule.
SETTING = {"gitlab_runner_ecr": "gitlab_runner_ecr_region", "marathon_agent_ecr": "marathon_agent_ecr_region",
           "ecr_mirror": "ecr_mirror_schedule"}  # fmt: skip


def setting(book: Path, value: str) -> list[str]:
    return ["-e", json.dumps({SETTING[book.stem.removesuffix("-hang")]: value})]


def converge(inventory: Path, book: Path, value: str, *args: str) -> dict[str, int]:
    done = ansible_playbook("-i", str(inventory), str(book), *setting(book, value), *args)
    assert done.returncode == 0, done.stdout[-3000:]
    return recap(done.stdout)[next(iter(recap(done.stdout)))]


def killed_before_handlers(inventory: Path, book: Path, value: str, *args: str) -> str:
    """Run the play and SIGKILL ansible-playbook, with every process it started, once the role's
    tasks are done and the task that follows has started; what it printed until then."""
    run = subprocess.Popen(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(book), *setting(book, value), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, cwd=ROOT,
        env={**ANSIBLE_ENV, "ANSIBLE_FORCE_COLOR": "0"}, start_new_session=True,
    )  # fmt: skip
    assert run.stdout is not None
    said = []
    try:
        for line in run.stdout:
            said.append(line)
            if "TASK [Wait here to be killed]" in line:
                break
        else:
            pytest.fail("the play ended before the kill point:\n" + "".join(said)[-3000:])
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    return "".join(said)


def service(host: Host, unit: str) -> dict[str, str]:
    """What systemd says of the unit, and the AWS_REGION its running process has."""
    shown = host.run(f"systemctl show {unit} --property=NeedDaemonReload,ActiveState,MainPID").stdout
    facts = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    pid = facts.get("MainPID", "0")  # a timer has none
    environ = host.run(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout if pid != "0" else ""
    region = [line.split("=", 1)[1] for line in environ.splitlines() if line.startswith("AWS_REGION=")]
    return {**facts, "region": region[0] if region else ""}


def test_a_runner_restart_lost_to_a_kill_is_made_by_the_next_converge(
    host: Host, inventory: Path, tmp_path: Path
) -> None:
    book = playbook(tmp_path, "gitlab_runner_ecr")
    assert converge(inventory, book, "us-east-1")["changed"] > 0
    assert service(host, "gitlab-runner")["region"] == "us-east-1"

    said = killed_before_handlers(inventory, playbook(tmp_path, "gitlab_runner_ecr", hang=True), "eu-west-1")
    assert "changed: [" in said  # the converge task wrote the drop-in...
    assert 'Environment="AWS_REGION=eu-west-1"' in host.read(RUNNER_DROP_IN)
    # ...and the kill left the service as issue 27 found it.
    assert service(host, "gitlab-runner") | {"MainPID": ""} == {
        "NeedDaemonReload": "yes", "ActiveState": "active", "MainPID": "", "region": "us-east-1",
    }  # fmt: skip

    # Check mode reports the pending restart as a change and makes none.
    assert converge(inventory, book, "eu-west-1", "--check")["changed"] > 0
    assert service(host, "gitlab-runner")["region"] == "us-east-1"
    assert service(host, "gitlab-runner")["NeedDaemonReload"] == "yes"

    # The next converge restarts it although it writes nothing, and the one after changes nothing.
    assert converge(inventory, book, "eu-west-1")["changed"] > 0
    after = service(host, "gitlab-runner")
    assert (after["NeedDaemonReload"], after["ActiveState"], after["region"]) == ("no", "active", "eu-west-1")
    assert converge(inventory, book, "eu-west-1")["changed"] == 0


def test_a_runner_still_old_after_someone_elses_reload_is_restarted(
    host: Host, inventory: Path, tmp_path: Path
) -> None:
    # The drop-in as a killed run left it, then a daemon-reload by something else (a package, another
    # role): systemd no longer says NeedDaemonReload; only the running process shows the old region.
    book = playbook(tmp_path, "gitlab_runner_ecr")
    converge(inventory, book, "eu-west-1")
    host.run(f"sed -i s/eu-west-1/ap-south-1/ {RUNNER_DROP_IN} && systemctl daemon-reload")
    assert service(host, "gitlab-runner")["NeedDaemonReload"] == "no"
    assert service(host, "gitlab-runner")["region"] == "eu-west-1"
    assert converge(inventory, book, "ap-south-1")["changed"] > 0
    assert service(host, "gitlab-runner")["region"] == "ap-south-1"
    assert converge(inventory, book, "ap-south-1")["changed"] == 0


def test_a_stopped_runner_gets_the_reload_and_stays_stopped(host: Host, inventory: Path, tmp_path: Path) -> None:
    book = playbook(tmp_path, "gitlab_runner_ecr")
    converge(inventory, book, "ap-south-1")
    host.run(f"systemctl stop gitlab-runner && sed -i s/ap-south-1/eu-north-1/ {RUNNER_DROP_IN}")
    assert service(host, "gitlab-runner")["NeedDaemonReload"] == "yes"
    assert converge(inventory, book, "eu-north-1")["changed"] > 0
    stopped = service(host, "gitlab-runner")
    assert (stopped["NeedDaemonReload"], stopped["ActiveState"]) == ("no", "inactive")
    assert converge(inventory, book, "eu-north-1")["changed"] == 0
    host.run("systemctl start gitlab-runner")
    assert service(host, "gitlab-runner")["region"] == "eu-north-1"


def test_a_marathon_agent_restart_lost_to_a_kill_is_made_by_the_next_converge(
    host: Host, inventory: Path, tmp_path: Path
) -> None:
    # The agent reads an EnvironmentFile (no reload of unit files at stake): only its process tells.
    book = playbook(tmp_path, "marathon_agent_ecr")
    assert service(host, "dcos-mesos-slave")["region"] == "eu-west-1"  # DC/OS's own setting
    assert converge(inventory, book, "us-east-1")["changed"] > 0
    assert service(host, "dcos-mesos-slave")["region"] == "us-east-1"

    killed_before_handlers(inventory, playbook(tmp_path, "marathon_agent_ecr", hang=True), "ap-south-1")
    assert "AWS_REGION=ap-south-1\n" in host.read(AGENT_ENV)
    assert service(host, "dcos-mesos-slave")["region"] == "us-east-1"

    assert converge(inventory, book, "ap-south-1", "--check")["changed"] > 0
    assert service(host, "dcos-mesos-slave")["region"] == "us-east-1"
    assert converge(inventory, book, "ap-south-1")["changed"] > 0
    assert service(host, "dcos-mesos-slave")["region"] == "ap-south-1"
    assert converge(inventory, book, "ap-south-1")["changed"] == 0
    assert "MESOS_ATTRIBUTES=zone:a\n" in host.read(AGENT_ENV)  # the file's other lines stay


MIRROR = {
    "target": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
    "images": [{"source": "127.0.0.1:5999/team/tool", "tags": ["1.0"]}],
}


def test_mirror_units_a_killed_run_wrote_are_loaded_by_the_next_converge(
    host: Host, inventory: Path, tmp_path: Path
) -> None:
    # The mirror's service is a oneshot its timer starts: nothing runs to restart, but a timer
    # systemd still has with its old schedule until something reloads it. The role flushes its
    # handlers inside itself, so the kill is simulated: the timer as a run killed between its write
    # and that flush leaves it (the new schedule on disk, no daemon-reload).
    book = playbook(tmp_path, "ecr_mirror")
    config = ("-e", json.dumps({"ecr_mirror_config": MIRROR, "ecr_mirror_packages": []}))
    assert converge(inventory, book, "*-*-* 03:15:00", *config)["changed"] > 0
    host.run("sed -i s/03:15:00/04:15:00/g /etc/systemd/system/ecrkit-mirror.timer")  # Description= too
    assert "OnCalendar=*-*-* 04:15:00" in host.read("/etc/systemd/system/ecrkit-mirror.timer")
    assert service(host, "ecrkit-mirror.timer")["NeedDaemonReload"] == "yes"
    # The timer is as the role renders it: on the parent commit nothing changed, nothing reloaded.
    assert converge(inventory, book, "*-*-* 04:15:00", *config, "--check")["changed"] > 0
    assert service(host, "ecrkit-mirror.timer")["NeedDaemonReload"] == "yes"
    assert converge(inventory, book, "*-*-* 04:15:00", *config)["changed"] > 0
    assert service(host, "ecrkit-mirror.timer")["NeedDaemonReload"] == "no"
    assert "04:15:00" in host.run("systemctl show ecrkit-mirror.timer --property=TimersCalendar").stdout
    assert converge(inventory, book, "*-*-* 04:15:00", *config)["changed"] == 0
