"""Mesos/Marathon: the docker.tar.gz, the app definitions, and the Mesos fetcher emulated
against the stand-in ECR with the real docker CLI and helper."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ecrkit.errors import InputError
from ecrkit.renderers import docker_tar, marathon
from ecrkit.settings import CredentialRule
from testbed.standin import REGISTRY_HOST, StandIn
from tests.conftest import readme_block, run_ecrkit

IMAGE = f"{REGISTRY_HOST}/team/app:1"
SHA = "a" * 64


def members(data: bytes) -> dict[str, tuple[int, int, int, int, bytes | None]]:
    """name -> (mode, uid, gid, mtime, content) of every member."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {
            m.name: (m.mode, m.uid, m.gid, int(m.mtime), archive.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
            for m in archive.getmembers()
        }


def test_the_archive_holds_only_the_docker_config_with_fixed_metadata() -> None:
    found = members(docker_tar.render(CredentialRule.build([])))
    assert list(found) == [".docker", ".docker/config.json"]
    assert found[".docker"][:4] == (0o755, 0, 0, 0)
    mode, uid, gid, mtime, content = found[".docker/config.json"]
    assert (mode, uid, gid, mtime) == (0o644, 0, 0, 0)
    assert json.loads(content or b"") == {"credsStore": "ecr-login"}  # the original recipe's form
    named = members(docker_tar.render(CredentialRule.build([REGISTRY_HOST])))[".docker/config.json"][4]
    assert json.loads(named or b"") == {"credHelpers": {REGISTRY_HOST: "ecr-login"}}


def test_two_renders_are_byte_for_byte_the_same(tmp_path: Path) -> None:
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    for path in (first, second):
        done = run_ecrkit("render", "docker-tar", "--registry", REGISTRY_HOST, "-o", str(path))
        assert done.returncode == 0 and "written" in done.stdout
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    again = run_ecrkit("render", "docker-tar", "--registry", REGISTRY_HOST, "-o", str(first))
    assert "unchanged" in again.stdout


def test_the_app_fetches_the_archive_and_validates_against_marathons_schema() -> None:
    done = run_ecrkit("render", "marathon-app", "--id", "/team/app", "--image", IMAGE, "--force-pull", "--mem", "256")
    assert done.returncode == 0, done.stderr
    app = json.loads(done.stdout)
    assert app["fetch"] == [{"uri": "file:///etc/docker.tar.gz", "extract": True}]
    assert app["container"] == {"type": "DOCKER", "docker": {"image": IMAGE, "forcePullImage": True}}
    assert marathon.validate(app) is app


def test_the_installer_runs_once_per_agent_and_checks_the_pinned_binary() -> None:
    app = marathon.installer("https://mirror.example.com/helper", SHA, instances=3)
    assert app["constraints"] == [["hostname", "UNIQUE"]] and app["instances"] == 3
    assert app["fetch"][0]["executable"] is True and app["user"] == "root"
    assert f"{SHA}  helper' | sha256sum -c -" in app["cmd"] and "/usr/bin/docker-credential-ecr-login" in app["cmd"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: marathon.app("/Team/App", IMAGE), "--id: '/Team/App' is not accepted"),
        (lambda: marathon.app("/team/-app", IMAGE), "--id:"),
        (lambda: marathon.app("/team/app", IMAGE, uri=""), "--uri: ''"),
        (lambda: marathon.app("/team/app", IMAGE, uri="file://etc/docker.tar.gz"), "--uri"),
        (lambda: marathon.app("/team/app", "Registry/UPPER:tag"), "--image: 'Registry/UPPER:tag'"),
        (lambda: marathon.app("/team/app", IMAGE, cpus=0), "--cpus: 0 is not accepted"),
        (lambda: marathon.app("/team/app", IMAGE, mem=-1), "--mem"),
        (lambda: marathon.app("/team/app", IMAGE, instances=-1), "--instances"),
        (lambda: marathon.installer("ftp://m/h", SHA), "--url"),
        (lambda: marathon.installer("https://m/h", "nothex"), "--sha256"),
    ],
)
def test_bad_input_is_refused_naming_it(call: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()


def test_the_cli_exits_2_on_bad_input() -> None:
    done = run_ecrkit("render", "marathon-app", "--id", "/team/app", "--image", IMAGE, "--cpus", "-1")
    assert done.returncode == 2 and "--cpus" in done.stderr


@pytest.fixture
def agent_dir() -> Iterator[Path]:
    """A directory the task user (nobody) can reach, unlike pytest's 0700 temporary tree."""
    path = Path(tempfile.mkdtemp(prefix="ecrkit-agent-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.standin
def test_the_fetcher_emulated_pulls_with_the_archive_and_caches_outside_the_sandbox(
    stand_in: StandIn, image: str, agent_dir: Path
) -> None:
    """As the agent does: the fetcher extracts docker.tar.gz into a fresh sandbox as the task
    user, then the agent runs `docker pull` with HOME=<sandbox> and its own environment."""
    archive = agent_dir / "docker.tar.gz"
    archive.write_bytes(docker_tar.render(CredentialRule.build([REGISTRY_HOST])))
    archive.chmod(0o644)
    cache = agent_dir / "agent-cache"  # AWS_ECR_CACHE_DIR from the agent's environment file
    agent_env = {"AWS_REGION": "us-east-1", "AWS_ECR_CACHE_DIR": str(cache)}

    def sandbox_pull(name: str, with_archive: bool) -> int:
        sandbox = agent_dir / name
        sandbox.mkdir()
        sandbox.chmod(0o777)
        if with_archive:  # the fetcher runs as the task user
            fetched = stand_in.run(["runuser", "-u", "nobody", "--", "tar", "-xzf", str(archive), "-C", str(sandbox)])
            assert fetched.returncode == 0, fetched.stderr
        env = stand_in.client_env(sandbox) | agent_env
        done = stand_in.run(["docker", "pull", image], env)
        stand_in.run(["docker", "rmi", image], env)
        return done.returncode

    assert sandbox_pull("sandbox-without", with_archive=False) != 0  # negative control
    assert sandbox_pull("sandbox", with_archive=True) == 0
    assert (cache / "cache.json").exists()
    assert not (agent_dir / "sandbox" / ".ecr").exists()  # no live token left in the sandbox


def test_the_readme_app_is_what_the_cli_prints() -> None:
    done = run_ecrkit("render", "marathon-app", "--id", "/team/app", "--image", IMAGE)
    assert readme_block("<!-- marathon-app -->", "docs/marathon.md") == done.stdout
