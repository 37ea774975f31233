"""Job hosts booted by real cloud-init: Debian 12's cloud-init 22.4 in a systemd container boots
from a NoCloud seed holding ecrkit's userdata (shell, #cloud-config, and MIME multi-part with
another part), installs the real 0.12.0-or-later helper from a release mirror on loopback, and
pulls from the stand-in. A second boot as a new instance changes nothing."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecrkit.helper import parse_version
from ecrkit.renderers.userdata import instance_ready_command
from testbed.hosts import CLOUDINIT_IMAGE, Host, podman, pull_result, remove_hosts, start_hosts
from testbed.standin import REGISTRY_HOST, StandIn
from tests.conftest import ReleaseMirror, TestedHelper, run_ecrkit

pytestmark = [pytest.mark.hosts, pytest.mark.standin]

SEED = "/var/lib/cloud/seed/nocloud"
TARGET = "/usr/local/bin/docker-credential-ecr-login"
NEWEST = TestedHelper("sid")  # the release ecrkit installs by default (0.12.0, or what sid has now)
OTHER_PART = """#cloud-config
write_files:
  - path: /etc/other-part
    content: written by the launch template's own part
"""


def userdata(mirror: ReleaseMirror, form: str, *extra: str) -> str:
    done = run_ecrkit(
        "render", "userdata", "--registry", REGISTRY_HOST, "--version", NEWEST.version,
        "--release-base-url", mirror.base_url, "--format", form, *extra,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def seed(directory: Path, instance: str, user_data: str | None = None) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "meta-data").write_text(f"instance-id: {instance}\n")
    if user_data is not None:
        (directory / "user-data").write_text(user_data)
    return directory


def boot_options(seed_dir: Path, stand_in: StandIn | None) -> list[str]:
    """A job host as a cloud starts one: the seed mounted (and cloud-init enabled on its command line)."""
    network = stand_in.host_options() if stand_in else ["--network=host"]
    return [*network, f"--volume={seed_dir}:{SEED}:ro"]


BOOT_COMMAND = ["/sbin/init", "cloud-init=enabled"]  # the generator disables it in a container otherwise


def boot(name: str, seed_dir: Path, stand_in: StandIn | None) -> Host:
    """Boot a job host and wait for systemd (cloud-init may still be running)."""
    [host] = start_hosts([name], options=boot_options(seed_dir, stand_in), image=CLOUDINIT_IMAGE, command=BOOT_COMMAND)
    return host


def finished(host: Host) -> dict[str, object]:
    """cloud-init's own account once it is done: `status --long` and /run/cloud-init/result.json."""
    done = host.run("timeout 300 cloud-init status --wait --long")
    assert done.returncode == 0 and "status: done" in done.stdout, done.stdout + done.stderr
    result: dict[str, object] = json.loads(host.read("/run/cloud-init/result.json"))["v1"]
    return result


def state(host: Host) -> str:
    """What a boot may change: the helper and config.json, with contents and mtimes."""
    return host.run(f"stat -c '%n %Y %s %a' {TARGET} /root/.docker/config.json; sha256sum {TARGET}").stdout


@dataclass(frozen=True)
class JobHost:
    name: str
    workdir: Path  # the seed directory is workdir/seed

    @property
    def seed_dir(self) -> Path:
        return self.workdir / "seed"


@pytest.fixture
def job_host(tmp_path: Path) -> Iterator[JobHost]:
    """A name for this test's job host (removed afterwards) and a directory for its seed."""
    name = f"ecrkit-wt-cloudinit-{os.getpid()}"
    try:
        yield JobHost(name, tmp_path)
    finally:
        remove_hosts([Host(name)])


