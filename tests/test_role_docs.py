"""Role variables are documented once, in argument_specs: defaults agree with them, ansible-doc shows them, and
each role's README table is generated from them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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


def test_the_role_readmes_are_generated_from_the_argument_specs() -> None:
    assert role_docs.main(["--check"]) == 0
    for role in ROLES:
        assert f"<!-- role-variables {role.name} -->" in (role / "README.md").read_text(), role.name


@pytest.fixture
def roles(tmp_path: Path) -> Path:
    """A copy of the roles, to break one thing at a time."""
    shutil.copytree(ROOT / "roles", tmp_path / "roles")
    return tmp_path / "roles"


def test_a_drifted_table_fails_the_check(roles: Path) -> None:
    readme = roles / "docker_auth_config" / "README.md"
    current = readme.read_text()
    assert role_docs.main(["--check", "--roles", str(roles), str(readme)]) == 0  # negative control
    readme.write_text(
        current.replace("| `docker_auth_config_users` | `[root]` |", "| `docker_auth_config_users` | `[ci]` |")
    )
    assert role_docs.main(["--check", "--roles", str(roles), str(readme)]) == 1
    assert role_docs.main(["--roles", str(roles), str(readme)]) == 0  # regenerated
    assert readme.read_text() == current


def test_a_role_readme_without_its_table_fails_the_check(roles: Path) -> None:
    readme = roles / "registries_conf" / "README.md"
    readme.write_text(readme.read_text().replace("<!-- role-variables registries_conf -->", "<!-- registries_conf -->"))
    assert role_docs.main(["--check", "--roles", str(roles), str(readme)]) == 1
    readme.unlink()
    assert role_docs.main(["--check", "--roles", str(roles)]) == 1


def test_an_inherited_default_that_its_description_does_not_name_fails_the_check(roles: Path) -> None:
    spec = roles / "gitlab_runner_ecr" / "meta" / "argument_specs.yml"
    text = spec.read_text()
    said = " Default: docker_auth_config_registries ([] unless set)."
    assert said in text
    spec.write_text(text.replace(said, ""))
    assert role_docs.unsaid_defaults(roles) == [
        "gitlab_runner_ecr: gitlab_runner_ecr_registries"
        " (say 'Default: docker_auth_config_registries' in its description)"
    ]
    assert role_docs.main(["--check", "--roles", str(roles), str(roles / "gitlab_runner_ecr" / "README.md")]) == 1


def test_ansible_doc_and_the_tables_agree_on_every_default() -> None:
    """What `ansible-doc -t role` shows of each option: its default, or (default: null) a description that
    says where the default comes from, naming the variable the table names."""
    names = [f"ecrkit.ecr.{role.name}" for role in ROLES]
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-doc")), "-t", "role", "--json", *names],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    checked = 0
    for role in ROLES:
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
        table = {
            line.split(" | ")[0].strip("| `"): line.split(" | ")[1]
            for line in role_docs.table(role.name, ROOT / "roles").splitlines()[2:]
        }
        for entry in shown[f"ecrkit.ecr.{role.name}"]["entry_points"].values():
            for name, option in entry["options"].items():
                text = (
                    " ".join(option["description"])
                    if isinstance(option["description"], list)
                    else option["description"]
                )
                if option.get("default") is None and not option.get("required"):
                    source = role_docs.inherited_from(defaults.get(name))
                    assert "Default: " in text, (role.name, name)
                    if source:
                        assert f"Default: {source}" in text and table[name] == f"`{source}`", (role.name, name)
                    checked += 1
                elif name in table:
                    assert table[name].strip("`") in (
                        str(option["default"]),
                        json.dumps(option["default"]),
                        role_docs._inline(option["default"]).strip("`"),
                    ), name
    assert checked >= 15  # the options the issue found showing `default: null` with nothing said


def test_choices_reach_the_generated_table() -> None:
    row = role_docs.table("docker_auth_config", ROOT / "roles").splitlines()
    state = next(line for line in row if line.startswith("| `docker_auth_config_state` |"))
    assert "`present`, `absent`" in state
