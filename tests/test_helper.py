"""Install plans for the helper: every method, and errors that name the role variable."""

import pytest

from ecrkit.errors import InputError
from ecrkit.helper import install_plan, parse_version, release

SHA = "ab" * 32


def test_release_url_follows_the_official_layout() -> None:
    assert release("0.12.0", "aarch64") == {
        "url": "https://amazon-ecr-credential-helper-releases.s3.us-east-2.amazonaws.com"
        "/0.12.0/linux-arm64/docker-credential-ecr-login",
        "checksum": "sha256:https://amazon-ecr-credential-helper-releases.s3.us-east-2.amazonaws.com"
        "/0.12.0/linux-arm64/docker-credential-ecr-login.sha256",
    }


def test_release_plan_installs_into_the_directory() -> None:
    plan = install_plan("release", architecture="x86_64", install_dir="/usr/local/bin/", version="0.11.0")
    assert plan["path"] == "/usr/local/bin/docker-credential-ecr-login"
    assert "/0.11.0/linux-amd64/" in str(plan["url"])


def test_package_plan_uses_the_package_path() -> None:
    assert install_plan("package", architecture="x86_64", install_dir="/opt")["path"] == (
        "/usr/bin/docker-credential-ecr-login"
    )


def test_url_plan_needs_a_sha256_and_knows_s3() -> None:
    plan = install_plan("url", architecture="x86_64", install_dir="/usr/bin", url="s3://b/k", sha256=SHA.upper())
    assert plan["s3"] is True
    assert plan["checksum"] == f"sha256:{SHA}"
    with pytest.raises(InputError, match=r"ecr_credential_helper_sha256 \(required by the url method\)"):
        install_plan("url", architecture="x86_64", install_dir="/usr/bin", url="https://example.com/h")


@pytest.mark.parametrize(
    ("method", "inputs", "named"),
    [
        ("pip", {}, "ecr_credential_helper_install_method: 'pip'"),
        ("release", {"version": "v0.12.0"}, "ecr_credential_helper_version: 'v0.12.0'"),
        ("release", {"install_dir": "bin"}, "ecr_credential_helper_install_dir: 'bin'"),
        ("release", {"architecture": "s390x"}, "architecture: 's390x'"),
        ("url", {"url": "ftp://x/y", "sha256": SHA}, "ecr_credential_helper_url: 'ftp://x/y'"),
        ("controller_file", {}, "ecr_credential_helper_src: ''"),
        ("controller_file", {"src": "/h", "sha256": "abc"}, "ecr_credential_helper_sha256: 'abc'"),
    ],
)
def test_bad_inputs_name_the_variable_and_value(method: str, inputs: dict[str, str], named: str) -> None:
    arguments = {"architecture": "x86_64", "install_dir": "/usr/local/bin", **inputs}
    with pytest.raises(InputError) as caught:
        install_plan(method, **arguments)
    assert named in str(caught.value)


def test_parse_version_reads_plain_and_banner_output() -> None:
    assert parse_version("0.12.0\n") == "0.12.0"
    assert parse_version("amazon-ecr-credential-helper\nVersion:    0.6.0\nGit commit: 69c85dc\n") == "0.6.0"
    with pytest.raises(ValueError, match="no version number"):
        parse_version("command not found")
