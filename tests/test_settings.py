"""Input validation: every accepted hostname form, and errors that name value, source and form."""

import pytest

from ecrkit.errors import InputError
from ecrkit.settings import (
    CredentialRule,
    registry_region,
    validate_absolute_path,
    validate_account_id,
    validate_region,
    validate_registry,
)

ACCEPTED = {
    "123456789012.dkr.ecr.us-east-1.amazonaws.com": "us-east-1",
    "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn": "cn-north-1",
    "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com": "us-gov-west-1",
    "123456789012.dkr-ecr.eu-west-1.on.aws": "eu-west-1",
    "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn": "cn-northwest-1",
    "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu": "eusc-de-east-1",
    "public.ecr.aws": "us-east-1",
    "ecr-public.aws.com": "us-east-1",
}

REFUSED = [
    "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
    "12345678901.dkr.ecr.us-east-1.amazonaws.com",
    "123456789012.dkr.ecr.us-east1.amazonaws.com",
    "registry.example.com",
    "vpce-0123.dkr.ecr.us-east-1.vpce.amazonaws.com",
    "",
]


@pytest.mark.parametrize(("host", "region"), ACCEPTED.items())
def test_every_form_the_helper_accepts_is_accepted(host: str, region: str) -> None:
    assert validate_registry(host) == host
    assert registry_region(host) == region


@pytest.mark.parametrize(
    "host", [" 123456789012.dkr.ecr.us-east-1.amazonaws.com", "123456789012.DKR.ECR.us-east-1.amazonaws.com"]
)
def test_capitals_and_spaces_are_refused_not_normalised(host: str) -> None:
    # Docker looks credHelpers up by the exact name: a normalised key would silently not match.
    with pytest.raises(InputError, match="in lower case, without spaces"):
        validate_registry(host, "--registry")


@pytest.mark.parametrize("host", REFUSED)
def test_other_names_are_refused_naming_value_source_and_form(host: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_registry(host, "docker_auth_config_registries[0]")
    message = str(caught.value)
    assert repr(host) in message
    assert "docker_auth_config_registries[0]" in message
    assert "123456789012.dkr.ecr.us-east-1.amazonaws.com" in message


@pytest.mark.parametrize("region", ["us-east-1", "us-gov-west-1", "eusc-de-east-1", "ap-southeast-5"])
def test_regions(region: str) -> None:
    assert validate_region(region) == region


@pytest.mark.parametrize("region", ["us-east", "US-EAST-1", "useast1", "", 1])
def test_bad_regions(region: object) -> None:
    with pytest.raises(InputError, match="AWS region"):
        validate_region(region, "aws_region")


def test_account_ids_are_twelve_digit_strings() -> None:
    assert validate_account_id("012345678901") == "012345678901"
    for bad in ["12345678901", "1234567890123", 123456789012, "12345678901a"]:
        with pytest.raises(InputError, match="12 digits"):
            validate_account_id(bad)


def test_absolute_paths() -> None:
    assert validate_absolute_path("/usr/local/bin") == "/usr/local/bin"
    for bad in ["usr/local/bin", "/usr/../etc", "/usr/..", "", None]:
        with pytest.raises(InputError, match="absolute path"):
            validate_absolute_path(bad, "install_dir")


class TestCredentialRule:
    def test_no_registry_means_creds_store(self) -> None:
        rule = CredentialRule.build([])
        assert rule.entries() == {"credsStore": "ecr-login"}
        assert rule.needs_region

    def test_named_registries_mean_cred_helpers_only(self) -> None:
        rule = CredentialRule.build(["123456789012.dkr.ecr.us-east-1.amazonaws.com"], include_public=True)
        assert rule.entries() == {
            "credHelpers": {
                "123456789012.dkr.ecr.us-east-1.amazonaws.com": "ecr-login",
                "public.ecr.aws": "ecr-login",
            }
        }
        assert not rule.needs_region

    def test_public_alone_is_a_named_registry(self) -> None:
        assert CredentialRule.build([], include_public=True).entries() == {
            "credHelpers": {"public.ecr.aws": "ecr-login"}
        }

    def test_creds_store_can_be_forced_on_top(self) -> None:
        rule = CredentialRule.build(["123456789012.dkr.ecr.us-east-1.amazonaws.com"], force_creds_store=True)
        assert set(rule.entries()) == {"credsStore", "credHelpers"}

    def test_duplicates_collapse(self) -> None:
        host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        assert CredentialRule.build([host, host]).registries == (host,)

    def test_a_bare_string_is_refused(self) -> None:
        with pytest.raises(InputError, match="a list of registry hostnames"):
            CredentialRule.build("123456789012.dkr.ecr.us-east-1.amazonaws.com")

    def test_the_bad_item_is_named_by_index(self) -> None:
        with pytest.raises(InputError, match=r"registries\[1\]: 'nope'"):
            CredentialRule.build(["public.ecr.aws", "nope"])
