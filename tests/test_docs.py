"""The docs hold together: a short README, links that lead somewhere, examples that are the example
inventory's files, and an example inventory whose every variable its roles' argument_specs accept."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from tests.conftest import ROOT, readme_block

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "roles").glob("*/README.md"))]
PAGES.append(ROOT / "bench" / "README.md")
LINK = re.compile(r"\]\(([^)\s]+)\)")
MARKER = re.compile(r"<!-- ([a-z0-9-]+) -->")
EXAMPLE = ROOT / "inventory" / "example"
ROLES = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a page."""
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        fenced ^= line.startswith("```")
        if line.startswith("#") and not fenced:
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_the_readme_is_a_front_door() -> None:
    size = (ROOT / "README.md").stat().st_size
    assert size <= 12 * 1024, f"README.md is {size} bytes"
    text = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):  # every page is reachable from it
        assert f"](docs/{page.name}" in text, page.name
    assert "make run" in text and "make test" in text  # .ci/run runs what the README tells a newcomer


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.relative_to(ROOT)}: {target}"
        if anchor:
            assert anchor in anchors(resolved), f"{page.relative_to(ROOT)}: {target}"


def test_every_example_a_page_marks_is_run_by_a_test() -> None:
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for page in PAGES:
        for marker in MARKER.findall(page.read_text()):
            if marker.startswith("role-variables") or marker == "/role-variables":
                continue
            run = f'"<!-- {marker} -->"' in tests or f'"{marker}"' in tests
            assert run, f"{page.relative_to(ROOT)}: <!-- {marker} --> is run by no test"


@pytest.mark.parametrize(
    ("marker", "page", "example"),
    [
        ("gitlab-runner-group-vars", "docs/gitlab-runner.md", "gitlab_runners.yml"),
        ("autoscaling-group-vars", "docs/gitlab-runner.md", "autoscaling_groups.yml"),
        ("marathon-group-vars", "docs/marathon.md", "marathon_agents.yml"),
        ("workstation-vars", "docs/workstations.md", "workstations.yml"),
    ],
)
def test_the_pages_show_the_example_inventorys_variables(marker: str, page: str, example: str) -> None:
    shown = yaml.safe_load(readme_block(f"<!-- {marker} -->", page))
    assert shown == yaml.safe_load((EXAMPLE / "group_vars" / example).read_text())


# -- the example inventory against the roles' argument specs ----------------------------------


def playbook_roles() -> dict[str, set[str]]:
    """Each inventory group, and the roles its playbook applies (roles: and include_role)."""
    groups: dict[str, set[str]] = {}
    for path in (ROOT / "playbooks").glob("*.yml"):
        for play in yaml.safe_load(path.read_text()):
            names = {str(r["role"] if isinstance(r, dict) else r) for r in play.get("roles", [])}
            names |= {t["ansible.builtin.include_role"]["name"] for t in play.get("tasks", [])
                      if "ansible.builtin.include_role" in t}  # fmt: skip
            groups.setdefault(play["hosts"], set()).update(n.removeprefix("ecrkit.ecr.") for n in names)
    return groups


def role_options(role: str) -> dict[str, Any]:
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    return {name: option for entry in spec.values() for name, option in entry.get("options", {}).items()}


def example_hosts() -> dict[str, Any]:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(EXAMPLE / "hosts.yml"), "--list"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_example_inventory_covers_every_context_and_its_roles_accept_every_variable() -> None:
    inventory = example_hosts()
    groups = playbook_roles()
    assert set(groups) - {"all"} <= set(inventory), "a context without hosts in inventory/example"
    hostvars = inventory["_meta"]["hostvars"]
    shared = set(yaml.safe_load((EXAMPLE / "hosts.yml").read_text())["all"]["vars"])  # every group gets these
    every = {name: option for role in ROLES for name, option in role_options(role).items()}
    for group, roles in groups.items():
        if group == "all":
            continue
        options = {name: option for role in roles for name, option in role_options(role).items()}
        for host in inventory[group]["hosts"]:
            variables = {k: v for k, v in hostvars[host].items() if not k.startswith("ansible_")}
            unknown = sorted(set(variables) - set(options) - shared)
            assert unknown == [], f"{group}/{host}: no role of {sorted(roles)} takes {unknown}"
            assert shared <= set(every)
            result = ArgumentSpecValidator(every).validate(variables)
            assert result.error_messages == [], f"{group}/{host}"


def test_the_example_inventory_check_refuses_a_misspelt_or_mistyped_variable() -> None:
    # Negative controls for the test above, on the same validator.
    options = role_options("docker_auth_config") | role_options("gitlab_runner_ecr")
    result = ArgumentSpecValidator(options).validate({"gitlab_runner_ecr_hop_limit": "two"})
    assert result.error_messages
    assert "gitlab_runner_ecr_hoplimit" not in options


def test_the_example_inventory_declares_the_2025_account_settings() -> None:
    account = yaml.safe_load((EXAMPLE / "group_vars" / "ecr_accounts.yml").read_text())
    assert {"ecr_account_replication", "ecr_account_scanning"} <= set(account)
    (app,) = account["ecr_account_repositories"]
    assert {"encryption", "tag_mutability", "exclusions"} <= set(app)
    assert any("archive_unpulled" in rule for rule in app["lifecycle"])
