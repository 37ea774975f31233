"""The README's role variable tables, generated from each role's meta/argument_specs.yml.

argument_specs is the one place a role variable is documented (ansible-doc -t role shows it too);
the README holds a copy between `<!-- role-variables ROLE -->` and `<!-- /role-variables -->`.
`python tools/role_docs.py` rewrites those blocks; `--check` (make lint) fails when one drifted.
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


def options(role: str, roles: Path) -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load((roles / role / "meta" / "argument_specs.yml").read_text())
    return dict(spec["argument_specs"]["main"]["options"])


def _inline(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str) and value in ("", "true", "false") else None
    if text is None:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...")
    return f"`{text}`"


def default_cell(name: str, option: dict[str, Any], defaults: dict[str, Any]) -> str:
    if "default" in option:
        return _inline(option["default"])
    value = defaults.get(name)
    if isinstance(value, str) and (inherited := INHERITED.match(value.strip())):
        return f"`{inherited.group(1)}`"
    return "(computed)" if value is None else _inline(value)


def meaning_cell(option: dict[str, Any]) -> str:
    description = option.get("description", "")
    text = " ".join(description) if isinstance(description, list) else str(description)
    text = " ".join(text.split())
    if choices := option.get("choices"):
        text += " One of " + ", ".join(f"`{choice}`" for choice in choices) + "."
    return text.replace("|", "\\|")


def table(role: str, roles: Path) -> str:
    defaults = yaml.safe_load((roles / role / "defaults" / "main.yml").read_text()) or {}
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, option in options(role, roles).items():
        rows.append(f"| `{name}` | {default_cell(name, option, defaults)} | {meaning_cell(option)} |")
    return "\n".join(rows) + "\n"


def render(readme: str, roles: Path) -> str:
    """`readme` with every role-variables block regenerated."""
    return BLOCK.sub(lambda m: m.group(1) + "\n" + table(m.group("role"), roles) + "\n" + m.group(4), readme)


def undocumented(readme: str, roles: Path) -> list[str]:
    """Roles whose variables have no block in the README."""
    present = {m.group("role") for m in BLOCK.finditer(readme)}
    return sorted(
        p.parent.parent.name for p in roles.glob("*/meta/argument_specs.yml") if p.parent.parent.name not in present
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when README.md differs from argument_specs")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--roles", type=Path, default=ROOT / "roles")
    args = parser.parse_args(argv)
    current = args.readme.read_text()
    wanted = render(current, args.roles)
    missing = undocumented(current, args.roles)
    if missing:
        print(f"{args.readme}: no <!-- role-variables ROLE --> block for {', '.join(missing)}", file=sys.stderr)
    if wanted == current:
        return 1 if missing else 0
    if args.check:
        sys.stdout.writelines(
            difflib.unified_diff(current.splitlines(True), wanted.splitlines(True), "README.md", "generated")
        )
        print(f"{args.readme} differs from the roles' argument_specs: run python tools/role_docs.py", file=sys.stderr)
        return 1
    args.readme.write_text(wanted)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
