"""`ecrkit mirror --config ssm:/NAME`: the mirror config read from SSM Parameter Store (moto's server on
loopback, reached through AWS_ENDPOINT_URL like AWS), checked exactly as a file's; errors name the parameter
and the option."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from ecrkit import mirror
from ecrkit.errors import EcrkitError, FileFormatError, InputError
from testbed.standin import REGISTRY_HOST
from tests.conftest import run_ecrkit

CONFIG = {
    "target": REGISTRY_HOST,
    "prefix": "mirror",
    "images": [
        {"source": "alpine", "tags": ["3.20"]},
        {"source": "ghcr.io/example/app", "include": [r"^v?\d+\.\d+\.\d+$"], "latest": 2},
    ],
}


@pytest.fixture
def ssm(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's SSM, and this process's AWS settings pointing at it (as the CLI's would)."""
    for key in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in aws_env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    return boto3.client("ssm", endpoint_url=aws_env["AWS_ENDPOINT_URL"], region_name=aws_env["AWS_REGION"])


def put(ssm: Any, name: str, value: str, kind: str = "SecureString") -> None:
    ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)


@pytest.mark.parametrize("kind", ["String", "SecureString"])
def test_a_config_in_parameter_store_is_read_and_checked_as_a_file_is(ssm: Any, kind: str, tmp_path: Path) -> None:
    text = yaml.safe_dump(CONFIG)
    put(ssm, f"/ecrkit/mirror-{kind}", text, kind)
    (tmp_path / "mirror.yml").write_text(text)
    assert mirror.load(f"ssm:/ecrkit/mirror-{kind}") == mirror.load(str(tmp_path / "mirror.yml")) == CONFIG


def test_a_bad_config_in_parameter_store_is_refused_as_a_file_is(ssm: Any, tmp_path: Path) -> None:
    for index, bad in enumerate(({**CONFIG, "images": [{"source": "alpine"}]},  # no tag rule
                                 {**CONFIG, "target": "docker.io"},  # not ECR
                                 {**CONFIG, "images": [{"source": "alpine@sha256:00", "tags": ["1"]}]})):  # fmt: skip
        put(ssm, f"/ecrkit/bad{index}", yaml.safe_dump(bad))
        path = tmp_path / f"bad{index}.yml"
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(EcrkitError) as from_file:
            mirror.load(str(path))
        with pytest.raises(EcrkitError) as from_ssm:
            mirror.load(f"ssm:/ecrkit/bad{index}")
        assert type(from_ssm.value) is type(from_file.value)
        assert str(from_ssm.value) == str(from_file.value).replace(str(path), f"ssm:/ecrkit/bad{index}")
        assert f"ssm:/ecrkit/bad{index}" in str(from_ssm.value)
    put(ssm, "/ecrkit/not-yaml", "target: [unclosed")
    with pytest.raises(EcrkitError) as error:
        mirror.load("ssm:/ecrkit/not-yaml")
    assert not isinstance(error.value, FileFormatError)  # no file was left untouched: it is a parameter
    assert str(error.value).startswith("--config ssm:/ecrkit/not-yaml: not YAML (")


def test_a_missing_or_unusable_parameter_is_named_with_the_option(ssm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EcrkitError, match=r"^--config ssm:/ecrkit/nothing: no such parameter in us-east-1 "):
        mirror.load("ssm:/ecrkit/nothing")
    put(ssm, "/ecrkit/list", "a,b", "StringList")
    with pytest.raises(EcrkitError, match=r"^--config ssm:/ecrkit/list: a StringList parameter"):
        mirror.load("ssm:/ecrkit/list")
    for bad in ("ssm:", "ssm:/a b", "ssm://double", "ssm:/a/"):
        with pytest.raises(InputError) as refused:
            mirror.load(bad)
        assert f"--config: {bad!r} is not accepted; expected ssm:/NAME" in str(refused.value)
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(EcrkitError, match=r"^--config ssm:/ecrkit/x: no AWS region to ask: set AWS_REGION"):
        mirror.load("ssm:/ecrkit/x")


def test_the_cli_reads_the_parameter_and_names_it_in_its_errors(ssm: Any, aws_env: dict[str, str]) -> None:
    put(ssm, "/ecrkit/mirror", yaml.safe_dump(CONFIG))
    # The config read and accepted: the run stops at the next check, the shard, before any registry.
    done = run_ecrkit("mirror", "--config", "ssm:/ecrkit/mirror", "--shard", "9/3", env=aws_env)
    assert done.returncode == 2, done.stderr
    assert "--shard: '9/3'" in done.stderr
    done = run_ecrkit("mirror", "--config", "ssm:/ecrkit/missing", "--json", env=aws_env)
    assert json.loads(done.stdout) == {
        "exit_code": 2,
        "error": "--config ssm:/ecrkit/missing: no such parameter in us-east-1 (ssm:GetParameter)",
    }
