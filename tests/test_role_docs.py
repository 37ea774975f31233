"""Every role variable is declared once: argument_specs, defaults (with a comment) and the README agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))
README = (ROOT / "README.md").read_text()


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


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_default_has_a_one_line_comment(role: Path) -> None:
    lines = (role / "defaults" / "main.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            assert lines[index - 1].startswith("# "), line


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_the_readme_documents_every_variable(role: Path) -> None:
    for name in specs(role):
        assert re.search(rf"^\| `{name}` \|", README, re.M), name
    for name in re.findall(rf"^\| `({role.name}_[a-z_0-9]+)` \|", README, re.M):
        assert name in specs(role), f"README documents {name}, which the role does not have"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_choices_in_the_readme_are_the_spec_choices(role: Path) -> None:
    for name, option in specs(role).items():
        for choice in option.get("choices", []):  # type: ignore[attr-defined]
            row = re.search(rf"^\| `{name}` \|.*$", README, re.M)
            assert row is not None
            assert f"`{choice}`" in row.group(0), (name, choice)
