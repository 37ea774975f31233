"""Proof of pull: the real docker CLI, daemon and helper against the local stand-in for ECR.

A config that looks right proves nothing; these pulls do. The negative controls show that
the pull really depends on what ecrkit writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecrkit.checks import diagnose_helper_log
from ecrkit.standin import REGISTRY_HOST, StandIn
from tests.conftest import run_ecrkit

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
