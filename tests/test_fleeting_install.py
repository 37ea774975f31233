"""gitlab_runner_ecr installs the fleeting plugin a docker-autoscaler runner names where GitLab Runner can
(16.11 and later), once: the decision (ecrkit.plans.fleeting_install) and the role's one converge task on
a host whose gitlab-runner stand-in records the call."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecrkit import plans
from ecrkit.errors import InputError
from testbed.hosts import (
    EXEC_START,
    REGISTERED_RUNNER,
    RUNNER_STAND_IN_CALLS,
    STAND_IN_UNIT,
    Host,
    ansible_playbook,
    install_runner_stand_in,
    recap,
    remove_hosts,
    start_hosts,
    write_inventory,
)

CONFIG = "/etc/gitlab-runner/config.toml"
INSTALL = f"fleeting -c {CONFIG} install"


@pytest.mark.parametrize(
    ("version", "installs"),
    [("Version:      16.11.0\nGit revision: x\n", True), ("Version:      19.4.1\n", True),
     ("Version:      16.10.3\n", False), ("Version:      15.11.0\n", False)],
)  # fmt: skip
def test_the_install_needs_gitlab_runner_16_11(version: str, installs: bool) -> None:
    decided = plans.fleeting_install(version, {"plugin": "aws:latest"}, CONFIG)
    assert bool(decided["argv"]) is installs
    if installs:
        assert decided["argv"][:2] == ["sh", "-c"] and 'gitlab-runner fleeting -c "$1" install' in decided["argv"][2]
        assert decided["argv"][4:6] == [CONFIG, decided["marker"]]
        assert decided["marker"].startswith("/etc/gitlab-runner/.ecrkit-fleeting-")
    else:
        assert "has no `fleeting install` (since 16.11)" in decided["reason"]


def test_the_marker_follows_the_plugin_and_none_is_installed_without_one() -> None:
    one, other = (
        plans.fleeting_install("Version: 17.0.0\n", {"plugin": p}, CONFIG)["marker"] for p in ("aws", "aws:1")
    )
    assert one != other
    assert plans.fleeting_install("", {}, CONFIG)["argv"] == []  # no plugin: gitlab-runner is not even asked
    with pytest.raises(InputError, match="gitlab-runner --version: 'command not found'"):
        plans.fleeting_install("command not found", {"plugin": "aws"}, CONFIG)


# -- the role on a host ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    hosts = start_hosts([f"ecrkit-pytest-fleeting-{os.getpid()}"])
    try:
        install_runner_stand_in(hosts[0])
        unit = STAND_IN_UNIT.format(name="gitlab-runner", exec_start=EXEC_START["gitlab-runner"])
        hosts[0].run(f"printf '%s' '{unit}' > /etc/systemd/system/gitlab-runner.service && systemctl daemon-reload "
                     "&& systemctl enable --now gitlab-runner.service")  # fmt: skip
        config = REGISTERED_RUNNER.format(name="fleet").replace('executor = "docker"', 'executor = "docker-autoscaler"')
        hosts[0].run(f"install -d -m 0700 /etc/gitlab-runner && cat > {CONFIG} << 'EOF'\n{config}EOF\n")
        yield hosts[0]
    finally:
        remove_hosts(hosts)


def converge(host: Host, tmp_path: Path, autoscaler: dict[str, Any], *options: str) -> Any:
    inventory = write_inventory(tmp_path / "hosts.yml", {"gitlab_runners": [host]}, {
        "docker_auth_config_registries": ["123456789012.dkr.ecr.us-east-1.amazonaws.com"],
        "gitlab_runner_ecr_autoscaler": autoscaler,
    })  # fmt: skip
    playbook = tmp_path / "runner.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "gitlab_runners", "become": True, "gather_facts": False,
                                         "roles": ["ecrkit.ecr.gitlab_runner_ecr"]}]))  # fmt: skip
    return ansible_playbook("-i", str(inventory), str(playbook), *options)


def calls(host: Host) -> list[str]:
    return host.read(RUNNER_STAND_IN_CALLS).splitlines() if host.exists(RUNNER_STAND_IN_CALLS) else []


AUTOSCALER = {"plugin": "aws:latest", "plugin_config": {"name": "gitlab-jobs"}, "max_instances": 5}


@pytest.mark.hosts
def test_no_plugin_named_no_install(host: Host, tmp_path: Path) -> None:
    result = converge(host, tmp_path, {"max_instances": 5})
    assert result.returncode == 0, result.stdout[-3000:]
    assert calls(host) == []


@pytest.mark.hosts
def test_check_mode_installs_nothing_a_run_installs_once_and_a_second_run_changes_nothing(
    host: Host, tmp_path: Path
) -> None:
    checked = converge(host, tmp_path, AUTOSCALER, "--check")
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert calls(host) == []
    first = converge(host, tmp_path, AUTOSCALER)
    assert first.returncode == 0, first.stdout[-3000:]
    assert calls(host) == [INSTALL]
    second = converge(host, tmp_path, AUTOSCALER)
    assert second.returncode == 0 and recap(second.stdout)[host.name]["changed"] == 0, second.stdout[-3000:]
    assert calls(host) == [INSTALL]
    # Another plugin version is installed in its turn.
    third = converge(host, tmp_path, {**AUTOSCALER, "plugin": "aws:1.0"})
    assert third.returncode == 0, third.stdout[-3000:]
    assert calls(host) == [INSTALL, INSTALL]


@pytest.mark.hosts
def test_a_runner_before_16_11_gets_no_install_and_says_why(host: Host, tmp_path: Path) -> None:
    install_runner_stand_in(host, version="16.10.0")
    host.run(f"rm -f {RUNNER_STAND_IN_CALLS} /etc/gitlab-runner/.ecrkit-fleeting-*")
    try:
        result = converge(host, tmp_path, AUTOSCALER)
        assert result.returncode == 0, result.stdout[-3000:]
        # A warning, which ansible-playbook shows at every verbosity (on stderr, as all its warnings).
        assert calls(host) == [] and "[WARNING]: GitLab Runner 16.10 has no `fleeting install`" in result.stderr
    finally:
        install_runner_stand_in(host, version="17.11.0")