@pytest.mark.parametrize("form", ["shell", "cloud-config", "mime"])
def test_a_job_host_boots_with_the_userdata_installs_the_helper_and_pulls(
    stand_in: StandIn, image: str, release_mirror: ReleaseMirror, job_host: JobHost, form: str
) -> None:
    other = job_host.workdir / "launch-template.cfg"
    other.write_text(OTHER_PART)
    text = userdata(release_mirror, form, *(["--with-part", str(other)] if form == "mime" else []))
    seed_dir = seed(job_host.seed_dir, "iid-ecrkit-1", text)
    host = boot(job_host.name, seed_dir, stand_in)

    result = finished(host)
    assert result["errors"] == [] and "NoCloud" in str(result["datasource"]), result
    if form == "cloud-config":
        schema = host.run(f"cloud-init schema --config-file {SEED}/user-data")
        assert schema.returncode == 0, schema.stdout + schema.stderr
    if form == "mime":  # the other part ran too
        assert host.read("/etc/other-part").strip() == "written by the launch template's own part"
    installed = host.run(f"{TARGET} -v").stdout
    assert f"Version:    {NEWEST.version}" in installed or f"Version: {NEWEST.version}" in installed, installed
    assert host.run(f"sha256sum {TARGET}").stdout.split()[0] == NEWEST.sha256()
    assert json.loads(host.read("/root/.docker/config.json")) == {"credHelpers": {REGISTRY_HOST: "ecr-login"}}
    assert host.run("stat -c %a /root/.docker/config.json").stdout.strip() == "600"
    assert pull_result(host, image, stand_in) == "pulled"

    # A second boot as a new instance runs the userdata again: it changes nothing, downloads nothing.
    before, downloads = state(host), release_mirror.downloads(NEWEST.version)
    seed(seed_dir, "iid-ecrkit-2")
    podman("restart", "-t", "10", host.name)
    result = finished(host)
    assert result["errors"] == [], result
    assert host.read("/var/lib/cloud/data/instance-id").strip() == "iid-ecrkit-2"
    assert state(host) == before
    assert release_mirror.downloads(NEWEST.version) == downloads
    output = host.read("/var/log/cloud-init-output.log")
    assert "ecrkit-userdata: installed" in output and f"{TARGET} is already the expected binary" in output
    assert pull_result(host, image, stand_in) == "pulled"


def test_without_the_userdata_the_same_host_cannot_pull(stand_in: StandIn, image: str, job_host: JobHost) -> None:
    """The negative control: cloud-init boots fine with other userdata, and the pull is refused."""
    host = boot(job_host.name, seed(job_host.seed_dir, "iid-ecrkit-1", OTHER_PART), stand_in)
    assert finished(host)["errors"] == []
    assert not host.exists(TARGET)
    assert pull_result(host, image, stand_in) != "pulled"


def test_the_autoscaler_ready_command_holds_jobs_until_the_userdata_finished(
    release_mirror: ReleaseMirror, job_host: JobHost
) -> None:
    """docker-autoscaler sends jobs to a new instance only once `instance_ready_command` succeeds
    there: run it while the boot is still going (a slow part after ecrkit's), then after."""
    slow = job_host.workdir / "slow-part.sh"
    slow.write_text("#!/bin/sh\nsleep 15\n")
    seed_dir = seed(job_host.seed_dir, "iid-ecrkit-1", userdata(release_mirror, "mime", "--with-part", str(slow)))
    podman("run", "-d", "--name", job_host.name, "--systemd=always", *boot_options(seed_dir, None),
           CLOUDINIT_IMAGE, *BOOT_COMMAND)  # fmt: skip
    host = Host(job_host.name)
    ready = instance_ready_command()
    early = host.run(f"timeout 5 sh -c {shlex.quote(ready)}")
    assert early.returncode == 124, early.stdout + early.stderr  # still waiting: no job lands yet
    done = host.run(ready)
    assert done.returncode == 0, done.stdout + done.stderr
    assert parse_version(done.stdout) and "status: done" in host.run("cloud-init status").stdout
    assert host.exists("/var/lib/cloud/instance/boot-finished")


def test_the_ready_command_fails_when_the_userdata_failed(release_mirror: ReleaseMirror, job_host: JobHost) -> None:
    """Its negative control: userdata pinned to a sha256 the release does not have installs nothing."""
    text = userdata(release_mirror, "shell", "--sha256", "0" * 64)
    host = boot(job_host.name, seed(job_host.seed_dir, "iid-ecrkit-1", text), None)
    done = host.run(f"timeout 120 sh -c {shlex.quote(instance_ready_command())}")
    assert done.returncode not in (0, 124), done.stdout + done.stderr
    assert "status: error" in host.run("cloud-init status").stdout
