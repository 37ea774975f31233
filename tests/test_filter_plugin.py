"""The Ansible filters are thin: they hand over to ecrkit and turn its errors into filter errors."""

import base64
import json
import re

import pytest
from ansible.errors import AnsibleFilterError

from plugins.filter.ecrkit import FilterModule

FILTERS = FilterModule().filters()
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def test_errors_reach_ansible_with_ecrkit_message() -> None:
    with pytest.raises(AnsibleFilterError, match=r"docker_auth_config_registries\[0\]: 'nope'"):
        FILTERS["ecrkit_credential_rule"](["nope"], source="docker_auth_config_registries")


def test_every_file_is_rendered_before_any_is_written() -> None:
    rule = FILTERS["ecrkit_credential_rule"]([ECR])
    good = base64.b64encode(b'{"auths": {"x": {"auth": "c2VjcmV0"}}}').decode()
    bad = base64.b64encode(b"{oops").decode()
    with pytest.raises(AnsibleFilterError, match=re.escape("/home/b/.docker/config.json: not valid JSON")):
        FILTERS["ecrkit_docker_configs"](
            ["/root/.docker/config.json", "/home/b/.docker/config.json"],
            {"/root/.docker/config.json": good, "/home/b/.docker/config.json": bad},
            rule,
            "present",
        )
    files = FILTERS["ecrkit_docker_configs"](
        ["/root/.docker/config.json", "/new/.docker/config.json"], {"/root/.docker/config.json": good}, rule, "present"
    )
    assert [f["secrets"] for f in files] == [True, False]
    assert "c2VjcmV0" not in files[0]["redacted"]["after"]
    assert json.loads(files[1]["content"]) == {"credHelpers": {ECR: "ecr-login"}}


def test_absent_leaves_missing_files_alone() -> None:
    rule = FILTERS["ecrkit_credential_rule"]([])
    files = FILTERS["ecrkit_docker_configs"](["/root/.docker/config.json"], {}, rule, "absent")
    assert files == [{"path": "/root/.docker/config.json", "content": None, "changed": False, "secrets": False}]
