"""Proof of pull: the real docker CLI, daemon and helper against the local stand-in for ECR.

A config that looks right proves nothing; these pulls do. The negative controls show that
the pull really depends on what ecrkit writes.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from ecrkit.checks import diagnose_helper_log
from testbed.standin import REGISTRY_HOST, StandIn
from tests.conftest import ROOT, run_ecrkit

pytestmark = pytest.mark.standin


def user(tmp_path: Path, config: str) -> Path:
    """A home whose ~/.docker/config.json is `config`, with its own helper cache."""
    (tmp_path / ".docker").mkdir(parents=True)
    (tmp_path / ".docker" / "config.json").write_text(config)
    return tmp_path


def pull(stand_in: StandIn, image: str, home: Path) -> tuple[int, str]:
    env = stand_in.client_env(home) | {"AWS_ECR_CACHE_DIR": str(home / "ecr-cache")}
    done = stand_in.run(["docker", "pull", image], env)
    stand_in.run(["docker", "rmi", image], env)
    return done.returncode, done.stderr


@pytest.mark.parametrize("arguments", [["--registry", REGISTRY_HOST], []], ids=["credHelpers", "credsStore"])
def test_the_config_ecrkit_renders_pulls(stand_in: StandIn, image: str, tmp_path: Path, arguments: list[str]) -> None:
    rendered = run_ecrkit("render", "docker-config", *arguments)
    assert rendered.returncode == 0, rendered.stderr
    code, stderr = pull(stand_in, image, user(tmp_path, rendered.stdout))
    assert code == 0, stderr


def test_without_the_helper_the_pull_is_refused(stand_in: StandIn, image: str, tmp_path: Path) -> None:
    code, _ = pull(stand_in, image, user(tmp_path, "{}"))
    assert code != 0


def test_a_config_for_another_registry_is_refused(stand_in: StandIn, image: str, tmp_path: Path) -> None:
    other = run_ecrkit("render", "docker-config", "--registry", "210987654321.dkr.ecr.us-east-1.amazonaws.com")
    code, _ = pull(stand_in, image, user(tmp_path, other.stdout))
    assert code != 0


def test_when_the_api_refuses_the_pull_fails_and_the_helper_log_says_why(
    stand_in: StandIn, image: str, tmp_path: Path
) -> None:
    home = user(tmp_path, json.dumps({"credHelpers": {REGISTRY_HOST: "ecr-login"}}))
    stand_in.refuse("AccessDeniedException")
    try:
        code, _ = pull(stand_in, image, home)
    finally:
        stand_in.refuse(None)
    assert code != 0
    findings = diagnose_helper_log((home / "ecr-cache" / "log" / "ecr-login.log").read_text())
    assert [f.check for f in findings] == ["helper log: access denied"]
    assert "AccessDeniedException" in findings[0].evidence


def test_an_untrusted_api_certificate_is_named(stand_in: StandIn, tmp_path: Path) -> None:
    env = stand_in.client_env(tmp_path) | {"AWS_ECR_CACHE_DIR": str(tmp_path / "ecr-cache"), "AWS_MAX_ATTEMPTS": "1"}
    del env["AWS_CA_BUNDLE"]
    done = stand_in.run(["docker-credential-ecr-login", "get"], env, input=REGISTRY_HOST)
    assert done.returncode != 0
    assert "credentials not found in native keychain" in done.stdout + done.stderr  # all the user sees
    findings = diagnose_helper_log((tmp_path / "ecr-cache" / "log" / "ecr-login.log").read_text())
    assert [f.check for f in findings] == ["helper log: certificate"]


def test_fifty_pulls_cost_one_token_request_with_the_cache(stand_in: StandIn, image: str, tmp_path: Path) -> None:
    home = user(tmp_path, json.dumps({"credHelpers": {REGISTRY_HOST: "ecr-login"}}))
    before = stand_in.token_requests()
    for _ in range(50):
        code, stderr = pull(stand_in, image, home)
        assert code == 0, stderr
    assert stand_in.token_requests() - before == 1


def podman_pull(stand_in: StandIn, home: Path, registries_conf: str, image: str) -> subprocess.CompletedProcess[str]:
    """`podman pull` as a user with this registries.conf and ~/.docker/config.json, in throwaway storage."""
    (home / "registries.conf").write_text(registries_conf)
    env = stand_in.client_env(home) | {
        "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
        "CONTAINERS_CONF": str(ROOT / "molecule" / "containers.conf"),
        "XDG_RUNTIME_DIR": str(home),  # no containers/auth.json there: podman reads ~/.docker/config.json
        "AWS_ECR_CACHE_DIR": str(home / "ecr-cache"),
    }
    with tempfile.TemporaryDirectory(prefix="ecrkit-run-") as runroot:  # podman wants it under 50 characters
        storage = ["--root", str(home / "storage"), "--runroot", runroot, "--storage-driver", "vfs"]
        return stand_in.run(["podman", *storage, "pull", image], env)


def test_podman_pulls_docker_hub_names_through_the_cache_the_drop_in_names(stand_in: StandIn, tmp_path: Path) -> None:
    # Where a pull-through cache keeps docker.io/library/alpine:3.20 under the prefix docker-hub.
    stand_in.push_image("docker-hub/library/alpine", "3.20")
    home = user(tmp_path, run_ecrkit("render", "docker-config", "--registry", REGISTRY_HOST).stdout)
    drop_in = run_ecrkit("render", "registries-conf", "--registry", REGISTRY_HOST, "--cache-prefix", "docker-hub")
    assert drop_in.returncode == 0, drop_in.stderr
    done = podman_pull(stand_in, home, drop_in.stdout, "docker.io/alpine:3.20")
    assert done.returncode == 0, done.stderr
    assert "Trying to pull docker.io/library/alpine:3.20" in done.stderr  # the name stayed Docker Hub's
    # Without the drop-in the same name goes to Docker Hub, which is nowhere here: the image came from the cache.
    assert podman_pull(stand_in, home, "", "docker.io/alpine:3.20").returncode != 0
