"""GitLab Runner's side, proven with the stand-in: what ecrkit writes into config.toml and the
runner service's environment makes the real docker CLI and helper pull, and `list` (which
GitLab Runner calls for credsStore) name the registry."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from ecrkit.renderers import runner_config, service_env
from ecrkit.settings import CredentialRule
from testbed.standin import REGISTRY_HOST, StandIn
from tests.conftest import run_ecrkit

pytestmark = pytest.mark.standin
REGISTERED = Path(__file__).parent / "data" / "runner-config.toml"


def auth_config_value(tmp_path: Path, *arguments: str) -> str:
    """DOCKER_AUTH_CONFIG of the first runner, as `ecrkit render runner-config` merges it."""
    config = tmp_path / "config.toml"
    config.write_text(REGISTERED.read_text())
    done = run_ecrkit("render", "runner-config", "--config", str(config), *arguments)
    assert done.returncode == 0, done.stderr
    environment = tomllib.loads(done.stdout)["runners"][0]["environment"]
    [value] = [e for e in environment if e.startswith(runner_config.AUTH_PREFIX)]
    return str(value)[len(runner_config.AUTH_PREFIX) :]


def pulls(stand_in: StandIn, image: str, home: Path, docker_config: str) -> bool:
    """GitLab Runner hands DOCKER_AUTH_CONFIG to the helper as a Docker config: so does this."""
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    (home / ".docker" / "config.json").write_text(docker_config)
    env = stand_in.client_env(home) | {"AWS_ECR_CACHE_DIR": str(home / "cache")}
    done = stand_in.run(["docker", "pull", image], env)
    stand_in.run(["docker", "rmi", image], env)
    return done.returncode == 0


def test_the_auth_config_in_config_toml_pulls(stand_in: StandIn, image: str, tmp_path: Path) -> None:
    value = auth_config_value(tmp_path, "--registry", REGISTRY_HOST)
    assert json.loads(value)["auths"]  # the runner's own stored registry survived the merge
    assert pulls(stand_in, image, tmp_path / "home", value)
    other = auth_config_value(tmp_path, "--registry", "210987654321.dkr.ecr.us-east-1.amazonaws.com")
    assert not pulls(stand_in, image, tmp_path / "other", other)  # negative control


def helper_list(stand_in: StandIn, env: dict[str, str], home: Path) -> dict[str, str]:
    """`docker-credential-ecr-login list` as the runner service would run it, with `env` as its environment."""
    base = {k: v for k, v in stand_in.client_env(home).items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    done = stand_in.run(["docker-credential-ecr-login", "list"], base | env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_list_with_the_service_environment_names_the_registry(stand_in: StandIn, tmp_path: Path) -> None:
    rule = CredentialRule.build([])  # credsStore: GitLab Runner lists
    env = service_env.environment(rule, region="us-east-1", cache_dir=str(tmp_path / "cache"))
    assert f"https://{REGISTRY_HOST}" in helper_list(stand_in, env, tmp_path / "service")
    # Without the drop-in's region (a fresh cache), the runner finds nothing to authenticate with.
    bare = helper_list(stand_in, {"AWS_ECR_CACHE_DIR": str(tmp_path / "bare")}, tmp_path / "bare-home")
    assert f"https://{REGISTRY_HOST}" not in bare
