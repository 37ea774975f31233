"""The helper's names, its default release and the role defaults ecrkit needs live in
ecrkit.constants; the copies that cannot import it (the probe, which runs alone on hosts, and
the argument_specs that ansible-doc shows) must say the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ecrkit import constants, probe
from plugins.filter.ecrkit import FilterModule

ROOT = Path(__file__).resolve().parent.parent
FILTERS = FilterModule().filters()


def spec_default(name: str) -> object:
    """The default that a role's argument_specs documents for `name` (any entry point)."""
    for path in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        for entry in yaml.safe_load(path.read_text())["argument_specs"].values():
            if name in entry.get("options", {}):
                return entry["options"][name].get("default")
    raise KeyError(name)


def test_the_probe_names_the_same_binary() -> None:
    assert probe.HELPER == constants.HELPER_BINARY


@pytest.mark.parametrize("name", sorted(constants.ROLE_DEFAULTS))
def test_argument_specs_document_the_package_default(name: str) -> None:
    assert spec_default(name) == constants.ROLE_DEFAULTS[name]


# The validate entry point's variables: it has no defaults file, ecrkit.plans fills them in.
VALIDATE_ONLY = {"ecrkit_task_user", "ecrkit_job_probe_image", "ecrkit_job_probe_network"}


@pytest.mark.parametrize("name", sorted(set(constants.ROLE_DEFAULTS) - VALIDATE_ONLY))
def test_role_defaults_read_the_package_default(name: str) -> None:
    """defaults/main.yml takes the value from the filter, never a copy of it."""
    [value] = [
        defaults[name]
        for path in ROOT.glob("roles/*/defaults/main.yml")
        if name in (defaults := yaml.safe_load(path.read_text()))
    ]
    assert value == f"{{{{ '{name}' | ecrkit.ecr.default }}}}" or f"default('{name}' | ecrkit.ecr.default)" in value
    assert FILTERS["default"](name) == constants.ROLE_DEFAULTS[name]


def test_the_default_filter_names_what_it_knows() -> None:
    with pytest.raises(AnsibleFilterError, match="'nope' is not accepted; expected one of"):
        FILTERS["default"]("nope")


def test_a_list_default_is_a_fresh_copy() -> None:
    users = constants.role_default("docker_auth_config_users")
    assert isinstance(users, list)
    users.append("x")
    assert constants.role_default("docker_auth_config_users") == ["root"]
