"""The role variable tables, generated from each role's meta/argument_specs.yml.

argument_specs is the one place a role variable is documented (ansible-doc -t role shows it too);
each role's README (roles/<role>/README.md) holds a copy between `<!-- role-variables ROLE -->` and
`<!-- /role-variables -->`, and any other page (README.md, docs/*.md) may hold one too.
`python tools/role_docs.py` rewrites those blocks; `--check` (make lint) fails when one drifted, when a
role's README lacks its block, or when an option whose default another variable gives (defaults/main.yml
inherits it) does not say so in its description, which is all ansible-doc shows of it (`default: null`).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- role-variables (?P<role>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /role-variables -->)", re.S)
# A default that only takes another variable's value: show that variable's name.
INHERITED = re.compile(r"^\{\{\s*([a-z_]+)\s*(\|\s*default\([^)]*\)\s*)?\}\}$")
# How a description says where a default without a literal value comes from.
SAYS_DEFAULT = "Default: "


def options(role: str, roles: Path) -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load((roles / role / "meta" / "argument_specs.yml").read_text())
    return dict(spec["argument_specs"]["main"]["options"])


def _inline(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str) and value in ("", "true", "false") else None
    if text is None:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...")
    return f"`{text}`"


def inherited_from(value: Any) -> str | None:
    """The variable a role default takes its value from, if it only takes another variable's value."""
    if isinstance(value, str) and (inherited := INHERITED.match(value.strip())):
        return inherited.group(1)
    return None


def default_cell(name: str, option: dict[str, Any], defaults: dict[str, Any]) -> str:
    if "default" in option:
        return _inline(option["default"])
    value = defaults.get(name)
    if source := inherited_from(value):
        return f"`{source}`"
    return "(computed)" if value is None else _inline(value)


def description(option: dict[str, Any]) -> str:
    text = option.get("description", "")
    return " ".join(" ".join(text) if isinstance(text, list) else str(text).split())


def meaning_cell(option: dict[str, Any]) -> str:
    text = description(option)
    if choices := option.get("choices"):
        text += " One of " + ", ".join(f"`{choice}`" for choice in choices) + "."
    return text.replace("|", "\\|")


def table(role: str, roles: Path) -> str:
    defaults = yaml.safe_load((roles / role / "defaults" / "main.yml").read_text()) or {}
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, option in options(role, roles).items():
        rows.append(f"| `{name}` | {default_cell(name, option, defaults)} | {meaning_cell(option)} |")
    return "\n".join(rows) + "\n"


def render(text: str, roles: Path) -> str:
    """`text` with every role-variables block regenerated."""
    return BLOCK.sub(lambda m: m.group(1) + "\n" + table(m.group("role"), roles) + "\n" + m.group(4), text)


def role_names(roles: Path) -> list[str]:
    return sorted(p.parent.parent.name for p in roles.glob("*/meta/argument_specs.yml"))


def undocumented(roles: Path) -> list[str]:
    """Roles whose own README has no block of their variables."""
    missing = []
    for role in role_names(roles):
        readme = roles / role / "README.md"
        text = readme.read_text() if readme.is_file() else ""
        if role not in {m.group("role") for m in BLOCK.finditer(text)}:
            missing.append(role)
    return missing


def unsaid_defaults(roles: Path) -> list[str]:
    """Options with no literal default whose description does not say where the default comes from."""
    unsaid = []
    for role in role_names(roles):
        spec = yaml.safe_load((roles / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        defaults = yaml.safe_load((roles / role / "defaults" / "main.yml").read_text()) or {}
        for entry in spec.values():
            for name, option in entry.get("options", {}).items():
                if "default" in option or option.get("required"):
                    continue
                text = description(option)
                source = inherited_from(defaults.get(name))
                if SAYS_DEFAULT not in text or (source and f"{SAYS_DEFAULT}{source}" not in text):
                    unsaid.append(f"{role}: {name} (say '{SAYS_DEFAULT}{source or '...'}' in its description)")
    return unsaid


def pages(roles: Path) -> list[Path]:
    """Every page that may hold a table: the README, docs/, and each role's README."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [p for p in found if p.is_file()] + [roles / role / "README.md" for role in role_names(roles)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a page differs from argument_specs")
    parser.add_argument("--roles", type=Path, default=ROOT / "roles", help="the roles directory (default: %(default)s)")
    parser.add_argument(
        "pages", nargs="*", type=Path, help="pages to regenerate (default: README.md, docs/, roles' READMEs)"
    )
    args = parser.parse_args(argv)
    failed = False
    for problem in [f"{role}: roles/{role}/README.md has no <!-- role-variables {role} --> block"
                    for role in undocumented(args.roles)] + unsaid_defaults(args.roles):  # fmt: skip
        print(problem, file=sys.stderr)
        failed = True
    for page in args.pages or pages(args.roles):
        if not page.is_file():
            continue
        current = page.read_text()
        wanted = render(current, args.roles)
        if wanted == current:
            continue
        if args.check:
            sys.stdout.writelines(
                difflib.unified_diff(current.splitlines(True), wanted.splitlines(True), str(page), "generated")
            )
            print(f"{page} differs from the roles' argument_specs: run python tools/role_docs.py", file=sys.stderr)
            failed = True
        else:
            page.write_text(wanted)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
