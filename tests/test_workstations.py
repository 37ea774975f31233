"""Workstations whose people sign in with IAM Identity Center: the SSO profile ecrkit merges
into ~/.aws/config, and the proof that after `aws sso login` the real helper pulls with
AWS_PROFILE alone (the SDK trades the cached token at the stand-in's SSO portal)."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import yaml

from ecrkit.errors import FileFormatError, InputError
from ecrkit.renderers.aws_config import SsoProfile, form_for, merge
from testbed.standin import ACCOUNT, REGISTRY_HOST, StandIn
from tests.conftest import ROOT, readme_block, run_ecrkit

PAGE = "docs/workstations.md"  # the page whose examples these tests run

START_URL = "https://d-standin01.awsapps.com/start"
PROFILE = {
    "profile": "ecr",
    "session": "corp",
    "start_url": START_URL,
    "sso_region": "us-east-1",
    "account_id": "",
    "role_name": "ECRPull",
    "region": "",
}
EXISTING = """# written by hand: keep me
[default]
region = eu-west-1 ; and this comment
output = json

[profile ecr]
sso_start_url = https://old.awsapps.com/start
sso_region = eu-west-1
cli_pager =
"""


def sso(**changes: str) -> SsoProfile:
    return SsoProfile.build(**{**PROFILE, **changes}, registries=[REGISTRY_HOST])


def test_the_profile_is_merged_and_everything_else_kept() -> None:
    merged = merge(EXISTING, sso(), "~/.aws/config")
    assert merged.startswith("# written by hand: keep me\n[default]\nregion = eu-west-1 ; and this comment\n")
    parsed = configparser.ConfigParser(inline_comment_prefixes=(";",))
    parsed.read_string(merged)
    assert dict(parsed["sso-session corp"]) == {
        "sso_start_url": START_URL,
        "sso_region": "us-east-1",
        "sso_registration_scopes": "sso:account:access",
    }
    # The legacy keys would conflict with sso_session; the user's own key stays.
    assert dict(parsed["profile ecr"]) == {
        "cli_pager": "",
        "sso_session": "corp",
        "sso_account_id": ACCOUNT,
        "sso_role_name": "ECRPull",
        "region": "us-east-1",
    }
    assert merge(merged, sso(), "~/.aws/config") == merged


def test_a_profile_with_static_keys_is_refused_naming_the_key_not_its_value() -> None:
    text = "[profile ecr]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = hunter2\n"
    with pytest.raises(FileFormatError) as error:
        merge(text, sso(), "/home/dev/.aws/config")
    assert "/home/dev/.aws/config" in str(error.value)
    assert "aws_access_key_id, aws_secret_access_key" in str(error.value)
    assert "hunter2" not in str(error.value)


def test_an_unparsable_config_is_refused() -> None:
    with pytest.raises(FileFormatError, match="not an AWS config file"):
        merge("region = nowhere\n", sso(), "/home/dev/.aws/config")


@pytest.mark.parametrize(
    ("changes", "source"),
    [
        ({"start_url": "http://d-1.awsapps.com/start"}, "aws_sso_profile_start_url"),
        ({"role_name": "ECR Pull"}, "aws_sso_profile_role_name"),
        ({"profile": "my profile"}, "aws_sso_profile_name"),
        ({"sso_region": "Ireland"}, "aws_sso_profile_sso_region"),
        ({"account_id": "12345"}, "aws_sso_profile_account_id"),
    ],
)
def test_bad_inputs_are_refused_naming_the_variable(changes: dict[str, str], source: str) -> None:
    with pytest.raises(InputError) as error:
        SsoProfile.build(**{**PROFILE, **changes}, registries=[REGISTRY_HOST], prefix="aws_sso_profile_")
    assert error.value.source == source


def test_account_and_region_default_from_the_first_registry() -> None:
    profile = sso()
    assert (profile.account_id, profile.region) == (ACCOUNT, "us-east-1")
    assert sso(account_id="210987654321", region="eu-central-1").region == "eu-central-1"


def test_the_readmes_workstation_variables_give_the_profile_it_shows() -> None:
    defaults = yaml.safe_load((ROOT / "roles/aws_sso_profile/defaults/main.yml").read_text())
    variables = {**defaults, **yaml.safe_load(readme_block("<!-- workstation-vars -->", PAGE))}
    profile = SsoProfile.build(
        **{key: variables[f"aws_sso_profile_{key}"] for key in ("session", "start_url", "sso_region", "role_name")},
        profile=variables["aws_sso_profile_name"],
        account_id=variables["aws_sso_profile_account_id"],
        region=variables["aws_sso_profile_region"],
        registries=variables["docker_auth_config_registries"],
    )
    assert merge(None, profile, "~/.aws/config") == readme_block("<!-- workstation-aws-config -->", PAGE)


def test_the_cli_prints_the_same_and_names_its_own_options(tmp_path: Path) -> None:
    existing = tmp_path / "config"
    existing.write_text(EXISTING)
    arguments = ["--start-url", START_URL, "--sso-region", "us-east-1", "--role-name", "ECRPull", "--session", "corp"]
    done = run_ecrkit("render", "aws-config", *arguments, "--registry", REGISTRY_HOST, "--merge", str(existing))
    assert done.returncode == 0, done.stderr
    assert done.stdout == merge(EXISTING, sso(), str(existing))
    assert existing.read_text() == EXISTING
    bad = run_ecrkit("render", "aws-config", *arguments, "--start-url", "ftp://x", "--registry", REGISTRY_HOST)
    assert bad.returncode == 2
    assert "--start-url: 'ftp://x'" in bad.stderr


# -- the proof, with the real helper ----------------------------------------------------------


def workstation(stand_in: StandIn, home: Path, form: str) -> dict[str, str]:
    """A person's home as the workstations playbook leaves it, and their shell's environment:
    AWS_PROFILE and no keys at all (nor instance metadata to fall back on)."""
    sso_arguments = ["--start-url", START_URL, "--sso-region", "us-east-1", "--role-name", "ECRPull", "--form", form]
    for kind, relative, extra in (
        ("docker-config", ".docker/config.json", []),
        ("aws-config", ".aws/config", sso_arguments),
    ):
        rendered = run_ecrkit("render", kind, "--registry", REGISTRY_HOST, *extra)
        assert rendered.returncode == 0, rendered.stderr
        (home / relative).parent.mkdir(parents=True, exist_ok=True)
        (home / relative).write_text(rendered.stdout)
    env = {
        k: v for k, v in stand_in.client_env(home).items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    return env | {"AWS_PROFILE": "ecr", "AWS_EC2_METADATA_DISABLED": "true", "AWS_ECR_DISABLE_CACHE": "true"}


def pull(stand_in: StandIn, image: str, env: dict[str, str]) -> int:
    done = stand_in.run(["docker", "pull", image], env)
    stand_in.run(["docker", "rmi", image], env)
    return done.returncode


@pytest.mark.standin
def test_after_sso_login_the_helper_pulls_with_aws_profile_alone(stand_in: StandIn, image: str, tmp_path: Path) -> None:
    env = workstation(stand_in, tmp_path, "legacy")
    assert pull(stand_in, image, env) != 0  # not signed in yet
    assert stand_in.sso_requests() == []
    stand_in.sso_login(tmp_path, START_URL, START_URL, "us-east-1")  # a legacy profile's token: named by the URL
    assert pull(stand_in, image, env) == 0
    assert stand_in.sso_requests()[-1] == {"account_id": ACCOUNT, "role_name": "ECRPull"}
    assert pull(stand_in, image, {k: v for k, v in env.items() if k != "AWS_PROFILE"}) != 0


@pytest.mark.standin
def test_the_helper_here_cannot_read_the_sso_session_form_so_auto_picks_legacy(
    stand_in: StandIn, tmp_path: Path
) -> None:
    version = stand_in.run(["docker-credential-ecr-login", "version"]).stdout.strip()
    assert form_for(version) == "legacy", version
    env = workstation(stand_in, tmp_path, "sso-session")
    stand_in.sso_login(tmp_path, "ecrkit", START_URL, "us-east-1")
    done = stand_in.run(["docker-credential-ecr-login", "get"], env, input=REGISTRY_HOST)
    assert done.returncode != 0
    assert "missing required configuration: sso_region, sso_start_url" in done.stdout + done.stderr


def test_form_for_the_helper_version() -> None:
    assert [form_for(v) for v in ("0.6.4", "0.7.0", "0.12.0", "")] == [
        "legacy",
        "sso-session",
        "sso-session",
        "sso-session",
    ]


def test_the_legacy_form_keeps_the_portal_in_the_profile() -> None:
    merged = merge(merge(EXISTING, sso(), "c"), sso(form="legacy"), "c")
    parsed = configparser.ConfigParser(inline_comment_prefixes=(";",))
    parsed.read_string(merged)
    assert dict(parsed["profile ecr"]) == {
        "cli_pager": "",
        "sso_start_url": START_URL,
        "sso_region": "us-east-1",
        "sso_account_id": ACCOUNT,
        "sso_role_name": "ECRPull",
        "region": "us-east-1",
    }
