"""Role variables are documented once, in argument_specs: defaults agree with them, the README is generated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools import role_docs

ROOT = Path(__file__).resolve().parent.parent
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def specs(role: Path) -> dict[str, dict[str, object]]:
    data = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    return dict(data["argument_specs"]["main"]["options"])


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_match_the_argument_specs(role: Path) -> None:
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    options = specs(role)
    assert set(defaults) == set(options)
    for name, option in options.items():
        assert name.startswith(f"{role.name}_"), name
        assert option.get("description"), name
        if not (isinstance(defaults[name], str) and "{{" in defaults[name]) and name != f"{role.name}_controller_cache":
            assert option["default"] == defaults[name], name


def test_the_readme_tables_are_generated_from_the_argument_specs() -> None:
    assert role_docs.main(["--check"]) == 0


def test_a_drifted_table_or_a_missing_block_fails_the_check(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    current = (ROOT / "README.md").read_text()
    readme.write_text(
        current.replace("| `docker_auth_config_users` | `[root]` |", "| `docker_auth_config_users` | `[ci]` |")
    )
    assert role_docs.main(["--check", "--readme", str(readme)]) == 1
    readme.write_text(current.replace("<!-- role-variables registries_conf -->", "<!-- registries_conf -->"))
    assert role_docs.main(["--check", "--readme", str(readme)]) == 1


def test_choices_reach_the_generated_table() -> None:
    row = role_docs.table("docker_auth_config", ROOT / "roles").splitlines()
    state = next(line for line in row if line.startswith("| `docker_auth_config_state` |"))
    assert "`present`, `absent`" in state
