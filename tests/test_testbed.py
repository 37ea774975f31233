"""The test bed refuses or fixes what would make its hosts hang, and bounds every wait with an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testbed import hosts
from testbed.hosts import BASE_IMAGE, Host, HostSetupError, podman, remove_hosts


def test_a_low_inotify_limit_is_raised_for_the_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    monkeypatch.setattr(hosts, "inotify_instances_in_use", lambda: 100)
    hosts.ensure_inotify_instances(32, limit)
    assert int(limit.read_text()) >= 100 + 32 * hosts.INOTIFY_PER_HOST


def test_a_limit_with_room_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = tmp_path / "max_user_instances"
    limit.write_text("8192\n")
    monkeypatch.setattr(hosts, "inotify_instances_in_use", lambda: 100)
    hosts.ensure_inotify_instances(32, limit)
    assert limit.read_text() == "8192\n"


def test_a_limit_that_cannot_be_raised_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    monkeypatch.setattr(hosts, "inotify_instances_in_use", lambda: 100)

    def refuse(*_: object, **__: object) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(HostSetupError, match=r"fs.inotify.max_user_instances is 128 .* sysctl -w"):
        hosts.ensure_inotify_instances(32, limit)


@pytest.mark.hosts
def test_a_host_that_never_boots_or_a_stuck_exec_is_an_error_not_a_hang() -> None:
    host = Host(f"ecrkit-test-noboot-{os.getpid()}")
    podman("run", "-d", "--name", host.name, BASE_IMAGE, "sleep", "infinity")  # no systemd: never boots
    try:
        with pytest.raises(HostSetupError, match=rf"{host.name}: systemd did not finish booting in 2 s"):
            hosts._wait_for_systemd(host, timeout=2)
        with pytest.raises(HostSetupError, match=rf"podman exec {host.name} sleep 30: no answer after 1 s"):
            podman("exec", host.name, "sleep", "30", timeout=1)
    finally:
        remove_hosts([host])
